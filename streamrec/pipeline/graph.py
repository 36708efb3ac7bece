"""The threaded graph: one reader thread per camera, then one thread per stage (light stages
share the thread of the stage before them).

Readers feed a :class:`FrameMux` (a bounded lane per camera: files block their reader when it is
full, live cameras drop their oldest frame); the stage threads follow in a chain joined by bounded
:class:`~streamrec.pipeline.stage.Channel` queues. Each camera's stream ends with an
:class:`~streamrec.records.EndOfStream` record that flows through every stage, so every started
track gets its ``track_end`` in order, also on Ctrl-C. An error in any stage or source aborts
the graph; afterwards every stage's ``finish()`` runs (open tracks end, outputs close).

The graph knows stages only through the :class:`~streamrec.pipeline.stage.Stage` contract; what
the stages are is decided by the composition root (:mod:`streamrec.pipeline.build`).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from dataclasses import dataclass, field

from streamrec.config import MotionConfig
from streamrec.errors import StreamrecError
from streamrec.pipeline.mux import FrameMux
from streamrec.pipeline.output import OutputFactory
from streamrec.pipeline.stage import Aborted, Channel, Stage, StageFailed, run_stage
from streamrec.records import EndOfStream, FrameWork, StreamGap, Work
from streamrec.sources import Gap, Source

log = logging.getLogger("streamrec.pipeline")

@dataclass
class Camera:
    """One input of the graph."""

    name: str
    source: Source
    interval: int
    ignore_zones: list[list[list[float]]] = field(default_factory=list)
    #: the camera's own motion gating (None: the config's ``motion:`` section)
    motion: MotionConfig | None = None
    #: annotated-frame consumers (video writer, window); created lazily from the first frame
    outputs: list[OutputFactory] = field(default_factory=list)


class _MuxInbox:
    """The first stage's inbox: the cameras' lanes, round-robin."""

    def __init__(self, mux: FrameMux[Work], abort: threading.Event) -> None:
        self.mux, self.abort = mux, abort

    def get(self, timeout: float) -> Work | None:
        got = self.mux.get(timeout)
        if got is None:
            if self.abort.is_set():
                raise Aborted
            return None
        return got[1]


class Graph:
    """Runs the cameras through the stages; ``run()`` blocks until every stream has ended."""

    def __init__(
        self,
        cameras: list[Camera],
        stages: list[Stage],
        queue_size: int = 8,
        drain_timeout: float = 30.0,
    ) -> None:
        """``queue_size``: the frames each camera's lane and each queue between stages hold (a
        live lane drops its oldest frame when full; 8 frames, 0.32 s at 25 fps, ride out the
        stalls of a loaded machine). ``drain_timeout``: how long a stopping graph may finish
        in-flight frames."""
        self.cameras = {c.name: c for c in cameras}
        self.stages = stages
        #: the stages each thread runs, in order
        self.groups: list[list[Stage]] = []
        for stage in stages:
            if stage.joins_previous and self.groups:
                self.groups[-1].append(stage)
            else:
                self.groups.append([stage])
        self.drain_timeout = drain_timeout
        self.interrupted = False  # Ctrl-C
        self.error: BaseException | None = None
        self.error_where = ""
        self._lock = threading.Lock()
        self._stop = threading.Event()  # finish reading; drain what is in flight
        self._abort = threading.Event()  # give up on in-flight work
        self.mux: FrameMux[Work] = FrameMux()
        for c in cameras:
            self.mux.add(c.name, c.source.live, queue_size)
        self._channels = [Channel[Work](queue_size, self._abort) for _ in self.groups[1:]]
        self._threads: list[threading.Thread] = []

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def stop(self, drain: float | None = None) -> None:
        """Stop reading; in-flight frames are finished (within ``drain`` seconds, if given) and
        every track is ended.

        Safe from a signal handler. The sources are closed, each in its own thread: a camera
        that is down blocks its reader until closed, and close() may wait for a connect attempt.
        """
        if drain is not None and not self._abort.is_set():
            timer = threading.Timer(drain, self._give_up, args=(drain,))
            timer.daemon = True
            timer.start()
        if self._stop.is_set():
            return
        self._stop.set()
        for cam in self.cameras.values():
            threading.Thread(target=cam.source.close, name=f"close {cam.name}", daemon=True).start()

    def _give_up(self, drain: float) -> None:
        if not self._abort.is_set() and any(t.is_alive() for t in self._threads):
            log.warning("frames still in flight %.0f s after the stop: given up", drain)
            self.abort()

    def abort(self, error: BaseException | None = None, where: str = "") -> None:
        with self._lock:
            if error is not None and self.error is None:
                self.error, self.error_where = error, where
        self._stop.set()
        self._abort.set()
        self.mux.stop()

    def dropped(self, camera: str) -> int:
        """Frames of a live camera dropped in its lane (the pipeline fell behind)."""
        return self.mux.dropped(camera)

    def _reader(self, cam: Camera) -> None:
        try:
            for item in cam.source:
                if self._stop.is_set():
                    break
                if isinstance(item, Gap):
                    self.mux.put(cam.name, StreamGap(cam.name, item.reason), droppable=False)
                elif not self.mux.put(cam.name, FrameWork(cam.name, item)):
                    break
        except Exception as exc:
            if not isinstance(exc, StreamrecError):
                log.exception("source %s failed", cam.name)
            self.abort(exc, f"source {cam.name}")
        finally:
            self.mux.put(cam.name, EndOfStream(cam.name), droppable=False)
            self.mux.close(cam.name)

    def _stage(self, index: int) -> None:
        group = self.groups[index]
        inbox = _MuxInbox(self.mux, self._abort) if index == 0 else self._channels[index - 1]
        outbox = self._channels[index] if index < len(self._channels) else None
        try:
            run_stage(group, inbox, outbox, len(self.cameras))
        except Aborted:
            pass
        except StageFailed as failed:
            exc = failed.error
            if not isinstance(exc, StreamrecError):
                log.error("stage %s failed", failed.stage, exc_info=exc)
            self.abort(exc, failed.stage)
        except Exception as exc:
            log.exception("stage thread %s failed", group[0].name)
            self.abort(exc, group[0].name)

    def run(self) -> None:
        """Process every camera until its stream ends, ``stop()`` or an error; then clean up.

        Raises the error that aborted the graph (a StreamrecError as it is, others wrapped).
        """
        self._threads = threads = [
            threading.Thread(target=self._reader, args=(c,), name=f"read {c.name}", daemon=True)
            for c in self.cameras.values()
        ] + [
            threading.Thread(target=self._stage, args=(i,), name=g[0].name, daemon=True)
            for i, g in enumerate(self.groups)
        ]
        for t in threads:
            t.start()
        try:
            _wait(threads)
        except KeyboardInterrupt:
            self.interrupted = True
            log.warning("interrupted: finishing frames in flight (press Ctrl-C again to abort)")
            self.stop()
            with contextlib.suppress(KeyboardInterrupt):
                _wait(threads, self.drain_timeout)
        finally:
            if any(t.is_alive() for t in threads):
                self.abort()
                for t in threads:
                    t.join(5.0)
            for cam in self.cameras.values():
                cam.source.close()
            for stage in self.stages:
                try:
                    stage.finish()
                except Exception:
                    log.exception("finishing stage %s failed", stage.name)
        if self.error is not None:
            if isinstance(self.error, StreamrecError):
                raise self.error
            raise StreamrecError(
                f"pipeline stage {self.error_where} failed: {self.error!r}"
            ) from self.error


def _wait(threads: list[threading.Thread], timeout: float | None = None) -> None:
    deadline = None if timeout is None else time.monotonic() + timeout
    for t in threads:
        while t.is_alive():
            if deadline is not None and time.monotonic() > deadline:
                return
            t.join(0.2)
