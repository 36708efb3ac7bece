"""``streamrec serve``: every configured camera, headless, until SIGTERM/SIGINT.

One Recognition service (the models and the gallery) and one pipeline serve all enabled
``cameras:``; the face library's APIs and the Frigate bridges share the service. Events go to the
sinks of ``events:``; Metrics and LiveStatus observe the pipeline, read its events and are served
over HTTP when ``http.enabled``. A monitor thread tells the camera monitor each source's counters
and state (for them and the MQTT camera status) once a second. Changes to the gallery made through
the APIs are taken in at once, those of other processes within a second; SIGHUP reloads at once.
Stopping closes the sources at once (a camera that is down would otherwise block its reader), so
frames in flight finish, every track gets its ``track_end`` and the sinks are flushed and closed.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from streamrec.analyzer import FaceAnalyzer
from streamrec.config import Config
from streamrec.errors import StreamrecError
from streamrec.gallery.session import GallerySession
from streamrec.history.feed import guarded_people, history_feed
from streamrec.models.runtime import loaded_models
from streamrec.pipeline import Camera, Pipeline, build_pipeline
from streamrec.pipeline.build import enabled_cameras, open_cameras
from streamrec.recognition import Recognition
from streamrec.service.frigate import FrigateBridge
from streamrec.service.metrics import Metrics
from streamrec.service.monitor import CameraMonitor, SourceCounters
from streamrec.service.signals import Signals, close_all
from streamrec.service.status import LiveStatus
from streamrec.sinks import FanoutSink, SinkErasure, event_sinks
from streamrec.telemetry import EventTee

if TYPE_CHECKING:
    from streamrec.service.http import WebServer

log = logging.getLogger("streamrec.daemon")


class Poller:
    """The daemon's monitor thread: once a second it tells the camera monitor each source's
    counters and state, the models, the sinks' health and the Frigate bridges' counters, and
    logs the cameras' stats every ``stats_interval`` s; it also runs queued jobs."""

    def __init__(
        self,
        pipeline: Pipeline,
        monitor: CameraMonitor,
        period: float = 1.0,
        stats_interval: float = 0.0,
        bridges: Sequence[FrigateBridge] = (),
    ) -> None:
        self.pipeline = pipeline
        self.monitor = monitor
        self.period = period
        self.stats_interval = stats_interval
        self.bridges = list(bridges)
        self._next_stats = time.monotonic() + stats_interval
        self._done = threading.Event()
        self._wake = threading.Event()
        self._jobs: list[Callable[[], None]] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="camera monitor", daemon=True)

    def start(self) -> None:
        self.monitor.start()
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
        monitor = self.monitor
        for name, camera in self.pipeline.cameras.items():
            stats = camera.source.stats
            monitor.count(name, SourceCounters.of(stats, self.pipeline.dropped(name)))
            monitor.set_state(name, stats.state, stats.last_error)
        monitor.poll([m.to_dict() for m in loaded_models()])
        bridges = {b.name: dataclasses.asdict(b.stats) for b in self.bridges}
        for name, counts in bridges.items():
            monitor.metrics.frigate(name, counts)
        monitor.status.set_frigate(bridges)
        if self.stats_interval and time.monotonic() >= self._next_stats:
            self._next_stats = time.monotonic() + self.stats_interval
            monitor.log_stats()


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
        self.analyzer = FaceAnalyzer.from_config(cfg)
        self.gallery = GallerySession(cfg, self.analyzer.recognizer)
        #: the face history's sink (none without a gallery or with history.enabled false)
        self.history = history_feed(
            cfg, self.analyzer.recognizer, self.gallery.gallery, self.analyzer.threshold
        )
        #: who is this face, for the pipeline, the face library's APIs and the Frigate bridges
        self.recognition = Recognition(
            self.analyzer,
            self.gallery.gallery,
            people=guarded_people(self.history, self.gallery.gallery),
        )
        cameras: list[Camera] = []
        try:
            cameras = open_cameras(cfg, [c for c in cams if c.frigate is None])
            self.sinks = FanoutSink(
                [*self.history, *event_sinks(cfg, threshold=self.analyzer.threshold)]
            )
            # enrolled people have their entities (Home Assistant) from the start, and from
            # their enrolment while the daemon runs
            self.sinks.announce(self.recognition.matcher().names)
            self.recognition.subscribe(lambda change: self.sinks.announce(change.matcher.names))
        except BaseException:
            for cam in cameras:
                cam.source.close()
            for feed in self.history:
                feed.close()
            raise
        for feed in self.history:
            feed.emit = self.sinks.write
        # the metrics and the live status read the facts of the events the sinks get
        events = EventTee(self.sinks, self.metrics, self.status)
        try:
            self.bridges = [
                FrigateBridge.from_config(cfg, c, self.recognition, events)
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
            events,
            self.recognition,
            self.gallery,
            [self.metrics, self.status, SinkErasure(self.sinks)],
        )
        self.monitor = Poller(
            self.pipeline,
            CameraMonitor(self.pipeline.cameras, self.status, self.metrics, self.sinks),
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
        api.mount(web.app, library, history=bool(self.history))
        compreface.mount(web.app, library)
        if self.history:
            from streamrec.service import history_api

            history_api.mount(web.app, library, self.history[0].store)

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
