"""Helpers shared by the tests that drive the streamrec command line as a user would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: the small real models (det_500m + MobileFaceNet) as --set overrides, in FP32 whatever the
#: CPU offers (see conftest.FP32)
SMALL = [
    "--set",
    "models.detector=det_500m.onnx",
    "--set",
    "models.recognizer=mobilefacenet_128d.onnx",
    "--set",
    "runtime.precision=FP32",
]
LIN = "Lin-Manuel Miranda"
ALEX = "Alex Lacamoire"


def streamrec(
    *args: str, env: dict | None = None, check: bool = True, timeout: float = 600
) -> subprocess.CompletedProcess:
    """Run ``python run.py ARGS``; with ``check``, assert it succeeded."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=timeout,
    )
    if check:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def assert_one_clear_line(proc: subprocess.CompletedProcess, *needles: str) -> None:
    """A user mistake: non-zero exit, no traceback, one error line naming the problem."""
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1, proc.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]


def read_events(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def without_capture_times(events: list[dict]) -> list[dict]:
    """The events without ``captured`` (the wall-clock time of the read differs between runs)."""
    return [{k: v for k, v in e.items() if k != "captured"} for e in events]


def same_values(a: object, b: object) -> bool:
    """Equal, with numbers equal within 1e-3 (scores may differ in the last digits when the
    embedder's batches are composed differently)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_values(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(map(same_values, a, b))
    if isinstance(a, float | int) and isinstance(b, float | int):
        return abs(a - b) <= 1e-3
    return a == b


def probe_streams(path: Path) -> dict[str, dict]:
    """ffprobe's streams of a media file by kind (``video``, ``audio``), frames counted."""
    proc = subprocess.run(
        ["ffprobe", "-v", "error", "-count_frames", "-show_streams", "-of", "json", str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    return {s["codec_type"]: s for s in json.loads(proc.stdout)["streams"]}


def lin_gallery(gallery: Path, media_dir: Path) -> Path:
    """A gallery of Lin-Manuel Miranda (one photo), made with the small models."""
    photo = media_dir / "face_recognition/lin-manuel-miranda.png"
    streamrec("gallery", "add", LIN, str(photo), "--gallery", str(gallery), *SMALL)
    return gallery
