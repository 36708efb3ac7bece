"""Media files on disk: reading a photo, and which files are photos or video clips."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from streamrec.errors import MediaError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mkv", ".mov", ".wmv", ".webm", ".m4v", ".mpg", ".mpeg", ".ts"}


def read_image(path: str | Path) -> np.ndarray:
    """BGR image from a file; MediaError with a clear message when it cannot be read."""
    p = Path(path)
    if not p.is_file():
        raise MediaError(f"image not found: {p}")
    data = np.fromfile(str(p), dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise MediaError(f"cannot read image {p}: not an image or corrupt")
    return image


def image_files(folder: Path) -> list[Path]:
    """The photos directly in ``folder``, by name."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
