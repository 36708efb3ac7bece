"""Fake models and sources: the pipeline's logic on synthetic frames, in milliseconds.

A "face" is a filled square of a pure colour on a black frame. :class:`FakeDetector` finds the
squares (connected components) and gives each frontal landmarks; :class:`FakeEmbedder` embeds an
aligned crop as its mean colour, so red, green and blue faces are three orthogonal people.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import cv2
import numpy as np

from streamrec.gallery.matcher import Matcher
from streamrec.records import Detections, Frame
from streamrec.sources import Gap, Source, SourceOptions

RED, GREEN, BLUE = (0, 0, 255), (0, 255, 0), (255, 0, 0)  # BGR
EMBEDDING = {RED: [0.0, 0.0, 1.0], GREEN: [0.0, 1.0, 0.0], BLUE: [1.0, 0.0, 0.0]}
#: frontal landmarks relative to the box: eyes, nose, mouth corners
_KPS = np.array([[0.3, 0.35], [0.7, 0.35], [0.5, 0.55], [0.35, 0.75], [0.65, 0.75]], np.float32)


class FakeDetector:
    """Finds the squares; ``scale`` is how much the whole-frame pass would shrink the frame
    (the squares are found at any size, but the small-face passes follow it)."""

    def __init__(self, scale: float = 1.0) -> None:
        self.calls = 0
        self.region_calls = 0
        self.scale = scale

    def frame_scale(self, width: int, height: int) -> float:
        return self.scale

    def detect_region(
        self, image: np.ndarray, region: tuple[int, int, int, int], scale: float
    ) -> Detections:
        self.region_calls += 1
        x1, y1, x2, y2 = region
        dets = self._find(image[y1:y2, x1:x2])
        offset = np.array([x1, y1], np.float32)
        return Detections(dets.boxes + np.tile(offset, 2), dets.scores, dets.kps + offset)

    def detect(self, image: np.ndarray) -> Detections:
        self.calls += 1
        return self._find(image)

    def _find(self, image: np.ndarray) -> Detections:
        mask = (image.max(axis=2) > 0).astype(np.uint8)
        n, _, stats, _ = cv2.connectedComponentsWithStats(mask)
        boxes = [
            [x, y, x + w, y + h] for x, y, w, h, area in stats[1:n] if area >= 64 and h >= 8
        ]
        if not boxes:
            return Detections.empty()
        b = np.asarray(boxes, np.float32)
        size = b[:, 2:] - b[:, :2]
        kps = b[:, None, :2] + _KPS[None] * size[:, None, :]
        return Detections(b, np.full(len(b), 0.95, np.float32), kps.astype(np.float32))


class FakeEmbedder:
    dim = 3
    input_size = 112

    def __init__(self, fail_after: int | None = None) -> None:
        self.calls = 0
        self.fail_after = fail_after

    def embed(self, crops: list[np.ndarray]) -> np.ndarray:
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise RuntimeError("fake embedder failure")
        # the centre of the aligned crop is the face's colour
        means = np.stack([c[40:72, 40:72].reshape(-1, 3).mean(axis=0) for c in crops])
        norms = np.maximum(np.linalg.norm(means, axis=1, keepdims=True), 1e-6)
        return (means / norms).astype(np.float32)


@dataclass
class FakeModels:
    detector: FakeDetector = field(default_factory=FakeDetector)
    embedder: FakeEmbedder = field(default_factory=FakeEmbedder)
    threshold: float = 0.5


def matcher(people: dict[str, tuple[int, int, int]]) -> Matcher:
    """A gallery of one template per person, from their colours."""
    names = list(people)
    templates = np.asarray([EMBEDDING[people[n]] for n in names], np.float32)
    return Matcher(names, templates, np.arange(len(names)))


@dataclass
class Face:
    color: tuple[int, int, int]
    x: float
    y: float
    size: int = 60
    dx: float = 0.0  # pixels per frame
    frames: range = range(0, 10**9)  # frames in which it is visible


def render(faces: Iterable[Face], index: int, width: int = 320, height: int = 240) -> np.ndarray:
    image = np.zeros((height, width, 3), np.uint8)
    for f in faces:
        if index in f.frames:
            x = round(f.x + f.dx * index)
            y = round(f.y)
            cv2.rectangle(image, (x, y), (x + f.size, y + f.size), f.color, -1)
    return image


class FakeSource(Source):
    """Frames rendered from a scene (and ``Gap`` items at given indices), in memory."""

    def __init__(
        self,
        name: str,
        faces: list[Face],
        frames: int,
        fps: float = 25.0,
        gaps: Iterable[int] = (),
        live: bool = False,
    ) -> None:
        super().__init__(name, SourceOptions())
        self.live = live
        self.fps, self.total_frames = fps, frames
        self._items = self._generate(faces, frames, set(gaps))

    def _generate(self, faces: list[Face], frames: int, gaps: set[int]) -> Iterator[Frame | Gap]:
        for i in range(frames):
            if self._closed.is_set():
                return
            if i in gaps:
                yield Gap(self.name, "fake camera dropped", float(i))
            index = self._counted(time.time())
            yield Frame(self.name, index, i / self.fps, render(faces, i), time.time())

    def _next_item(self) -> Frame | Gap | None:
        return next(self._items, None)

    def _wake(self) -> None:
        pass


class ListWriter:
    """An event sink that keeps the events in memory."""

    def __init__(self) -> None:
        self.events: list = []

    def write(self, event) -> None:  # type: ignore[no-untyped-def]
        self.events.append(event)

    def kinds(self, camera: str | None = None) -> list[tuple[str, int]]:
        return [(e.event, e.track_id) for e in self.events if camera in (None, e.camera)]
