"""Track identity from accumulated evidence, with hysteresis.

A track's identity is the gallery match of the (weighted) mean of its embeddings, never of one
frame. An unknown track is named only once at least ``min_embeddings`` embeddings agree above the
threshold; a named track changes name only when another person clearly wins (above threshold plus
``margin``) while the current one has fallen below the threshold.

:class:`CameraIdentities` owns the identity records of one camera's tracks: the detect stage
starts tracks and asks which faces to embed, the match stage adds evidence and ends tracks, both
through its small interface (one lock), never by touching the records.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np

from streamrec.gallery.matcher import Matcher
from streamrec.gallery.unknowns import UnknownBook
from streamrec.records import Label


@dataclass
class TrackIdentity:
    track_id: int
    first_frame: int
    first_time: float
    last_frame: int = -1
    last_time: float = 0.0
    last_captured: float | None = None  # wall-clock capture time of its last frame
    frames: int = 0
    embeddings: int = 0
    total: np.ndarray | None = None  # weighted sum of embeddings
    weight: float = 0.0
    name: str | None = None
    score: float | None = None  # similarity of the mean embedding to the decided / best person
    confident: bool = False
    last_request: int = -(10**9)  # frame of the last embedding request (detect stage)
    name_changes: int = 0
    names: list[str] = field(default_factory=list)  # every name this track was given, in order
    unknown: str | None = None  # unknown-N label of an unknown track
    best_crop: np.ndarray | None = None  # best-quality aligned crop (unknowns, snapshots)
    best_quality: float = 0.0
    best_request: float = 0.0  # best pre-alignment quality requested so far (detect stage)
    announced: bool = False  # its track_start was emitted (else it never reached the match stage)

    @property
    def mean(self) -> np.ndarray | None:
        if self.total is None:
            return None
        norm = float(np.linalg.norm(self.total))
        return self.total / norm if norm > 0 else self.total


@dataclass
class IdentityPolicy:
    threshold: float
    min_embeddings: int = 2
    confident_after: int = 3
    refresh_interval: int = 10
    unknown_refresh_interval: int = 15
    margin: float = 0.05
    recheck_gain: float = 1.5

    def needs_embedding(self, ident: TrackIdentity, frame_index: int, quality: float) -> bool:
        """Embed new tracks, then refresh every ``refresh_interval`` frames until settled.

        A track is settled when it is named with confidence, or when ``confident_after``
        embeddings still say "unknown". A settled track is re-checked only when a clearly better
        face (``recheck_gain`` times the best quality embedded so far) comes along; unknown ones
        at most every ``unknown_refresh_interval`` frames. This keeps embeddings per track few.
        """
        waited = frame_index - ident.last_request
        if waited < self.refresh_interval:
            return False
        settled_unknown = ident.name is None and ident.embeddings >= self.confident_after
        if not (ident.confident or settled_unknown):
            return True
        if settled_unknown and waited < self.unknown_refresh_interval:
            return False
        return bool(self.recheck_gain) and quality > ident.best_request * self.recheck_gain

    def update(
        self, ident: TrackIdentity, embedding: np.ndarray, weight: float, matcher: Matcher
    ) -> bool:
        """Add one embedding; return True when the track's name changed (incl. first naming)."""
        vec = embedding.astype(np.float32) * weight
        ident.total = vec if ident.total is None else ident.total + vec
        ident.weight += weight
        ident.embeddings += 1
        return self.decide(ident, matcher)

    def decide(self, ident: TrackIdentity, matcher: Matcher) -> bool:
        """(Re)decide the track's name from its evidence against ``matcher``; True if it changed.

        Also called when the gallery changes: a person who was erased loses the name at once,
        a person just enrolled is found without waiting for new evidence.
        """
        mean = ident.mean
        if mean is None:
            return False
        changed = False
        if ident.name is not None and ident.name not in matcher.names:
            ident.name, ident.confident, changed = None, False, True  # erased from the gallery
        if len(matcher) == 0:
            ident.score = None
        else:
            scores = matcher.person_scores(mean[None])[0]
            best = int(scores.argmax())
            best_name, best_score = matcher.names[best], float(scores[best])
            if ident.name is None:
                if best_score >= self.threshold and ident.embeddings >= self.min_embeddings:
                    ident.name, changed = best_name, True
            elif best_name != ident.name:
                current = float(scores[matcher.names.index(ident.name)])
                if best_score >= self.threshold + self.margin and current < self.threshold:
                    ident.name, changed = best_name, True
            ident.score = (
                float(scores[matcher.names.index(ident.name)])
                if ident.name is not None
                else best_score
            )
        if changed:
            ident.name_changes += 1
            if ident.name is not None:
                ident.names.append(ident.name)
        ident.confident = (
            ident.name is not None
            and ident.score is not None
            and ident.embeddings >= self.confident_after
            and ident.score >= self.threshold + self.margin
        )
        return changed


@dataclass(frozen=True)
class Naming:
    """A track was named or renamed (by new evidence or a changed gallery)."""

    track_id: int
    name: str | None  # None: the track lost its name (the person was erased)
    score: float | None
    renamed: bool  # False: the track's first name
    crop: np.ndarray | None  # the track's best face so far

    @classmethod
    def of(cls, ident: TrackIdentity) -> Naming:
        renamed = ident.name_changes > 1 or ident.name is None
        return cls(ident.track_id, ident.name, ident.score, renamed, ident.best_crop)


class CameraIdentities:
    """The identity records of one camera's tracks, behind one lock (see the module docstring)."""

    def __init__(self, policy: IdentityPolicy) -> None:
        self.policy = policy
        self._tracks: dict[int, TrackIdentity] = {}
        self._lock = threading.Lock()

    def start(self, track_id: int, frame_index: int, time: float) -> None:
        with self._lock:
            self._tracks[track_id] = TrackIdentity(track_id, frame_index, time)

    def wants_embedding(self, track_id: int, frame_index: int, quality: float) -> bool:
        """Whether to embed this face of the track now; a yes is recorded as a request."""
        with self._lock:
            ident = self._tracks.get(track_id)
            if ident is None or not self.policy.needs_embedding(ident, frame_index, quality):
                return False
            ident.last_request = frame_index
            ident.best_request = max(ident.best_request, quality)
            return True

    def announce(self, track_id: int) -> None:
        """The track's start was emitted: its end must be too."""
        with self._lock:
            self._tracks[track_id].announced = True

    def __contains__(self, track_id: int) -> bool:
        with self._lock:
            return track_id in self._tracks

    def add(
        self,
        track_id: int,
        embedding: np.ndarray,
        weight: float,
        crop: np.ndarray | None,
        matcher: Matcher,
    ) -> Naming | None:
        """Add one embedding to a started track; a :class:`Naming` when its name changed."""
        with self._lock:
            ident = self._tracks[track_id]
            weight = max(weight, 1e-3)
            if crop is not None and weight > ident.best_quality:
                ident.best_crop, ident.best_quality = crop, weight
            if not self.policy.update(ident, embedding, weight, matcher):
                return None
            return Naming.of(ident)

    def rematch(self, matcher: Matcher) -> list[Naming]:
        """Re-decide every open track against a changed gallery; the names that changed."""
        with self._lock:
            return [
                Naming.of(ident)
                for ident in self._tracks.values()
                if ident.announced and self.policy.decide(ident, matcher)
            ]

    def drop_labels(self, labels: set[str]) -> None:
        """Tracks carrying these unknown-N labels (erased, merged, promoted) lose them."""
        with self._lock:
            for ident in self._tracks.values():
                if ident.unknown in labels:
                    ident.unknown = None

    def label_unknown(self, track_id: int, book: UnknownBook, camera: str) -> str | None:
        """Give a track whose evidence says "not in the gallery" its stable unknown-N label
        (once, never one another open track of this camera carries); the new label or None."""
        policy = self.policy
        with self._lock:
            ident = self._tracks.get(track_id)
            if (
                ident is None
                or ident.name is not None
                or ident.unknown is not None
                or ident.embeddings < policy.min_embeddings
                or (ident.score is not None and ident.score >= policy.threshold)
            ):
                return None
            mean = ident.mean
            assert mean is not None
            taken = {t.unknown for t in self._tracks.values() if t.unknown and t is not ident}
            ident.unknown = book.assign(
                mean, taken, ident.best_crop, ident.best_quality, camera
            )
            return ident.unknown

    def present(
        self, track_id: int, frame_index: int, time: float, captured: float | None = None
    ) -> Label | None:
        """The track is in this frame: count it and return what to draw on it."""
        with self._lock:
            ident = self._tracks.get(track_id)
            if ident is None:
                return None
            ident.frames += 1
            ident.last_frame, ident.last_time = frame_index, time
            ident.last_captured = captured or ident.last_captured
            return Label(ident.name or ident.unknown, ident.score, ident.name is not None)

    def crop(self, track_id: int) -> np.ndarray | None:
        """The track's best face so far."""
        with self._lock:
            ident = self._tracks.get(track_id)
            return None if ident is None else ident.best_crop

    def end(self, track_id: int) -> TrackIdentity | None:
        """Forget the track; its final record (None if it was never started)."""
        with self._lock:
            return self._tracks.pop(track_id, None)

    def open_tracks(self) -> list[int]:
        with self._lock:
            return sorted(self._tracks)
