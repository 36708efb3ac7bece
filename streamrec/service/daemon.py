"""``streamrec serve``: every configured camera, headless, until SIGTERM/SIGINT.

One FaceAnalyzer and one pipeline serve all enabled ``cameras:``; events go to the sinks of
``events:``; Metrics and LiveStatus observe the pipeline and are served over HTTP when
``http.enabled``. A monitor thread copies each source's counters and state into them (and into
MQTT camera status) once a second. Changes to the gallery, by any process, are taken in within a
second; SIGHUP reloads at once. Stopping closes the sources at once (a camera that is down would
otherwise block its reader), so frames in flight finish, every track gets its ``track_end`` and
the sinks are flushed and closed.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from streamrec.analyzer import FaceAnalyzer
from streamrec.config import Config
from streamrec.errors import StreamrecError
from streamrec.gallery.session import GallerySession
from streamrec.pipeline import Pipeline, build_pipeline
from streamrec.pipeline.build import enabled_cameras, open_cameras
from streamrec.pipeline.tracking import preload_solver
from streamrec.service.frigate import FrigateBridge
from streamrec.service.metrics import Metrics
from streamrec.service.status import LiveStatus
from streamrec.sinks import FanoutSink, event_sinks
from streamrec.sinks.events import EventSink
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
        status_sinks: Sequence[StatusSink],
        period: float = 1.0,
    ) -> None:
        self.pipeline = pipeline
        self.status = status
        self.metrics = metrics
        self.status_sinks = status_sinks
        self.period = period
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


@contextmanager
def _signals(handlers: dict[signal.Signals, Callable[[], None]]) -> Iterator[None]:
    previous = {sig: signal.signal(sig, lambda *_, f=f: f()) for sig, f in handlers.items()}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


class Daemon:
    """All cameras of a config in one pipeline; ``run()`` blocks until stopped."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        cams = enabled_cameras(cfg)
        self.metrics = Metrics()
        self.status = LiveStatus()
        self.web: WebServer | None = None
        if cfg.http.enabled:  # validated before the models load: a refusal is immediate
            from streamrec.service.http import WebServer

            self.web = WebServer.from_config(self.status, self.metrics, cfg.http)
        preload_solver()
        analyzer = FaceAnalyzer.from_config(cfg)
        self.gallery = GallerySession(cfg, analyzer.recognizer)
        cameras = open_cameras(cfg, [c for c in cams if c.frigate is None])
        self.sinks: list[EventSink] = []
        self.bridges: list[FrigateBridge] = []
        try:
            self.sinks = event_sinks(cfg)
            events = FanoutSink(self.sinks)
            observer = Observers([self.metrics, self.status])
            self.bridges = [
                FrigateBridge.from_config(cfg, c, analyzer, self.gallery, events, observer)
                for c in cams
                if c.frigate is not None
            ]
        except BaseException:
            for cam in cameras:
                cam.source.close()
            for sink in self.sinks:
                sink.close()
            raise
        self.pipeline = build_pipeline(
            cfg,
            cameras,
            events,
            analyzer,
            self.gallery,
            [self.metrics, self.status],
        )
        status_sinks = [s for s in self.sinks if isinstance(s, StatusSink)]
        self.monitor = CameraMonitor(self.pipeline, self.status, self.metrics, status_sinks)
        self._stopping = threading.Event()

    def stop(self) -> None:
        """Finish frames in flight, end every track, then return from ``run()``."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        log.info("stopping: finishing frames in flight")
        self.pipeline.stop()  # also closes the sources

    def reload(self) -> None:
        """Re-read the gallery now (SIGHUP); streams and tracks are kept. Changes are also taken
        in by themselves within a second."""
        try:
            self.pipeline.reload_gallery(force=True)
        except StreamrecError as exc:
            log.error("gallery reload failed, keeping the old one: %s", exc)
            return
        log.info("gallery reloaded: %d people", self.gallery.people())

    def run(self) -> int:
        """Serve until SIGTERM/SIGINT (or every stream ended); returns the exit code."""
        handlers = {
            signal.SIGTERM: self.stop,
            signal.SIGINT: self.stop,
            signal.SIGHUP: lambda: self.monitor.submit(self.reload),
        }
        try:
            if self.web is not None:
                self.web.start()
            self.monitor.start()
            for bridge in self.bridges:
                bridge.start()
            names = ", ".join([*self.pipeline.cameras, *(b.name for b in self.bridges)])
            count = len(self.pipeline.cameras) + len(self.bridges)
            log.info("serving %d camera(s): %s", count, names)
            with _signals(handlers):
                summary = self.pipeline.run()
                while self.bridges and not self._stopping.wait(0.5):
                    pass  # Frigate bridges serve until stopped, also when no camera is left
        finally:
            for bridge in self.bridges:
                bridge.close()
            self.monitor.stop()
            for sink in self.sinks:
                try:
                    sink.close()
                except Exception:
                    log.exception("closing an event sink failed")
            if self.web is not None:
                self.web.stop()
            self.gallery.close()
        log.info("stopped after %.0f s", summary.wall_time)
        return 0


def serve(cfg: Config) -> int:
    """``streamrec serve``: run every enabled camera of ``cfg`` until stopped."""
    return Daemon(cfg).run()
