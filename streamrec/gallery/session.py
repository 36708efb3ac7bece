"""The gallery as one run or daemon uses it: opened once, watched for changes, fed unknowns.

- ``matcher()`` and ``revision``: the running pipeline re-reads the matcher whenever the
  revision moves (a change by the CLI, the API, the web page or another process).
- ``unknown_book()``: the run's unknown identities; every sighting (a track labelled, a track
  ended) is written at once by a background thread: to the gallery as an unconfirmed person's
  sample with its face (``unknowns.persist``) and, with ``unknowns.crops_dir``, as a JPEG file.
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
import os
import queue
import re
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import cv2
import numpy as np

from streamrec.errors import StreamrecError
from streamrec.files import private_dir
from streamrec.gallery.matcher import Matcher
from streamrec.gallery.store import Gallery, GalleryPolicy, Recognizer, open_existing
from streamrec.gallery.unknowns import Sighting, UnknownBook

if TYPE_CHECKING:
    from streamrec.config import Config

log = logging.getLogger("streamrec.gallery")

#: sightings waiting to be written
QUEUE_SIZE = 256
#: how long closing waits for the queued sightings to be written
DRAIN_SECONDS = 5.0
_LABEL_DIR = re.compile(r"^unknown-(\d+)$")


class PipelineGallery(Protocol):
    """The gallery as a running pipeline uses it (see :class:`GallerySession`)."""

    @property
    def revision(self) -> int:
        """Moves with every change the pipeline must take in."""
        ...

    def matcher(self) -> Matcher: ...

    def people(self) -> int: ...

    def unknown_book(self, threshold: float) -> UnknownBook | None: ...

    def sync(self, book: UnknownBook) -> set[str]: ...

    def close(self) -> None: ...


class GallerySession:
    """``cfg.gallery`` opened once (or no gallery), for the matcher and the unknown people.

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
            recognizer = self.gallery.recognizer
            if self.gallery.read_only and cfg.unknowns.persist:
                log.warning(
                    "gallery %s is read-only: it is used for matching, unknown people are not kept",
                    cfg.gallery,
                )
        self.dim = recognizer.dim if recognizer is not None else 0
        self.book: UnknownBook | None = None
        self.dropped = 0  # sightings dropped from a full queue
        self._queue: queue.Queue[Sighting | None] = queue.Queue(maxsize=QUEUE_SIZE)
        self._writer: threading.Thread | None = None
        self._crops: dict[str, list[tuple[float, Path]]] = {}  # crops_dir files per label
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
            self.gallery.close()

    def __enter__(self) -> GallerySession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def revision(self) -> int:
        return self.gallery.revision if self.gallery is not None else 0

    def matcher(self) -> Matcher:
        """The confirmed people as they are in the file now."""
        return self.gallery.matcher() if self.gallery is not None else Matcher.empty(self.dim)

    def people(self) -> int:
        return len(self.gallery.people()) if self.gallery is not None else 0

    @property
    def persist(self) -> bool:
        return (
            self.gallery is not None and not self.gallery.read_only and self.cfg.unknowns.persist
        )

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
        elif unk.crops_dir:
            folder = Path(unk.crops_dir).expanduser()
            used = [
                int(m.group(1))
                for p in (folder.iterdir() if folder.is_dir() else [])
                if (m := _LABEL_DIR.match(p.name))
            ]
            book.next_index = max([0, *used]) + 1
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
        if unk.crops_dir and s.crop is not None:
            self._save_crop(Path(unk.crops_dir).expanduser(), s, s.crop)

    def _save_crop(self, folder: Path, s: Sighting, crop: np.ndarray) -> None:
        """The label's best ``unknowns.max_crops`` faces as private JPEG files."""
        target = private_dir(folder / s.label)  # and its parents: 0700
        kept = self._crops.setdefault(s.label, [])
        if len(kept) >= self.cfg.unknowns.max_crops and s.quality <= min(q for q, _ in kept):
            return
        path = target / f"{time.strftime('%Y%m%d-%H%M%S')}-{len(kept)}-{os.getpid()}.jpg"
        ok, buf = cv2.imencode(".jpg", crop)
        if not ok:
            return
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(buf.tobytes())
        kept.append((s.quality, path))
        kept.sort(key=lambda c: -c[0])
        for _, old in kept[self.cfg.unknowns.max_crops :]:
            old.unlink(missing_ok=True)
        del kept[self.cfg.unknowns.max_crops :]
