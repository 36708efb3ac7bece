"""Track identity from accumulated evidence, with hysteresis.

A track's identity is the person the quality-weighted mean of its embeddings is closest to.
An unknown track is named that person once the mean, with at least ``min_embeddings``
embeddings, reaches the threshold, or once one of its faces reaches the threshold plus
``single_face_margin``; a named track changes name only when another person clearly wins (above
threshold plus ``margin``) while the current one has fallen below the threshold.

The rule is calibrated on the media (``tests/calibrate_quality.py``: video tracks at 15-100% of
their size against 35 people they are not): the quality-weighted mean of a stranger's track never
reached MobileFaceNet's threshold (0.40; highest 0.391 over 2103 track prefixes of 2 to 40
embeddings, no lower with more embeddings: the similarity of two people is a property of the
pair, which averaging does not remove), while single faces of strangers reached 0.426, so one
face alone must reach 0.45 (the threshold plus 0.05, also above the 0.435 that photo pairs of
strangers pass once in a thousand).

Which faces are embedded (:meth:`IdentityPolicy.request`) is decided by the detect stage from
what it sees alone (the track's faces and their quality), never from results that arrive from
another thread, so the same file gives the same evidence however the stages are timed:

- *explore*: ``looks`` faces of each quality (faces within ``better_view`` of each other's
  quality are of one quality): the first two faces of a track, and the first two of every
  clearly better view; and, with growing spacing (``refresh_interval`` frames, doubling up to
  ``max_refresh_interval``), a face at least ``good_face`` times as good as the best seen so far
  (or any face once twice the spacing has passed). A track gathers evidence for as long as it
  lives, at a bounded cost (a few views, then one face per spacing);
- *recheck*: a face ``recheck_gain`` times better than the best one asked for so far.

Once a track is *settled* (named with confidence) its explore requests stop: the detect stage
stops asking as soon as it sees it, and the match stage drops any explore request that was
still in flight, so the evidence a track gets does not depend on when the detect stage noticed.

A new track whose first evidence is close to the evidence of a track that just ended nearby
continues it: the evidence is merged and the unknown-N label carried on, so a track broken by an
occlusion or a missed detection keeps what it learnt (``continues``). A track that is only lost
may still come back (then the two tracks are two faces): a new track that matches it waits, without
an unknown label, and continues it once it has ended; if it comes back, nothing was merged.

One person is in one place: no two tracks open on a camera hold the same name or unknown-N label
(a track whose evidence names a person another open track holds is *blocked* until the name is
free).

:class:`CameraIdentities` owns the identity records of one camera's tracks: the detect stage
starts tracks and asks which faces to embed, the match stage adds evidence and ends tracks, both
through its small interface (one lock), never by touching the records.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field
from enum import Enum

import numpy as np

from streamrec.gallery.matcher import Matcher
from streamrec.gallery.unknowns import UnknownBook
from streamrec.models.quality import evidence_weight
from streamrec.records import FaceJob, Label


class Request(str, Enum):
    """Why a face is embedded: to learn who an unsettled track is, or a clearly better face."""

    EXPLORE = "explore"
    RECHECK = "recheck"


@dataclass
class TrackIdentity:
    track_id: int
    first_frame: int
    first_time: float
    last_frame: int = -1
    last_time: float = 0.0
    last_captured: float | None = None  # wall-clock capture time of its last frame
    first_captured: float | None = None  # ... and of its first
    frames: int = 0
    embeddings: int = 0
    total: np.ndarray | None = None  # weighted sum of embeddings
    weight: float = 0.0
    weight_sq: float = 0.0  # sum of squared weights (effective number of embeddings)
    name: str | None = None
    score: float | None = None  # similarity of the mean embedding to the decided / best person
    confident: bool = False
    settled: bool = False  # was confident once: explore requests stop
    name_changes: int = 0
    names: list[str] = field(default_factory=list)  # every name this track was given, in order
    unknown: str | None = None  # unknown-N label of an unknown track
    best_crop: np.ndarray | None = None  # best-quality aligned crop (unknowns, snapshots)
    best_quality: float = 0.0
    announced: bool = False  # its track_start was emitted (else it never reached the match stage)
    place: tuple[float, float, float] | None = None  # centre x, y and height of its last face
    continues: int | None = None  # the track whose evidence it took over
    continued: bool = False  # another track took over its evidence
    #: a lost track it continues if that one ends without coming back (nothing merged yet)
    awaits: int | None = None
    #: the unknown-N label of the track it continues (carried on when it is not named)
    heir: str | None = None
    #: the person its evidence names, held by another open track of the camera
    blocked: str | None = None
    #: its best embeddings (quality, vector), for the single-face rule; bounded
    kept: list[tuple[float, np.ndarray]] = field(default_factory=list)
    # the request schedule (written by the detect stage only)
    asked: list[float] = field(default_factory=list)  # quality of each face asked for
    last_request: int = -(10**9)  # frame of the last request
    best_seen: float = 0.0  # best quality of any of its faces so far

    @property
    def mean(self) -> np.ndarray | None:
        if self.total is None:
            return None
        norm = float(np.linalg.norm(self.total))
        return self.total / norm if norm > 0 else self.total

    @property
    def effective(self) -> float:
        """Effective number of embeddings (Kish): equal weights count fully, weak ones less."""
        return self.weight * self.weight / self.weight_sq if self.weight_sq > 0 else 0.0


@dataclass
class IdentityPolicy:
    threshold: float
    min_embeddings: int = 2
    confident_after: int = 3
    refresh_interval: int = 10
    max_refresh_interval: int = 80
    margin: float = 0.05
    #: one face reaching the threshold plus this names its track
    single_face_margin: float = 0.05
    recheck_gain: float = 1.5
    #: a due explore request waits for a face at least this good relative to the best seen
    good_face: float = 0.8
    #: faces within this factor of each other's quality are views of the same quality ...
    better_view: float = 1.25
    #: ... of which a track is embedded this many (the better ones first)
    looks: int = 2
    #: embeddings a track keeps for the single-face rule (its best)
    keep: int = 32
    #: a new track continues one that ended (or was lost) at most this many frames before ...
    relink_frames: int = 50
    #: ... at most this many face sizes away, when its evidence matches (threshold)
    relink_distance: float = 2.0
    #: a track whose best face is below this quality gets no ``unknown-N`` label (nor joins
    #: one): poor faces of different people look alike (``unknowns.min_quality``)
    unknown_min_quality: float = 0.0

    def request(self, ident: TrackIdentity, frame_index: int, quality: float) -> Request | None:
        """The schedule's request for this face of the track (None: not now), recorded.

        Depends only on the track's faces so far, not on whether it is settled: the caller
        decides whether an explore request is worth sending.
        """
        ident.best_seen = max(ident.best_seen, quality)
        waited = frame_index - ident.last_request
        asked = ident.asked
        kind: Request | None = None
        if not asked:
            kind = Request.EXPLORE
        elif self.recheck_gain and quality >= max(asked) * self.recheck_gain:
            kind = Request.RECHECK
        elif sum(a * self.better_view >= quality for a in asked) < self.looks:
            kind = Request.EXPLORE  # a view better than (or as good as) too few of the others
        elif waited >= self.refresh_interval:
            spacing = min(
                self.refresh_interval * 2 ** min(len(asked) - 1, 30),
                max(self.max_refresh_interval, self.refresh_interval),
            )
            if (waited >= spacing and quality >= self.good_face * ident.best_seen) or (
                waited >= 2 * spacing
            ):
                kind = Request.EXPLORE
        if kind is not None:
            asked.append(quality)
            ident.last_request = frame_index
        return kind

    def update(
        self,
        ident: TrackIdentity,
        embedding: np.ndarray,
        quality: float,
        matcher: Matcher,
        taken: set[str] | frozenset[str] = frozenset(),
    ) -> bool:
        """Add one embedding of this quality; True when the track's name changed (never to a
        name in ``taken``, see :meth:`decide`)."""
        weight = evidence_weight(quality)
        ident.best_quality = max(ident.best_quality, quality)
        embedding = embedding.astype(np.float32)
        ident.kept.append((quality, embedding))
        if len(ident.kept) > self.keep:
            ident.kept.remove(min(ident.kept, key=lambda k: k[0]))
        vec = embedding * weight
        ident.total = vec if ident.total is None else ident.total + vec
        ident.weight += weight
        ident.weight_sq += weight * weight
        ident.embeddings += 1
        return self.decide(ident, matcher, taken)

    def decide(
        self, ident: TrackIdentity, matcher: Matcher, taken: set[str] | frozenset[str] = frozenset()
    ) -> bool:
        """(Re)decide the track's name from its evidence against ``matcher``; True if it changed.

        Also called when the gallery changes: a person who was erased loses the name at once,
        a person just enrolled is found without waiting for new evidence. A name in ``taken``
        (held by another track open on the camera: one person is not in two places) is not
        given: the track is ``blocked`` on it until it is free.
        """
        mean = ident.mean
        if mean is None:
            return False
        changed = False
        if ident.name is not None and ident.name not in matcher.names:
            ident.name, ident.confident, changed = None, False, True  # erased from the gallery
            ident.settled = False
        ident.blocked = None
        if len(matcher) == 0:
            ident.score = None
        else:
            scores = matcher.person_scores(mean[None])[0]
            best = int(scores.argmax())
            best_name, best_score = matcher.names[best], float(scores[best])
            if ident.name is None:
                single = self.threshold + self.single_face_margin
                if (best_score >= self.threshold and ident.embeddings >= self.min_embeddings) or (
                    self._best_face(ident, matcher, best) >= single
                ):
                    if best_name in taken:
                        ident.blocked = best_name
                    else:
                        ident.name, changed = best_name, True
            elif best_name != ident.name:
                current = float(scores[matcher.names.index(ident.name)])
                if best_score >= self.threshold + self.margin and current < self.threshold:
                    if best_name in taken:
                        ident.blocked = best_name  # keeps its name meanwhile
                    else:
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
        ident.settled = ident.settled or ident.confident
        return changed

    @staticmethod
    def _best_face(ident: TrackIdentity, matcher: Matcher, person: int) -> float:
        """The highest similarity of any of the track's kept faces to ``person``."""
        if not ident.kept:
            return -1.0
        faces = np.stack([vector for _, vector in ident.kept])
        return float(matcher.face_scores(faces, person).max())

    def continues(self, new: TrackIdentity, old: TrackIdentity) -> bool:
        """Whether ``new`` (just starting to gather evidence) is ``old`` seen again."""
        if (
            old.continued
            or old.mean is None
            or new.mean is None
            or old.place is None
            or new.place is None
            or old.last_frame >= new.first_frame
            or new.first_frame - old.last_frame > self.relink_frames
            or (old.name is not None and new.name is not None and old.name != new.name)
        ):
            return False
        (x0, y0, s0), (x1, y1, s1) = old.place, new.place
        near = np.hypot(x1 - x0, y1 - y0) <= self.relink_distance * max(s0, s1)
        return bool(near and float(old.mean @ new.mean) >= self.threshold)


@dataclass(frozen=True)
class Naming:
    """A track was named or renamed (by new evidence or a changed gallery)."""

    track_id: int
    name: str | None  # None: the track lost its name (the person was erased)
    score: float | None
    renamed: bool  # False: the track's first name
    crop: np.ndarray | None  # the track's best face so far
    #: the track's last frame: its index, media time and capture time
    last: tuple[int, float, float | None] = (0, 0.0, None)

    @classmethod
    def of(cls, ident: TrackIdentity) -> Naming:
        renamed = ident.name_changes > 1 or ident.name is None
        last = (ident.last_frame, ident.last_time, ident.last_captured)
        return cls(ident.track_id, ident.name, ident.score, renamed, ident.best_crop, last)


class CameraIdentities:
    """The identity records of one camera's tracks, behind one lock (see the module docstring).

    Labels are exclusive: no two tracks open on the camera (present, or lost and perhaps about
    to come back) hold the same name or the same unknown-N label, whichever way a track gets it
    (its evidence, a changed gallery, an unknown identity, the track it continues).
    """

    def __init__(self, policy: IdentityPolicy) -> None:
        self.policy = policy
        self._tracks: dict[int, TrackIdentity] = {}
        #: recently ended tracks that a new track may continue (bounded)
        self._ended: deque[TrackIdentity] = deque(maxlen=64)
        self._frame = -1  # the frame the match stage is at (:meth:`seen`)
        self._lock = threading.Lock()

    def start(self, track_id: int, frame_index: int, time: float) -> None:
        with self._lock:
            self._tracks[track_id] = TrackIdentity(track_id, frame_index, time)

    def wants_embedding(self, track_id: int, frame_index: int, quality: float) -> Request | None:
        """Whether to embed this face of the track now, and why; the schedule records it."""
        with self._lock:
            ident = self._tracks.get(track_id)
            if ident is None:
                return None
            kind = self.policy.request(ident, frame_index, quality)
            if kind is Request.EXPLORE and ident.settled:
                return None  # settled: the match stage would drop it
            return kind

    def first_looks(self, track_ids: list[int]) -> bool:
        """Whether any of these tracks (not settled) was asked for fewer faces than its first
        decision needs (``min_embeddings``)."""
        need = self.policy.min_embeddings
        with self._lock:
            for track_id in track_ids:
                ident = self._tracks.get(track_id)
                if ident is not None and not ident.settled and len(ident.asked) < need:
                    return True
            return False

    def announce(self, track_id: int) -> None:
        """The track's start was emitted: its end must be too."""
        with self._lock:
            self._tracks[track_id].announced = True

    def __contains__(self, track_id: int) -> bool:
        with self._lock:
            return track_id in self._tracks

    def _names(self, ident: TrackIdentity) -> set[str]:
        """The names held by the camera's other open tracks (lock held)."""
        return {t.name for t in self._tracks.values() if t.name is not None and t is not ident}

    def seen(
        self, track_ids: list[int], frame_index: int, time: float, captured: float | None = None
    ) -> None:
        """These tracks are in this frame (told before the frame's evidence is added).

        A lost track that is back is not the track a newer one was waiting to continue: the
        two are different faces.
        """
        with self._lock:
            self._frame = frame_index
            for track_id in track_ids:
                ident = self._tracks.get(track_id)
                if ident is None:
                    continue
                ident.frames += 1
                ident.last_frame, ident.last_time = frame_index, time
                ident.last_captured = captured or ident.last_captured
                ident.first_captured = ident.first_captured or captured
            back = set(track_ids)
            for ident in self._tracks.values():
                if ident.awaits in back:
                    ident.awaits = None

    def add(self, job: FaceJob, matcher: Matcher) -> tuple[bool, list[Naming]]:
        """Add an embedded face to its started track: whether it was used, and a
        :class:`Naming` for every track whose name changed (this one, or a track waiting for
        the name this one gave up).

        An explore request that arrives after its track settled is not used (see the module
        docstring). A track's first evidence may continue a track that ended nearby, or wait to
        continue a track that is lost nearby (:meth:`end`).
        """
        assert job.embedding is not None
        with self._lock:
            ident = self._tracks[job.track_id]
            if job.request == Request.EXPLORE and ident.settled:
                return False, []
            if job.quality > ident.best_quality or ident.best_crop is None:
                ident.best_crop = job.crop
            x1, y1, x2, y2 = (float(v) for v in job.box)
            ident.place = ((x1 + x2) / 2, (y1 + y2) / 2, max(y2 - y1, 1.0))
            before = ident.name
            self.policy.update(ident, job.embedding, job.quality, matcher, self._names(ident))
            if (
                ident.continues is None
                and ident.awaits is None
                and ident.embeddings <= self.policy.confident_after
            ):
                self._relink(ident, matcher)
            return True, self._named(ident, before, matcher)

    def _named(self, ident: TrackIdentity, before: str | None, matcher: Matcher) -> list[Naming]:
        """The namings after ``ident``'s name may have changed from ``before`` (lock held)."""
        if ident.name == before:
            return []
        return [Naming.of(ident), *self._release(before, matcher)]

    def _release(self, name: str | None, matcher: Matcher) -> list[Naming]:
        """``name`` is free: the tracks blocked on it are decided again (lock held)."""
        namings = []
        for other in list(self._tracks.values()):
            if name is not None and other.blocked == name:
                before = other.name
                self.policy.decide(other, matcher, self._names(other))
                namings += self._named(other, before, matcher)
        return namings

    def _relink(self, ident: TrackIdentity, matcher: Matcher) -> None:
        """Continue a track that ended nearby, or wait for one that is lost nearby (lock held).

        A lost track may come back: the two tracks are then two faces, so nothing is merged
        until it has ended (:meth:`end`).
        """
        for old in reversed(self._ended):
            if self.policy.continues(ident, old):
                self._merge(ident, old, matcher)
                return
        for old in self._tracks.values():
            if old is not ident and old.frames and self.policy.continues(ident, old):
                ident.awaits = old.track_id
                return

    def _merge(self, ident: TrackIdentity, old: TrackIdentity, matcher: Matcher) -> None:
        """``ident`` continues the ended ``old``: it takes over its evidence and its unknown
        label (lock held); the caller reports the change of name."""
        assert old.total is not None and ident.total is not None
        old.continued = True
        ident.continues = old.track_id
        ident.heir = old.unknown
        ident.total = ident.total + old.total
        ident.weight += old.weight
        ident.weight_sq += old.weight_sq
        ident.embeddings += old.embeddings
        ident.kept = sorted(ident.kept + old.kept, key=lambda k: -k[0])[: self.policy.keep]
        if old.best_quality > ident.best_quality:
            ident.best_crop, ident.best_quality = old.best_crop, old.best_quality
        self.policy.decide(ident, matcher, self._names(ident))

    def rematch(self, matcher: Matcher) -> list[Naming]:
        """Re-decide every open track against a changed gallery; the names that changed."""
        with self._lock:
            namings = []
            for ident in list(self._tracks.values()):
                if ident.announced:
                    before = ident.name
                    self.policy.decide(ident, matcher, self._names(ident))
                    namings += self._named(ident, before, matcher)
            return namings

    def drop_labels(self, labels: set[str]) -> None:
        """Tracks carrying these unknown-N labels (erased, merged, promoted) lose them."""
        with self._lock:
            for ident in self._tracks.values():
                if ident.unknown in labels:
                    ident.unknown = None
                if ident.heir in labels:
                    ident.heir = None

    def label_unknown(self, track_id: int, book: UnknownBook, camera: str) -> str | None:
        """Give a track whose evidence says "not in the gallery" its stable unknown-N label
        (once): the label of the track it continues, else the book's; never one that another
        open track of this camera carries. The new label, or None.

        A track waits while it may continue a lost track, while its person is on another track,
        and while its closest unknown identity is held by a lost track (which may come back, or
        end and free its label)."""
        policy = self.policy
        with self._lock:
            ident = self._tracks.get(track_id)
            if (
                ident is None
                or ident.name is not None
                or ident.unknown is not None
                or ident.awaits is not None
                or ident.blocked is not None
                or ident.embeddings < policy.min_embeddings
                or ident.best_quality < policy.unknown_min_quality
                or (ident.score is not None and ident.score >= policy.threshold)
            ):
                return None
            mean = ident.mean
            assert mean is not None
            others = [t for t in self._tracks.values() if t.unknown and t is not ident]
            taken = {t.unknown for t in others if t.unknown}
            if ident.heir is not None and ident.heir not in taken and ident.heir in book:
                ident.unknown = ident.heir
            else:
                lost = {t.unknown for t in others if t.unknown and t.last_frame < self._frame}
                crop, quality = ident.best_crop, ident.best_quality
                ident.unknown = book.assign(mean, taken - lost, crop, quality, camera, lost)
            return ident.unknown

    def label(self, track_id: int) -> Label | None:
        """What to draw on the track in this frame."""
        with self._lock:
            ident = self._tracks.get(track_id)
            if ident is None:
                return None
            return Label(ident.name or ident.unknown, ident.score, ident.name is not None)

    def crop(self, track_id: int) -> np.ndarray | None:
        """The track's best face so far."""
        with self._lock:
            ident = self._tracks.get(track_id)
            return None if ident is None else ident.best_crop

    def end(self, track_id: int, matcher: Matcher) -> tuple[TrackIdentity | None, list[Naming]]:
        """Forget the track: its final record (None if it was never started), and the namings
        of the tracks its end changed: a track that waited to continue it does (the first
        that still matches it), a track blocked on its name may take it."""
        with self._lock:
            ident = self._tracks.pop(track_id, None)
            if ident is None:
                return None, []
            namings = []
            if ident.mean is not None and ident.frames:
                self._ended.append(ident)
            for other in list(self._tracks.values()):
                if other.awaits == track_id:
                    other.awaits = None
                    if self.policy.continues(other, ident):
                        before = other.name
                        self._merge(other, ident, matcher)
                        namings += self._named(other, before, matcher)
            return ident, namings + self._release(ident.name, matcher)

    def open_tracks(self) -> list[int]:
        with self._lock:
            return sorted(self._tracks)
