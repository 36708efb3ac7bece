"""What the pipeline needs of its models; real ONNX models and test fakes both provide it."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from streamrec.records import Detections


class Detector(Protocol):
    def detect(self, image: np.ndarray) -> Detections:
        """Faces (boxes, scores, 5 landmarks) in a BGR image, in image coordinates."""
        ...

    def detect_region(
        self, image: np.ndarray, region: tuple[int, int, int, int], scale: float
    ) -> Detections:
        """Faces in the ``(x1, y1, x2, y2)`` region of a BGR image, resized by ``scale`` for the
        detector; in image coordinates."""
        ...

    def frame_scale(self, width: int, height: int) -> float:
        """How much ``detect`` resizes an image of this size for the detector."""
        ...

    def cost(self, width: int, height: int, scale: float) -> int:
        """The pixels the detector runs on for a region of this size resized by ``scale`` (what
        a pass costs, compared between passes)."""
        ...


class Embedder(Protocol):
    #: embedding dimension
    dim: int
    #: side of the square aligned crop the recognizer takes
    input_size: int

    def embed(self, crops: list[np.ndarray]) -> np.ndarray:
        """L2-normalised float32 embeddings [N, dim] of aligned BGR crops."""
        ...


class FaceModels(Protocol):
    """A detector, a recognizer and the recognizer's cosine threshold (``FaceAnalyzer``)."""

    @property
    def detector(self) -> Detector: ...

    @property
    def embedder(self) -> Embedder: ...

    @property
    def threshold(self) -> float: ...
