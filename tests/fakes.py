"""Fake models and sources: the pipeline's logic on synthetic frames, in milliseconds.

A "face" is a filled square of a pure colour on a dark frame (black, or a grey :class:`Scene`
with sensor noise and changes of light). :class:`FakeDetector` finds the squares (connected
components of bright pixels) and gives each frontal landmarks; :class:`FakeEmbedder` embeds an
aligned crop as its mean colour, so red, green and blue faces are three orthogonal people.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import cv2
import numpy as np

from streamrec.gallery.matcher import Matcher
from streamrec.recognition import Recognition
from streamrec.records import Detections, Frame
from streamrec.sources import Gap, Source, SourceOptions

RED, GREEN, BLUE = (0, 0, 255), (0, 255, 0), (255, 0, 0)  # BGR
EMBEDDING = {RED: [0.0, 0.0, 1.0], GREEN: [0.0, 1.0, 0.0], BLUE: [1.0, 0.0, 0.0]}
#: frontal landmarks relative to the box: eyes, nose, mouth corners
_KPS = np.array([[0.3, 0.35], [0.7, 0.35], [0.5, 0.55], [0.35, 0.75], [0.65, 0.75]], np.float32)


class FakeDetector:
    """Finds the squares; ``scale`` is how much the whole-frame pass would shrink the frame
    (the squares are found at any size, but the small-face passes follow it). Each call takes
    ``delay`` seconds (a slow machine; change it while it runs)."""

    def __init__(self, scale: float = 1.0, delay: float = 0.0) -> None:
        self.calls = 0
        self.region_calls = 0
        self.scale = scale
        self.delay = delay

    def frame_scale(self, width: int, height: int) -> float:
        return self.scale

    def cost(self, width: int, height: int, scale: float) -> int:
        return round(width * height * scale * scale)

    def detect_region(
        self, image: np.ndarray, region: tuple[int, int, int, int], scale: float
    ) -> Detections:
        self.region_calls += 1
        time.sleep(self.delay)
        x1, y1, x2, y2 = region
        dets = self._find(image[y1:y2, x1:x2])
        offset = np.array([x1, y1], np.float32)
        return Detections(dets.boxes + np.tile(offset, 2), dets.scores, dets.kps + offset)

    def detect(self, image: np.ndarray) -> Detections:
        self.calls += 1
        time.sleep(self.delay)
        return self._find(image)

    def _find(self, image: np.ndarray) -> Detections:
        mask = (image.max(axis=2) > 127).astype(np.uint8)
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
class FakePeople:
    """A gallery that never changes (a Recognition service's ``people``)."""

    people: Matcher
    revision: int = 0

    def matcher(self) -> Matcher:
        return self.people


def recognition(
    models: FakeModels | None = None, people: dict[str, tuple[int, int, int]] | None = None
) -> Recognition:
    """A Recognition service of fake models, matching ``people`` (by colour) or nobody."""
    fixed = FakePeople(matcher(people)) if people else None
    return Recognition(models or FakeModels(), people=fixed)


@dataclass
class Face:
    color: tuple[int, int, int]
    x: float
    y: float
    size: int = 60
    dx: float = 0.0  # pixels per frame
    frames: range = range(0, 10**9)  # frames in which it is visible
    #: its colour shaded by a fixed texture (optical flow finds corners to follow on it)
    textured: bool = False


@dataclass
class Scene:
    """A grey background with sensor noise: ``light(index)`` is its grey level, ``noise`` the
    noise's standard deviation (fresh on every frame)."""

    light: Callable[[int], float] = lambda index: 60.0
    noise: float = 6.0
    seed: int = 0

    def background(self, index: int, width: int, height: int) -> np.ndarray:
        rng = np.random.default_rng((self.seed, index))
        grey = rng.normal(self.light(index), self.noise, (height, width, 1))
        return np.repeat(np.clip(grey, 0, 110), 3, axis=2).astype(np.uint8)


def render(
    faces: Iterable[Face],
    index: int,
    width: int = 320,
    height: int = 240,
    scene: Scene | None = None,
) -> np.ndarray:
    if scene is None:
        image = np.zeros((height, width, 3), np.uint8)
    else:
        image = scene.background(index, width, height)
    for f in faces:
        if index in f.frames:
            x = round(f.x + f.dx * index)
            y = round(f.y)
            if f.textured:
                _paint(image, x, y, f)
            else:
                cv2.rectangle(image, (x, y), (x + f.size, y + f.size), f.color, -1)
    return image


def _paint(image: np.ndarray, x: int, y: int, face: Face) -> None:
    """The face's square in its colour times a texture of 0.6-1 (brightest channel > 127, the
    colour's direction kept), clipped to the image."""
    rng = np.random.default_rng(face.size)
    shade = cv2.GaussianBlur(rng.random((face.size + 1, face.size + 1)), (0, 0), 2)
    shade = 0.6 + 0.4 * (shade - shade.min()) / max(float(np.ptp(shade)), 1e-6)
    patch = shade[..., None] * np.asarray(face.color, np.float64)
    h, w = image.shape[:2]
    x1, y1 = max(0, x), max(0, y)
    x2, y2 = min(w, x + face.size + 1), min(h, y + face.size + 1)
    if x1 < x2 and y1 < y2:
        image[y1:y2, x1:x2] = patch[y1 - y : y2 - y, x1 - x : x2 - x].astype(np.uint8)


class FakeSource(Source):
    """Frames rendered from faces on a scene (and ``Gap`` items at given indices), in memory.

    ``paced``: a live camera's frames come in real time at ``fps``; a frame the pipeline has
    not taken when the next one is due is lost, as with a camera (its index is skipped)."""

    def __init__(
        self,
        name: str,
        faces: list[Face],
        frames: int,
        fps: float = 25.0,
        gaps: Iterable[int] = (),
        live: bool = False,
        scene: Scene | None = None,
        paced: bool = False,
    ) -> None:
        super().__init__(name, SourceOptions())
        self.live = live
        self.fps, self.total_frames = fps, frames
        self.paced = paced
        self._items = self._generate(faces, frames, set(gaps), scene)

    def _generate(
        self, faces: list[Face], frames: int, gaps: set[int], scene: Scene | None
    ) -> Iterator[Frame | Gap]:
        start = time.monotonic()
        for i in range(frames):
            if self._closed.is_set():
                return
            if self.paced:
                late = time.monotonic() - start - i / self.fps
                if late > 1 / self.fps:  # the camera sent this one while we were busy
                    self._counted(time.time())
                    continue
                self._closed.wait(max(0.0, -late))
            if i in gaps:
                yield Gap(self.name, "fake camera dropped", float(i))
            index = self._counted(time.time())
            image = render(faces, i, scene=scene)
            yield Frame(self.name, index, i / self.fps, image, time.time())

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
