"""Sub-centers of one person's embeddings, and the strays among them (after Sub-center ArcFace).

A person keeps every sample embedding; their templates are at most K sub-centers: L2-normalised
means of clusters of samples (several looks: glasses, lighting, age). Two passes of
average-linkage agglomerative clustering on cosine similarity:

1. Groups: merge while the groups are, on average, within ``outlier_angle`` of each other. The
   biggest group is the person (ties: the group holding the earliest sample, so a person's
   established look wins over newly added photos); its mean is the dominant sub-center and any
   sample further than ``outlier_angle`` from it is a stray (another person, a bad crop).
2. Sub-centers: the remaining samples are merged down to ``k = min(K, n // 2)`` clusters (a
   sub-center needs two samples; at least one), and further while two clusters are so similar
   that keeping both adds nothing.

When the biggest groups tie (two photos further apart than the limit, or 2 against 2) nobody
can tell which is wrong: the group with the earliest sample is kept, the others are dropped and
reported as ``ambiguous``.

Samples can be ``trusted`` (photos a user enrolled on purpose, as opposed to faces a camera saw
of an unknown person later named): then only the trusted ones make the groups and the dominant
look, so any number of sightings can never outvote a person's enrolled photos.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: clusters at least this similar (cosine) are always merged: one template serves both
SAME_LOOK = 0.8
#: samples a sub-center needs (below that the person has fewer sub-centers)
MIN_MEMBERS = 2


@dataclass(frozen=True)
class Clustering:
    centers: np.ndarray  # float32 [k, D], L2-normalised; the dominant one first
    members: list[int]  # samples per center
    strays: list[tuple[int, float]]  # (sample index, angle in degrees to the dominant center)
    ambiguous: bool  # the biggest groups tied: the strays are the later ones by convention


def normalise(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, np.float32)
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


def angle_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Angle in degrees between L2-normalised rows of ``a`` and the vector ``b``."""
    return np.degrees(np.arccos(np.clip(a @ b, -1.0, 1.0)))


def agglomerate(x: np.ndarray, max_clusters: int, min_similarity: float) -> list[list[int]]:
    """Average-linkage clustering of the rows of ``x`` (L2-normalised) on cosine similarity.

    Merges the most similar pair while there are more than ``max_clusters`` clusters and that
    pair's similarity is at least ``min_similarity``, or while it is at least ``SAME_LOOK``.
    Clusters come back as sorted sample indices, ordered by their first sample.
    """
    n = len(x)
    clusters: list[list[int]] = [[i] for i in range(n)]
    sim = (x @ x.T).astype(np.float64)
    np.fill_diagonal(sim, -np.inf)
    alive = np.ones(n, bool)
    count = n
    while count > 1:
        flat = int(np.argmax(np.where(alive[:, None] & alive[None, :], sim, -np.inf)))
        a, b = divmod(flat, n)
        best = sim[a, b]
        if not ((count > max_clusters and best >= min_similarity) or best >= SAME_LOOK):
            break
        na, nb = len(clusters[a]), len(clusters[b])
        merged = (na * sim[a] + nb * sim[b]) / (na + nb)  # Lance-Williams, average linkage
        sim[a, :] = merged
        sim[:, a] = merged
        sim[a, a] = -np.inf
        sim[b, :] = -np.inf
        sim[:, b] = -np.inf
        alive[b] = False
        clusters[a] = sorted(clusters[a] + clusters[b])
        clusters[b] = []
        count -= 1
    return sorted((c for c in clusters if c), key=lambda c: c[0])


def cluster_person(
    x: np.ndarray,
    max_centers: int,
    outlier_angle: float | None,
    trusted: np.ndarray | None = None,
) -> Clustering:
    """Sub-centers of one person's samples ``x`` [N, D] (N >= 1, oldest first).

    ``outlier_angle=None`` keeps every sample (unconfirmed people: nothing to judge against).
    ``trusted`` (a mask, with at least one True): only those samples decide the dominant look.
    """
    x = normalise(x)
    strays: list[tuple[int, float]] = []
    keep = np.arange(len(x))
    ambiguous = False
    judges = np.arange(len(x)) if trusted is None else np.flatnonzero(trusted)
    if outlier_angle is not None and len(x) >= 2 and len(judges):
        groups = [
            [int(judges[i]) for i in g]
            for g in agglomerate(x[judges], 1, math.cos(math.radians(outlier_angle)))
        ]
        dominant = max(groups, key=lambda g: (len(g), -g[0]))
        angles = angle_deg(x, normalise(x[dominant].mean(axis=0)))
        far = angles > outlier_angle
        strays = [(int(i), float(angles[i])) for i in np.flatnonzero(far)]
        keep = np.flatnonzero(~far)
        ambiguous = bool(strays) and sum(len(g) == len(dominant) for g in groups) > 1
    kept = x[keep]
    k = max(1, min(max_centers, len(kept) // MIN_MEMBERS))
    clusters = agglomerate(kept, k, -1.0)
    clusters.sort(key=lambda c: (-len(c), c[0]))
    centers = np.stack([normalise(kept[c].mean(axis=0)) for c in clusters])
    return Clustering(centers, [len(c) for c in clusters], strays, ambiguous)
