"""Helpers of the tests that need one face of a photo, as the Recognition service finds it."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from streamrec.analyzer import FaceAnalyzer
from streamrec.media import read_image
from streamrec.recognition import Recognition


def single_face(analyzer: FaceAnalyzer, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Embedding and aligned crop of the one face of a photo (FaceCountError otherwise)."""
    face = Recognition(analyzer).single_face(read_image(path))
    return face.embedding, face.crop
