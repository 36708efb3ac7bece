"""What a running pipeline tells the world: camera states, the observer of its work, and who
reads its events.

:class:`CameraState` is the one set of camera states, with its mappings to ``/health``, the
``streamrec_camera_up`` metric and the MQTT camera status beside it. :class:`Observer` is the
one telemetry interface of the pipeline's stages: how long things take and how much work they
do; the run summary, the Prometheus metrics and the live status implement the parts they need,
and :class:`Observers` fans calls out to several. What happened to a track (started, named,
labelled unknown, ended) leaves the pipeline once, as an :class:`~streamrec.records.Event`:
the summary, the metrics and the live status read those facts from the events (an
:class:`EventWriter` each, joined to the event sinks by :class:`EventTee`; :func:`named_in` and
:func:`unknown_in` read them).
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum
from typing import Protocol

import numpy as np

from streamrec.records import Event


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


class EventWriter(Protocol):
    """Takes the pipeline's events (an event sink, or a reader of the facts they carry)."""

    def write(self, event: Event) -> None: ...


class EventTee:
    """Writes every event to several writers, in order: the event sinks first, then those
    that count or show what happened (summary, metrics, live status)."""

    def __init__(self, *writers: EventWriter) -> None:
        self.writers = writers

    def write(self, event: Event) -> None:
        for w in self.writers:
            w.write(event)


def named_in(event: Event) -> str | None:
    """The person an ``identified`` or ``renamed`` event names (None: another event, or a
    track that lost its name)."""
    name = event.fields.get("name")
    if event.event in ("identified", "renamed") and isinstance(name, str):
        return name
    return None


def unknown_in(event: Event) -> str | None:
    """The ``unknown-N`` label an ``unknown`` event gives a track (None: another event, or an
    unknown face without a label: a Frigate snapshot's)."""
    label = event.fields.get("label")
    return label if event.event == "unknown" and isinstance(label, str) else None
