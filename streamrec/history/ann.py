"""An approximate index for very large histories: a faiss inverted-file index over the slots.

Chosen by measurement (``benchmarks/history_ann.py``: recall@10 on real MobileFaceNet faces plus
distractors, build time, latency and memory of hnswlib, usearch and faiss-cpu HNSW and IVF):
IVF-Flat reached recall@10 0.992 (nprobe 16) and 1.000 (nprobe 64) for a fraction of the HNSW
graphs' build time and the least memory, and faiss-cpu is already the optional ``index`` extra
(wheels for x86-64 and ARM; hnswlib is a source build). Without it search stays exact.

The index follows the store's slots (``sync``): new sightings are added, freed slots removed, so
an erased face is never returned; it is trained anew (k-means) once the history has doubled
since it was trained, so its lists keep fitting the faces it holds. It proposes candidates only:
the store scores them exactly on the float16 vectors and applies the filters.
"""

from __future__ import annotations

import logging
import math
import threading
from typing import Any

import numpy as np

log = logging.getLogger("streamrec.history")

#: share of the lists scanned per query (at least ``MIN_NPROBE``): on the media (200 k rows,
#: 1788 lists) 16 lists gave recall@10 0.992 and 64 gave 1.000; 2 % is 36
NPROBE_SHARE = 0.02
MIN_NPROBE = 16
#: training rows per list (k-means)
TRAIN_PER_LIST = 40


def _faiss() -> Any | None:
    try:
        import faiss
    except ImportError:
        return None
    return faiss


def available() -> bool:
    return _faiss() is not None


class AnnIndex:
    """IVF-Flat (inner product) over the rows of a history, labelled by slot."""

    def __init__(self, dim: int, seed: int = 0) -> None:
        self.dim = dim
        self.seed = seed
        faiss = _faiss()
        if faiss is None:
            raise ImportError("faiss-cpu is not installed (pip install 'streamrec[index]')")
        self._faiss: Any = faiss
        self._index: Any = None
        self._trained_on = 0
        self._indexed = np.zeros(0, np.int64)  # sighting id per slot as indexed (0: none)
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return int((self._indexed > 0).sum())

    def sync(self, sightings: np.ndarray, vectors: np.ndarray) -> None:
        """Bring the index in line with the slots: ``sightings`` [N] (0 = free) and their
        ``vectors`` [N, D]."""
        now = np.asarray(sightings, np.int64)
        with self._lock:
            live = int((now > 0).sum())
            if self._index is None or live > 2 * self._trained_on:
                self._build(now, vectors)
                return
            if len(self._indexed) < len(now):
                grown = np.zeros(len(now), np.int64)
                grown[: len(self._indexed)] = self._indexed
                self._indexed = grown
            changed = np.flatnonzero(now != self._indexed[: len(now)])
            gone = changed[self._indexed[changed] > 0]
            if len(gone):
                self._index.remove_ids(self._faiss.IDSelectorBatch(gone.astype(np.int64)))
                self._indexed[gone] = 0
            new = changed[now[changed] > 0]
            if len(new):
                self._index.add_with_ids(np.asarray(vectors[new], np.float32), new)
                self._indexed[new] = now[new]

    def _build(self, now: np.ndarray, vectors: np.ndarray) -> None:
        faiss = self._faiss
        slots = np.flatnonzero(now > 0)
        # 4 sqrt(n) lists, each with enough rows to train it
        nlist = max(1, min(int(4 * math.sqrt(len(slots))), len(slots) // TRAIN_PER_LIST))
        quantizer = faiss.IndexFlatIP(self.dim)
        index = faiss.IndexIVFFlat(quantizer, self.dim, nlist, faiss.METRIC_INNER_PRODUCT)
        rng = np.random.default_rng(self.seed)
        sample = np.sort(rng.choice(slots, min(len(slots), TRAIN_PER_LIST * nlist), False))
        index.train(np.asarray(vectors[sample], np.float32))
        for a in range(0, len(slots), 65_536):
            part = slots[a : a + 65_536]
            index.add_with_ids(np.asarray(vectors[part], np.float32), part)
        index.nprobe = min(nlist, max(MIN_NPROBE, math.ceil(NPROBE_SHARE * nlist)))
        log.info("face history: approximate index of %d rows in %d lists", len(slots), nlist)
        self._index, self._trained_on = index, len(slots)
        self._indexed = np.where(now > 0, now, 0)

    def candidates(self, query: np.ndarray, k: int) -> np.ndarray:
        """Slots of up to ``k`` approximate nearest rows to ``query``."""
        with self._lock:
            if self._index is None or len(self) == 0:
                return np.zeros(0, np.int64)
            _, labels = self._index.search(
                np.asarray(query, np.float32).reshape(1, self.dim), min(k, len(self))
            )
        found = labels[0]
        return found[found >= 0].astype(np.int64)
