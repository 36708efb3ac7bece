"""Exact search by face: the best rows of a float16 matrix for a query, chunk by chunk.

The matrix is memory-mapped; each chunk is converted to float32 into a buffer of its thread and
multiplied with the queries, and only each chunk's best ``k`` survive, so memory stays at a few
chunk buffers whatever the size of the history. Chunks are shared by ``threads`` workers (both
steps release the GIL).

Measured (benchmarks/history_search.py): NumPy converts float16 without SIMD here, ~13x slower
than OpenCV's conversion (F16C), which is exact; the product is ``einsum``, a single-threaded
loop, rather than BLAS, whose own threads thrash under load for a matrix-vector product (p95 100x
its median on a loaded 2-core machine) and would oversubscribe our workers.
"""

from __future__ import annotations

import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import cv2
import numpy as np

from streamrec.history import ann
from streamrec.history.records import Hit

if TYPE_CHECKING:
    from streamrec.history.ann import AnnIndex
    from streamrec.history.store import HistoryStore

log = logging.getLogger("streamrec.history")

#: float32 bytes per chunk: 16 k rows at 128-d, 4 k at 512-d (measured: at 512-d, 16 k-row
#: chunks were 2.5x slower than 4 k-row ones, whose converted block stays in the caches)
CHUNK_BYTES = 8 << 20


def _best(sims: np.ndarray, k: int) -> np.ndarray:
    """Column indices of the ``k`` largest values of each row of ``sims``, unordered."""
    if sims.shape[1] <= k:
        return np.broadcast_to(np.arange(sims.shape[1]), sims.shape)
    return np.argpartition(-sims, k - 1, axis=1)[:, :k]


def _float32(rows: np.ndarray) -> np.ndarray:
    if rows.dtype == np.float16:
        return cv2.multiply(np.ascontiguousarray(rows), 1.0, dtype=cv2.CV_32F)
    return np.asarray(rows, np.float32)


def top_k(
    matrix: np.ndarray,
    queries: np.ndarray,
    k: int,
    valid: np.ndarray | None = None,
    threads: int | None = None,
    chunk: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` rows of ``matrix`` [N, D] most similar (inner product) to each query [Q, D].

    ``valid`` [N] bool restricts the rows (free slots, filters). Returns (rows [Q, k'], sims
    [Q, k']) best first, k' = min(k, valid rows); rows are -1 where fewer rows qualify.
    """
    q = np.ascontiguousarray(queries, np.float32).reshape(-1, matrix.shape[1])
    n = matrix.shape[0] if valid is None else min(matrix.shape[0], valid.shape[0])
    if n == 0 or k <= 0 or len(q) == 0:
        return np.zeros((len(q), 0), np.int64), np.zeros((len(q), 0), np.float32)
    chunk = chunk or max(1024, CHUNK_BYTES // (4 * matrix.shape[1]))
    starts = list(range(0, n, chunk))
    workers = max(1, min(threads or os.cpu_count() or 1, len(starts)))

    def scan(first: int) -> tuple[np.ndarray, np.ndarray]:
        rows_out, sims_out = [], []
        for a in starts[first::workers]:
            b = min(n, a + chunk)
            block = _float32(matrix[a:b])
            sims = np.einsum("qd,nd->qn", q, block)  # [Q, b - a]
            if valid is not None:
                sims[:, ~valid[a:b]] = -np.inf
            pick = _best(sims, k)
            rows_out.append(pick + a)
            sims_out.append(np.take_along_axis(sims, pick, axis=1))
        if not rows_out:
            return np.zeros((len(q), 0), np.int64), np.zeros((len(q), 0), np.float32)
        return np.concatenate(rows_out, axis=1), np.concatenate(sims_out, axis=1)

    if workers == 1:
        parts = [scan(0)]
    else:
        with ThreadPoolExecutor(workers, thread_name_prefix="search") as pool:
            parts = list(pool.map(scan, range(workers)))
    rows = np.concatenate([p[0] for p in parts], axis=1)
    sims = np.concatenate([p[1] for p in parts], axis=1)
    pick = _best(sims, k)
    rows = np.take_along_axis(rows, pick, axis=1)
    sims = np.take_along_axis(sims, pick, axis=1)
    order = np.argsort(-sims, axis=1, kind="stable")
    rows = np.take_along_axis(rows, order, axis=1).astype(np.int64)
    sims = np.take_along_axis(sims, order, axis=1)
    rows[~np.isfinite(sims)] = -1
    return rows, sims.astype(np.float32)


#: candidates asked of the approximate index per query (exactly re-scored)
ANN_CANDIDATES = 256


class HistorySearch:
    """Search by face over a store: the filters on the slots' search data, the exact scan (or
    beyond ``policy.ann_min_size`` rows, with the ``index`` extra, the exact scores of the
    approximate index's candidates), and the hits read from SQLite."""

    def __init__(self, store: HistoryStore) -> None:
        self.store = store
        self.ann: AnnIndex | None = None
        self._lock = threading.Lock()

    def search(
        self,
        query: np.ndarray,
        k: int = 20,
        since: float | None = None,
        until: float | None = None,
        camera: str | None = None,
        min_similarity: float = -1.0,
    ) -> list[Hit]:
        """The sightings whose face is most like ``query`` (an L2-normalised embedding), best
        first; ``since``/``until`` keep sightings overlapping that time span, ``camera`` one
        camera's."""
        meta = self.store.slots.rows()
        matrix = self.store.vectors.rows()
        n = min(len(meta), len(matrix))
        meta = meta[:n]
        valid = meta["sighting"] > 0
        if since is not None:
            valid &= meta["last"] >= since
        if until is not None:
            valid &= meta["first"] <= until
        if camera is not None:
            cam = self.store.camera_id(camera)
            if cam is None:
                return []
            valid &= meta["camera"] == cam
        rows, sims = self._scan(matrix[:n], meta["sighting"], query, k, valid)
        hits = []
        for slot, sim in zip(rows[0].tolist(), sims[0].tolist(), strict=True):
            s = self.store.in_slot(slot) if slot >= 0 and sim >= min_similarity else None
            if s is not None:  # None: deleted meanwhile
                hits.append(
                    Hit(s.id, sim, s.camera, s.first_seen, s.last_seen, s.label, s.score, s.crop)
                )
        return hits

    def _scan(
        self,
        matrix: np.ndarray,
        sightings: np.ndarray,
        query: np.ndarray,
        k: int,
        valid: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        if len(matrix) >= self.store.policy.ann_min_size and ann.available():
            with self._lock:
                if self.ann is None:
                    log.info("face history: building the approximate index (%d rows)", len(matrix))
                    self.ann = ann.AnnIndex(self.store.dim)
                index = self.ann
            index.sync(sightings, matrix)
            cand = index.candidates(query, max(ANN_CANDIDATES, 4 * k))
            cand = np.sort(cand[(cand >= 0) & (cand < len(matrix))])
            cand = cand[valid[cand]]
            if len(cand) >= k:  # else the filters left too few: scan them all
                rows, sims = top_k(matrix[cand], query, k)
                return np.where(rows >= 0, cand[np.maximum(rows, 0)], -1), sims
        return top_k(matrix, query, k, valid)
