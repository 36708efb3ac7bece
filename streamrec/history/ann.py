"""An approximate index for very large histories: hnswlib's HNSW graph over the slots.

Chosen by measurement (``benchmarks/history_ann.py``: recall@10 on real MobileFaceNet faces plus
distractors, build time and latency against usearch and faiss-cpu). Optional: the ``history``
extra installs hnswlib; without it search stays exact. The index follows the store's slots
(``sync``): new sightings are added, freed slots are marked deleted and their labels reused, so
an erased face is never returned. It proposes candidates only: the store scores them exactly on
the float16 vectors and applies the filters, falling back to the exact scan when too few
candidates pass them.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import numpy as np

log = logging.getLogger("streamrec.history")

#: graph degree and search breadth giving recall@10 >= 0.99 on the media (see the module doc)
M = 32
EF_SEARCH = 128
EF_CONSTRUCTION = 200


def available() -> bool:
    try:
        import hnswlib  # noqa: F401
    except ImportError:
        return False
    return True


class AnnIndex:
    """HNSW (inner product) over the rows of a history, labelled by slot."""

    def __init__(self, dim: int, threads: int = 2) -> None:
        import hnswlib

        self.dim = dim
        self.threads = threads
        self._index: Any = hnswlib.Index(space="ip", dim=dim)
        self._index.init_index(
            max_elements=1024, M=M, ef_construction=EF_CONSTRUCTION, allow_replace_deleted=True
        )
        self._index.set_ef(EF_SEARCH)
        self._indexed = np.zeros(0, np.int64)  # sighting id per slot as indexed (0: none)
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return int((self._indexed > 0).sum())

    def sync(self, sightings: np.ndarray, vectors: np.ndarray) -> None:
        """Bring the index in line with the slots: ``sightings`` [N] (0 = free) and their
        ``vectors`` [N, D]."""
        with self._lock:
            n = len(sightings)
            if len(self._indexed) < n:
                self._indexed = np.concatenate(
                    [self._indexed, np.zeros(n - len(self._indexed), np.int64)]
                )
            now = np.asarray(sightings, np.int64)
            changed = np.flatnonzero(now != self._indexed[:n])
            if len(changed) == 0:
                return
            gone = changed[self._indexed[changed] > 0]
            for slot in gone.tolist():
                self._index.mark_deleted(slot)
            self._indexed[gone] = 0
            new = changed[now[changed] > 0]
            if len(new):
                need = int(self._index.get_current_count()) + len(new)
                if need > self._index.get_max_elements():
                    self._index.resize_index(max(need, 2 * self._index.get_max_elements()))
                for a in range(0, len(new), 65_536):
                    part = new[a : a + 65_536]
                    rows = np.asarray(vectors[part], np.float32)
                    self._index.add_items(
                        rows, part, num_threads=self.threads, replace_deleted=True
                    )
                self._indexed[new] = now[new]

    def candidates(self, query: np.ndarray, k: int) -> np.ndarray:
        """Slots of up to ``k`` approximate nearest rows to ``query``."""
        with self._lock:
            count = len(self)
            if count == 0:
                return np.zeros(0, np.int64)
            self._index.set_ef(max(EF_SEARCH, k))
            labels, _ = self._index.knn_query(
                np.asarray(query, np.float32).reshape(1, self.dim), k=min(k, count), num_threads=1
            )
        return labels[0].astype(np.int64)
