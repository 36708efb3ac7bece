"""Who is this face: the Recognition service, one per process. **The name is decided here.**

A face is named after the enrolled person whose best sub-center template is the most similar
to its embedding (cosine), if that similarity reaches ``threshold`` (``recognition.threshold``,
else the recognizer's own; see :meth:`Recognition.identify` and
:meth:`~streamrec.gallery.matcher.Matcher.match`); else it is nobody. A video track applies the
same rule to its evidence (a mean of its faces, weighed by their quality, see
:class:`~streamrec.pipeline.identity.IdentityPolicy`), with this threshold and this matcher.

The service holds the models, ONE matcher snapshot of the gallery and its revision, and is
shared by every part of the process that asks "who is this": the pipeline's match stage, the
REST and CompreFace APIs, the Frigate bridge, enrolment, evaluation and a cluster's head. It
finds faces in images (:meth:`~Recognition.faces`, :meth:`~Recognition.single_face`: with their
aligned crops and embeddings) and changes the gallery (:meth:`~Recognition.enrol`,
:meth:`~Recognition.remove`, ...).

One change mechanism: every change made through the service is handed at once, as a
:class:`GalleryChange`, to whoever subscribed (:meth:`~Recognition.subscribe`; a running
pipeline re-decides its tracks before the call returns). A change made by another process (the
CLI, another daemon) is noticed by the revision check of :meth:`~Recognition.refresh` (a reader
asking for the matcher, the pipeline's periodic check) and handed over the same way.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

from streamrec.errors import GalleryError
from streamrec.gallery.matcher import Matcher, same_people
from streamrec.models.alignment import align
from streamrec.models.quality import face_quality
from streamrec.recognition.faces import FoundFace, NewSample, only_face
from streamrec.records import Detections

if TYPE_CHECKING:
    from streamrec.gallery.store import Gallery
    from streamrec.gallery.types import AddResult, Removed
    from streamrec.models.protocols import FaceModels

log = logging.getLogger("streamrec.recognition")


class People(Protocol):
    """Where the people to match come from: a gallery file, or a cluster head's snapshot."""

    @property
    def revision(self) -> int:
        """Moves with every change."""
        ...

    def matcher(self) -> Matcher: ...


@dataclass(frozen=True)
class GalleryChange:
    """The gallery as a subscriber must take it in."""

    revision: int
    matcher: Matcher
    #: who is matched changed (names or templates): worth a line in the log
    changed: bool
    #: names matched before and not now (erased, renamed, merged away)
    left: frozenset[str]


Subscriber = Callable[[GalleryChange], None]


class Recognition:
    """Who is this face; see the module. ``models``: the detector, recognizer and threshold
    (None: a process that embeds nothing, a cluster's head); ``store``: the gallery file (None:
    nobody is enrolled); ``people``: where the people to match come from when it is not the
    store (a cluster actor's snapshots)."""

    def __init__(
        self,
        models: FaceModels | None,
        store: Gallery | None = None,
        *,
        people: People | None = None,
    ) -> None:
        self.models = models
        self.store = store
        self.threshold = models.threshold if models is not None else 0.0
        self._people: People | None = people if people is not None else store
        dim = (
            models.embedder.dim
            if models is not None
            else store.recognizer.dim
            if store is not None
            else 0
        )
        self._lock = threading.RLock()
        self._subscribers: list[Subscriber] = []
        self._revision = self._people.revision if self._people is not None else 0
        self._matcher = self._people.matcher() if self._people is not None else Matcher.empty(dim)

    # -- who is this -------------------------------------------------------------------------

    @property
    def revision(self) -> int:
        """The gallery revision the matcher was taken from."""
        return self._revision

    def matcher(self) -> Matcher:
        """The enrolled people as they are now (a change by another process is taken in
        first)."""
        self.refresh()
        return self._matcher

    def identify(
        self, faces: Sequence[FoundFace], threshold: float | None = None
    ) -> list[tuple[str | None, float | None]]:
        """(name, score) of each face: the most similar person and the similarity; the name
        is None below ``threshold`` (default: the service's), the score too when nobody is
        enrolled."""
        if not faces:
            return []
        embeddings = np.stack([f.embedding for f in faces])
        return self.matcher().match(embeddings, self.threshold if threshold is None else threshold)

    # -- faces in images ---------------------------------------------------------------------

    def detect(self, image: np.ndarray) -> Detections:
        return self._models().detector.detect(image)

    def crop(self, image: np.ndarray, kps: np.ndarray) -> np.ndarray:
        """The face with these landmarks, aligned for the recognizer."""
        return align(image, kps, self._models().embedder.input_size)

    def embed(self, crops: list[np.ndarray]) -> np.ndarray:
        """L2-normalised embeddings [N, D] of aligned crops."""
        return self._models().embedder.embed(crops)

    def faces(
        self, image: np.ndarray, min_score: float = 0.0, timings: dict[str, float] | None = None
    ) -> list[FoundFace]:
        """Every face of a BGR image whose detector score is at least ``min_score``, in the
        detector's order, with its aligned crop, embedding and quality; ``timings`` gets the
        ms the ``detector`` and the ``calculator`` (alignment and embedder) took."""
        start = time.perf_counter()
        dets = self.detect(image)
        detected = time.perf_counter()
        keep = [i for i in range(len(dets)) if float(dets.scores[i]) >= min_score]
        crops = [self.crop(image, dets.kps[i]) for i in keep]
        embeddings = self.embed(crops)
        if timings is not None:
            timings["detector"] = (detected - start) * 1000.0
            timings["calculator"] = (time.perf_counter() - detected) * 1000.0
        found = []
        for i, crop, embedding in zip(keep, crops, embeddings, strict=True):
            box, kps, score = dets.boxes[i], dets.kps[i], float(dets.scores[i])
            quality = face_quality(box, kps, score, crop)
            found.append(FoundFace(box, kps, score, embedding, crop, quality))
        return found

    def single_face(self, image: np.ndarray, min_score: float = 0.0) -> FoundFace:
        """The one face of an image; :class:`~streamrec.recognition.faces.FaceCountError`
        when it shows none or several."""
        return only_face(self.faces(image, min_score))

    def _models(self) -> FaceModels:
        if self.models is None:
            raise GalleryError("this process has no face models (a cluster's head)")
        return self.models

    # -- changes -----------------------------------------------------------------------------

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """Hand every change of the gallery to ``subscriber`` (from the thread that made or
        noticed it, one change at a time); returns the call that ends it."""
        with self._lock:
            self._subscribers.append(subscriber)

        def unsubscribe() -> None:
            with self._lock:
                if subscriber in self._subscribers:
                    self._subscribers.remove(subscriber)

        return unsubscribe

    def refresh(self, force: bool = False) -> bool:
        """Take in the gallery if its revision moved (or ``force``: again, changed or not) and
        hand the change to every subscriber; True if there was one. A subscriber that fails is
        logged (the others still take the change in)."""
        with self._lock:
            if self._people is not None:
                revision = self._people.revision
                if revision == self._revision and not force:
                    return False
                matcher = self._people.matcher()
            elif force:
                revision, matcher = self._revision, self._matcher
            else:
                return False
            old, self._revision, self._matcher = self._matcher, revision, matcher
            change = GalleryChange(
                revision,
                matcher,
                not same_people(old, matcher),
                frozenset(old.names) - frozenset(matcher.names),
            )
            for subscriber in list(self._subscribers):
                try:
                    subscriber(change)
                except Exception as exc:
                    log.warning("gallery revision %d not taken in: %s", revision, exc)
        return True

    @contextmanager
    def _changing(self) -> Iterator[Gallery]:
        """The store to change; once changed, every subscriber takes the change in."""
        if self.store is None:
            raise GalleryError("no gallery: set 'gallery' in the config")
        yield self.store
        try:
            self.refresh()
        except Exception as exc:  # the file is busy: the next check takes it in
            log.warning("gallery change not taken in at once: %s", exc)

    def enrol(self, name: str, samples: Sequence[NewSample]) -> AddResult:
        """Add samples to ``name`` (created if new, without samples if none; see
        :meth:`Gallery.add`)."""
        with self._changing() as store:
            return store.add(
                name,
                np.stack([s.embedding for s in samples])
                if samples
                else np.zeros((0, store.recognizer.dim), np.float32),  # a person without samples
                [s.source for s in samples],
                [s.crop for s in samples],
                [s.quality for s in samples],
                [s.sha256 for s in samples],
            )

    def remove(self, person: int | str) -> Removed:
        """Erase a person or an unknown person (see :meth:`Gallery.remove`)."""
        with self._changing() as store:
            return store.remove(person)

    def rename(self, person: int | str, name: str) -> str:
        with self._changing() as store:
            return store.rename(person, name)

    def merge(self, source: int | str, target: int | str) -> AddResult:
        with self._changing() as store:
            return store.merge(source, target)

    def promote(self, label: int | str, name: str, merge: bool = False) -> AddResult:
        """Name an unknown person (see :meth:`Gallery.promote`)."""
        with self._changing() as store:
            return store.promote(label, name, merge)

    def delete_sample(self, person: int | str, sample_id: int) -> int:
        with self._changing() as store:
            return store.delete_sample(person, sample_id)

    def set_thumbnail(self, person: int | str, face_id: int | None) -> None:
        with self._changing() as store:
            store.set_thumbnail(person, face_id)
