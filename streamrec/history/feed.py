"""The face history of a running pipeline: every ended track's sighting is stored, the
gallery's namings reach the past, and the negatives guard the matcher.

:class:`HistoryFeed` is an event sink (closed with the others, on every exit path): each
``track_end`` carrying a :class:`~streamrec.records.TrackSighting` goes to a bounded
:class:`~.writer.HistoryWriter` (retention and caps applied at start, then hourly). Every
``poll`` seconds it looks at the gallery's revision: when it moved, identities the gallery
named, merged or renamed since (by this process or another: the CLI, the API) are named back
in time (:func:`~.naming.follow`) and one ``identified`` event with ``retroactive: true`` per
identity goes to ``emit`` (the run's event sinks).

:class:`GuardedPeople` is where the process's Recognition service takes its people from: the
gallery's, each snapshot a :class:`~.negatives.GuardedMatcher` with the negatives. A rejection
moves the gallery's revision (``Gallery.touch``), so every Recognition service of every process
takes it in through its one change mechanism (the pipeline, the APIs, the Frigate bridge).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable

from streamrec.config import Config
from streamrec.gallery.matcher import Matcher
from streamrec.gallery.store import Gallery, Recognizer, recorded_recognizer
from streamrec.history.grouping import matching_unknowns
from streamrec.history.naming import follow, relabel, retroactive_event
from streamrec.history.negatives import GuardedMatcher, NegativeStore
from streamrec.history.records import HistoryPolicy
from streamrec.history.store import HistoryStore, history_folder
from streamrec.history.writer import HistoryWriter
from streamrec.records import Event

log = logging.getLogger("streamrec.history")


def history_policy(cfg: Config) -> HistoryPolicy:
    h = cfg.history
    return HistoryPolicy(
        h.retention_days, h.max_sightings, h.max_bytes, h.queue_size, h.ann_min_size
    )


def open_history(cfg: Config, recognizer: Recognizer) -> HistoryStore | None:
    """The history of ``cfg.gallery`` (made if new); None without a gallery or when
    ``history.enabled`` is false."""
    if not cfg.gallery or not cfg.history.enabled:
        return None
    return HistoryStore(history_folder(cfg.gallery), recognizer, history_policy(cfg))


def existing_history(cfg: Config) -> HistoryStore | None:
    """The history ``cfg.gallery`` has, opened with the recognizer it records (to list, search
    by stored faces, reject, erase; also when ``history.enabled`` is false now); None if none."""
    if not cfg.gallery:
        return None
    folder = history_folder(cfg.gallery)
    path = folder / "history.db"
    if not path.is_file():
        return None
    recognizer = recorded_recognizer(path, "face history")
    return HistoryStore(folder, recognizer, history_policy(cfg))


def follow_gallery(
    store: HistoryStore,
    gallery: Gallery,
    emit: Callable[[Event], None],
    enrolled: Iterable[str] = (),
    threshold: float | None = None,
) -> int:
    """Name back in time what the gallery renamed, and the unknown identities whose sightings
    match a person just ``enrolled`` (their templates reach ``threshold``); one retroactive
    event each to ``emit``. How many identities were named."""
    changes = follow(store, gallery.renamed())
    new = list(enrolled)
    if new and threshold is not None:
        matcher = gallery.matcher()
        for name in new:
            if name not in matcher.names:
                continue
            own = matcher.templates[matcher.owners == matcher.names.index(name)]
            for label, _, _ in matching_unknowns(store, own, threshold):
                done = relabel(store, label, name)
                if done is not None:
                    changes.append(done)
    for change in changes:
        log.info(
            "face history: %s named back in time (%d sighting(s))", change.new, change.sightings
        )
        emit(retroactive_event(change))
    return len(changes)


class GuardedPeople:
    """A gallery's people as a Recognition service matches them: vetoed by the negatives of
    the history (see the module). ``revision`` is the gallery's own."""

    def __init__(self, gallery: Gallery, store: HistoryStore) -> None:
        self.gallery = gallery
        self.store = store

    @property
    def revision(self) -> int:
        return self.gallery.revision

    def matcher(self) -> Matcher:
        """The gallery's matcher vetoed by its people's negatives (itself when none has any)."""
        matcher = self.gallery.matcher()
        negatives = NegativeStore(self.store).all()
        if not any(name in negatives for name in matcher.names):
            return matcher
        return GuardedMatcher(matcher, negatives)


class HistoryFeed:
    """The history sink of a run (see the module)."""

    def __init__(
        self,
        store: HistoryStore,
        gallery: Gallery | None,
        threshold: float | None = None,
        poll: float = 1.0,
    ) -> None:
        """``threshold``: an enrolled person names the unknown identities of the history
        whose sightings reach it (None: only namings, merges and renames reach the past)."""
        self.store = store
        self.gallery = gallery
        self.threshold = threshold
        self.poll = poll
        self._people: set[str] | None = None  # the enrolled people at the last look
        #: where retroactive ``identified`` events go (set to the run's event sinks)
        self.emit: Callable[[Event], None] = lambda event: None
        self.writer = HistoryWriter(store)
        self._revision: int | None = None
        self._done = threading.Event()
        self._closed = False
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._watch, name="history-names", daemon=True)
        if gallery is not None:
            self._thread.start()

    def write(self, event: Event) -> None:
        if event.event == "track_end" and event.sighting is not None:
            self.writer.put(event.sighting)

    def follow(self) -> None:
        """Take in the gallery's namings now (once per revision)."""
        if self.gallery is None:
            return
        with self._lock:
            revision = self.gallery.revision
            if revision == self._revision:
                return
            people = {p.name for p in self.gallery.people()}
            new = people - self._people if self._people is not None else set()
            follow_gallery(self.store, self.gallery, self.emit, sorted(new), self.threshold)
            self._revision, self._people = revision, people

    def _watch(self) -> None:
        while not self._done.wait(self.poll):
            try:
                self.follow()
            except Exception as exc:  # a busy file: next time
                log.warning("face history: gallery namings not taken in: %s", exc)

    def forget(self, name: str) -> None:
        """A label left the matcher: if it was erased (not renamed, merged or named: those
        stay in the gallery's lineage), its sightings still queued are dropped, so that the
        erasure (``privacy.erase_files``) leaves nothing of them behind."""
        if self.gallery is not None and name in self.gallery.renamed():
            return
        gone = self.writer.discard(lambda s: s.label == name)
        if gone:
            log.info("face history: %d queued sighting(s) of an erased person dropped", gone)

    def health(self) -> dict[str, object]:
        w = self.writer
        return {
            "ok": w.failed == 0,
            "errors": w.failed,
            "dropped": w.dropped,
            "pending": w.pending(),
        }

    def close(self) -> None:
        """Write what is queued, take in the last namings, close the files (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._done.set()
        if self._thread.is_alive():
            self._thread.join(5.0)
        try:
            self.writer.close()
            self.follow()
        except Exception as exc:
            log.error("face history: closing: %s", exc)
        finally:
            self.store.close()


def history_feed(
    cfg: Config, recognizer: Recognizer, gallery: Gallery | None, threshold: float
) -> list[HistoryFeed]:
    """The run's history sink (none without a gallery or with ``history.enabled`` false), as a
    list to put first among the event sinks (closed first: its last retroactive events still
    reach the others)."""
    store = open_history(cfg, recognizer)
    return [] if store is None else [HistoryFeed(store, gallery, threshold)]


def guarded_people(feeds: list[HistoryFeed], gallery: Gallery | None) -> GuardedPeople | None:
    """Where a Recognition service takes its people from when the run keeps a history (None:
    from the gallery itself)."""
    if not feeds or gallery is None:
        return None
    return GuardedPeople(gallery, feeds[0].store)
