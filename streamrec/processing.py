"""The Python video API: the pipeline of ``streamrec run`` as an iterator of events.

.. code-block:: python

    for event in streamrec.process("clip.mp4", gallery="gallery.db"):
        print(event.time, event.event, event.fields.get("name"))

The pipeline runs in its own threads (:class:`~streamrec.runner.VideoJob`, wired by
``build_pipeline`` like every other run); its events and, with ``on_frame``, its annotated frames
reach the caller through one bounded queue, so a slow caller slows a file down (nothing is lost)
and a live camera drops frames instead.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from streamrec.config import as_config
from streamrec.records import Event, Frame

if TYPE_CHECKING:
    from streamrec.analyzer import FaceAnalyzer
    from streamrec.config import Config
    from streamrec.pipeline.summary import Summary
    from streamrec.runner import VideoJob
    from streamrec.sinks.events import EventSink

#: how often a blocked hand-over checks whether the caller went away (s)
_TICK = 0.2


@dataclass(frozen=True)
class AnnotatedFrame:
    """A processed frame: the source's frame (``index``, media ``time``, ``image``) and its copy
    with every face's box and name drawn."""

    frame: Frame
    image: np.ndarray  # H x W x 3 uint8 BGR, annotated

    @property
    def index(self) -> int:
        return self.frame.index

    @property
    def time(self) -> float:
        return self.frame.time

    def __repr__(self) -> str:
        h, w = self.image.shape[:2]
        return f"AnnotatedFrame(index={self.index}, time={self.time:.3f}, {w}x{h})"


class _End:
    """Put after the last item."""


class _Handoff:
    """The bounded queue from the pipeline's threads to the caller: an event sink and a frame
    output. ``put`` blocks while it is full, until the caller takes or abandons it."""

    name = "caller"

    def __init__(self, size: int) -> None:
        self._queue: queue.Queue[Event | AnnotatedFrame | _End] = queue.Queue(size)
        self._abandoned = threading.Event()

    def put(self, item: Event | AnnotatedFrame | _End) -> None:
        while not self._abandoned.is_set():
            try:
                self._queue.put(item, timeout=_TICK)
                return
            except queue.Full:
                continue

    def get(self) -> Event | AnnotatedFrame | _End:
        return self._queue.get()

    def abandon(self) -> None:
        """The caller is gone: drop what is queued, and every later item."""
        self._abandoned.set()
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                return

    # the event sink
    def write(self, event: Event) -> None:
        self.put(event)

    def close(self) -> None:
        """The end of the run is put by the job's thread, after the summary is complete."""

    # the frame output
    def output(self, first: Frame) -> _FrameOutput:
        return _FrameOutput(self)


class _FrameOutput:
    def __init__(self, handoff: _Handoff) -> None:
        self._handoff = handoff

    def write(self, image: np.ndarray, frame: Frame) -> None:
        self._handoff.put(AnnotatedFrame(frame, image))

    def close(self) -> None:
        pass


@dataclass
class _Outcome:
    """What the job's thread leaves for the caller."""

    summary: Summary | None = None
    error: BaseException | None = None


def _run(job: VideoJob, handoff: _Handoff, outcome: _Outcome) -> None:
    """The job's thread (it holds no reference to the iterator, so that dropping the iterator
    closes the run)."""
    try:
        outcome.summary = job.run()
    except BaseException as exc:  # re-raised in the caller's thread
        outcome.error = exc
    finally:
        handoff.put(_End())


class VideoEvents(Iterator[Event]):
    """The events of a running pipeline, in order (see :func:`process`).

    Iterate it for :class:`~streamrec.records.Event` records until the video ends. ``stop()``
    (from any thread, e.g. a timer) ends the run as Ctrl-C would: the frames in flight finish,
    every open track ends, and the iteration still yields those last events. ``close()`` (also
    on leaving a ``with`` block, or when the iterator is dropped, e.g. after ``break``) stops
    the run and drops whatever the caller has not taken; the sinks still get every event,
    ``track_end`` included. An error that stopped the pipeline is raised by the iteration.
    ``summary`` is the run's :class:`~streamrec.pipeline.summary.Summary` once it is over.
    """

    def __init__(
        self,
        job: VideoJob,
        handoff: _Handoff,
        on_event: Callable[[Event], None] | None,
        on_frame: Callable[[AnnotatedFrame], None] | None,
        stop_timeout: float,
    ) -> None:
        self._job = job
        self._handoff = handoff
        self._on_event = on_event
        self._on_frame = on_frame
        self._stop_timeout = stop_timeout
        self._outcome = _Outcome()
        self._over = False
        self._thread = threading.Thread(
            target=_run, args=(job, handoff, self._outcome), name="streamrec.process", daemon=True
        )
        self._thread.start()

    @property
    def summary(self) -> Summary | None:
        """The run's summary, once it is over (None before)."""
        return self._outcome.summary if not self._thread.is_alive() else None

    def __iter__(self) -> VideoEvents:
        return self

    def __next__(self) -> Event:
        while not self._over:
            item = self._handoff.get()
            if isinstance(item, _End):
                self._over = True
                self._thread.join()
                error, self._outcome.error = self._outcome.error, None
                if error is not None:
                    raise error
                break
            if isinstance(item, AnnotatedFrame):
                if self._on_frame is not None:
                    self._on_frame(item)
                continue
            if self._on_event is not None:
                self._on_event(item)
            return item
        raise StopIteration

    def run(self) -> Summary:
        """Take every event (each goes to ``on_event``, each frame to ``on_frame``) until the
        video ends or ``stop()``; returns the summary."""
        for _ in self:
            pass
        assert self.summary is not None
        return self.summary

    def stop(self) -> None:
        """End the run early (thread- and signal-safe): frames in flight finish within the
        config's ``pipeline.stop_timeout``, every track ends; the iteration goes on to the end."""
        self._job.pipeline.stop(self._stop_timeout)

    def close(self) -> None:
        """Stop the run and wait for it to be closed (tracks ended, files written); the events
        not taken yet are dropped. Idempotent."""
        if self._over:
            return
        self._over = True
        self.stop()
        self._handoff.abandon()
        self._thread.join()

    def __enter__(self) -> VideoEvents:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        # dropped while running (a ``for`` loop left with break): close, as a generator would
        if not getattr(self, "_over", True):
            self.close()


def process(
    source: str | os.PathLike[str] | int,
    *,
    gallery: str | os.PathLike[str] | None = None,
    config: Config | str | os.PathLike[str] | None = None,
    analyzer: FaceAnalyzer | None = None,
    output: str | os.PathLike[str] | None = None,
    sinks: Sequence[EventSink] = (),
    on_event: Callable[[Event], None] | None = None,
    on_frame: Callable[[AnnotatedFrame], None] | None = None,
    start: float | None = None,
    end: float | None = None,
    live: bool = False,
) -> VideoEvents:
    """Recognize the people in a video: its events as an iterator (see :class:`VideoEvents`).

    - ``source``: a video file, an http(s) URL (a recording; ``live=True``: a live MJPEG or HLS
      camera), an ``rtsp://`` camera or a webcam index;
    - ``gallery``: a gallery file (default: the config's ``gallery``; none: everyone is
      unknown); ``config``: a Config or the path of a YAML file (default: built-in defaults);
      ``analyzer``: a FaceAnalyzer to reuse (default: one made from the config);
    - ``output``: write the annotated video there (with the input's audio), as ``streamrec run
      --output`` does; ``sinks``: more event sinks (objects with ``write(event)`` and
      ``close()``), besides the config's ``events:``; each is closed at the end of the run;
    - ``on_event`` / ``on_frame``: called, in the iterating thread, with each event and each
      :class:`AnnotatedFrame` (``on_frame`` draws every frame: it costs time);
    - ``start`` / ``end``: the span of a file to process, in seconds.

    Mistakes (a missing video, model or gallery) raise StreamrecError here, at once.
    """
    from streamrec.runner import VideoJob

    cfg = as_config(config) if config is not None or analyzer is None else analyzer.cfg
    if gallery is not None:
        cfg = replace(cfg, gallery=os.fspath(gallery))
    handoff = _Handoff(cfg.pipeline.queue_size)
    job = VideoJob(
        cfg,
        str(os.fspath(source) if not isinstance(source, int) else source),
        analyzer=analyzer,
        output=os.fspath(output) if output is not None else None,
        sinks=[*sinks, handoff],
        frames=[handoff.output] if on_frame is not None else [],
        live_http=live,
        start=start,
        end=end,
    )
    return VideoEvents(job, handoff, on_event, on_frame, cfg.pipeline.stop_timeout)
