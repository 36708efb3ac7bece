"""Peer libraries, each at its documented per-frame usage, fed by raw PyAV decoding.

A peer that is not installed (or lacks a dependency) raises ``Skipped`` with the install hint.
"""

from __future__ import annotations

import importlib.util
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

from .cases import DET_SIZE, DETECTOR, RECOGNIZER, Measured, Skipped, Spec, decode_frames

OPENVINO = "OpenVINOExecutionProvider"
CPU = "CPUExecutionProvider"
_FACE_RECOGNITION = ("dlib", "face_recognition_models", "face_recognition")


def _timed_loop(clip: str, per_frame: Any) -> tuple[int, int, int, float]:
    """Run ``per_frame(index, image) -> faces or None (skipped frame)`` over the clip.

    Returns frames, frames analysed, faces, wall seconds (decoding included)."""
    frames = analysed = faces = 0
    start = time.perf_counter()
    for image in decode_frames(clip):
        found = per_frame(frames, image)
        frames += 1
        if found is not None:
            analysed += 1
            faces += found
    return frames, analysed, faces, time.perf_counter() - start


def insightface(spec: Spec) -> Measured:
    """``FaceAnalysis.get`` on every frame: detection + per-face alignment and embedding."""
    try:
        from insightface.app import FaceAnalysis
    except ImportError as exc:
        raise Skipped(f"insightface is not installed ({exc})") from exc

    # insightface 2.1 calls a scikit-image API deprecated in 0.26 on every face
    warnings.filterwarnings("ignore", category=FutureWarning, module="insightface")
    models = Path(spec["models"])
    providers = [OPENVINO, CPU] if spec.get("provider", "openvino") == "openvino" else [CPU]
    with tempfile.TemporaryDirectory(prefix="bench-insightface-") as root:
        pack = Path(root) / "models" / "bench"
        pack.mkdir(parents=True)
        for role, default in (("detector", DETECTOR), ("recognizer", RECOGNIZER)):
            path = models / spec.get(role, default)  # an absolute path stays as it is
            (pack / f"{role}_{path.name}").symlink_to(path)
        start = time.perf_counter()
        app = FaceAnalysis(
            name="bench",
            root=root,
            allowed_modules=["detection", "recognition"],
            providers=providers,
        )
        # ctx_id=-1 would switch every session to the CPU EP; 0 keeps the providers given.
        app.prepare(ctx_id=0, det_size=(DET_SIZE, DET_SIZE))
        load = time.perf_counter() - start
        if set(app.models) != {"detection", "recognition"}:
            raise RuntimeError(f"InsightFace loaded {sorted(app.models)} from {pack}")
        used = sorted({p for m in app.models.values() for p in m.session.get_providers()})
        frames, _, faces, wall = _timed_loop(spec["clip"], lambda _, image: len(app.get(image)))
    return Measured(frames, wall, load, faces, frames, faces, providers=used)


def face_recognition(spec: Spec) -> Measured:
    """The face_recognition README's real-time webcam recipe: frames downscaled to 1/4,
    ``face_locations`` (HOG) + ``face_encodings`` on every other frame."""
    # face_recognition quits the process when face_recognition_models is missing: check first
    missing = [m for m in _FACE_RECOGNITION if importlib.util.find_spec(m) is None]
    if missing:
        raise Skipped(
            f"not installed: {', '.join(missing)} (pip install dlib-bin face_recognition_models"
            " && pip install --no-deps face_recognition)"
        )
    import cv2
    import face_recognition as fr

    def per_frame(index: int, image: Any) -> int | None:
        if index % 2:
            return None
        small = cv2.resize(image, (0, 0), fx=0.25, fy=0.25)
        rgb = cv2.cvtColor(small, cv2.COLOR_BGR2RGB)
        locations = fr.face_locations(rgb, model="hog")
        return len(fr.face_encodings(rgb, locations))

    frames, analysed, faces, wall = _timed_loop(spec["clip"], per_frame)
    return Measured(frames, wall, None, faces, analysed, faces)
