"""The gallery of a cluster: only the head opens the file, the camera actors get snapshots.

SQLite documents WAL mode as unsafe on network file systems, so no camera actor opens the
gallery. :class:`GalleryFeed` runs on the head (in the driver): it opens the gallery once, has the
head's Recognition service follow its revision every ``cluster.gallery_poll`` seconds (and at
once on SIGHUP) and makes a new :class:`GallerySnapshot` whenever something the actors must take
in has changed: the people to
match (names, templates, owners), the unknown people (labels and their samples), the unknown
labels that died (erased, merged, promoted, or refused by the store). The driver ships each
snapshot once through Ray's object store to every actor.

In an actor, :class:`FedGallery` is the pipeline's gallery
(:class:`~streamrec.gallery.session.PipelineGallery`) made from the latest snapshot, and where the
actor's Recognition service takes the people to match from. Its unknown
people's sightings wait in a bounded buffer until the driver takes them with the events; the
head's session writes them (gallery samples, crop files) as if the cameras ran on the head.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from dataclasses import dataclass

import numpy as np

from streamrec.config import Config
from streamrec.errors import StreamrecError
from streamrec.gallery.matcher import Matcher
from streamrec.gallery.session import QUEUE_SIZE, GallerySession
from streamrec.gallery.store import Recognizer
from streamrec.gallery.unknowns import MAX_SAMPLES, Sighting, UnknownBook
from streamrec.recognition import GalleryChange, Recognition
from streamrec.telemetry import Observer

log = logging.getLogger("streamrec.cluster")

#: dead unknown labels a snapshot still lists (an actor that skipped a snapshot misses none)
DEAD_KEPT = 4096


@dataclass(frozen=True)
class GallerySnapshot:
    """What the camera actors know of the gallery; a new ``version`` for every change."""

    version: int
    #: the recognizer the gallery's embeddings come from (None: no gallery)
    recognizer: Recognizer | None
    people: int
    #: the matcher's arrays (see :class:`Matcher`); ``people_version`` moves when they change
    names: list[str]
    templates: np.ndarray
    owners: np.ndarray
    people_version: int
    #: unknown label -> its newest samples, and the lowest N a new ``unknown-N`` may take
    unknowns: dict[str, np.ndarray]
    next_unknown: int
    #: unknown labels that died recently (the newest ``DEAD_KEPT``)
    dead: frozenset[str]
    #: whether the head keeps sightings of unknown people (a gallery or ``unknowns.crops_dir``)
    sightings: bool


class GalleryFeed:
    """The head's gallery: opened once, followed, turned into snapshots, fed the sightings.

    The head's Recognition service (no models: the head embeds nothing) follows the file; every
    change it hands over becomes a snapshot. ``observer`` hears what the pipeline's observers
    hear on a single-process daemon: the people count (``gallery_loaded``) and every person or
    label that left the gallery (``erased``).
    """

    def __init__(self, cfg: Config, observer: Observer) -> None:
        self.observer = observer
        self.poll = cfg.cluster.gallery_poll
        self.session = GallerySession(cfg, None)  # the head embeds nothing: no model needed
        try:
            # the head assigns no label: the book only mirrors the store's unknown people
            self.book = self.session.unknown_book(threshold=0.0)
            self.recognition = Recognition(None, self.session.gallery)
        except BaseException:
            self.session.close()
            raise
        self._lock = threading.Lock()
        self._revision = -1
        self._people_version = 0
        self._dead: dict[str, None] = {}  # ordered: the newest last
        # checks left that sync even if the revision stays: a refused sighting moves nothing
        self._pending = 0
        self._force = False
        self._forced = False  # the change being taken in was asked for (logged as a reload)
        self._snapshot: GallerySnapshot | None = None
        self._wake = threading.Event()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gallery feed", daemon=True)
        rec = self.recognition
        self._take_in(GalleryChange(rec.revision, rec.matcher(), True, frozenset()))
        rec.subscribe(self._take_in)

    @property
    def snapshot(self) -> GallerySnapshot:
        assert self._snapshot is not None  # made by __init__
        return self._snapshot

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        """Stop following; the sightings handed over are written (bounded wait)."""
        self._done.set()
        self._wake.set()
        if self._thread.ident is not None:
            self._thread.join(5.0)
        self.session.close()

    def reload(self) -> None:
        """Make a new snapshot now, changed or not (SIGHUP; safe in a signal handler)."""
        self._force = True
        self._wake.set()

    def write(self, sightings: list[Sighting]) -> None:
        """Unknown people seen on an actor: written by the head's session (bounded queue)."""
        if not sightings or self.book is None or self.book.on_sighting is None:
            return
        for s in sightings:
            self.book.on_sighting(s)
        self._pending = 2  # the session writes in the background: this check and the next

    def _run(self) -> None:
        while not self._done.is_set():
            self._wake.wait(self.poll)
            self._wake.clear()
            if self._done.is_set():
                return
            try:
                self.refresh()
                self.session.confirm(self._revision)  # taken in (the actors follow at once)
            except StreamrecError as exc:  # a busy or briefly unreadable file: next time
                log.warning("gallery check failed: %s", exc)
            except Exception:
                log.exception("gallery check failed")

    def refresh(self) -> bool:
        """A new snapshot if the gallery changed (or a reload was asked for); True if made."""
        force, self._force = self._force, False
        written, self._pending = self._pending > 0, max(0, self._pending - 1)
        self._forced = force
        try:
            if self.recognition.refresh(force):
                return True
        finally:
            self._forced = False
        if not written or self.book is None:
            return False
        # the sightings written meanwhile may have been refused (an erased label): that kills
        # the label without moving the revision
        dead = self.session.sync(self.book)
        if not dead:
            return False
        rec = self.recognition
        self._make(GalleryChange(rec.revision, rec.matcher(), False, frozenset()), dead)
        return True

    def _take_in(self, change: GalleryChange) -> None:
        """A change handed over by the head's Recognition service."""
        dead = self.session.sync(self.book) if self.book is not None else set()
        self._make(change, dead)

    def _make(self, change: GalleryChange, dead: set[str]) -> None:
        """The next snapshot: ``change``'s people, the store's unknown people, ``dead`` labels."""
        session, book, forced = self.session, self.book, self._forced
        with self._lock:
            self._revision = change.revision
            old = self._snapshot
            if change.changed or old is None:
                self._people_version += 1
            for label in dead:
                self._dead.pop(label, None)
                self._dead[label] = None
            for label in list(self._dead)[:-DEAD_KEPT]:
                del self._dead[label]
            people = session.people()
            matcher = change.matcher
            self._snapshot = GallerySnapshot(
                version=old.version + 1 if old is not None else 1,
                recognizer=session.gallery.recognizer if session.gallery is not None else None,
                people=people,
                names=list(matcher.names),
                templates=matcher.templates,
                owners=matcher.owners,
                people_version=self._people_version,
                unknowns=session.unknown_identities(MAX_SAMPLES) if session.persist else {},
                next_unknown=book.next_index if book is not None else 1,
                dead=frozenset(self._dead),
                sightings=book is not None and book.on_sighting is not None,
            )
        for name in sorted(change.left | dead):
            self.observer.erased(name)
        self.observer.gallery_loaded(people)
        if forced:
            log.info("gallery reloaded: %d people", people)
        elif old is not None:
            # unknown people written by the actors move the revision every second or so
            level = logging.INFO if change.changed or change.left or dead else logging.DEBUG
            log.log(level, "gallery revision %d loaded: %d people", change.revision, people)


class SlotBook(UnknownBook):
    """An actor's book of unknown people whose new labels no other actor gives out: camera
    ``slot`` of ``slots`` numbers its ``unknown-N`` with N = slot (mod slots).

    ``next_index`` always moves to the next number of the actor's own class, whether the book
    assigned a label (+1) or a sync raised it to the store's next free number.
    """

    def __init__(self, threshold: float, max_identities: int, slot: int, slots: int) -> None:
        self.slot, self.slots = slot, slots
        self._next = 0
        super().__init__(threshold, max_identities=max_identities)

    @property
    def next_index(self) -> int:
        return self._next

    @next_index.setter
    def next_index(self, value: int) -> None:
        self._next = value + (self.slot - value) % self.slots


class FedGallery:
    """A camera actor's gallery: the head's latest snapshot, never a file."""

    def __init__(self, cfg: Config, slot: int, slots: int) -> None:
        self.cfg = cfg
        self.slot, self.slots = slot, slots
        self.dropped = 0  # sightings dropped from a full buffer
        self._snapshot: GallerySnapshot | None = None
        self._recognizer: Recognizer | None = None
        self._matcher: tuple[int, Matcher] | None = None  # (people_version, matcher)
        self._forgotten: frozenset[str] = frozenset()  # dead labels already handed to sync
        self._sightings: deque[Sighting] = deque()
        self._lock = threading.Lock()

    def load(self, snapshot: GallerySnapshot) -> None:
        """Take in a newer snapshot (the running pipeline picks it up by its ``revision``)."""
        if self._recognizer is not None:
            _check(snapshot, self._recognizer)
        with self._lock:
            if self._snapshot is None or snapshot.version > self._snapshot.version:
                self._snapshot = snapshot

    def check(self, recognizer: Recognizer) -> None:
        """The actor's own recognizer must be the gallery's (or declared compatible)."""
        self._recognizer = recognizer
        _check(self.snapshot, recognizer)

    @property
    def snapshot(self) -> GallerySnapshot:
        with self._lock:
            if self._snapshot is None:
                raise StreamrecError("no gallery snapshot from the head yet")
            return self._snapshot

    @property
    def revision(self) -> int:
        return self.snapshot.version

    def matcher(self) -> Matcher:
        """The people to match; rebuilt (with its index) only when they changed."""
        snap = self.snapshot
        if self._matcher is None or self._matcher[0] != snap.people_version:
            assert self._recognizer is not None, "check() the recognizer first"
            index_min_size = self.cfg.recognition.index_min_size
            matcher = (
                Matcher(snap.names, snap.templates, snap.owners, index_min_size)
                if snap.names
                else Matcher.empty(self._recognizer.dim)
            )
            self._matcher = (snap.people_version, matcher)
        return self._matcher[1]

    def people(self) -> int:
        return self.snapshot.people

    def unknown_book(self, threshold: float) -> UnknownBook | None:
        """As :meth:`GallerySession.unknown_book`, with labels of the actor's own numbers;
        its sightings are kept for the head (see :meth:`take_sightings`)."""
        unk = self.cfg.unknowns
        if not unk.enabled:
            return None
        book = SlotBook(
            unk.threshold if unk.threshold is not None else threshold,
            unk.max_identities,
            self.slot,
            self.slots,
        )
        self.sync(book)
        if self.snapshot.sightings:
            book.on_sighting = self._keep
        return book

    def sync(self, book: UnknownBook) -> set[str]:
        """Bring the book in line with the head's store; returns the labels that died since
        the last sync (tracks carrying them lose the label)."""
        snap = self.snapshot
        for label, samples in snap.unknowns.items():
            book.seed(label, samples)  # the head's store: what every camera taught
        book.take({}, snap.next_unknown)  # under the book's lock: a label minted meanwhile stays
        dead = set(snap.dead - self._forgotten)
        self._forgotten = snap.dead
        book.forget(dead)
        return dead

    def confirm(self, revision: int) -> None:
        """Nothing to record: the head owns the file (and confirms for its cluster)."""

    def close(self) -> None:
        """Nothing to close: the head owns the file."""

    def _keep(self, sighting: Sighting) -> None:
        with self._lock:
            if len(self._sightings) >= QUEUE_SIZE:
                self._sightings.popleft()  # the oldest, as the head's writer drops them
                self.dropped += 1
                if self.dropped == 1 or self.dropped % 100 == 0:
                    log.warning(
                        "unknown people: the head falls behind, %d sighting(s) dropped",
                        self.dropped,
                    )
            self._sightings.append(sighting)

    def take_sightings(self) -> list[Sighting]:
        """The sightings since the last call, for the head."""
        with self._lock:
            taken = list(self._sightings)
            self._sightings.clear()
        return taken


def _check(snapshot: GallerySnapshot, recognizer: Recognizer) -> None:
    made_with = snapshot.recognizer
    if made_with is None or made_with.sha256 in (recognizer.sha256, *recognizer.compatible):
        return
    raise StreamrecError(
        f"the gallery was made with recognizer {made_with.name} (sha256 "
        f"{made_with.sha256[:12]}...), but this node runs {recognizer.name} (sha256 "
        f"{recognizer.sha256[:12]}...): install the same models.recognizer on every node"
    )
