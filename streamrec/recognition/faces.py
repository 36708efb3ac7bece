"""Faces found in an image (with their aligned crops and embeddings), the one-face rule, and a
sample to enrol."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from streamrec.errors import MediaError


@dataclass(frozen=True)
class FoundFace:
    """A face of an image: where it is, its aligned crop and embedding, and its quality."""

    box: np.ndarray  # x1, y1, x2, y2
    kps: np.ndarray  # [5, 2]
    det_score: float
    embedding: np.ndarray
    crop: np.ndarray  # aligned BGR face
    quality: float  # expected similarity to the person's template (models.quality)

    @property
    def area(self) -> float:
        return float((self.box[2] - self.box[0]) * (self.box[3] - self.box[1]))


class FaceCountError(MediaError):
    """An image that should show exactly one face shows none, or several (``count``)."""

    def __init__(self, count: int) -> None:
        super().__init__(
            "No face is found in the given image"
            if count == 0
            else f"{count} faces found in the image; exactly one is needed"
        )
        self.count = count


def only_face(faces: Sequence[FoundFace]) -> FoundFace:
    """The one face of an image; :class:`FaceCountError` when there is none or several."""
    if len(faces) != 1:
        raise FaceCountError(len(faces))
    return faces[0]


@dataclass(frozen=True)
class NewSample:
    """A sample to enrol: embedding, aligned face, its quality (None: not measured), where it
    came from, and the sha256 of the photo's bytes (None: not a photo)."""

    embedding: np.ndarray
    crop: np.ndarray
    quality: float | None
    source: str
    sha256: str | None = None
