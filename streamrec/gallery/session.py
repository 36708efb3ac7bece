"""The gallery as one run or daemon uses it: opened once, fed unknowns, told what was taken in.

(The people it matches against come from the process's Recognition service,
:mod:`streamrec.recognition`, which holds the same opened gallery as its store.)

- ``unknown_book()``: the run's unknown identities; every sighting (a track labelled, a track
  ended) is written at once by a background thread: to the gallery as an unconfirmed person's
  sample with its face (``unknowns.persist``) and, with ``unknowns.crops_dir``, as a JPEG file
  in the identity's numbered folder (:mod:`~streamrec.gallery.crops`).
  A write the gallery refuses (the label was erased, merged or promoted meanwhile) makes the
  book forget the label. The queue is bounded: when the disk cannot keep up, the oldest
  sightings are dropped and counted.

A session without a gallery file (``gallery: null``) still groups unknown people within the run
and can save their crops; it matches nobody and persists nothing in a gallery.

:class:`PipelineGallery` is what a running pipeline needs of its gallery: a session, or in a
cluster's camera actor a gallery fed by the head (:mod:`streamrec.cluster.snapshot`).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from streamrec.errors import GalleryError, StreamrecError
from streamrec.gallery.crops import CropFolders
from streamrec.gallery.store import Gallery, open_existing
from streamrec.gallery.types import GalleryPolicy, Recognizer, encode_face
from streamrec.gallery.unknowns import Sighting, UnknownBook
from streamrec.gallery.watchers import WATCH_BEAT

if TYPE_CHECKING:
    from streamrec.config import Config

log = logging.getLogger("streamrec.gallery")

#: sightings waiting to be written
QUEUE_SIZE = 256
#: how long closing waits for the queued sightings to be written
DRAIN_SECONDS = 5.0


class PipelineGallery(Protocol):
    """The gallery as a running pipeline uses it for its unknown people and to say what it has
    taken in (see :class:`GallerySession`)."""

    def people(self) -> int: ...

    def unknown_book(self, threshold: float) -> UnknownBook | None: ...

    def sync(self, book: UnknownBook) -> set[str]: ...

    def confirm(self, revision: int) -> None:
        """The pipeline has taken ``revision`` in (an erasure waits for that)."""
        ...

    def close(self) -> None: ...


class GallerySession:
    """``cfg.gallery`` opened once (or no gallery), for the unknown people; ``gallery`` is the
    store the process's Recognition service matches against and changes.

    ``recognizer`` None opens the file with the recognizer it records: for a process that
    embeds nothing itself (a cluster's head, whose actors check their own recognizer).
    """

    def __init__(self, cfg: Config, recognizer: Recognizer | None) -> None:
        self.cfg = cfg
        self.gallery: Gallery | None = None
        if cfg.gallery:
            if not Path(cfg.gallery).is_file():
                raise StreamrecError(
                    f"gallery not found: {cfg.gallery} (enrol people with 'streamrec gallery')"
                )
            policy = GalleryPolicy.from_config(cfg)
            self.gallery = (
                Gallery(cfg.gallery, recognizer, policy)
                if recognizer is not None
                else open_existing(cfg.gallery, policy)
            )
            if self.gallery.read_only and cfg.unknowns.persist:
                log.warning(
                    "gallery %s is read-only: it is used for matching, unknown people are not kept",
                    cfg.gallery,
                )
        self.book: UnknownBook | None = None
        self.dropped = 0  # sightings dropped from a full queue
        self._queue: queue.Queue[Sighting | None] = queue.Queue(maxsize=QUEUE_SIZE)
        self._writer: threading.Thread | None = None
        # the crop files of a run that keeps no unknown people in a gallery (one that does
        # writes them with the sightings)
        self.crops = (
            CropFolders(cfg.unknowns.crops_dir, cfg.unknowns.max_crops)
            if cfg.unknowns.crops_dir and not self.persist
            else None
        )
        self._watcher: int | None = None
        self._confirmed = (-1, 0.0)  # revision, monotonic time
        self._dead: set[str] = set()  # labels the store refused since the last take_dead()
        self._lock = threading.Lock()

    def close(self) -> None:
        """Write what is queued (bounded wait), then close the gallery."""
        if self._writer is not None:
            self._put(None)
            self._writer.join(DRAIN_SECONDS)
            if self._writer.is_alive():
                log.warning("unknown people: %d sighting(s) not written", self._queue.qsize())
        if self.gallery is not None:
            if self._watcher is not None:
                try:
                    self.gallery.unwatch(self._watcher)
                except GalleryError as exc:
                    log.debug("cannot unregister from the gallery: %s", exc)
            self.gallery.close()

    def __enter__(self) -> GallerySession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def people(self) -> int:
        return len(self.gallery.people()) if self.gallery is not None else 0

    def confirm(self, revision: int) -> None:
        """Tell the gallery this process has taken ``revision`` in: at once when it moved, else
        every ``WATCH_BEAT`` s (so that an erasure knows who is running)."""
        if self.gallery is None or self.gallery.read_only:
            return
        now = time.monotonic()
        if revision == self._confirmed[0] and now - self._confirmed[1] < WATCH_BEAT:
            return
        self._watcher = self.gallery.watch(revision, self._watcher)
        self._confirmed = (revision, now)

    @property
    def persist(self) -> bool:
        return self.gallery is not None and not self.gallery.read_only and self.cfg.unknowns.persist

    def unknown_book(self, threshold: float) -> UnknownBook | None:
        """The run's book of unknown people (``unknowns.enabled``), continuing the labels of
        earlier runs: from the gallery with ``unknowns.persist`` (after purging expired ones),
        else after the ``unknown-N`` folders of ``unknowns.crops_dir``."""
        unk = self.cfg.unknowns
        if not unk.enabled:
            return None
        book = UnknownBook(
            unk.threshold if unk.threshold is not None else threshold,
            max_identities=unk.max_identities,
        )
        if self.persist:
            assert self.gallery is not None
            if unk.retention_days:
                purged = self.gallery.purge(unk.retention_days)
                if purged:
                    log.info("purged %d unconfirmed people past retention", purged)
            self.sync(book)
        elif self.crops is not None:
            if unk.retention_days:
                self.crops.purge(unk.retention_days)
            book.next_index = max([0, *self.crops.numbers()]) + 1
        if self.persist or unk.crops_dir:
            book.on_sighting = self._put
            self._writer = threading.Thread(target=self._write, name="unknowns", daemon=True)
            self._writer.start()
        self.book = book
        return book

    def sync(self, book: UnknownBook) -> set[str]:
        """Bring the book in line with the store; returns the labels it must forget (erased,
        merged away or promoted) — tracks carrying them lose the label.

        Only identities the book never held are taken from the store (another process's): the
        store may not have the book's latest sightings yet (they are written in the background),
        and re-reading them at whatever moment a reload happens would make a run's labels depend
        on timing."""
        if not self.persist:
            return set()
        assert self.gallery is not None
        book.take(self.unknown_identities(book.max_samples), self.gallery.next_unknown_index())
        with self._lock:
            dead, self._dead = self._dead, set()
        dead |= {label for label in book.labels if self.gallery.tombstoned(label)}
        book.forget(dead)
        return dead

    def unknown_identities(self, newest: int) -> dict[str, np.ndarray]:
        """The store's unconfirmed people: label -> their ``newest`` samples (a book's seed)."""
        if self.gallery is None:
            return {}
        return self.gallery.unknown_samples(newest)

    # -- the writer --------------------------------------------------------------------------

    def _put(self, item: Sighting | None) -> None:
        while True:
            try:
                self._queue.put_nowait(item)
                return
            except queue.Full:
                try:
                    self._queue.get_nowait()  # drop the oldest
                    self.dropped += 1
                    if self.dropped == 1 or self.dropped % 100 == 0:
                        log.warning(
                            "unknown people: writing falls behind, %d sighting(s) dropped",
                            self.dropped,
                        )
                except queue.Empty:
                    pass

    def _write(self) -> None:
        while (item := self._queue.get()) is not None:
            try:
                self._store(item)
            except Exception as exc:  # a full disk, a locked file: keep running
                log.error("cannot save unknown person %s: %s", item.label, exc)

    def _store(self, s: Sighting) -> None:
        unk = self.cfg.unknowns
        if self.persist:
            assert self.gallery is not None
            ok = self.gallery.add_unknown(
                s.label, s.mean[None], [s.crop], [s.quality], source=f"camera {s.camera}"
            )
            if not ok:
                with self._lock:
                    self._dead.add(s.label)
                return
            if self.gallery.unknown_count() > unk.max_identities:
                self.gallery.evict_unknowns(unk.max_identities)
        elif self.crops is not None and s.crop is not None:
            self.crops.save(s.label, encode_face(s.crop), s.quality)
            self.crops.evict(unk.max_identities)
