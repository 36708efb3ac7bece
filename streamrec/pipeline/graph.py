"""The threaded pipeline graph.

One reader thread per camera feeds a :class:`FrameMux`; then one thread per stage, joined by
bounded queues: detect/track -> align+embed (batched across frames and cameras) -> match ->
annotate -> output. Files are never dropped (a full queue blocks the producer); live cameras drop
their oldest queued frame. Each camera's stream ends with an end-of-stream record that flows
through every stage, so every started track gets its ``track_end`` event in order, also on
Ctrl-C. An error in any stage aborts the graph; the open tracks are still ended and every sink is
flushed and closed.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from streamrec.gallery.store import Matcher
from streamrec.gallery.unknowns import UnknownBook

from ..analyzer import FaceAnalyzer
from ..config import Config
from ..errors import StreamrecError
from ..records import Event
from ..sources import Gap, Source
from .identity import IdentityPolicy, TrackIdentity
from .mux import FrameMux
from .stages import (
    AnnotateStage,
    DetectTrackStage,
    EmbedStage,
    MatchStage,
    OutputStage,
    Work,
)
from .summary import CameraSummary, Summary

log = logging.getLogger("streamrec.pipeline")


class EventWriter(Protocol):
    def write(self, event: Event) -> None: ...


class FrameOutput(Protocol):
    """Receives annotated frames of one camera (video file, window, live view)."""

    def write(self, image: Any) -> None: ...

    def close(self) -> None: ...


@dataclass
class Camera:
    """One input of the graph."""

    name: str
    source: Source
    interval: int
    ignore_zones: list[list[list[float]]] = field(default_factory=list)
    #: annotated-frame consumers (video writer, window); created lazily from the first frame
    outputs: list[Callable[[Any], FrameOutput]] = field(default_factory=list)


@dataclass
class PipelineOptions:
    queue_size: int = 8
    #: how long a stopping graph may drain in-flight frames before it aborts
    drain_timeout: float = 30.0


class Aborted(Exception):
    """Raised inside stage threads when the graph is aborting."""


class Pipeline:
    """Runs cameras through the stages; ``run()`` blocks until every stream has ended."""

    def __init__(
        self,
        cfg: Config,
        analyzer: FaceAnalyzer,
        cameras: list[Camera],
        events: EventWriter,
        matcher: Matcher | None = None,
        options: PipelineOptions | None = None,
        metrics: Any = None,
        status: Any = None,
        annotate: bool | None = None,
    ) -> None:
        self.cfg = cfg
        self.analyzer = analyzer
        self.cameras = {c.name: c for c in cameras}
        self.events = events
        self.matcher = matcher or Matcher.empty(analyzer.embedder.dim)
        self.options = options or PipelineOptions(queue_size=cfg.pipeline.queue_size)
        self.metrics = metrics
        self.status = status
        self.summary = Summary(cameras={c.name: CameraSummary() for c in cameras})
        self.policy = IdentityPolicy(
            threshold=analyzer.threshold,
            min_embeddings=cfg.recognition.min_embeddings,
            confident_after=cfg.recognition.confident_after,
            refresh_interval=cfg.recognition.refresh_interval,
            unknown_refresh_interval=cfg.recognition.unknown_refresh_interval,
            recheck_gain=cfg.recognition.recheck_gain,
        )
        self.identities: dict[str, dict[int, TrackIdentity]] = {c.name: {} for c in cameras}
        unk = cfg.unknowns
        self.unknowns = (
            UnknownBook(
                unk.threshold if unk.threshold is not None else analyzer.threshold,
                max_crops=unk.max_crops,
            )
            if unk.enabled
            else None
        )
        self.keep_crops = unk.enabled and (unk.crops_dir is not None or unk.persist)
        self._lock = threading.Lock()
        self._stop = threading.Event()  # finish reading; drain what is in flight
        self._abort = threading.Event()  # give up on in-flight work
        self._error: BaseException | None = None
        self._error_stage = ""
        self.mux: FrameMux[Work | Gap | Any] = FrameMux()
        self.progress = 0  # frames that left the last stage
        needs_images = (
            annotate
            if annotate is not None
            else (status is not None or any(c.outputs for c in cameras))
        )
        q = self.options.queue_size
        live = any(c.source.live for c in cameras)
        depth = min(q, 2) if live else q
        self.queues = [queue.Queue[Work](maxsize=depth) for _ in range(4)]
        for c in cameras:
            self.mux.add(c.name, c.source.live, depth)
        self.detect = DetectTrackStage(self)
        self.embed = EmbedStage(self)
        self.match = MatchStage(self)
        self.annotate = AnnotateStage(self, enabled=needs_images)
        self.output = OutputStage(self)

    # -- control ---------------------------------------------------------------------------
    def stop(self) -> None:
        """Stop reading; in-flight frames are finished and every track is ended.

        Safe from a signal handler. The sources are closed, each in its own thread: a camera
        that is down blocks its reader until closed, and close() may wait for a connect attempt.
        """
        if self._stop.is_set():
            return
        self._stop.set()
        for cam in self.cameras.values():
            threading.Thread(target=cam.source.close, name=f"close {cam.name}", daemon=True).start()

    def abort(self, error: BaseException | None = None, stage: str = "") -> None:
        with self._lock:
            if error is not None and self._error is None:
                self._error, self._error_stage = error, stage
        self._stop.set()
        self._abort.set()
        self.mux.stop()

    def set_matcher(self, matcher: Matcher) -> None:
        """Swap the gallery snapshot (e.g. on SIGHUP); running tracks re-match on new evidence."""
        self.matcher = matcher

    # -- plumbing used by stages -----------------------------------------------------------
    def put(self, index: int, work: Work) -> None:
        q = self.queues[index]
        while True:
            if self._abort.is_set():
                raise Aborted
            try:
                q.put(work, timeout=0.2)
                return
            except queue.Full:
                continue

    def get(self, index: int, timeout: float = 0.2) -> Work | None:
        if self._abort.is_set():
            raise Aborted
        try:
            return self.queues[index].get(timeout=timeout)
        except queue.Empty:
            return None

    def emit(self, event: Event) -> None:
        self.events.write(event)

    # -- threads ---------------------------------------------------------------------------
    def _reader(self, cam: Camera) -> None:
        src = cam.source
        try:
            for item in src:
                if self._stop.is_set():
                    break
                if isinstance(item, Gap):
                    self.mux.put(cam.name, item, droppable=False)
                    continue
                if not self.mux.put(cam.name, item):
                    break
        except StreamrecError as exc:
            self.abort(exc, f"source {cam.name}")
        except Exception as exc:
            log.exception("source %s failed", cam.name)
            self.abort(exc, f"source {cam.name}")
        finally:
            self.mux.put(cam.name, Work.end_of_stream(cam.name), droppable=False)
            self.mux.close(cam.name)

    def _stage(self, name: str, body: Callable[[], None]) -> None:
        try:
            body()
        except Aborted:
            pass
        except Exception as exc:
            if not isinstance(exc, StreamrecError):
                log.exception("stage %s failed", name)
            self.abort(exc, name)

    def run(self) -> Summary:
        """Process every camera until its stream ends, ``stop()`` or an error; then clean up."""
        start = time.monotonic()
        threads = [
            threading.Thread(target=self._reader, args=(c,), name=f"read {c.name}", daemon=True)
            for c in self.cameras.values()
        ]
        for name, stage in (
            ("detect", self.detect.run),
            ("embed", self.embed.run),
            ("match", self.match.run),
            ("annotate", self.annotate.run),
            ("output", self.output.run),
        ):
            threads.append(
                threading.Thread(target=self._stage, args=(name, stage), name=name, daemon=True)
            )
        for t in threads:
            t.start()
        interrupted = False
        try:
            self._wait(threads)
        except KeyboardInterrupt:
            interrupted = True
            log.warning("interrupted: finishing frames in flight (press Ctrl-C again to abort)")
            self.stop()
            with contextlib.suppress(KeyboardInterrupt):
                self._wait(threads, self.options.drain_timeout)
        finally:
            if any(t.is_alive() for t in threads):
                self.abort()
                for t in threads:
                    t.join(5.0)
            for cam in self.cameras.values():
                cam.source.close()
                self.summary.cameras[cam.name].damage = list(cam.source.stats.damage)
                self.summary.cameras[cam.name].dropped = (
                    cam.source.stats.dropped + self.mux.dropped(cam.name)
                )
            self.match.end_leftovers()
            self.output.close_all()
            self.summary.wall_time = time.monotonic() - start
            self.summary.interrupted = interrupted or (self._stop.is_set() and self._error is None)
        if self._error is not None:
            self.summary.error = f"{self._error_stage}: {self._error}"
            if isinstance(self._error, StreamrecError):
                raise self._error
            raise StreamrecError(
                f"pipeline stage {self._error_stage} failed: {self._error!r}"
            ) from self._error
        return self.summary

    def _wait(self, threads: list[threading.Thread], timeout: float | None = None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        for t in threads:
            while t.is_alive():
                if deadline is not None and time.monotonic() > deadline:
                    return
                t.join(0.2)
