"""Online grouping of unknown tracks into stable ``unknown-N`` identities.

An unknown track is given a label once its evidence is in: the label of the nearest unknown
identity if the track's mean embedding is close enough to it (and no other track present on
the camera holds that label), else a new one. The label then stays with the track; the
identity's centroid learns from every track that carries it. Every label and every track's
evidence is handed to ``on_sighting`` at once (the gallery session writes it to the store), so
nothing learnt waits for the end of the run.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Sighting:
    """What a track taught about an unknown identity (written to the store as one sample)."""

    label: str
    mean: np.ndarray  # the track's L2-normalised mean embedding
    crop: np.ndarray | None  # its best aligned face
    quality: float
    camera: str


class UnknownBook:
    """The unknown identities a run knows: labels and centroids (sums of track means).

    Thread-safe: the match stage assigns and learns, the gallery watcher syncs from the store.
    Holds at most ``max_identities``; the least recently seen are forgotten first.
    """

    def __init__(
        self,
        threshold: float,
        first_index: int = 1,
        max_identities: int = 1000,
        on_sighting: Callable[[Sighting], None] | None = None,
    ) -> None:
        self.threshold = threshold
        self.next_index = first_index
        self.max_identities = max_identities
        self.on_sighting = on_sighting
        self._labels: list[str] = []
        self._sums: np.ndarray | None = None  # [K, D]
        self._seen: list[int] = []  # a counter value per identity, for least-recently-seen
        self._clock = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._labels)

    def __contains__(self, label: str) -> bool:
        with self._lock:
            return label in self._labels

    @property
    def labels(self) -> list[str]:
        with self._lock:
            return list(self._labels)

    def centroid(self, label: str) -> np.ndarray:
        with self._lock:
            assert self._sums is not None
            row = self._sums[self._labels.index(label)]
        return row / max(float(np.linalg.norm(row)), 1e-12)

    def seed(self, label: str, total: np.ndarray) -> None:
        """Add (or reset) an identity known from the store; ``total`` is a sum of means."""
        with self._lock:
            self._put(label, np.asarray(total, np.float32))

    def _put(self, label: str, total: np.ndarray) -> None:
        self._clock += 1
        if label in self._labels:
            i = self._labels.index(label)
            assert self._sums is not None
            self._sums[i] = total
            self._seen[i] = self._clock
            return
        self._labels.append(label)
        self._seen.append(self._clock)
        row = total[None].astype(np.float32)
        self._sums = row if self._sums is None else np.concatenate([self._sums, row])
        if len(self._labels) > self.max_identities:
            self._drop([int(np.argmin(self._seen))])

    def _drop(self, rows: Iterable[int]) -> None:
        gone = set(rows)
        keep = [i for i in range(len(self._labels)) if i not in gone]
        self._labels = [self._labels[i] for i in keep]
        self._seen = [self._seen[i] for i in keep]
        self._sums = self._sums[keep] if self._sums is not None and keep else None

    def forget(self, labels: Iterable[str]) -> None:
        """Drop identities (erased, merged away or promoted in the store)."""
        with self._lock:
            self._drop([i for i, lab in enumerate(self._labels) if lab in set(labels)])

    def assign(
        self,
        mean: np.ndarray,
        exclude: set[str] | frozenset[str] = frozenset(),
        crop: np.ndarray | None = None,
        quality: float = 0.0,
        camera: str = "",
    ) -> str:
        """Label for a track whose mean embedding is ``mean``: the nearest identity above the
        threshold that is not in ``exclude`` (labels of other tracks present), or a new one."""
        mean = np.asarray(mean, np.float32)
        with self._lock:
            label = None
            if self._sums is not None:
                norms = np.maximum(np.linalg.norm(self._sums, axis=1), 1e-12)
                sims = (self._sums @ mean) / norms
                for i in np.argsort(-sims):
                    if sims[i] < self.threshold:
                        break
                    if self._labels[i] not in exclude:
                        label = self._labels[i]
                        break
            if label is None:
                label = f"unknown-{self.next_index}"
                self.next_index += 1
                self._put(label, np.zeros_like(mean))
            self._add(label, mean)
        self._report(Sighting(label, mean, crop, quality, camera))
        return label

    def learn(
        self, label: str, mean: np.ndarray, crop: np.ndarray | None, quality: float, camera: str
    ) -> None:
        """A track that carried ``label`` ended with this evidence."""
        mean = np.asarray(mean, np.float32)
        with self._lock:
            if label in self._labels:
                self._add(label, mean)
        self._report(Sighting(label, mean, crop, quality, camera))

    def _add(self, label: str, mean: np.ndarray) -> None:
        """Fold a track's mean into an identity's centroid and mark it seen (lock held)."""
        i = self._labels.index(label)
        assert self._sums is not None
        self._sums[i] = self._sums[i] + mean
        self._clock += 1
        self._seen[i] = self._clock

    def _report(self, sighting: Sighting) -> None:
        if self.on_sighting is not None:
            self.on_sighting(sighting)
