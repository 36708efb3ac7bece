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

import os
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np

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
