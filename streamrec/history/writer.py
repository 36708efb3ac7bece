"""The history's writer: sightings queued by the pipeline, stored in batches by one thread.

The queue is bounded. When it is full (the disk cannot keep up), the sighting of the worst
quality among those waiting and the new one is dropped, counted and logged: a blurred face is
the one worth least for search and review. Retention and the caps are applied every
``purge_every`` seconds and at start. ``close`` writes what is queued, waiting at most
``drain_seconds``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from streamrec.history.records import TrackSighting
from streamrec.history.store import HistoryStore

log = logging.getLogger("streamrec.history")

#: most sightings stored in one transaction
BATCH = 64


class HistoryWriter:
    """Feeds a :class:`HistoryStore` from any thread without blocking it."""

    def __init__(
        self,
        store: HistoryStore,
        size: int | None = None,
        purge_every: float = 3600.0,
        drain_seconds: float = 5.0,
    ) -> None:
        self.store = store
        self.size = size or store.policy.queue_size
        self.purge_every = purge_every
        self.drain_seconds = drain_seconds
        self.dropped = 0
        self.written = 0
        self.failed = 0
        self._queue: list[TrackSighting] = []
        self._closing = False
        self._busy = False  # a batch is being stored
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="history", daemon=True)
        self._thread.start()

    def put(self, sighting: TrackSighting) -> bool:
        """Queue a sighting; False if it (or a worse one waiting) was dropped for it."""
        with self._cond:
            if self._closing:
                return False
            kept = True
            if len(self._queue) >= self.size:
                worst = min(range(len(self._queue)), key=lambda i: self._queue[i].quality)
                if self._queue[worst].quality < sighting.quality:
                    del self._queue[worst]
                else:
                    kept = False
                self.dropped += 1
                if self.dropped == 1 or self.dropped % 100 == 0:
                    log.warning("face history falls behind: %d sighting(s) dropped", self.dropped)
            if kept:
                self._queue.append(sighting)
                self._cond.notify()
            return kept

    def discard(self, unwanted: Callable[[TrackSighting], bool]) -> int:
        """Drop the queued sightings ``unwanted`` says (a person erased meanwhile), once the
        batch being stored is in: after it returns, nothing of theirs is written."""
        with self._cond:
            while self._busy:
                self._cond.wait(0.1)
            kept = [s for s in self._queue if not unwanted(s)]
            gone, self._queue = len(self._queue) - len(kept), kept
            return gone

    def pending(self) -> int:
        with self._cond:
            return len(self._queue)

    def _run(self) -> None:
        next_purge = 0.0
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait(max(0.1, next_purge - time.monotonic()))
                    if time.monotonic() >= next_purge:
                        break
                batch, self._queue = self._queue[:BATCH], self._queue[BATCH:]
                closing = self._closing
                self._busy = bool(batch)
            if batch:
                try:
                    self.store.add(batch)
                    self.written += len(batch)
                except Exception as exc:  # a full disk, a locked file: keep running
                    self.failed += len(batch)
                    log.error("cannot write %d sighting(s) to the history: %s", len(batch), exc)
                finally:
                    with self._cond:
                        self._busy = False
                        self._cond.notify_all()
            if time.monotonic() >= next_purge:
                try:
                    gone = self.store.purge()
                    if gone:
                        log.info("face history: %d sighting(s) past retention or caps", gone)
                except Exception as exc:
                    log.error("cannot purge the face history: %s", exc)
                next_purge = time.monotonic() + self.purge_every
            if closing and not batch:
                with self._cond:
                    if not self._queue:
                        return

    def close(self) -> None:
        """Write what is queued (bounded wait); later ``put`` calls are refused."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        self._thread.join(self.drain_seconds)
        if self._thread.is_alive():
            log.warning("face history: %d sighting(s) not written", self.pending())
