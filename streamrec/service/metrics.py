"""Prometheus metrics of the daemon, in a registry owned by one :class:`Metrics` object.

It observes the pipeline (:class:`~streamrec.telemetry.Observer`: frames done, detections,
embedder calls, latencies) and reads its events (:meth:`Metrics.write`: tracks started,
identifications); the camera monitor adds the source counters and states through the small
typed methods below; the web server serves :meth:`Metrics.text` on ``/metrics``. Every
instance has its own ``CollectorRegistry`` (no global state), so tests and embedded uses can
create several.

API (``camera`` is the configured camera name):

====================================  =========================================================
``add_camera(camera)``                create the camera's series at 0 (so they show before use)
``frame(camera, n=1)``                ``streamrec_frames_total{camera}`` frames read
``dropped(camera, n=1)``              ``streamrec_dropped_frames_total{camera}`` frames skipped
``reconnect(camera)``                 ``streamrec_reconnects_total{camera}``
``stall(camera)``                     ``streamrec_stalls_total{camera}`` source stopped delivering
``faces(camera, n)``                  ``streamrec_faces_total{camera}`` detections
``track(camera, n=1)``                ``streamrec_tracks_total{camera}`` tracks started
``identity(camera, name)``            ``streamrec_identities_total{camera,name}`` identifications
``observe_detect(seconds, batch=1)``  ``streamrec_detect_seconds`` per detector call, and
                                      ``streamrec_batch_size{stage="detect"}``
``observe_embed(seconds, batch)``     ``streamrec_embed_seconds`` per embedder call, and
                                      ``streamrec_batch_size{stage="embed"}``
``observe_latency(camera, seconds)``  ``streamrec_event_latency_seconds{camera}`` capture→event
                                      (track_start, identified, unknown)
``latency(camera, kind, seconds)``    the above by kind, ``streamrec_frame_latency_seconds``,
                                      ``streamrec_decision_latency_seconds`` (first sighting →
                                      identified/unknown), ``streamrec_track_end_latency_seconds``
                                      (the frame that ended the track → track_end)
``degraded(camera, level, what)``     ``streamrec_degradation_level{camera}`` (0 = normal)
``set_camera_state(camera, state)``   ``streamrec_camera_up{camera}`` 1 while running, else 0
``set_camera_fps(camera, fps)``       ``streamrec_camera_fps{camera}``
``set_gallery_people(n)``             ``streamrec_gallery_people``
``text()``                            exposition text; content type in ``CONTENT_TYPE``
====================================  =========================================================
"""

from __future__ import annotations

import platform

import numpy as np
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)

from streamrec.records import Event
from streamrec.telemetry import CameraState, Latency, Observer, named_in
from streamrec.version import __version__

CONTENT_TYPE = CONTENT_TYPE_LATEST

_INFERENCE_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56)
_LATENCY_BUCKETS = (0.05, 0.1, 0.15, 0.2, 0.35, 0.5, 0.75, 1.0, 1.5, 2.5, 5.0, 10.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)


class Metrics(Observer):
    """The daemon's counters, histograms and gauges (see the module docstring for the API)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        reg = self.registry

        def counter(name: str, doc: str) -> Counter:
            return Counter(name, doc, ["camera"], registry=reg)

        self._frames = counter("streamrec_frames_total", "Frames read from the source.")
        self._dropped = counter(
            "streamrec_dropped_frames_total", "Frames dropped because processing fell behind."
        )
        self._reconnects = counter("streamrec_reconnects_total", "Source reconnections.")
        self._stalls = counter("streamrec_stalls_total", "Times a source stopped delivering.")
        self._faces = counter("streamrec_faces_total", "Faces detected.")
        self._tracks = counter("streamrec_tracks_total", "Face tracks started.")
        self._identities = Counter(
            "streamrec_identities_total",
            "Tracks identified as a gallery person.",
            ["camera", "name"],
            registry=reg,
        )
        self._detect = Histogram(
            "streamrec_detect_seconds",
            "Face detector time per call (one batch).",
            buckets=_INFERENCE_BUCKETS,
            registry=reg,
        )
        self._embed = Histogram(
            "streamrec_embed_seconds",
            "Embedder time per call (one batch).",
            buckets=_INFERENCE_BUCKETS,
            registry=reg,
        )
        self._batch = Histogram(
            "streamrec_batch_size",
            "Images per inference call.",
            ["stage"],
            buckets=_BATCH_BUCKETS,
            registry=reg,
        )

        def latency(name: str, doc: str) -> Histogram:
            return Histogram(name, doc, ["camera"], buckets=_LATENCY_BUCKETS, registry=reg)

        self._latency = latency(
            "streamrec_event_latency_seconds",
            "Wall time from frame capture to a track_start, identified or unknown event.",
        )
        self._latencies = {
            Latency.EVENT: self._latency,
            Latency.FRAME: latency(
                "streamrec_frame_latency_seconds",
                "Wall time from frame capture to the frame leaving the pipeline (annotated).",
            ),
            Latency.DECISION: latency(
                "streamrec_decision_latency_seconds",
                "Wall time from a track's first frame's capture to its identified or unknown "
                "event.",
            ),
            Latency.TRACK_END: latency(
                "streamrec_track_end_latency_seconds",
                "Wall time from the capture of the frame that ended a track to its track_end.",
            ),
        }
        self._degradation = Gauge(
            "streamrec_degradation_level",
            "What a live camera gives up to keep up: 0 normal, 1 extras off, then a longer "
            "detection interval, then a smaller detection pass.",
            ["camera"],
            registry=reg,
        )
        self._up = Gauge(
            "streamrec_camera_up", "1 while the source delivers frames.", ["camera"], registry=reg
        )
        self._fps = Gauge(
            "streamrec_camera_fps", "Frames read per second.", ["camera"], registry=reg
        )
        self._people = Gauge("streamrec_gallery_people", "People in the gallery.", registry=reg)
        self._sink_errors = Counter(
            "streamrec_sink_errors_total",
            "Events an event sink failed to take (a full disk, a closed file...).",
            ["sink"],
            registry=reg,
        )
        self._frigate = Counter(
            "streamrec_frigate_total",
            "Frigate bridge: messages, ignored, invalid, dropped, snapshots, missing, failures, "
            "identified, sub_labels.",
            ["bridge", "what"],
            registry=reg,
        )
        self._frigate_seen: dict[tuple[str, str], int] = {}
        self._named: set[tuple[str, str]] = set()  # (camera, name) series, for erasure
        ProcessCollector(registry=reg)
        PlatformCollector(registry=reg)
        GCCollector(registry=reg)
        Info("streamrec_build", "streamrec version.", registry=reg).info(
            {"version": __version__, "python": platform.python_version()}
        )

    # -- the pipeline's events and observer ------------------------------------------------

    def write(self, event: Event) -> None:
        """Count a track started, or a track named (or renamed) as a gallery person."""
        camera = event.camera or event.source
        name = named_in(event)
        if event.event == "track_start":
            self.track(camera)
        elif name is not None:
            self.identity(camera, name)

    def frame_done(self, camera: str, image: np.ndarray | None) -> None:
        self.frame(camera)

    def detected(self, camera: str, faces: int, seconds: float) -> None:
        self.observe_detect(seconds)
        self.faces(camera, faces)

    def embedded(self, faces: int, seconds: float) -> None:
        self.observe_embed(seconds, faces)

    def latency(self, camera: str, kind: Latency, seconds: float) -> None:
        self._latencies[kind].labels(camera).observe(seconds)

    def degraded(self, camera: str, level: int, what: str) -> None:
        self._degradation.labels(camera).set(level)

    def gallery_loaded(self, people: int) -> None:
        self.set_gallery_people(people)

    # -- typed updates ---------------------------------------------------------------------

    def add_camera(self, camera: str) -> None:
        per_camera = (self._frames, self._dropped, self._reconnects, self._stalls, self._faces)
        latencies = tuple(self._latencies.values())
        for metric in (*per_camera, self._tracks, *latencies, self._degradation, self._up,
                       self._fps):  # fmt: skip
            metric.labels(camera)

    def frame(self, camera: str, n: int = 1) -> None:
        self._frames.labels(camera).inc(n)

    def dropped(self, camera: str, n: int = 1) -> None:
        self._dropped.labels(camera).inc(n)

    def reconnect(self, camera: str) -> None:
        self._reconnects.labels(camera).inc()

    def stall(self, camera: str) -> None:
        self._stalls.labels(camera).inc()

    def faces(self, camera: str, n: int) -> None:
        self._faces.labels(camera).inc(n)

    def track(self, camera: str, n: int = 1) -> None:
        self._tracks.labels(camera).inc(n)

    def identity(self, camera: str, name: str) -> None:
        self._identities.labels(camera, name).inc()
        self._named.add((camera, name))

    def erased(self, name: str) -> None:
        self.forget(name)

    def forget(self, name: str) -> None:
        """Erase a person: their identification series go from the exposition."""
        for camera, who in [k for k in self._named if k[1] == name]:
            self._identities.remove(camera, who)
            self._named.discard((camera, who))

    def sink_errors(self, sink: str, n: int) -> None:
        self._sink_errors.labels(sink).inc(n)

    def frigate(self, bridge: str, counts: dict[str, int]) -> None:
        """A Frigate bridge's counters (totals so far; the increase is added)."""
        for what, total in counts.items():
            new = total - self._frigate_seen.get((bridge, what), 0)
            if new > 0:
                self._frigate.labels(bridge, what).inc(new)
            self._frigate_seen[(bridge, what)] = total

    def observe_detect(self, seconds: float, batch: int = 1) -> None:
        self._detect.observe(seconds)
        self._batch.labels("detect").observe(batch)

    def observe_embed(self, seconds: float, batch: int) -> None:
        self._embed.observe(seconds)
        self._batch.labels("embed").observe(batch)

    def observe_latency(self, camera: str, seconds: float) -> None:
        self._latency.labels(camera).observe(seconds)

    def set_camera_state(self, camera: str, state: CameraState) -> None:
        self._up.labels(camera).set(1 if state.up else 0)

    def set_camera_fps(self, camera: str, fps: float) -> None:
        self._fps.labels(camera).set(fps)

    def set_gallery_people(self, n: int) -> None:
        self._people.set(n)

    def text(self) -> bytes:
        """The Prometheus text exposition of this registry."""
        return generate_latest(self.registry)
