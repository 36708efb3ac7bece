"""The stage contract: take -> process -> put, end of stream and abort, owned in one place.

A stage is a plain object with ``process(work)`` (and, for batching stages, ``gather`` and
``process_batch``); it is built with only what it needs and knows nothing of the graph. The graph
runs each stage in its own thread with :func:`run_stage`, between two :class:`Channel` queues.
Every camera's stream ends with an :class:`~streamrec.records.EndOfStream` that flows through
every stage, so a stage's loop ends after it has passed on one per camera.

Light stages (``joins_previous``) run in the thread of the stage before them: a hand-off
between threads costs a wake-up per frame, more than such a stage's own work.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Sequence
from typing import Generic, Protocol, TypeVar

from streamrec.records import EndOfStream, Work

T = TypeVar("T")

#: how long a blocked take or put waits before it checks for an abort
_TICK = 0.2


class Aborted(Exception):
    """Raised in a stage thread when the graph is aborting (give up on in-flight work)."""


class StageFailed(Exception):
    """A stage raised ``error`` (raised by :func:`run_stage`, which may run several stages)."""

    def __init__(self, stage: str, error: Exception) -> None:
        super().__init__(f"{stage}: {error!r}")
        self.stage, self.error = stage, error


class Inbox(Protocol):
    def get(self, timeout: float) -> Work | None:
        """The next work item, or None when nothing came within ``timeout`` seconds."""
        ...


class Channel(Generic[T]):
    """A bounded queue between two stage threads; blocked calls give up when ``abort`` is set."""

    def __init__(self, size: int, abort: threading.Event) -> None:
        self._queue: queue.Queue[T] = queue.Queue(maxsize=max(1, size))
        self._abort = abort

    def put(self, item: T) -> None:
        while True:
            if self._abort.is_set():
                raise Aborted
            try:
                self._queue.put(item, timeout=_TICK)
                return
            except queue.Full:
                continue

    def get(self, timeout: float = _TICK) -> T | None:
        if self._abort.is_set():
            raise Aborted
        try:
            return self._queue.get(timeout=timeout) if timeout > 0 else self._queue.get_nowait()
        except queue.Empty:
            return None


class Stage:
    """One step of the graph. Subclasses implement :meth:`process` (or :meth:`process_batch`)."""

    #: the stage's name (thread name, error messages)
    name = "stage"
    #: runs in the thread of the stage before it (its work per frame is small)
    joins_previous = False

    def process(self, work: Work) -> None:
        """Handle one work item in place (fill in this stage's part)."""

    def gather(self, first: Work, inbox: Inbox) -> list[Work]:
        """The items to process together with ``first`` (batching stages take more)."""
        return [first]

    def process_batch(self, batch: list[Work]) -> None:
        for work in batch:
            self.process(work)

    def finish(self) -> None:
        """Called once after the graph has stopped (normally or not): release, flush, end."""


def run_stage(
    stages: Sequence[Stage], inbox: Inbox, outbox: Channel[Work] | None, streams: int
) -> None:
    """A stage thread: take, let each stage process in turn (the first one gathers), pass on,
    until every stream has ended (or Aborted). An error of a stage is raised as StageFailed."""
    ended = 0
    while ended < streams:
        first = inbox.get(_TICK)
        if first is None:
            continue
        batch = stages[0].gather(first, inbox)
        for stage in stages:
            try:
                stage.process_batch(batch)
            except Aborted:
                raise
            except Exception as exc:
                raise StageFailed(stage.name, exc) from exc
        for work in batch:
            if outbox is not None:
                outbox.put(work)
            ended += isinstance(work, EndOfStream)
