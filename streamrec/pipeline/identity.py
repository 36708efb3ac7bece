"""Track identity from accumulated evidence, with hysteresis.

A track's identity is the gallery match of the (weighted) mean of its embeddings, never of one
frame. An unknown track is named only once at least ``min_embeddings`` embeddings agree above the
threshold; a named track changes name only when another person clearly wins (above threshold plus
``margin``) while the current one has fallen below the threshold.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from streamrec.gallery.store import Matcher


@dataclass
class TrackIdentity:
    track_id: int
    first_frame: int
    first_time: float
    last_frame: int = -1
    last_time: float = 0.0
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
    best_crop: np.ndarray | None = None  # best-quality aligned crop (kept for unknowns)
    best_quality: float = 0.0
    best_request: float = 0.0  # best pre-alignment quality requested so far (detect stage)

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
        mean = ident.mean
        assert mean is not None
        if len(matcher) == 0:
            ident.score = None
            return False
        scores = matcher.person_scores(mean[None])[0]
        best = int(scores.argmax())
        best_name, best_score = matcher.names[best], float(scores[best])
        changed = False
        if ident.name is None:
            if best_score >= self.threshold and ident.embeddings >= self.min_embeddings:
                ident.name, changed = best_name, True
        elif best_name != ident.name:
            current = (
                float(scores[matcher.names.index(ident.name)])
                if ident.name in matcher.names
                else -1.0
            )
            if best_score >= self.threshold + self.margin and current < self.threshold:
                ident.name, changed = best_name, True
        if changed:
            assert ident.name is not None
            ident.names.append(ident.name)
            ident.name_changes += 1
        ident.score = (
            float(scores[matcher.names.index(ident.name)])
            if ident.name is not None and ident.name in matcher.names
            else best_score
        )
        ident.confident = (
            ident.name is not None
            and ident.embeddings >= self.confident_after
            and ident.score >= self.threshold + self.margin
        )
        return changed
