"""``streamrec serve``: every configured camera, headless, until SIGTERM/SIGINT.

One FaceAnalyzer and one Pipeline serve all enabled ``cameras:``; events go to the sinks of
``events:``; Metrics and LiveStatus are always kept and served over HTTP when ``http.enabled``.
A monitor thread copies each source's counters and state into them (and into MQTT camera
status) once a second. SIGHUP reloads the gallery without touching the streams. Stopping
closes the sources at once (a camera that is down would otherwise block its reader), so frames
in flight finish, every track gets its ``track_end`` and the sinks are flushed and closed.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from streamrec.analyzer import FaceAnalyzer
from streamrec.app import event_sinks, load_matcher, save_unknowns, seed_unknowns, source_options
from streamrec.config import CameraConfig, Config
from streamrec.errors import ConfigError, StreamrecError
from streamrec.gallery.store import Matcher
from streamrec.pipeline import Camera, Pipeline
from streamrec.pipeline.tracking import preload_solver
from streamrec.service.metrics import Metrics
from streamrec.service.status import LiveStatus
from streamrec.sinks import FanoutSink
from streamrec.sinks.events import EventSink
from streamrec.sources import Source, open_source

log = logging.getLogger("streamrec.daemon")

#: source state -> (LiveStatus state, MQTT camera status)
_STATES = {
    "connecting": ("connecting", "reconnecting"),
    "streaming": ("running", "online"),
    "reconnecting": ("reconnecting", "reconnecting"),
    "ended": ("finished", "offline"),
    "closed": ("stopped", "offline"),
}


def enabled_cameras(cfg: Config) -> list[CameraConfig]:
    """The enabled ``cameras:`` entries; ConfigError when there are none or names repeat."""
    cams = [c for c in cfg.cameras if c.enabled]
    where = cfg.source_file or "the config"
    if not cams:
        raise ConfigError(
            f"no cameras configured in {where}: add a 'cameras:' list with name and source "
            "(see configs/example-cameras.yaml)"
        )
    seen: set[str] = set()
    for c in cams:
        if not c.name.strip():
            raise ConfigError(f"{where}: a camera has an empty name")
        if c.name in seen:
            raise ConfigError(f"{where}: camera name '{c.name}' is used twice")
        seen.add(c.name)
    return cams


def open_cameras(cfg: Config, cams: list[CameraConfig]) -> list[Camera]:
    """Open every camera's source; a bad one closes the others and raises naming the camera."""
    opened: list[Camera] = []
    try:
        for c in cams:
            try:
                source = open_source(c.source, source_options(cfg, c.rtsp_transport))
            except StreamrecError as exc:
                raise type(exc)(f"camera '{c.name}': {exc}") from None
            interval = c.interval or cfg.detector.interval
            opened.append(Camera(c.name, source, interval, ignore_zones=c.ignore_zones))
    except BaseException:
        for cam in opened:
            cam.source.close()
        raise
    return opened


@dataclass
class _Seen:
    """What the monitor last copied from one source (to turn totals into deltas)."""

    state: str = ""
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
        notify: Callable[[str, str], None] | None,
        period: float = 1.0,
    ) -> None:
        self.pipeline = pipeline
        self.status = status
        self.metrics = metrics
        self.notify = notify
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
            self.metrics.set_camera_up(name, False)
            self.status.set_state(name, "starting")
        self._thread.start()

    def submit(self, job: Callable[[], None]) -> None:
        """Run ``job`` on the monitor thread soon (safe to call from a signal handler)."""
        with self._lock:
            self._jobs.append(job)
        self._wake.set()

    def stop(self) -> None:
        self._done.set()
        self._wake.set()
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
        for name, cam in self.pipeline.cameras.items():
            self._update(name, cam.source)

    def _update(self, name: str, source: Source) -> None:
        stats, seen = source.stats, self._seen[name]
        dropped = stats.dropped + self.pipeline.mux.dropped(name)
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
        if stats.state == seen.state:
            return
        state, mqtt_status = _STATES.get(stats.state, (stats.state, stats.state))
        seen.state = stats.state
        self.status.set_state(name, state)
        self.metrics.set_camera_up(name, stats.state == "streaming")
        if stats.state in ("connecting", "reconnecting"):
            reason = f" ({stats.last_error})" if stats.last_error else ""
            log.warning("camera %s: %s%s", name, state, reason)
        else:
            log.info("camera %s: %s", name, state)
        if self.notify is not None:
            self.notify(name, mqtt_status)


def _status_notifier(sinks: list[EventSink]) -> Callable[[str, str], None] | None:
    """``set_status`` of every sink that has one (MQTT), as one callable."""
    targets = [s for s in sinks if hasattr(s, "set_status")]
    if not targets:
        return None

    def notify(camera: str, status: str) -> None:
        for sink in targets:
            sink.set_status(camera, status)

    return notify


def _gallery_people(analyzer: FaceAnalyzer, gallery: str | None) -> int:
    if not gallery:
        return 0
    with analyzer.open_gallery(gallery) as g:
        return len(g.people())


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
        self.web: Any = None
        if cfg.http.enabled:  # validated before the models load: a refusal is immediate
            from streamrec.service.http import WebServer

            h = cfg.http
            self.web = WebServer(self.status, self.metrics, h.host, h.port, h.token)
        preload_solver()
        self.analyzer = FaceAnalyzer.from_config(cfg)
        matcher = load_matcher(self.analyzer, cfg.gallery)
        self.metrics.set_gallery_people(_gallery_people(self.analyzer, cfg.gallery))
        self.cameras = open_cameras(cfg, cams)
        self.sinks: list[EventSink] = []
        try:
            self.sinks = event_sinks(cfg)
        except BaseException:
            self._close_sources()
            raise
        self.pipeline = Pipeline(
            cfg,
            self.analyzer,
            self.cameras,
            FanoutSink(self.sinks),
            matcher,
            metrics=self.metrics,
            status=self.status,
        )
        seed_unknowns(self.pipeline, cfg)
        self.monitor = CameraMonitor(
            self.pipeline, self.status, self.metrics, _status_notifier(self.sinks)
        )
        self._stopping = threading.Event()

    def stop(self) -> None:
        """Finish frames in flight, end every track, then return from ``run()``."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        log.info("stopping: finishing frames in flight")
        self.pipeline.stop()  # also closes the sources

    def reload(self) -> None:
        """Re-read the gallery and swap it in; streams and tracks are kept."""
        try:
            matcher: Matcher | None = load_matcher(self.analyzer, self.cfg.gallery)
            people = _gallery_people(self.analyzer, self.cfg.gallery)
        except StreamrecError as exc:
            log.error("gallery reload failed, keeping the old one: %s", exc)
            return
        if matcher is not None:
            self.pipeline.set_matcher(matcher)
        self.metrics.set_gallery_people(people)
        log.info("gallery reloaded: %d people", people)

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
            names = ", ".join(c.name for c in self.cameras)
            log.info("serving %d camera(s): %s", len(self.cameras), names)
            with _signals(handlers):
                summary = self.pipeline.run()
        finally:
            self.monitor.stop()
            save_unknowns(self.pipeline, self.cfg)
            for sink in self.sinks:
                try:
                    sink.close()
                except Exception:
                    log.exception("closing an event sink failed")
            if self.web is not None:
                self.web.stop()
        log.info("stopped after %.0f s", summary.wall_time)
        return 0

    def _close_sources(self) -> None:
        for cam in self.cameras:
            cam.source.close()


def serve(cfg: Config) -> int:
    """``streamrec serve``: run every enabled camera of ``cfg`` until stopped."""
    return Daemon(cfg).run()
