"""What a running pipeline tells the world: camera states and the observer of its work.

:class:`CameraState` is the one set of camera states, with its mappings to ``/health``, the
``streamrec_camera_up`` metric and the MQTT camera status beside it. :class:`Observer` is the
one telemetry interface of the pipeline's stages; the run summary, the Prometheus metrics and
the live status implement the parts they need, and :class:`Observers` fans calls out to several.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum

import numpy as np


class CameraState(str, Enum):
    """The state of one camera, from its source (or, in cluster mode, its actor)."""

    STARTING = "starting"  # not opened yet
    CONNECTING = "connecting"  # first connection attempt under way
    RUNNING = "running"  # frames flowing
    RECONNECTING = "reconnecting"  # lost, reopening with backoff
    RESTARTING = "restarting"  # cluster: the camera's actor is being recreated
    FINISHED = "finished"  # a file ended
    STOPPED = "stopped"  # closed on request
    FAILED = "failed"  # gave up for good

    @property
    def healthy(self) -> bool:
        """Counts as ok in ``/health`` (anything else makes it answer 503)."""
        return self in (CameraState.STARTING, CameraState.RUNNING, CameraState.FINISHED)

    @property
    def final(self) -> bool:
        """Nothing more will happen on this camera."""
        return self in (CameraState.FINISHED, CameraState.STOPPED, CameraState.FAILED)

    @property
    def up(self) -> bool:
        """``streamrec_camera_up`` is 1."""
        return self is CameraState.RUNNING

    @property
    def mqtt(self) -> str:
        """The retained MQTT camera status: ``online``, ``reconnecting`` or ``offline``."""
        if self is CameraState.RUNNING:
            return "online"
        if self in (CameraState.CONNECTING, CameraState.RECONNECTING, CameraState.RESTARTING):
            return "reconnecting"
        return "offline"


class Latency(str, Enum):
    """The latencies the pipeline reports, each from a frame's capture (wall clock) to a moment
    of its journey."""

    FRAME = "frame"  # the frame left the pipeline (annotated for the live view, written)
    DECISION = "decision"  # a track's first frame -> its first identified or unknown event
    EVENT = "event"  # a track_start, identified or unknown event was emitted
    #: the frame whose detection round ended a track -> its track_end was emitted (a track ends
    #: ``tracker.max_missed`` rounds after it was last seen, by design: measured apart)
    TRACK_END = "track_end"


class Observer:
    """Telemetry of the pipeline's stages; every method does nothing unless overridden.

    Called from the stage threads (several at once): implementations must be thread-safe and
    cheap. ``camera`` is the configured camera name.
    """

    def frame_read(self, camera: str) -> None:
        """A frame entered the graph."""

    def detected(self, camera: str, faces: int, seconds: float) -> None:
        """The detector ran on a frame of ``camera``."""

    def embedded(self, faces: int, seconds: float) -> None:
        """One embedder call (a batch across frames and cameras)."""

    def evidence(self, camera: str) -> None:
        """One embedding was added to a track's evidence."""

    def track_started(self, camera: str) -> None:
        """A new face track."""

    def track_ended(self, camera: str, name: str | None, first: float, last: float) -> None:
        """A track ended: its identity (None: unknown) and its first/last media time."""

    def identified(
        self,
        camera: str,
        track_id: int,
        name: str,
        score: float,
        captured: float | None,
        crop: np.ndarray | None,
    ) -> None:
        """A track was named (or renamed); ``captured`` is the frame's wall-clock capture time,
        ``crop`` the track's best aligned face."""

    def unknown(self, camera: str, track_id: int, label: str, crop: np.ndarray | None) -> None:
        """A track that matches nobody in the gallery was labelled ``unknown-N``."""

    def gallery_loaded(self, people: int) -> None:
        """The running pipeline took in the gallery (at start or after a change)."""

    def erased(self, name: str) -> None:
        """A person or unknown-N label left the gallery (erased, renamed, merged): forget it."""

    def frame_wanted(self, camera: str) -> bool:
        """Whether someone wants this camera's next annotated frame (drawing costs)."""
        return False

    def frame_done(self, camera: str, image: np.ndarray | None) -> None:
        """A frame left the graph, with its annotated image when one was drawn."""

    def busy(self, step: str, seconds: float) -> None:
        """Time spent in one step of a stage (read, detect, track, align, embed, match, ...)."""

    def latency(self, camera: str, kind: Latency, seconds: float) -> None:
        """Wall seconds of one latency (see :class:`Latency`) of ``camera``."""

    def degraded(self, camera: str, level: int, what: str) -> None:
        """A live camera's degradation level changed (0: normal; ``what`` it gives up)."""


class Observers(Observer):
    """Fans every call out to several observers."""

    def __init__(self, observers: Sequence[Observer]) -> None:
        self.observers = list(observers)

    def frame_read(self, camera: str) -> None:
        for o in self.observers:
            o.frame_read(camera)

    def detected(self, camera: str, faces: int, seconds: float) -> None:
        for o in self.observers:
            o.detected(camera, faces, seconds)

    def embedded(self, faces: int, seconds: float) -> None:
        for o in self.observers:
            o.embedded(faces, seconds)

    def evidence(self, camera: str) -> None:
        for o in self.observers:
            o.evidence(camera)

    def track_started(self, camera: str) -> None:
        for o in self.observers:
            o.track_started(camera)

    def track_ended(self, camera: str, name: str | None, first: float, last: float) -> None:
        for o in self.observers:
            o.track_ended(camera, name, first, last)

    def identified(
        self,
        camera: str,
        track_id: int,
        name: str,
        score: float,
        captured: float | None,
        crop: np.ndarray | None,
    ) -> None:
        for o in self.observers:
            o.identified(camera, track_id, name, score, captured, crop)

    def unknown(self, camera: str, track_id: int, label: str, crop: np.ndarray | None) -> None:
        for o in self.observers:
            o.unknown(camera, track_id, label, crop)

    def gallery_loaded(self, people: int) -> None:
        for o in self.observers:
            o.gallery_loaded(people)

    def erased(self, name: str) -> None:
        for o in self.observers:
            o.erased(name)

    def frame_wanted(self, camera: str) -> bool:
        return any(o.frame_wanted(camera) for o in self.observers)

    def frame_done(self, camera: str, image: np.ndarray | None) -> None:
        for o in self.observers:
            o.frame_done(camera, image)

    def busy(self, step: str, seconds: float) -> None:
        for o in self.observers:
            o.busy(step, seconds)

    def latency(self, camera: str, kind: Latency, seconds: float) -> None:
        for o in self.observers:
            o.latency(camera, kind, seconds)

    def degraded(self, camera: str, level: int, what: str) -> None:
        for o in self.observers:
            o.degraded(camera, level, what)
