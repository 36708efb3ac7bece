"""Typed records that flow one way through the pipeline.

Every stage consumes and produces these dataclasses; numpy arrays are the fields so that
records can be batched without copies.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Frame:
    """One decoded frame.

    ``index`` counts frames from the start of the source (0-based, after any drops on live
    sources it still counts every frame the source produced); ``time`` is the media time in
    seconds; ``captured`` is the wall-clock time (``time.time()``) at which the frame was read.
    """

    source: str
    index: int
    time: float
    image: np.ndarray  # H x W x 3, uint8, BGR, C-contiguous
    captured: float = 0.0

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])


@dataclass
class Detections:
    """Faces found in one image: the central detection type (one row per face)."""

    boxes: np.ndarray  # float32 [N, 4] x1, y1, x2, y2 in image pixels
    scores: np.ndarray  # float32 [N]
    kps: np.ndarray  # float32 [N, 5, 2] eyes, nose, mouth corners (left/right in the image)

    @classmethod
    def empty(cls) -> Detections:
        return cls(
            boxes=np.zeros((0, 4), np.float32),
            scores=np.zeros((0,), np.float32),
            kps=np.zeros((0, 5, 2), np.float32),
        )

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    def __getitem__(self, index: Any) -> Detections:
        """Select rows by integer array, boolean mask or slice."""
        if isinstance(index, (int, np.integer)):
            index = [int(index)]
        return Detections(self.boxes[index], self.scores[index], self.kps[index])


@dataclass
class Face:
    """One analysed face: detection, landmarks, and its L2-normalised embedding."""

    bbox: np.ndarray  # float32 [4]
    kps: np.ndarray  # float32 [5, 2]
    det_score: float
    embedding: np.ndarray  # float32 [D], L2-normalised
    name: str | None = None  # gallery match, None when unknown or not matched
    score: float | None = None  # cosine similarity of the best gallery match


@dataclass
class Event:
    """A pipeline event, written one JSON object per line by the event sinks.

    ``fields`` holds the event-specific keys (``name``, ``score``, ``first_frame`` ...).
    """

    event: str  # track_start | identified | track_end | ...
    source: str
    track_id: int
    frame: int
    time: float  # media seconds
    captured: float | None = None  # wall-clock capture time of the frame (live sources)
    camera: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "event": self.event,
            "source": self.source,
            "track_id": int(self.track_id),
            "frame": int(self.frame),
            "time": round(float(self.time), 4),
        }
        if self.camera is not None:
            out["camera"] = self.camera
        if self.captured is not None:
            out["captured"] = round(float(self.captured), 4)
        out.update(self.fields)
        return out
