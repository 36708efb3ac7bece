"""Matching faces against a snapshot of the gallery: best person by cosine similarity."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from streamrec.gallery.index import TemplateIndex


class People(Protocol):
    """The people a gallery matches against: names, templates and each template's owner."""

    @property
    def names(self) -> list[str]: ...

    @property
    def templates(self) -> np.ndarray: ...

    @property
    def owners(self) -> np.ndarray: ...


def same_people(a: People, b: People) -> bool:
    """Whether two snapshots of a gallery match faces alike (same names and templates)."""
    return (
        a.names == b.names
        and a.templates.shape == b.templates.shape
        and bool(np.array_equal(a.templates, b.templates))
        and bool(np.array_equal(a.owners, b.owners))
    )


class Matcher:
    """Immutable snapshot of the gallery for fast matching: best person by cosine similarity.

    A person's score is the best similarity over their templates (sub-centers).
    """

    def __init__(
        self,
        names: list[str],
        templates: np.ndarray,
        owners: np.ndarray,
        index_min_size: int | None = None,
    ) -> None:
        self.names = names
        self.templates = templates.astype(np.float32)  # [M, D], L2-normalised
        self.owners = owners.astype(np.int64)  # [M] index into names
        self.index = TemplateIndex(self.templates, min_size=index_min_size)

    @classmethod
    def empty(cls, dim: int) -> Matcher:
        return cls([], np.zeros((0, dim), np.float32), np.zeros((0,), np.int64))

    def __len__(self) -> int:
        return len(self.names)

    def person_scores(self, embeddings: np.ndarray) -> np.ndarray:
        """[N, P] best similarity of each embedding to each person."""
        sims = embeddings @ self.templates.T
        out = np.full((embeddings.shape[0], len(self.names)), -1.0, np.float32)
        np.maximum.at(out.T, self.owners, sims.T)
        return out

    def face_scores(self, faces: np.ndarray, person: int) -> np.ndarray:
        """[K] best similarity of each face to one person's templates (-1: none, or a face
        the person may not be given, see :class:`~streamrec.history.negatives.GuardedMatcher`)."""
        own = self.templates[self.owners == person]
        if not len(own):
            return np.full(len(faces), -1.0, np.float32)
        return np.asarray((faces @ own.T).max(axis=1), np.float32)

    def best(self, embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Index of the best person (or -1 with an empty gallery) and its score, per row."""
        # a person's score is their best template's, so the best person owns the best template
        template, score = self.index.search(embeddings)
        if not len(self.owners):  # everyone erased: nobody to own a template
            return np.full(len(template), -1, np.int64), score
        return np.where(template >= 0, self.owners[np.maximum(template, 0)], -1), score

    def match(
        self, embeddings: np.ndarray, threshold: float
    ) -> list[tuple[str | None, float | None]]:
        """(name, score) per embedding; name is None when the best score is below threshold."""
        idx, scores = self.best(embeddings)
        return [
            (self.names[i] if i >= 0 and s >= threshold else None, float(s) if i >= 0 else None)
            for i, s in zip(idx.tolist(), scores.tolist(), strict=True)
        ]
