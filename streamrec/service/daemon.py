"""``streamrec serve``: every configured camera, headless, until SIGTERM/SIGINT.

One Recognition service (the models and the gallery) and one pipeline serve all enabled
``cameras:``; the face library's APIs and the Frigate bridges share the service. Events go to the
sinks of ``events:``; Metrics and LiveStatus observe the pipeline and are served over HTTP when
``http.enabled``. A monitor thread copies each source's counters and state into them (and into
MQTT camera status) once a second. Changes to the gallery made through the APIs are taken in at
once, those of other processes within a second; SIGHUP reloads at once. Stopping closes the
sources at once (a camera that is down would otherwise block its reader), so frames in flight
finish, every track gets its ``track_end`` and the sinks are flushed and closed.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from streamrec.analyzer import FaceAnalyzer
from streamrec.config import Config
from streamrec.errors import StreamrecError
from streamrec.gallery.session import GallerySession
from streamrec.models.runtime import loaded_models
from streamrec.pipeline import Pipeline, build_pipeline
from streamrec.pipeline.build import enabled_cameras, open_cameras
from streamrec.pipeline.tracking import preload_solver
from streamrec.recognition import Recognition
from streamrec.service.frigate import FrigateBridge
from streamrec.service.metrics import Metrics
from streamrec.service.signals import Signals
from streamrec.service.status import LiveStatus
from streamrec.sinks import FanoutSink, SinkErasure, event_sinks
from streamrec.telemetry import CameraState, Observers

if TYPE_CHECKING:
    from streamrec.service.http import WebServer

log = logging.getLogger("streamrec.daemon")


@runtime_checkable
class StatusSink(Protocol):
    """An event sink that also publishes camera status (MQTT)."""

    def set_status(self, camera: str, status: str) -> None: ...


@dataclass
class _Seen:
    """What the monitor last copied from one source (to turn totals into deltas)."""

    state: CameraState | None = None
    dropped: int = 0
    reconnects: int = 0
    stalls: int = 0


class CameraMonitor:
    """Copies source stats into LiveStatus / Metrics / MQTT status; runs queued jobs too."""

    def __init__(
        self,
        pipeline: Pipeline,
        status: LiveStatus,
        metrics: Metrics,
        sinks: FanoutSink,
        period: float = 1.0,
        stats_interval: float = 0.0,
        bridges: Sequence[FrigateBridge] = (),
    ) -> None:
        self.pipeline = pipeline
        self.status = status
        self.metrics = metrics
        self.sinks = sinks
        self.status_sinks = [s for s in sinks.sinks if isinstance(s, StatusSink)]
        self.period = period
        self.stats_interval = stats_interval
        self.bridges = list(bridges)
        self._next_stats = time.monotonic() + stats_interval
        self._sink_errors: dict[str, int] = {}
        self._seen = {name: _Seen() for name in pipeline.cameras}
        self._done = threading.Event()
        self._wake = threading.Event()
        self._jobs: list[Callable[[], None]] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="camera monitor", daemon=True)

    def start(self) -> None:
        for name in self.pipeline.cameras:
            self.metrics.add_camera(name)
            self.metrics.set_camera_state(name, CameraState.STARTING)
            self.status.set_state(name, CameraState.STARTING)
        self._thread.start()

    def submit(self, job: Callable[[], None]) -> None:
        """Run ``job`` on the monitor thread soon (safe to call from a signal handler)."""
        with self._lock:
            self._jobs.append(job)
        self._wake.set()

    def stop(self) -> None:
        self._done.set()
        self._wake.set()
        if self._thread.ident is not None:  # not started when serve failed at start
            self._thread.join(5.0)
        self.poll()  # final states ("stopped") for MQTT and /health

    def _run(self) -> None:
        while not self._done.is_set():
            with self._lock:
                jobs, self._jobs = self._jobs, []
            for job in jobs:
                try:
                    job()
                except Exception:
                    log.exception("daemon job failed")
            try:
                self.poll()
            except Exception:
                log.exception("camera monitor failed")
            self._wake.wait(self.period)
            self._wake.clear()

    def poll(self) -> None:
        for name in self.pipeline.cameras:
            self._update(name)
        health = self.sinks.health()
        self.status.set_sinks(health)
        self.status.set_models([m.to_dict() for m in loaded_models()])
        for sink, h in health.items():
            new = h["errors"] - self._sink_errors.get(sink, 0)
            if new > 0:
                self.metrics.sink_errors(sink, new)
            self._sink_errors[sink] = h["errors"]
        bridges = {b.name: dataclasses.asdict(b.stats) for b in self.bridges}
        for name, counts in bridges.items():
            self.metrics.frigate(name, counts)
        self.status.set_frigate(bridges)
        if self.stats_interval and time.monotonic() >= self._next_stats:
            self._next_stats = time.monotonic() + self.stats_interval
            self.log_stats()

    def log_stats(self) -> None:
        """One line per camera: state, fps, frames, drops, reconnects, degradation."""
        for name, cam in self.status.snapshot().items():
            c = cam["counters"]
            log.info(
                "camera %s: %s, %.1f fps, %d frames, %d dropped, %d reconnects, "
                "degradation %d (%s)",
                name,
                cam["state"],
                cam["fps"],
                c.get("frames", 0),
                c.get("dropped", 0),
                c.get("reconnects", 0),
                cam["degradation"]["level"],
                cam["degradation"]["what"],
            )

    def _update(self, name: str) -> None:
        stats, seen = self.pipeline.cameras[name].source.stats, self._seen[name]
        dropped = self.pipeline.dropped(name)
        if dropped > seen.dropped:
            self.metrics.dropped(name, dropped - seen.dropped)
            self.status.incr(name, "dropped", dropped - seen.dropped)
        for _ in range(stats.reconnects - seen.reconnects):
            self.metrics.reconnect(name)
        if stats.reconnects > seen.reconnects:
            self.status.incr(name, "reconnects", stats.reconnects - seen.reconnects)
        for _ in range(stats.stalls - seen.stalls):
            self.metrics.stall(name)
        seen.dropped, seen.reconnects, seen.stalls = dropped, stats.reconnects, stats.stalls
        fps = self.status.snapshot().get(name, {}).get("fps", 0.0)
        self.metrics.set_camera_fps(name, fps)
        state = stats.state
        if state == seen.state:
            return
        seen.state = state
        self.status.set_state(name, state)
        self.metrics.set_camera_state(name, state)
        if state in (CameraState.CONNECTING, CameraState.RECONNECTING):
            reason = f" ({stats.last_error})" if stats.last_error else ""
            log.warning("camera %s: %s%s", name, state.value, reason)
        else:
            log.info("camera %s: %s", name, state.value)
        for sink in self.status_sinks:
            sink.set_status(name, state.mqtt)


def close_all(closers: list[tuple[str, Callable[[], None]]], deadline: float) -> None:
    """Run every close at once, each in its own thread, and wait for them until ``deadline``;
    a close that fails is logged, one that hangs is left behind (the process is ending)."""

    def run(name: str, close: Callable[[], None]) -> None:
        try:
            close()
        except Exception:
            log.exception("closing %s failed", name)

    threads = [
        threading.Thread(target=run, args=(n, c), name=f"close {n}", daemon=True)
        for n, c in closers
    ]
    for t in threads:
        t.start()
    for t, (name, _) in zip(threads, closers, strict=True):
        t.join(max(0.0, deadline - time.monotonic()))
        if t.is_alive():
            log.warning("%s did not close in time: given up", name)


class Daemon:
    """All cameras of a config in one pipeline; ``run()`` blocks until stopped."""

    def __init__(self, cfg: Config, signals: Signals | None = None) -> None:
        self.cfg = cfg
        self.signals = signals or Signals()
        cams = enabled_cameras(cfg)
        self.metrics = Metrics()
        self.status = LiveStatus()
        self.web: WebServer | None = None
        if cfg.http.enabled:  # validated before the models load: a refusal is immediate
            from streamrec.service.http import WebServer

            self.web = WebServer.from_config(self.status, self.metrics, cfg.http)
        preload_solver()
        self.analyzer = FaceAnalyzer.from_config(cfg)
        self.gallery = GallerySession(cfg, self.analyzer.recognizer)
        #: who is this face, for the pipeline, the face library's APIs and the Frigate bridges
        self.recognition = Recognition(self.analyzer, self.gallery.gallery)
        cameras = open_cameras(cfg, [c for c in cams if c.frigate is None])
        try:
            self.sinks = FanoutSink(event_sinks(cfg))
        except BaseException:
            for cam in cameras:
                cam.source.close()
            raise
        observer = Observers([self.metrics, self.status])
        try:
            self.bridges = [
                FrigateBridge.from_config(cfg, c, self.recognition, self.sinks, observer)
                for c in cams
                if c.frigate is not None
            ]
        except BaseException:
            for cam in cameras:
                cam.source.close()
            self.sinks.close()
            raise
        self.pipeline = build_pipeline(
            cfg,
            cameras,
            self.sinks,
            self.recognition,
            self.gallery,
            [self.metrics, self.status, SinkErasure(self.sinks)],
        )
        self.monitor = CameraMonitor(
            self.pipeline,
            self.status,
            self.metrics,
            self.sinks,
            stats_interval=cfg.logging.stats_interval,
            bridges=self.bridges,
        )
        if self.web is not None:
            self._mount_face_library(self.web)
        self._stopping = threading.Event()

    def _mount_face_library(self, web: WebServer) -> None:
        """The face library's REST APIs (native and CompreFace) and the Faces page."""
        from streamrec.service import api, compreface

        library = api.FaceLibrary(self.recognition, self.status, self.erase_labels)
        api.mount(web.app, library)
        compreface.mount(web.app, library)

    def erase_labels(self, labels: Sequence[str]) -> None:
        """A person erased through the API (the pipeline has forgotten them already): every
        label they had leaves the sinks (buffered events, retained MQTT topics), the metrics
        and the event file."""
        from streamrec.privacy import erase_files

        for label in labels:
            self.sinks.forget(label)
            self.metrics.forget(label)
        erase_files(self.cfg, labels, [])

    def stop(self) -> None:
        """Finish frames in flight, end every track, then return from ``run()``: within
        ``pipeline.stop_timeout`` (half for the frames in flight, half to flush the sinks)."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        log.info("stopping: finishing frames in flight")
        self.pipeline.stop(drain=self.cfg.pipeline.stop_timeout / 2)

    def reload(self) -> None:
        """Re-read the gallery now (SIGHUP); streams and tracks are kept. Changes are also taken
        in by themselves within a second."""
        try:
            self.recognition.refresh(force=True)
        except StreamrecError as exc:
            log.error("gallery reload failed, keeping the old one: %s", exc)
            return
        log.info("gallery reloaded: %d people", self.gallery.people())

    def run(self) -> int:
        """Serve until SIGTERM/SIGINT (or every stream ended); returns the exit code.

        Whatever fails on the way out, every sink, the server and the gallery are closed.
        """
        self.signals.on_stop = self.stop
        self.signals.on_reload = lambda: self.monitor.submit(self.reload)
        started = time.monotonic()
        try:
            if self.web is not None:
                self.web.start()
            self.monitor.start()
            for bridge in self.bridges:
                bridge.start()
            names = ", ".join([*self.pipeline.cameras, *(b.name for b in self.bridges)])
            count = len(self.pipeline.cameras) + len(self.bridges)
            log.info("serving %d camera(s): %s", count, names)
            if self.signals.stop_requested.is_set():  # a stop during start-up
                self.stop()
            self.pipeline.run()
            while self.bridges and not self._stopping.wait(0.5):
                pass  # Frigate bridges serve until stopped, also when no camera is left
        finally:
            self.shutdown()
        log.info("stopped after %.0f s", time.monotonic() - started)
        return 0

    def shutdown(self) -> None:
        """Close everything (the sources are closed by the pipeline), bounded in time."""
        deadline = time.monotonic() + self.cfg.pipeline.stop_timeout / 2
        self.pipeline.stop()  # a run that never started or failed: sources still close
        # the bridges first: they write into the sinks
        close_all([(f"Frigate bridge {b.name}", b.close) for b in self.bridges], deadline)
        closers: list[tuple[str, Callable[[], None]]] = [
            ("camera monitor", self.monitor.stop),
            ("event sinks", self.sinks.close),
            ("gallery", self.gallery.close),
        ]
        if self.web is not None:
            closers.append(("HTTP server", self.web.stop))
        close_all(closers, deadline)


def serve(cfg: Config, signals: Signals | None = None) -> int:
    """``streamrec serve``: run every enabled camera of ``cfg`` until stopped.

    ``signals``: handlers the caller installed early (the CLI does, before its imports).
    """
    own = signals is None
    signals = signals or Signals()
    if own:
        signals.install()  # before the models load: a signal during start-up is not lost
    try:
        if signals.stop_requested.is_set():
            return 0
        return Daemon(cfg, signals).run()
    finally:
        if own:
            signals.restore()
