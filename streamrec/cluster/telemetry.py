"""Telemetry of a cluster: what the camera actors did, served by the head as a daemon serves it.

In each actor a :class:`Recorder` observes the pipeline (it is an
:class:`~streamrec.telemetry.Observer`) and sums up what happened since the driver's last poll
into a :class:`CameraReport`: frames (with their times, for the frame rate), faces,
detector/embedder/latency samples, the degradation level, the source's counters and state, and
the latest annotated frame as JPEG, drawn only while the head says that someone watches the
camera. Every part is bounded. What happened to the tracks travels in the events only.

On the head, :class:`HeadStatus` feeds the reports, and the events the driver writes, into the
daemon's own :class:`~streamrec.service.status.LiveStatus` and
:class:`~streamrec.service.metrics.Metrics`, serves them with
:class:`~streamrec.service.http.WebServer` (``/health``, ``/metrics``, the live view) and
publishes each camera's status on the event sinks that take one (MQTT).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from streamrec.config import Config
from streamrec.models.runtime import loaded_models
from streamrec.records import Event
from streamrec.service.metrics import Metrics
from streamrec.service.monitor import CameraMonitor, SourceCounters
from streamrec.service.status import LiveStatus
from streamrec.sinks import FanoutSink, SinkErasure
from streamrec.sinks.mqtt import encode_snapshot
from streamrec.telemetry import CameraState, Latency, Observer, Observers

if TYPE_CHECKING:
    from streamrec.service.http import WebServer

log = logging.getLogger("streamrec.cluster")

#: samples of each kind (frame times, detector/embedder calls, latencies) kept between two polls
SAMPLES = 512
#: seconds an actor keeps drawing frames after the head last said that someone watches
WATCH_LEASE = 2.0
#: the annotated frames an actor sends: at most this wide, JPEG quality
FRAME_WIDTH, FRAME_QUALITY = 960, 75


@dataclass
class CameraReport:
    """What one camera's actor did since the driver's last poll."""

    time: float = 0.0  # the actor's wall clock when the report was taken
    frames: int = 0
    frame_times: deque[float] = field(default_factory=lambda: deque(maxlen=SAMPLES))
    faces: int = 0
    detect_seconds: deque[float] = field(default_factory=lambda: deque(maxlen=SAMPLES))
    embeds: deque[tuple[float, int]] = field(default_factory=lambda: deque(maxlen=SAMPLES))
    latencies: deque[tuple[Latency, float]] = field(default_factory=lambda: deque(maxlen=SAMPLES))
    #: the camera's degradation level and what it gives up, when it changed
    degradation: tuple[int, str] | None = None
    jpeg: bytes | None = None
    source: SourceCounters = field(default_factory=SourceCounters)
    models: list[dict[str, Any]] = field(default_factory=list)


class Recorder(Observer):
    """An actor's observer of its pipeline: sums up a :class:`CameraReport` between polls."""

    def __init__(self) -> None:
        self._report = CameraReport()
        self._watched_until = 0.0
        self._lock = threading.Lock()

    def watch(self) -> None:
        """Someone watches this camera on the head: draw frames for a while."""
        self._watched_until = time.monotonic() + WATCH_LEASE

    def take(self, source: SourceCounters) -> CameraReport:
        """The report since the last call (and a fresh one begins)."""
        with self._lock:
            report, self._report = self._report, CameraReport()
        report.time, report.source = time.time(), source
        report.models = [m.to_dict() for m in loaded_models()]
        return report

    # -- the pipeline's observer -----------------------------------------------------------

    def frame_wanted(self, camera: str) -> bool:
        # one frame per poll: the previous one must have been taken
        return time.monotonic() < self._watched_until and self._report.jpeg is None

    def frame_done(self, camera: str, image: np.ndarray | None) -> None:
        jpeg = (
            encode_snapshot(image, FRAME_WIDTH, FRAME_QUALITY)
            if image is not None and self.frame_wanted(camera)
            else None
        )
        with self._lock:
            r = self._report
            r.frames += 1
            r.frame_times.append(time.time())
            if jpeg is not None:
                r.jpeg = jpeg

    def detected(self, camera: str, faces: int, seconds: float) -> None:
        with self._lock:
            self._report.faces += faces
            self._report.detect_seconds.append(seconds)

    def embedded(self, faces: int, seconds: float) -> None:
        with self._lock:
            self._report.embeds.append((seconds, faces))

    def latency(self, camera: str, kind: Latency, seconds: float) -> None:
        with self._lock:
            self._report.latencies.append((kind, seconds))

    def degraded(self, camera: str, level: int, what: str) -> None:
        with self._lock:
            self._report.degradation = (level, what)


class HeadStatus:
    """Live status, metrics and HTTP server of the head; camera status on the event sinks
    (through the daemon's :class:`~streamrec.service.monitor.CameraMonitor`).

    Its ``observer`` hears from the gallery feed what a single-process daemon's observers hear
    from the pipeline: the people count, and who left the gallery (their metric series, recent
    recognitions and retained MQTT topics are forgotten).
    """

    def __init__(self, cfg: Config, cameras: list[str], sinks: FanoutSink) -> None:
        self.status = LiveStatus()
        self.metrics = Metrics()
        # the driver logs the ends, with their frames
        ends = (CameraState.STARTING, CameraState.FINISHED, CameraState.STOPPED,
                CameraState.FAILED)  # fmt: skip
        self.monitor = CameraMonitor(cameras, self.status, self.metrics, sinks, ends, log)
        self.web: WebServer | None = None
        if cfg.http.enabled:
            from streamrec.service.http import WebServer

            self.web = WebServer.from_config(self.status, self.metrics, cfg.http)
        self._models: dict[str, dict[str, Any]] = {}
        #: told by the gallery feed about the people count and about erasures
        self.observer: Observer = Observers([self.metrics, self.status, SinkErasure(sinks)])

    def write(self, event: Event) -> None:
        """An event the driver wrote: what it tells (tracks, who was named or labelled unknown)
        goes to the metrics and the live status, as on a single-process daemon."""
        self.metrics.write(event)
        self.status.write(event)

    def start(self) -> None:
        """Serve HTTP (a busy port is a one-line ConfigError); every camera is ``starting``."""
        self.monitor.start()
        for name in self.monitor.cameras:
            self.set_state(name, CameraState.STARTING)
        if self.web is not None:
            self.web.start()

    def stop(self) -> None:
        if self.web is not None:
            self.web.stop()

    def wants_frame(self, camera: str) -> bool:
        """Whether the live view wants a new annotated frame of the camera (someone watches, or
        the idle refresh that gives a new viewer a picture at once is due)."""
        return self.status.wants_frame(camera)

    def set_state(self, camera: str, state: CameraState) -> None:
        self.monitor.set_state(camera, state)

    def new_incarnation(self, camera: str) -> None:
        """The camera's actor was recreated: its source counters start again from 0, its
        pipeline at degradation level 0."""
        self.monitor.restarted(camera)

    def report(self, camera: str, r: CameraReport) -> None:
        """Take in what the camera's actor did since the last poll."""
        status, metrics = self.status, self.metrics
        shift = time.time() - r.time  # the actor's clock to the head's
        for t in r.frame_times:
            status.frame(camera, t + shift)
        if r.frames > len(r.frame_times):
            status.incr(camera, "frames", r.frames - len(r.frame_times))
        metrics.frame(camera, r.frames)
        metrics.faces(camera, r.faces)
        for seconds in r.detect_seconds:
            metrics.observe_detect(seconds)
        for seconds, faces in r.embeds:
            metrics.observe_embed(seconds, faces)
        for kind, seconds in r.latencies:
            metrics.latency(camera, kind, seconds)
        if r.degradation is not None:
            metrics.degraded(camera, *r.degradation)
            status.degraded(camera, *r.degradation)
        if r.jpeg is not None:
            status.publish_jpeg(camera, r.jpeg)
        self.monitor.count(camera, r.source)
        for m in r.models:
            self._models[repr(sorted(m.items()))] = m

    def poll(self) -> None:
        """The event sinks' health (``/health``, ``streamrec_sink_errors_total``) and the
        models the actors run."""
        self.monitor.poll(list(self._models.values()))
