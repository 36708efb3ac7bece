"""Unknown people that group themselves: incremental DBSCAN of unknown sightings on cosine,
and the merge suggestions between ``unknown-N`` identities it finds.

Each unknown sighting (a track's mean face) is a point. A point with at least ``min_points``
points (itself included) within ``eps`` cosine similarity is a core; cores within ``eps`` of
each other share a group, and a non-core point joins the group of a core near it. Adding a point
only ever joins groups (a union-find), so sightings are added one at a time as tracks end, for
the cost of one matrix-vector product each; removals (retention, erasure) rebuild.

Two ``unknown-N`` labels in one group become a merge suggestion when their evidence is strong:
the similarity of their closest sightings reaches ``suggest`` and, since the pipeline never gives
one label to two faces present together, labels seen at the same time on the same camera are
never suggested (they are two people whatever their faces say). Sightings of poor faces are
left out (``min_quality``): such embeddings crowd together whoever they are.

Chosen by measurement (``benchmarks/history_grouping.py``) over HDBSCAN, which found fewer of
the same-person pairs on the media at the same zero wrong pairs, and is not incremental.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from streamrec.history.store import HistoryStore

#: sightings whose best face is below this quality (expected similarity to the person's own
#: template) are left out: on the media, dark and blurred faces of different people reach 0.94
#: similarity to each other, while above it different people stay below 0.48
MIN_QUALITY = 0.3
#: a merge is suggested when two labels' closest sightings reach the threshold plus this
SUGGEST_MARGIN = 0.1


@dataclass(frozen=True)
class UnknownSighting:
    """What grouping needs of a sighting."""

    id: int
    label: str
    camera: str
    first_seen: float
    last_seen: float
    embedding: np.ndarray  # L2-normalised
    quality: float = 1.0  # of its best face


@dataclass(frozen=True)
class MergeSuggestion:
    """Two unknown identities that look like one person, with the evidence."""

    label: str  # merge this one ...
    into: str  # ... into this one (the one with more sightings)
    similarity: float  # of their closest sightings
    mean_similarity: float  # of their centroids
    sightings: tuple[int, int]  # how many sightings of each support the group


class _UnionFind:
    def __init__(self) -> None:
        self.parent: list[int] = []

    def add(self) -> int:
        self.parent.append(len(self.parent))
        return len(self.parent) - 1

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


class UnknownGroups:
    """Incremental density-based grouping of unknown sightings (see the module docstring)."""

    def __init__(
        self,
        dim: int,
        eps: float = 0.4,
        min_points: int = 2,
        suggest: float = 0.5,
        min_quality: float = MIN_QUALITY,
    ) -> None:
        self.dim = dim
        self.eps = eps
        self.min_points = min_points
        self.suggest = suggest
        self.min_quality = min_quality
        self._reset()

    @classmethod
    def for_threshold(cls, dim: int, threshold: float) -> UnknownGroups:
        """The measured setting: neighbours are faces that would match (``eps`` = the
        recognition threshold), suggestions need ``SUGGEST_MARGIN`` more."""
        return cls(dim, eps=threshold, min_points=2, suggest=threshold + SUGGEST_MARGIN)

    def _reset(self) -> None:
        self.points: list[UnknownSighting] = []
        self._x = np.zeros((0, self.dim), np.float32)
        self._count = np.zeros(0, np.int64)  # neighbours within eps, itself included
        self._core = np.zeros(0, bool)
        self._member = np.zeros(0, bool)  # in a group (a core, or a border point taken by one)
        self._uf = _UnionFind()

    def __len__(self) -> int:
        return len(self.points)

    def add(self, sighting: UnknownSighting) -> bool:
        """One more unknown sighting (O(N) similarities); False (ignored) when its best face is
        below ``min_quality``."""
        if sighting.quality < self.min_quality:
            return False
        v = np.asarray(sighting.embedding, np.float32).reshape(self.dim)
        sims = self._x[: len(self.points)] @ v
        near = np.flatnonzero(sims >= self.eps)
        i = self._uf.add()
        self.points.append(sighting)
        if len(self._x) <= i:  # grow by doubling
            size = max(2 * len(self._x), 64)
            self._x = np.concatenate(
                [self._x, np.zeros((size - len(self._x), self.dim), np.float32)]
            )
            self._count = np.concatenate([self._count, np.zeros(size - len(self._count), np.int64)])
            self._core = np.concatenate([self._core, np.zeros(size - len(self._core), bool)])
            self._member = np.concatenate([self._member, np.zeros(size - len(self._member), bool)])
        self._x[i] = v
        self._count[near] += 1
        self._count[i] = len(near) + 1
        new_cores = [
            int(j) for j in near if not self._core[j] and self._count[j] >= self.min_points
        ]
        if self._count[i] >= self.min_points:
            new_cores.append(i)
        for c in new_cores:
            self._core[c] = self._member[c] = True
        for c in new_cores:  # a new core joins every core near it and takes free border points
            around = np.flatnonzero(self._x[: len(self.points)] @ self._x[c] >= self.eps)
            for j in around.tolist():
                if self._core[j] or not self._member[j]:
                    self._uf.union(c, j)
                    self._member[j] = True
        if not self._member[i]:  # a border point joins a core near it
            cores = [int(j) for j in near if self._core[j]]
            if cores:
                self._uf.union(i, cores[0])
                self._member[i] = True
        return True

    def rebuild(self, sightings: list[UnknownSighting]) -> None:
        """Start again from these sightings (after removals)."""
        self._reset()
        for s in sightings:
            self.add(s)

    def groups(self) -> list[list[int]]:
        """Indices of the points of each group of two or more, largest first."""
        by_root: dict[int, list[int]] = {}
        for i in range(len(self.points)):
            by_root.setdefault(self._uf.find(i), []).append(i)
        return sorted((g for g in by_root.values() if len(g) > 1), key=lambda g: (-len(g), g[0]))

    def suggestions(self) -> list[MergeSuggestion]:
        """Merge suggestions between the unknown labels of each group, strongest first."""
        out = []
        for group in self.groups():
            by_label: dict[str, list[int]] = {}
            for i in group:
                by_label.setdefault(self.points[i].label, []).append(i)
            labels = sorted(by_label)
            for a in range(len(labels)):
                for b in range(a + 1, len(labels)):
                    ia, ib = by_label[labels[a]], by_label[labels[b]]
                    if self._together(ia, ib):
                        continue
                    xa, xb = self._x[ia], self._x[ib]
                    link = float((xa @ xb.T).max())
                    if link < self.suggest:
                        continue
                    ca, cb = _unit(xa.mean(axis=0)), _unit(xb.mean(axis=0))
                    small, big = (
                        (labels[a], labels[b]) if len(ia) < len(ib) else (labels[b], labels[a])
                    )
                    counts = (len(by_label[small]), len(by_label[big]))
                    out.append(MergeSuggestion(small, big, link, float(ca @ cb), counts))
        return sorted(out, key=lambda s: -s.similarity)

    def _together(self, a: list[int], b: list[int]) -> bool:
        """Were sightings of the two sets on one camera at the same time (two people)?"""
        for i in a:
            p = self.points[i]
            for j in b:
                q = self.points[j]
                if (
                    p.camera == q.camera
                    and p.first_seen <= q.last_seen
                    and q.first_seen <= p.last_seen
                ):
                    return True
        return False


def matching_unknowns(
    store: HistoryStore, templates: np.ndarray, threshold: float
) -> list[tuple[str, float, int]]:
    """The ``unknown-N`` identities of a history whose face matches a person's ``templates``
    [T, D] (the mean of their sightings reaches ``threshold``): (label, similarity, sightings),
    best first. Enrolling a person names these back in time (``naming.relabel`` each)."""
    _, labels, vectors = store.labelled(unknown_only=True)
    t = np.asarray(templates, np.float32).reshape(-1, store.dim)
    out = []
    for label in sorted(set(labels)):
        mean = _unit(vectors[[i for i, lab in enumerate(labels) if lab == label]].mean(axis=0))
        score = float((t @ mean).max())
        if score >= threshold:
            out.append((label, score, labels.count(label)))
    return sorted(out, key=lambda m: -m[1])


def _unit(v: np.ndarray) -> np.ndarray:
    return v / max(float(np.linalg.norm(v)), 1e-12)
