"""Online grouping of unknown tracks into stable ``unknown-N`` identities.

An unknown identity is the track means it was given (its *samples*: a track's mean when it was
labelled and when it ended, the newest ``max_samples`` of them), exactly what the gallery keeps
of it; an identity is as close to a track as its closest sample, as a person of the gallery is
as close as their best template. An unknown track is given the label of the closest identity
that reaches the threshold and that no other track open on the camera holds, else a new one;
the label then stays with the track.

Because an identity is its samples, a later run that starts from what an earlier one wrote
knows the same identities as the earlier run knew at its end: the same faces find their labels
again (a track's evidence is the same, so its mean is one of the stored samples), whatever the
order in which the tracks reach their labels. Every label and every track's evidence is handed to
``on_sighting`` at once (the gallery session writes it to the store), so nothing learnt waits for
the end of the run.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

#: newest samples an identity keeps (the gallery keeps more; a run matches against these)
MAX_SAMPLES = 16


@dataclass(frozen=True)
class Sighting:
    """What a track taught about an unknown identity (written to the store as one sample)."""

    label: str
    mean: np.ndarray  # the track's L2-normalised mean embedding
    crop: np.ndarray | None  # its best aligned face
    quality: float
    camera: str


class UnknownBook:
    """The unknown identities a run knows: labels and their samples (L2-normalised means).

    Thread-safe: the match stage assigns and learns, the gallery watcher syncs from the store.
    Holds at most ``max_identities``; the least recently seen are forgotten first.
    """

    def __init__(
        self,
        threshold: float,
        first_index: int = 1,
        max_identities: int = 1000,
        on_sighting: Callable[[Sighting], None] | None = None,
        max_samples: int = MAX_SAMPLES,
    ) -> None:
        self.threshold = threshold
        self.next_index = first_index
        self.max_identities = max_identities
        self.max_samples = max_samples
        self.on_sighting = on_sighting
        self._samples: dict[str, np.ndarray] = {}  # [n, D] per identity, oldest first
        self._seen: dict[str, int] = {}  # a counter value per identity, for least-recently-seen
        #: labels this book forgot to stay within max_identities (the newest ones): the store
        #: may still list them, and taking them back at the next sync would depend on its timing
        self._evicted: dict[str, None] = {}
        self._clock = 0
        self._stacked: tuple[list[str], np.ndarray, np.ndarray] | None = None
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._samples)

    def __contains__(self, label: str) -> bool:
        with self._lock:
            return label in self._samples

    @property
    def labels(self) -> list[str]:
        with self._lock:
            return list(self._samples)

    def seed(self, label: str, samples: np.ndarray) -> None:
        """Add (or reset) an identity known from the store: its samples [n, D], oldest first."""
        with self._lock:
            self._set(label, samples)

    def take(self, identities: dict[str, np.ndarray], next_index: int) -> None:
        """From the store: the identities this book never held (another process's; its own lead,
        the store lags behind them), and the lowest N a new label may take."""
        with self._lock:
            for label, samples in identities.items():
                if label not in self._samples and label not in self._evicted:
                    self._set(label, samples)
            self.next_index = max(self.next_index, next_index)

    def _set(self, label: str, samples: np.ndarray) -> None:
        rows = np.asarray(samples, np.float32).reshape(len(samples), -1)
        self._samples[label] = rows[-self.max_samples :].copy()
        self._touch(label)

    def _touch(self, label: str) -> None:
        """Mark the identity seen; keep within ``max_identities`` (lock held)."""
        self._clock += 1
        self._seen[label] = self._clock
        self._stacked = None
        while len(self._samples) > self.max_identities:
            oldest = min(self._seen, key=self._seen.__getitem__)
            self._drop([oldest])
            self._evicted[oldest] = None
            while len(self._evicted) > self.max_identities:
                del self._evicted[next(iter(self._evicted))]

    def _drop(self, labels: Iterable[str]) -> None:
        for label in labels:
            self._samples.pop(label, None)
            self._seen.pop(label, None)
        self._stacked = None

    def forget(self, labels: Iterable[str]) -> None:
        """Drop identities (erased, merged away or promoted in the store)."""
        with self._lock:
            self._drop([label for label in set(labels) if label in self._samples])

    def _scores(self, mean: np.ndarray) -> dict[str, float]:
        """Each identity's similarity to ``mean``: that of its closest sample (lock held)."""
        if not self._samples:
            return {}
        if self._stacked is None:
            labels = list(self._samples)
            starts = np.cumsum([0] + [len(self._samples[k]) for k in labels[:-1]])
            self._stacked = (labels, starts, np.concatenate(list(self._samples.values())))
        labels, starts, rows = self._stacked
        best = np.maximum.reduceat(rows @ mean, starts)  # each identity's rows are contiguous
        return dict(zip(labels, best.tolist(), strict=True))

    def assign(
        self,
        mean: np.ndarray,
        exclude: set[str] | frozenset[str] = frozenset(),
        crop: np.ndarray | None = None,
        quality: float = 0.0,
        camera: str = "",
        wait: set[str] | frozenset[str] = frozenset(),
    ) -> str | None:
        """Label for a track whose mean embedding is ``mean``: the closest identity that reaches
        the threshold and is not in ``exclude`` (labels of other tracks on the frame), or a new
        one; None (nothing assigned) when that closest identity is in ``wait`` (labels of tracks
        that are lost: the track may be one of them, to be known once they end or come back)."""
        mean = np.asarray(mean, np.float32)
        with self._lock:
            # the closest first; equal scores in the book's order, so the choice is reproducible
            ranked = sorted(self._scores(mean).items(), key=lambda item: -item[1])
            label = next((k for k, s in ranked if s >= self.threshold and k not in exclude), None)
            if label in wait:
                return None
            if label is None:
                label = f"unknown-{self.next_index}"
                self.next_index += 1
                self._samples[label] = mean[None].copy()
                self._touch(label)
            else:
                self._add(label, mean)
        self._report(Sighting(label, mean, crop, quality, camera))
        return label

    def learn(
        self, label: str, mean: np.ndarray, crop: np.ndarray | None, quality: float, camera: str
    ) -> None:
        """A track that carried ``label`` ended with this evidence."""
        mean = np.asarray(mean, np.float32)
        with self._lock:
            if label in self._samples:
                self._add(label, mean)
        self._report(Sighting(label, mean, crop, quality, camera))

    def _add(self, label: str, mean: np.ndarray) -> None:
        """A track's mean becomes one of the identity's samples (lock held)."""
        self._samples[label] = np.concatenate([self._samples[label], mean[None]])[
            -self.max_samples :
        ]
        self._touch(label)

    def _report(self, sighting: Sighting) -> None:
        if self.on_sighting is not None:
            self.on_sighting(sighting)
