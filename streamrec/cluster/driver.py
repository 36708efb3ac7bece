"""Serving on a Ray cluster: one actor per camera, every event written once on the head.

``run_cluster(cfg)`` connects to the Ray cluster at ``cluster.address`` and starts one
:class:`CameraActor` per enabled camera (spread over the nodes). Each actor runs that camera's
:class:`Pipeline` in a thread with its own models and buffers the events it emits, numbered per
camera. The driver polls every actor (``drain(after_seq)``) and writes the new events to the
configured sinks (JSONL on the head, MQTT, webhook), in order per camera.

Exactly once per camera, also across actor restarts (Ray recreates a killed actor):

- Events carry a per-incarnation sequence number; the driver acknowledges by asking only for
  events after the last one it wrote, so a repeated poll never duplicates.
- An actor only hands out the events of frames that have left its pipeline (plus track ends),
  and reports that frame. A recreated actor of a *file* camera resumes right after it: earlier
  frames are decoded but skipped, so nothing is replayed and nothing is lost. A *live* camera
  simply reconnects.
- Tracks the dead actor left open are ended by the driver (``track_end`` with ``reason:
  "actor restarted"``); the new incarnation's track ids are shifted past every id written
  before, so ``(camera, event, track_id)`` never repeats.

The gallery is one SQLite file on storage every node sees at the same path (NFS or similar);
each actor checks its revision every ``cluster.gallery_poll`` seconds and swaps in the new
matcher, so a person enrolled anywhere is recognised on every node within seconds.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streamrec.analyzer import FaceAnalyzer
from streamrec.app import event_sinks, load_matcher, source_options
from streamrec.config import CameraConfig, Config
from streamrec.errors import ConfigError, StreamrecError
from streamrec.pipeline import Camera, Pipeline
from streamrec.records import Event, Frame
from streamrec.service.daemon import enabled_cameras
from streamrec.sinks import FanoutSink
from streamrec.sources import Gap, Source, open_source

log = logging.getLogger("streamrec.cluster")

#: seconds between two polls of every actor by the driver
POLL = 0.5
#: seconds between two status lines in the log
STATUS_PERIOD = 10.0
#: seconds the actors get to finish their frames in flight after a stop
STOP_TIMEOUT = 60.0
#: consecutive "actor died" answers after which a camera counts as failed for good
DEATHS_TO_FAIL = 3
TERMINAL = ("finished", "stopped", "failed")
#: environment variables shipped to the workers (models and media are resolved on the node)
ENV_PREFIX = "STREAMREC_"


class ResumedSource(Source):
    """A file source that decodes but skips the frames before ``start`` (resume after restart)."""

    def __init__(self, inner: Source, start: int) -> None:
        super().__init__(inner.name, inner.options)
        self.inner, self.start = inner, start
        self.live = inner.live
        self.fps, self.total_frames = inner.fps, inner.total_frames
        self.width, self.height = inner.width, inner.height
        self.stats = inner.stats
        self._items = iter(inner)

    def _next_item(self) -> Frame | Gap | None:
        for item in self._items:
            if isinstance(item, Frame) and item.index < self.start:
                continue
            return item
        return None

    def _wake(self) -> None:
        self.inner.close()


class CameraActor:
    """One camera's pipeline inside a Ray actor (made remote by :func:`run_cluster`).

    ``start(resume)`` loads the models and runs the pipeline in a thread; ``drain(after)`` hands
    the events after sequence number ``after`` to the driver. A new process (after a restart)
    has a new ``epoch``, which tells the driver to start it again and renumber.
    """

    def __init__(self, cfg: Config, camera: CameraConfig) -> None:
        self.cfg, self.camera = cfg, camera
        self.epoch = uuid.uuid4().hex
        self.state = "idle"  # idle | starting | running | finished | stopped | failed
        self.error: str | None = None
        self.start_frame = 0
        self.started_at = 0.0
        self.live = False
        self._events: list[tuple[int, Event]] = []
        self._seq = 0
        self._lock = threading.Lock()
        self._pipeline: Pipeline | None = None
        self._source: Source | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def pid(self) -> int:
        return os.getpid()

    def start(self, resume: int = 0) -> str:
        """Start processing (file cameras from frame ``resume``); idempotent."""
        with self._lock:
            if self._thread is None and not self._stop.is_set():
                self.start_frame, self.state = resume, "starting"
                self._thread = threading.Thread(target=self._run, name="camera", daemon=True)
                self._thread.start()
        return self.epoch

    def stop(self) -> None:
        """Finish the frames in flight and end every track (``drain`` then reports the end)."""
        with self._lock:
            self._stop.set()
            pipeline, source = self._pipeline, self._source
            if self._thread is None:
                self.state = "stopped"
        if pipeline is not None:
            pipeline.stop()
        if source is not None:  # a camera that is down blocks its reader until closed
            threading.Thread(target=source.close, daemon=True).start()

    def write(self, event: Event) -> None:
        """The pipeline's event writer: buffer with the next sequence number."""
        with self._lock:
            self._seq += 1
            self._events.append((self._seq, event))

    def drain(self, epoch: str | None, after: int) -> dict[str, Any]:
        """Events after sequence ``after`` whose frames are done, and the camera's state.

        ``after`` acknowledges (drops) the events up to it, unless ``epoch`` is not this
        incarnation's (a driver that has not seen the restart yet).
        """
        after = after if epoch == self.epoch else 0
        state, pipeline = self.state, self._pipeline
        frames = pipeline.progress if pipeline is not None else 0  # read before the events
        done = self.start_frame + frames - 1
        with self._lock:
            self._events = [(s, e) for s, e in self._events if s > after]
            # the match stage runs ahead of the last stage: hold back newer frames' events
            hold = state not in TERMINAL and not self.live
            events = []
            for s, e in self._events:
                if hold and e.event != "track_end" and e.frame > done:
                    break
                events.append((s, e))
        elapsed = time.monotonic() - self.started_at if self.started_at else 0.0
        return {
            "epoch": self.epoch,
            "state": state,
            "error": self.error,
            "events": events,
            "frames": frames,
            "fps": frames / elapsed if elapsed > 0 else 0.0,
            "done_frame": None if self.live else done,
        }

    def _run(self) -> None:
        cfg, cam = self.cfg, self.camera
        watcher: threading.Thread | None = None
        done = threading.Event()
        try:
            analyzer = FaceAnalyzer.from_config(cfg)
            matcher = load_matcher(analyzer, cfg.gallery)
            revision = _revision(analyzer, cfg.gallery)
            source = open_source(cam.source, source_options(cfg, cam.rtsp_transport))
            self.live = source.live
            if not source.live and self.start_frame > 0:
                source = ResumedSource(source, self.start_frame)
            interval = cam.interval or cfg.detector.interval
            camera = Camera(cam.name, source, interval, ignore_zones=cam.ignore_zones)
            pipeline = Pipeline(cfg, analyzer, [camera], self, matcher)
            with self._lock:
                self._pipeline, self._source = pipeline, source
                self.started_at, self.state = time.monotonic(), "running"
            if self._stop.is_set():
                pipeline.stop()
            if cfg.gallery:
                watcher = threading.Thread(
                    target=self._watch_gallery,
                    args=(analyzer, pipeline, cfg.gallery, revision, done),
                    name="gallery watch",
                    daemon=True,
                )
                watcher.start()
            try:
                pipeline.run()
            finally:
                source.close()
            self.state = "stopped" if self._stop.is_set() else "finished"
        except Exception as exc:
            if not isinstance(exc, StreamrecError):
                log.exception("camera %s failed", cam.name)
            self.error, self.state = f"{type(exc).__name__}: {exc}", "failed"
        finally:
            done.set()
            if watcher is not None:
                watcher.join(5.0)

    def _watch_gallery(
        self,
        analyzer: FaceAnalyzer,
        pipeline: Pipeline,
        path: str,
        revision: int,
        done: threading.Event,
    ) -> None:
        """Swap in the gallery's matcher whenever its revision changes."""
        while not done.wait(self.cfg.cluster.gallery_poll):
            try:
                with analyzer.open_gallery(path) as g:
                    if g.revision == revision:
                        continue
                    revision, matcher = g.revision, g.matcher()
            except Exception as exc:  # a file being replaced on NFS: try again next time
                log.warning("camera %s: gallery check failed: %s", self.camera.name, exc)
                continue
            pipeline.set_matcher(matcher)
            log.info("camera %s: gallery revision %d loaded", self.camera.name, revision)


def _revision(analyzer: FaceAnalyzer, path: str | None) -> int:
    if not path:
        return 0
    with analyzer.open_gallery(path) as g:
        return g.revision


@dataclass
class CameraState:
    """What the driver knows about one camera (``ClusterRunner.status()``)."""

    state: str = "starting"  # starting | running | restarting | finished | stopped | failed
    frames: int = 0  # frames processed, over every incarnation of the actor
    fps: float = 0.0  # of the current incarnation
    restarts: int = 0
    error: str | None = None


@dataclass
class _OpenTrack:
    source: str
    first_frame: int
    last_frame: int
    last_time: float
    name: str | None = None
    score: float | None = None


@dataclass
class _Link:
    """The driver's side of one camera actor."""

    name: str
    actor: Any
    epoch: str | None = None
    acked: int = 0  # last sequence number written (of this epoch)
    resume: int = 0  # first frame a new incarnation of a file camera processes
    frames_before: int = 0  # frames of earlier incarnations
    offset: int = 0  # added to this epoch's track ids
    max_id: int = 0
    deaths: int = 0  # consecutive "actor died" answers
    pending: Any = None  # the drain call in flight
    open: dict[int, _OpenTrack] = field(default_factory=dict)
    status: CameraState = field(default_factory=CameraState)


def cluster_config(cfg: Config) -> Config:
    """``cfg`` for the workers: absolute paths, and threads sized to the actor's CPUs.

    Relative file paths would resolve against each worker's own directory; with absolute ones
    every node sees the same files as long as they sit on shared storage at the same path.
    """

    def absolute(path: str) -> str:
        return str(Path(path).expanduser().resolve())

    cams = [
        dataclasses.replace(c, source=absolute(c.source))
        if "://" not in c.source and Path(c.source).expanduser().exists()
        else c
        for c in cfg.cameras
    ]
    threads = max(1, math.ceil(cfg.cluster.cpus_per_camera))
    return dataclasses.replace(
        cfg,
        cameras=cams,
        gallery=absolute(cfg.gallery) if cfg.gallery else None,
        models=dataclasses.replace(
            cfg.models, dir=absolute(cfg.models.dir) if cfg.models.dir else None
        ),
        runtime=dataclasses.replace(cfg.runtime, threads=cfg.runtime.threads or threads),
        pipeline=dataclasses.replace(
            cfg.pipeline, decoder_threads=cfg.pipeline.decoder_threads or threads
        ),
    )


class ClusterRunner:
    """The driver: starts the camera actors, gathers their events, stops them."""

    def __init__(self, cfg: Config, stop: threading.Event) -> None:
        self.cfg = cfg
        self.stop_event = stop
        self.cameras = enabled_cameras(cfg)
        self.links: list[_Link] = []
        self.sink = FanoutSink(event_sinks(cfg))
        self._stopping = False

    def status(self) -> dict[str, CameraState]:
        return {link.name: dataclasses.replace(link.status) for link in self.links}

    def run(self) -> int:
        """Serve until every camera has ended or ``stop`` is set; 1 if a camera failed."""
        try:
            self._start_actors()
            self._loop()
        finally:
            for link in self.links:
                if link.open:
                    self._close_open(link, "stopped" if self._stopping else "actor failed")
            self.sink.close()
            self._log_status()
        failed = [link.name for link in self.links if link.status.state == "failed"]
        for name in failed:
            log.error("camera %s failed: %s", name, self.status()[name].error)
        return 1 if failed else 0

    def _start_actors(self) -> None:
        import ray

        c = self.cfg.cluster
        # max_task_retries=0: a poll in flight when the actor dies fails instead of running
        # again on the new process; the driver polls again and sees the new epoch
        remote = ray.remote(
            num_cpus=c.cpus_per_camera, max_restarts=c.max_restarts, max_task_retries=0
        )(CameraActor)
        env = {k: v for k, v in os.environ.items() if k.startswith(ENV_PREFIX)}
        wcfg = cluster_config(self.cfg)
        by_name = {cam.name: cam for cam in wcfg.cameras}
        for cam in self.cameras:
            try:
                actor = remote.options(
                    name=f"{c.namespace}:{cam.name}",
                    namespace=c.namespace,
                    scheduling_strategy="SPREAD",
                    runtime_env={"env_vars": env},
                ).remote(wcfg, by_name[cam.name])
            except ValueError as exc:  # the name is taken
                raise StreamrecError(
                    f"camera '{cam.name}' already runs in Ray namespace '{c.namespace}' "
                    f"(another streamrec serve?): {exc}"
                ) from None
            self.links.append(_Link(cam.name, actor))
        log.info(
            "cluster: %d camera actor(s) started: %s",
            len(self.links),
            ", ".join(link.name for link in self.links),
        )

    def _loop(self) -> None:
        import ray

        deadline: float | None = None
        next_status = time.monotonic() + STATUS_PERIOD
        while True:
            if self.stop_event.is_set() and not self._stopping:
                self._stopping = True
                deadline = time.monotonic() + STOP_TIMEOUT
                log.info("stopping: the cameras finish their frames in flight")
                for link in self.links:
                    link.actor.stop.remote()
            active = [link for link in self.links if link.status.state not in TERMINAL]
            if not active:
                return
            if deadline is not None and time.monotonic() > deadline:
                log.warning("cameras still running after %.0f s: giving up", STOP_TIMEOUT)
                return
            t0 = time.monotonic()
            for link in active:
                if link.pending is None:
                    link.pending = link.actor.drain.remote(link.epoch, link.acked)
            refs = {link.pending: link for link in active}
            ready, _ = ray.wait(list(refs), num_returns=len(refs), timeout=POLL)
            for ref in ready:
                link = refs[ref]
                link.pending = None
                self._collect(link, ref)
            if time.monotonic() > next_status:
                next_status += STATUS_PERIOD
                self._log_status()
            self.stop_event.wait(max(0.0, POLL - (time.monotonic() - t0)))

    def _collect(self, link: _Link, ref: Any) -> None:
        import ray.exceptions as rex

        try:
            reply: dict[str, Any] = ray_get(ref)
        except rex.ActorUnavailableError:
            link.status.state = "restarting"
            return
        except rex.RayError as exc:
            link.deaths += 1
            if link.deaths >= DEATHS_TO_FAIL:
                link.status.state, link.status.error = "failed", str(exc).splitlines()[0]
                self._close_open(link, "actor failed")
            else:
                link.status.state = "restarting"
            return
        link.deaths = 0
        if reply["epoch"] != link.epoch:
            if link.epoch is not None:
                self._restarted(link)
            link.epoch, link.acked = reply["epoch"], 0
        for seq, event in reply["events"]:
            self._emit(link, event)
            link.acked = seq
        state, status = reply["state"], link.status
        if state == "idle" and not self._stopping:
            link.actor.start.remote(link.resume)
        elif reply["done_frame"] is not None and state != "idle":
            link.resume = reply["done_frame"] + 1
        status.frames = link.frames_before + reply["frames"]
        status.fps, status.error = reply["fps"], reply["error"]
        if state == "idle" and self._stopping:
            state = "stopped"
        elif state in ("idle", "starting"):
            state = "restarting" if status.restarts else "starting"
        if state in TERMINAL and status.state not in TERMINAL:
            log.info("camera %s: %s after %d frames", link.name, state, status.frames)
        status.state = state

    def _restarted(self, link: _Link) -> None:
        """A new incarnation: end the dead one's tracks, renumber, keep its frames."""
        link.status.restarts += 1
        log.warning(
            "camera %s: actor restarted (%d); resuming at frame %d",
            link.name,
            link.status.restarts,
            link.resume,
        )
        self._close_open(link, "actor restarted")
        link.frames_before = link.status.frames
        link.offset = link.max_id

    def _emit(self, link: _Link, event: Event) -> None:
        tid = event.track_id + link.offset
        event = dataclasses.replace(event, track_id=tid)
        link.max_id = max(link.max_id, tid)
        if event.event == "track_start":
            link.open[tid] = _OpenTrack(event.source, event.frame, event.frame, event.time)
        elif event.event == "track_end":
            link.open.pop(tid, None)
        elif tid in link.open:
            t = link.open[tid]
            t.last_frame, t.last_time = max(t.last_frame, event.frame), event.time
            if event.event in ("identified", "renamed"):
                t.name, t.score = event.fields.get("name"), event.fields.get("score")
        self.sink.write(event)

    def _close_open(self, link: _Link, reason: str) -> None:
        for tid in sorted(link.open):
            t = link.open.pop(tid)
            fields = {
                "name": t.name,
                "score": t.score,
                "first_frame": t.first_frame,
                "last_frame": t.last_frame,
                "reason": reason,
            }
            self.sink.write(
                Event(
                    "track_end", t.source, tid, t.last_frame, t.last_time, None, link.name, fields
                )
            )

    def _log_status(self) -> None:
        if self.links:
            log.info(
                "cluster: %s",
                "; ".join(
                    f"{name} {s.state}, {s.frames} frames, {s.fps:.1f} fps"
                    + (f", {s.restarts} restart(s)" if s.restarts else "")
                    for name, s in self.status().items()
                ),
            )


def ray_get(ref: Any) -> Any:
    import ray

    return ray.get(ref)


@contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    sigs = (signal.SIGTERM, signal.SIGINT)
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in sigs}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@contextmanager
def connect(cfg: Config) -> Iterator[None]:
    """Connected to the Ray cluster of ``cfg.cluster`` (unless this process already is)."""
    try:
        import ray
    except ImportError:
        raise ConfigError(
            "cluster.address is set but Ray is not installed: pip install 'streamrec[cluster]'"
        ) from None
    if ray.is_initialized():
        yield
        return
    address = cfg.cluster.address
    try:
        ray.init(address=address, namespace=cfg.cluster.namespace, configure_logging=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise StreamrecError(f"cannot connect to the Ray cluster at {address}: {exc}") from None
    try:
        yield
    finally:
        ray.shutdown()


def run_cluster(cfg: Config, stop: threading.Event | None = None) -> int:
    """``streamrec serve`` on a Ray cluster: until every camera ends, SIGTERM/SIGINT or ``stop``.

    Returns the exit code: 0, or 1 when a camera failed for good.
    """
    if not cfg.cluster.address:
        raise ConfigError("cluster.address is not set: give 'auto', 'host:port' or 'ray://...'")
    stop = stop if stop is not None else threading.Event()
    with connect(cfg), _stop_on_signals(stop):  # after ray.init, which sets its own
        return ClusterRunner(cfg, stop).run()
