"""FaceAnalyzer: detection, alignment and embedding of faces in still images."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np

from streamrec.gallery.matcher import Matcher
from streamrec.gallery.store import Gallery, GalleryPolicy, Recognizer
from streamrec.models.alignment import align

from .config import Config, as_config
from .models.detector import ScrfdDetector
from .models.embedder import ArcFaceEmbedder
from .models.registry import recognizer_threshold, resolve_all
from .models.runtime import use_opencv_threads
from .records import Detections, Face


class FaceAnalyzer:
    """Finds faces in BGR images and computes their L2-normalised embeddings.

    ``FaceAnalyzer()`` uses the configured models (``buffalo_l`` by default, fetched on first
    use); ``FaceAnalyzer(detector="det_500m.onnx", recognizer="mobilefacenet_128d.onnx")``
    chooses them (a pack name, a file name found like any model, or a path); ``config`` is a
    Config or the path of a YAML config file. A model that cannot be had raises ModelError
    naming every missing file and the ways out.
    """

    def __init__(
        self,
        config: Config | str | os.PathLike[str] | None = None,
        *,
        detector: str | os.PathLike[str] | None = None,
        recognizer: str | os.PathLike[str] | None = None,
    ) -> None:
        cfg = as_config(config)
        if detector is not None or recognizer is not None:
            models = cfg.models
            cfg = replace(
                cfg,
                models=replace(
                    models,
                    detector=os.fspath(detector) if detector is not None else models.detector,
                    recognizer=(
                        os.fspath(recognizer) if recognizer is not None else models.recognizer
                    ),
                ),
            )
        self.cfg = cfg
        use_opencv_threads(cfg.runtime)
        self.detector_model, self.recognizer_model = resolve_all(cfg.models)
        # one after the other: onnxruntime holds the GIL while it creates a session, so two
        # threads loading them take as long (measured: 0.55 s either way for the small models)
        self.detector = ScrfdDetector(self.detector_model.path, cfg.detector, cfg.runtime)
        self.embedder = ArcFaceEmbedder(self.recognizer_model.path, cfg.embedder, cfg.runtime)
        self.threshold = (
            cfg.recognition.threshold
            if cfg.recognition.threshold is not None
            else recognizer_threshold(self.recognizer_model)
        )

    @classmethod
    def from_config(cls, cfg: Config | str | os.PathLike[str] | None = None) -> FaceAnalyzer:
        """The same as ``FaceAnalyzer(cfg)``."""
        return cls(cfg)

    def __repr__(self) -> str:
        return (
            f"FaceAnalyzer(detector={self.detector_model.name!r}, "
            f"recognizer={self.recognizer_model.name!r}, threshold={self.threshold:.2f})"
        )

    @property
    def recognizer(self) -> Recognizer:
        model = self.recognizer_model
        return Recognizer(model.name, model.sha256, self.embedder.dim, model.compatible)

    def open_gallery(self, path: str | Path) -> Gallery:
        return Gallery(path, self.recognizer, GalleryPolicy.from_config(self.cfg))

    def detect(self, image: np.ndarray) -> Detections:
        return self.detector.detect(image)

    def embed(self, image: np.ndarray, dets: Detections) -> np.ndarray:
        """Embeddings [N, D] of the detected faces (aligned on their landmarks)."""
        crops = [align(image, k, self.embedder.input_size) for k in dets.kps]
        return self.embedder.embed(crops)

    def analyze(self, image: np.ndarray, matcher: Matcher | None = None) -> list[Face]:
        """Every face in a BGR image; named from ``matcher`` when one is given."""
        dets = self.detect(image)
        embeddings = self.embed(image, dets)
        matches: list[tuple[str | None, float | None]] = (
            matcher.match(embeddings, self.threshold) if matcher is not None else []
        )
        faces = []
        for i in range(len(dets)):
            name, score = matches[i] if matches else (None, None)
            faces.append(
                Face(
                    bbox=dets.boxes[i],
                    kps=dets.kps[i],
                    det_score=float(dets.scores[i]),
                    embedding=embeddings[i],
                    name=name,
                    score=score,
                )
            )
        return faces
