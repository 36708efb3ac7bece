"""Typed records that flow one way through the pipeline.

Sources yield :class:`Frame`; the detector yields :class:`Detections`; the tracker keeps a
:class:`Track` per face. Through the graph of stages flows one :data:`Work` item per frame
(:class:`FrameWork`) or per control signal (:class:`StreamGap`, :class:`EndOfStream`): each
stage fills in its part (tracks, one :class:`FaceJob` per face to embed, labels, the annotated
image) and passes it on. The match stage turns evidence into :class:`Event` records for the
sinks. Numpy arrays are the fields so that records can be batched without copies.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Protocol

import cv2
import numpy as np


class Picture(Protocol):
    """A decoded picture still in the decoder's format (YUV): converted only when asked."""

    @property
    def width(self) -> int: ...

    @property
    def height(self) -> int: ...

    def bgr(self) -> np.ndarray:
        """H x W x 3 uint8 BGR, C-contiguous."""
        ...

    def plane(self) -> tuple[np.ndarray, bool]:
        """The luma plane as the decoder coded it (H x W uint8, without any conversion) and
        whether it codes black..white as 16..235 ("limited" range) rather than 0..255."""
        ...


#: limited-range luma (16..235) to full range (0..255)
_STRETCH = np.clip((np.arange(256) - 16) * 255 / 219 + 0.5, 0, 255).astype(np.uint8)


def shrink(grey: np.ndarray, height: int) -> np.ndarray:
    """``grey`` resized to ``height`` rows: halved by pixel area while it is at least twice as
    tall (OpenCV's fast path), then interpolated the rest of the way (area resizing by other
    factors is ten times slower)."""
    while grey.shape[0] >= 2 * height:
        grey = cv2.resize(
            grey, (grey.shape[1] // 2, grey.shape[0] // 2), interpolation=cv2.INTER_AREA
        )
    if grey.shape[0] != height:
        width = max(1, round(grey.shape[1] * height / grey.shape[0]))
        grey = cv2.resize(grey, (width, height), interpolation=cv2.INTER_LINEAR)
    return grey


class Frame:
    """One decoded frame.

    ``index`` counts frames from the start of the source (0-based, after any drops on live
    sources it still counts every frame the source produced); ``time`` is the media time in
    seconds; ``captured`` is the wall-clock time (``time.time()``) at which the frame was read.

    ``image`` (BGR) is made from the decoder's picture the first time a stage asks for it, so a
    frame that is neither detected, embedded, drawn nor watched is never converted, and a live
    frame dropped for being late costs no conversion; ``luma`` gives the grey levels without
    converting.
    """

    __slots__ = (
        "_image", "_lock", "_luma", "_picture", "_thumb", "captured", "index", "source", "time",
    )  # fmt: skip

    def __init__(
        self,
        source: str,
        index: int,
        time: float,
        image: np.ndarray | Picture,
        captured: float = 0.0,
    ) -> None:
        self.source = source
        self.index = index
        self.time = time
        self.captured = captured
        self._lock = threading.Lock()
        if isinstance(image, np.ndarray):
            self._image: np.ndarray | None = image
            self._picture: Picture | None = None
        else:
            self._image, self._picture = None, image
        self._luma: np.ndarray | None = None
        self._thumb: np.ndarray | None = None

    def __repr__(self) -> str:
        return f"Frame({self.source!r}, {self.index}, {self.time:.3f}, {self.width}x{self.height})"

    @property
    def image(self) -> np.ndarray:
        """H x W x 3, uint8, BGR, C-contiguous (converted once, on first use)."""
        image = self._image
        if image is not None:
            return image
        with self._lock:
            if self._image is None:
                assert self._picture is not None
                self._image = self._picture.bgr()
            return self._image

    @property
    def converted(self) -> bool:
        """Whether the BGR image has been made (for tests and counters)."""
        return self._image is not None

    def luma(self, full_range: bool = True) -> np.ndarray:
        """The frame's grey levels (H x W uint8): from the decoder's picture without converting
        it when there is one, else from the BGR image; made once.

        ``full_range=False`` gives the plane as coded (black may be 16, white 235) without the
        full-frame stretch, for uses that do not compare levels (optical flow).
        """
        grey = self._luma
        if grey is None:
            if self._picture is None:
                grey = self._luma = cv2.cvtColor(self.image, cv2.COLOR_BGR2GRAY)
            else:
                plane, limited = self._picture.plane()
                if not limited:
                    grey = self._luma = plane
                elif not full_range:
                    return plane
                else:
                    grey = self._luma = np.asarray(cv2.LUT(plane, _STRETCH), np.uint8)
        return grey

    def thumbnail(self, height: int) -> np.ndarray:
        """The grey levels shrunk to ``height`` rows (the aspect kept, each pixel the mean of the
        frame's pixels it covers, full range): what motion and scene cuts are judged on. Made
        once, from the decoder's plane without stretching the whole frame."""
        thumb = self._thumb
        if thumb is None or thumb.shape[0] != height:
            if self._picture is None or self._luma is not None:
                plane, limited = self.luma(), False
            else:
                plane, limited = self._picture.plane()
            thumb = shrink(plane, height)
            if limited:
                thumb = np.asarray(cv2.LUT(thumb, _STRETCH), np.uint8)
            self._thumb = thumb
        return thumb

    @property
    def height(self) -> int:
        picture = self._picture
        return int(picture.height) if picture is not None else int(self.image.shape[0])

    @property
    def width(self) -> int:
        picture = self._picture
        return int(picture.width) if picture is not None else int(self.image.shape[1])


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

    def __repr__(self) -> str:
        """Short: the box, scores and name; the embedding only by its size."""
        box = ", ".join(f"{float(v):.0f}" for v in self.bbox)
        score = "None" if self.score is None else f"{self.score:.3f}"
        return (
            f"Face(bbox=[{box}], det_score={self.det_score:.3f}, name={self.name!r}, "
            f"score={score}, embedding=<{self.embedding.shape[-1]}-d>)"
        )


@dataclass
class Track:
    """A tracked face; the tracker updates its live tracks in place, stages get snapshots.

    Arrays are replaced, never mutated, so a snapshot taken with ``copy.copy`` keeps its values.
    """

    track_id: int  # stable, unique per tracker, starting at 1
    box: np.ndarray  # float32[4] x1,y1,x2,y2 current (detected or predicted)
    kps: np.ndarray  # float32[5,2] current landmarks (moved with the box when predicted)
    det_score: float  # score of the last matched detection
    first_frame: int
    last_frame: int  # last frame in which the track was present
    last_detected: int  # frame index of the last matched detection
    frames: int = 1  # frames passed to the tracker in which the track was present
    hits: int = 1  # number of matched detections
    missed: int = 0  # consecutive detection rounds without a match
    det_index: int = -1  # index into this update's Detections, -1 if not matched this update
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(4, np.float32))  # per frame


@dataclass
class FaceJob:
    """One face of one frame to embed: asked for by the detect stage, filled by the embed stage."""

    track_id: int
    kps: np.ndarray  # float32[5, 2] landmarks the crop is aligned on
    quality: float  # expected similarity to the person's template: before alignment, then aligned
    box: np.ndarray  # float32[4] the face's box
    det_score: float
    request: str = "explore"  # why it is embedded (``pipeline.identity.Request``)
    #: the BGR frame the landmarks are in, when not the frame the job travels with (a burst of
    #: new faces is spread over the next frames)
    image: np.ndarray | None = field(default=None, repr=False)
    crop: np.ndarray | None = None  # aligned BGR crop (embed stage)
    embedding: np.ndarray | None = None  # float32[D], L2-normalised (embed stage)


@dataclass(frozen=True)
class Label:
    """What to draw on a track: its name or unknown-N label, and the score when known."""

    text: str | None
    score: float | None
    known: bool


@dataclass
class FrameWork:
    """One frame's journey through the graph."""

    camera: str
    frame: Frame
    tracks: list[Track] = field(default_factory=list)  # snapshots of the tracks present
    started: list[Track] = field(default_factory=list)
    ended: list[Track] = field(default_factory=list)  # ended before or at this frame
    jobs: list[FaceJob] = field(default_factory=list)
    labels: dict[int, Label] = field(default_factory=dict)  # per track id
    image: np.ndarray | None = None  # annotated copy (only drawn for a consumer)


@dataclass
class StreamGap:
    """A live camera dropped: its tracks end now (``ended``); frames resume after a reconnect."""

    camera: str
    reason: str
    ended: list[Track] = field(default_factory=list)


@dataclass
class EndOfStream:
    """A camera's stream is over: its tracks end (``ended``) and nothing follows."""

    camera: str
    ended: list[Track] = field(default_factory=list)


#: what flows between the stages of the graph
Work = FrameWork | StreamGap | EndOfStream


@dataclass(frozen=True)
class TrackSighting:
    """What one ended track leaves in the face history (carried by its ``track_end`` event).

    ``embedding`` is the track's L2-normalised quality-weighted mean; ``crop`` its best aligned
    face (BGR); ``label`` the name or ``unknown-N`` it got (None: neither).
    """

    camera: str
    first_seen: float  # wall-clock time of its first frame
    last_seen: float  # ... and of its last
    embedding: np.ndarray  # float32 [D], L2-normalised
    crop: np.ndarray | None
    quality: float
    label: str | None
    score: float | None


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
    #: the track's best aligned face (BGR) of an identification or an unknown label, for
    #: snapshot sinks and the live view; not in JSON
    snapshot: np.ndarray | None = field(default=None, repr=False, compare=False)
    #: a ``track_end``'s sighting for the face history; not in JSON
    sighting: TrackSighting | None = field(default=None, repr=False, compare=False)

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
