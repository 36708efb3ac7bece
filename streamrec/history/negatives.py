""" "Not this person": faces a user rejected for a person keep the matcher from naming them.

The rule: a face closer to one of a person's negatives than to that person's own templates is
not named that person (its score for them becomes -1, so the next best person, if any, is
considered instead). A rejected face is usually a stranger who looks like the person: the same
stranger seen again is closer to the rejected face than to the person, while the person
themself stays closer to their own templates.

A running pipeline matches against a :class:`GuardedMatcher` (it answers like a
:class:`~streamrec.gallery.matcher.Matcher`, its ``face_scores`` too, which the single-face
rule of :class:`~streamrec.pipeline.identity.IdentityPolicy` asks).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np

from streamrec.errors import GalleryError
from streamrec.gallery.matcher import Matcher
from streamrec.history.store import valid_label

if TYPE_CHECKING:
    from streamrec.history.store import HistoryStore


class NegativeRule:
    """Each person's negative faces, and the veto they cast."""

    def __init__(self, names: list[str], negatives: dict[str, np.ndarray]) -> None:
        self.names = names
        #: person index -> their negatives [K, D] (L2-normalised)
        self.by_person = {
            names.index(name): np.asarray(v, np.float32).reshape(len(v), -1)
            for name, v in negatives.items()
            if name in names and len(v)
        }

    def __bool__(self) -> bool:
        return bool(self.by_person)

    def allowed(self, embeddings: np.ndarray, scores: np.ndarray) -> np.ndarray:
        """[N, P] bool: may row i be named person j, given its scores [N, P] (similarity to
        each person's own templates)? False where a negative of j is closer than j is."""
        ok = np.ones(scores.shape, bool)
        e = np.asarray(embeddings, np.float32).reshape(scores.shape[0], -1)
        for person, negs in self.by_person.items():
            ok[:, person] = (e @ negs.T).max(axis=1) <= scores[:, person]
        return ok


class GuardedMatcher(Matcher):
    """A matcher snapshot whose people are vetoed by their negatives (shares the snapshot's
    templates and index: building one costs nothing)."""

    def __init__(self, base: Matcher, negatives: dict[str, np.ndarray]) -> None:
        self.names = base.names
        self.templates = base.templates
        self.owners = base.owners
        self.index = base.index
        self.rule = NegativeRule(base.names, negatives)

    def person_scores(self, embeddings: np.ndarray) -> np.ndarray:
        scores = super().person_scores(embeddings)
        if self.rule:
            scores = np.where(self.rule.allowed(embeddings, scores), scores, -1.0).astype(
                np.float32
            )
        return scores

    def face_scores(self, faces: np.ndarray, person: int) -> np.ndarray:
        scores = super().face_scores(faces, person)
        negs = self.rule.by_person.get(person)
        if negs is None:
            return scores
        closer = (np.asarray(faces, np.float32) @ negs.T).max(axis=1) > scores
        return np.where(closer, -1.0, scores).astype(np.float32)

    def best(self, embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if not self.rule or len(self.names) == 0:
            return super().best(embeddings)
        scores = self.person_scores(
            np.asarray(embeddings, np.float32).reshape(-1, self.templates.shape[1])
        )
        idx = scores.argmax(axis=1)
        best = scores[np.arange(len(scores)), idx]
        return np.where(best > -1.0, idx, -1).astype(np.int64), np.where(
            best > -1.0, best, -1.0
        ).astype(np.float32)


class NegativeStore:
    """The negatives of a history's identities (a table of its file; erased with them)."""

    def __init__(self, store: HistoryStore) -> None:
        self.store = store

    def reject(self, sighting: int) -> str | None:
        """ "Not this person": the sighting loses its label and its face becomes a negative of
        the identity it was given; the label it had (None if it had none)."""
        store = self.store
        with store.transaction() as db:
            row = db.execute(
                "SELECT s.slot, s.identity, i.label FROM sightings s "
                "LEFT JOIN identities i ON i.id = s.identity WHERE s.id = ?",
                (sighting,),
            ).fetchone()
            if row is None:
                raise GalleryError(f"no sighting {sighting} in the history")
            slot, ident, label = row
            if ident is None:
                return None
            vector = np.asarray(store.vectors.rows()[slot], np.float32)
            self._insert(db, ident, vector, sighting)
            db.execute(
                "UPDATE sightings SET identity = NULL, score = NULL WHERE id = ?", (sighting,)
            )
            store.bump(db)
        return str(label)

    def add(self, label: str, vector: np.ndarray, sighting: int | None = None) -> None:
        """A face that is not ``label`` (e.g. from a rejected recognition outside the history)."""
        store = self.store
        vector = np.asarray(vector, np.float32).reshape(store.dim)
        with store.transaction() as db:
            ident = store.identity_of(db, valid_label(label), create=True)
            assert ident is not None
            self._insert(db, ident, vector, sighting)
            store.bump(db)

    @staticmethod
    def _insert(db: Any, ident: int, vector: np.ndarray, sighting: int | None) -> None:
        db.execute(
            "INSERT INTO negatives (identity, vector, sighting, created) VALUES (?, ?, ?, ?)",
            (ident, vector.tobytes(), sighting, time.time()),
        )

    def all(self) -> dict[str, np.ndarray]:
        """Each label's negative faces [K, D] (for :class:`NegativeRule`)."""
        out: dict[str, list[np.ndarray]] = {}
        for label, vector in self.store.read(
            "SELECT i.label, n.vector FROM negatives n JOIN identities i ON i.id = n.identity "
            "ORDER BY n.id"
        ):
            out.setdefault(label, []).append(np.frombuffer(vector, np.float32))
        return {label: np.stack(v) for label, v in out.items()}
