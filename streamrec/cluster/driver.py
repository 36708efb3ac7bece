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

Only the head opens the gallery (:mod:`streamrec.cluster.snapshot`): the driver follows its
revision every ``cluster.gallery_poll`` seconds (at once on SIGHUP) and ships every new snapshot
to the actors; the unknown people the actors see come back with the events and are written on
the head. So a person enrolled on the head is recognised on every node within seconds, and no
SQLite file is ever used over a network file system.

With the events, every actor reports its camera's telemetry (:mod:`streamrec.cluster.telemetry`):
the head serves ``/health``, ``/metrics`` and the live view of every camera with ``http:`` and
publishes each camera's status on MQTT, as the single-process daemon does.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streamrec.cluster.actor import CameraActor
from streamrec.cluster.snapshot import GalleryFeed
from streamrec.cluster.telemetry import HeadStatus
from streamrec.config import CameraConfig, Config, EventsConfig, HttpConfig
from streamrec.errors import ConfigError, StreamrecError
from streamrec.pipeline.build import enabled_cameras
from streamrec.records import Event
from streamrec.service.signals import Signals, close_all
from streamrec.sinks import FanoutSink, event_sinks
from streamrec.telemetry import CameraState, EventTee

log = logging.getLogger("streamrec.cluster")

#: seconds between two polls of every actor by the driver
POLL = 0.5
#: ... while someone watches a camera's live view (its frames come with the polls)
POLL_WATCHED = 0.1
#: seconds the actors get to finish their frames in flight after a stop
STOP_TIMEOUT = 60.0
#: consecutive "actor died" answers after which a camera counts as failed for good
DEATHS_TO_FAIL = 3
#: environment variables shipped to the workers (models and media are resolved on the node)
ENV_PREFIX = "STREAMREC_"


@dataclass
class CameraStatus:
    """What the driver knows about one camera (``ClusterRunner.status()``)."""

    state: CameraState = CameraState.STARTING
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
    gallery: int | None = None  # the gallery snapshot version sent to this incarnation
    open: dict[int, _OpenTrack] = field(default_factory=dict)
    status: CameraStatus = field(default_factory=CameraStatus)


def cluster_config(cfg: Config) -> Config:
    """``cfg`` for the workers: absolute paths, and threads sized to the actor's CPUs.

    Relative file paths would resolve against each worker's own directory; with absolute ones
    every node sees the same files (file cameras, models) as long as they sit on shared storage
    at the same path.
    """

    def absolute(path: str) -> str:
        return str(Path(path).expanduser().resolve())

    cams = [
        dataclasses.replace(c, source=absolute(c.source))
        if c.source is not None and "://" not in c.source and Path(c.source).expanduser().exists()
        else c
        for c in cfg.cameras
    ]
    threads = max(1, math.ceil(cfg.cluster.cpus_per_camera))
    return dataclasses.replace(
        cfg,
        cameras=cams,
        models=dataclasses.replace(
            cfg.models, dir=absolute(cfg.models.dir) if cfg.models.dir else None
        ),
        runtime=dataclasses.replace(cfg.runtime, threads=cfg.runtime.threads or threads),
        pipeline=dataclasses.replace(
            cfg.pipeline, decoder_threads=cfg.pipeline.decoder_threads or threads
        ),
    )


def actor_config(cfg: Config, camera: CameraConfig) -> Config:
    """What one camera's actor needs: its own camera (credentials included), no other camera, no
    event sink (the driver writes the events), no gallery and no crops folder (the head keeps
    them), no HTTP token."""
    return dataclasses.replace(
        cfg,
        cameras=[camera],
        gallery=None,
        unknowns=dataclasses.replace(cfg.unknowns, crops_dir=None),
        events=EventsConfig(),
        http=HttpConfig(),
    )


class ClusterRunner:
    """The driver: starts the camera actors, gathers their events, stops them.

    ``run()`` serves and closes everything (``close()`` does when it never ran).
    """

    def __init__(self, cfg: Config, stop: threading.Event) -> None:
        self.cfg = cfg
        self.stop_event = stop
        self.cameras = enabled_cameras(cfg)
        bridges = [c.name for c in self.cameras if c.frigate is not None]
        if bridges:
            raise ConfigError(
                f"camera '{bridges[0]}' is a Frigate bridge: cluster mode runs video sources "
                "only (run the bridge in a single-process streamrec serve)"
            )
        self.links: list[_Link] = []
        self.sink = FanoutSink(event_sinks(cfg))
        try:
            self.head = HeadStatus(cfg, [c.name for c in self.cameras], self.sink)
            self.feed = GalleryFeed(cfg, self.head.observer)
        except BaseException:
            self.sink.close()
            raise
        self.events = EventTee(self.sink, self.head)  # the head's metrics and live view read them
        self._stopping = False
        self._closed = False
        self._shipped: tuple[int, Any] | None = None  # (snapshot version, its Ray object)

    def status(self) -> dict[str, CameraStatus]:
        return {link.name: dataclasses.replace(link.status) for link in self.links}

    def reload(self) -> None:
        """Re-read the gallery and send it to every camera now (SIGHUP; signal-safe)."""
        self.feed.reload()

    def run(self) -> int:
        """Serve until every camera has ended or ``stop`` is set; 1 if a camera failed."""
        try:
            self.head.start()
            self.feed.start()
            self._start_actors()
            self._loop()
        finally:
            for link in self.links:
                if link.open:
                    self._close_open(link, "stopped" if self._stopping else "actor failed")
                state = link.status.state
                self.head.set_state(link.name, state if state.final else CameraState.STOPPED)
            self.close()
            self._log_status()
        failed = [link.name for link in self.links if link.status.state is CameraState.FAILED]
        for name in failed:
            log.error("camera %s failed: %s", name, self.status()[name].error)
        return 1 if failed else 0

    def close(self) -> None:
        """Close the sinks, the gallery and the HTTP server, each in its own thread, within
        half of ``pipeline.stop_timeout``; idempotent."""
        if self._closed:
            return
        self._closed = True
        closers: list[tuple[str, Callable[[], None]]] = [
            ("event sinks", self.sink.close),
            ("gallery", self.feed.close),
            ("HTTP server", self.head.stop),
        ]
        close_all(closers, time.monotonic() + self.cfg.pipeline.stop_timeout / 2)

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
        for slot, cam in enumerate(self.cameras):
            own = by_name[cam.name]
            try:
                actor = remote.options(
                    name=f"{c.namespace}:{cam.name}",
                    namespace=c.namespace,
                    scheduling_strategy="SPREAD",
                    runtime_env={"env_vars": env},
                ).remote(actor_config(wcfg, own), own, slot, len(self.cameras))
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

    def _snapshot(self) -> tuple[int, Any]:
        """The gallery's latest snapshot version and its object in Ray's store (put once)."""
        import ray

        snap = self.feed.snapshot
        if self._shipped is None or self._shipped[0] != snap.version:
            self._shipped = (snap.version, ray.put(snap))
        return self._shipped

    def _loop(self) -> None:
        import ray

        deadline: float | None = None
        period = self.cfg.logging.stats_interval
        next_status = time.monotonic() + period
        while True:
            if self.stop_event.is_set() and not self._stopping:
                self._stopping = True
                deadline = time.monotonic() + STOP_TIMEOUT
                log.info("stopping: the cameras finish their frames in flight")
                for link in self.links:
                    link.actor.stop.remote()
            active = [link for link in self.links if not link.status.state.final]
            if not active:
                return
            if deadline is not None and time.monotonic() > deadline:
                log.warning("cameras still running after %.0f s: giving up", STOP_TIMEOUT)
                return
            t0 = time.monotonic()
            version, snapshot = self._snapshot()
            watched = False
            for link in active:
                if link.gallery is not None and link.gallery != version:
                    link.actor.load_gallery.remote(snapshot)
                    link.gallery = version
                if link.pending is None:
                    wants = self.head.wants_frame(link.name)
                    watched |= wants
                    link.pending = link.actor.drain.remote(link.epoch, link.acked, wants)
            poll = POLL_WATCHED if watched else POLL
            refs = {link.pending: link for link in active}
            ready, _ = ray.wait(list(refs), num_returns=len(refs), timeout=poll)
            for ref in ready:
                link = refs[ref]
                link.pending = None
                self._collect(link, ref)
            self.head.poll()
            if period and time.monotonic() > next_status:
                next_status += period
                self._log_status()
            self.stop_event.wait(max(0.0, poll - (time.monotonic() - t0)))

    def _collect(self, link: _Link, ref: Any) -> None:
        import ray.exceptions as rex

        try:
            reply: dict[str, Any] = ray_get(ref)
        except rex.ActorUnavailableError:
            link.status.state = CameraState.RESTARTING
            self.head.set_state(link.name, link.status.state)
            return
        except rex.RayError as exc:
            link.deaths += 1
            if link.deaths >= DEATHS_TO_FAIL:
                link.status.state, link.status.error = CameraState.FAILED, str(exc).splitlines()[0]
                self._close_open(link, "actor failed")
            else:
                link.status.state = CameraState.RESTARTING
            self.head.set_state(link.name, link.status.state)
            return
        link.deaths = 0
        if reply["epoch"] != link.epoch:
            if link.epoch is not None:
                self._restarted(link)
            link.epoch, link.acked, link.gallery = reply["epoch"], 0, None
            self.head.new_incarnation(link.name)
        for seq, event in reply["events"]:
            self._emit(link, event)
            link.acked = seq
        self.feed.write(reply["sightings"])
        self.head.report(link.name, reply["telemetry"])
        state, status = reply["state"], link.status
        if state is None and not self._stopping:
            link.gallery, snapshot = self._snapshot()
            link.actor.start.remote(link.resume, snapshot)
        elif reply["done_frame"] is not None and state is not None:
            link.resume = reply["done_frame"] + 1
        status.frames = link.frames_before + reply["frames"]
        status.fps, status.error = reply["fps"], reply["error"]
        if state is None and self._stopping:
            state = CameraState.STOPPED
        elif state in (None, CameraState.STARTING):
            state = CameraState.RESTARTING if status.restarts else CameraState.STARTING
        if state.final and not status.state.final:
            log.info("camera %s: %s after %d frames", link.name, state.value, status.frames)
        status.state = state
        self.head.set_state(link.name, state)

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
        self.events.write(event)

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
            self.events.write(
                Event(
                    "track_end", t.source, tid, t.last_frame, t.last_time, None, link.name, fields
                )
            )

    def _log_status(self) -> None:
        if self.links:
            log.info(
                "cluster: %s",
                "; ".join(
                    f"{name} {s.state.value}, {s.frames} frames, {s.fps:.1f} fps"
                    + (f", {s.restarts} restart(s)" if s.restarts else "")
                    for name, s in self.status().items()
                ),
            )


def ray_get(ref: Any) -> Any:
    import ray

    return ray.get(ref)


@contextmanager
def connect(cfg: Config, stop: threading.Event | None = None) -> Iterator[bool]:
    """Connected to the Ray cluster of ``cfg.cluster`` (unless this process already is).

    Yields False, not connected, when ``stop`` is set while Ray is still connecting.
    """
    try:
        import ray
    except ImportError:
        raise ConfigError(
            "cluster.address is set but Ray is not installed: pip install 'streamrec[cluster]'"
        ) from None
    if ray.is_initialized():
        yield True
        return
    address = cfg.cluster.address
    assert address is not None
    _check_reachable(address)
    log.info("connecting to the Ray cluster at %s", address)
    try:
        connected = _init(address, cfg.cluster.namespace, stop)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise StreamrecError(f"cannot connect to the Ray cluster at {address}: {exc}") from None
    try:
        yield connected
    finally:
        if connected:
            ray.shutdown()


def _check_reachable(address: str) -> None:
    """A ``host:port`` nothing listens on is told at once (Ray would retry for minutes)."""
    host, _, port = address.rpartition(":")
    if "://" in address or not port.isdigit():  # "auto", ray://: Ray finds or reports them
        return
    try:
        socket.create_connection((host, int(port)), timeout=10).close()
    except OSError as exc:
        raise StreamrecError(
            f"cannot connect to the Ray cluster at {address} (cluster.address): "
            f"{exc.strerror or exc}; start it with 'ray start --head' or fix the address"
        ) from None


def _init(address: str, namespace: str, stop: threading.Event | None) -> bool:
    """``ray.init`` in a thread of its own; False if ``stop`` is set before it is done.

    In the main thread Ray would replace the SIGTERM handler (the daemon's, installed before
    anything slow) with ``sys.exit``, and a stop while it waits for a cluster that does not
    answer would wait for its timeouts (minutes).
    """
    import ray

    failure: list[BaseException] = []

    def init() -> None:
        try:
            ray.init(address=address, namespace=namespace, configure_logging=False)
        except BaseException as exc:
            failure.append(exc)

    quiet = _Without("SIGTERM handler is not set")  # Ray's warning off the main thread
    ray_log = logging.getLogger("ray._private.worker")
    ray_log.addFilter(quiet)
    thread = threading.Thread(target=init, name="ray init", daemon=True)
    thread.start()
    try:
        while thread.is_alive():
            thread.join(0.1)
            if stop is not None and stop.is_set():
                log.info("stopped while connecting to the Ray cluster")
                return False
    finally:
        ray_log.removeFilter(quiet)
    if failure:
        raise failure[0]
    return True


class _Without(logging.Filter):
    """Drops log records whose message starts with ``prefix``."""

    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefix)


def run_cluster(cfg: Config, signals: Signals | None = None) -> int:
    """``streamrec serve`` on a Ray cluster: until every camera ends or SIGTERM/SIGINT; SIGHUP
    reloads the gallery.

    ``signals``: handlers the caller installed early (the CLI does, before its imports), as for
    :func:`streamrec.service.daemon.serve`. Returns the exit code: 0, or 1 when a camera failed
    for good.
    """
    if not cfg.cluster.address:
        raise ConfigError("cluster.address is not set: give 'auto', 'host:port' or 'ray://...'")
    own = signals is None
    signals = signals or Signals()
    if own:
        signals.install()  # before anything slow: a signal during start-up is not lost
    try:
        if signals.stop_requested.is_set():
            return 0
        with connect(cfg, signals.stop_requested) as connected:
            if not connected or signals.stop_requested.is_set():
                return 0
            runner = ClusterRunner(cfg, signals.stop_requested)
            signals.on_reload = runner.reload
            try:
                return runner.run()
            finally:
                runner.close()
    finally:
        signals.on_reload = None
        if own:
            signals.restore()
