"""Top-1 template search for large galleries: exact NumPy, or (opt-in) a faiss IVF index.

Below ``min_size`` templates (default None: always), or without faiss (the optional ``index``
extra), the search is an exact matrix product. Above it, a faiss inverted-file index scans only
the ``nprobe`` clusters nearest to each query: much faster on millions of templates, but
approximate; its recall on structureless synthetic data is low (see
benchmarks/results/match_scale.md), so it is not enabled by default.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np

log = logging.getLogger("streamrec.index")


def _faiss() -> Any | None:
    try:
        import faiss
    except ImportError:
        return None
    return faiss


class TemplateIndex:
    """Best template (by inner product) for each query row of L2-normalised embeddings."""

    def __init__(
        self,
        templates: np.ndarray,
        min_size: int | None = None,
        nprobe: int = 32,
        seed: int = 0,
    ) -> None:
        self.templates = np.ascontiguousarray(templates, np.float32)
        self.ivf: Any | None = None
        big = min_size is not None and len(self.templates) >= min_size
        faiss = _faiss() if big else None
        if faiss is None:
            if big:
                log.info("faiss not installed (pip install 'streamrec[index]'): exact search")
            return
        n, dim = self.templates.shape
        nlist = max(1, round(math.sqrt(n)))
        quantizer = faiss.IndexFlatIP(dim)
        ivf = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
        sample = np.random.default_rng(seed).choice(n, min(n, 30 * nlist), replace=False)
        ivf.train(self.templates[np.sort(sample)])
        ivf.add(self.templates)
        self.ivf = ivf
        self.nprobe = nprobe

    @property
    def nprobe(self) -> int:
        """Clusters scanned per query: higher = better recall, slower."""
        return int(self.ivf.nprobe) if self.ivf is not None else 0

    @nprobe.setter
    def nprobe(self, value: int) -> None:
        if self.ivf is not None:
            self.ivf.nprobe = max(1, min(value, self.ivf.nlist))

    @property
    def approximate(self) -> bool:
        return self.ivf is not None

    def search(self, embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(template index [N], similarity [N]); index -1 and score -1 with no templates."""
        q = np.ascontiguousarray(embeddings, np.float32).reshape(-1, self.templates.shape[1])
        if len(self.templates) == 0 or len(q) == 0:
            return np.full(len(q), -1, np.int64), np.full(len(q), -1.0, np.float32)
        if self.ivf is not None:
            scores, idx = self.ivf.search(q, 1)
            found = idx[:, 0] >= 0  # -1 when the probed clusters are empty
            return idx[:, 0].astype(np.int64), np.where(found, scores[:, 0], -1.0).astype(
                np.float32
            )
        sims = q @ self.templates.T
        idx = sims.argmax(axis=1)
        return idx.astype(np.int64), sims[np.arange(len(q)), idx]
