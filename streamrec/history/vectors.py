"""The embedding matrix of a history: float16 rows in one file, read memory-mapped.

Row ``slot`` holds one sighting's embedding; a deleted sighting's row is zeroed at once (an
erased face leaves no vector behind) and its slot reused. Rows are written with ``pwrite`` and
synced before the store commits the rows that point at them, so a crash never leaves a
committed sighting without its vector (an uncommitted row is reconciled as free on open).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from streamrec.files import private_file

DTYPE = np.float16


class VectorFile:
    """``[slots, dim]`` float16 rows in ``path`` (created 0600)."""

    def __init__(self, path: str | Path, dim: int) -> None:
        self.path = private_file(path)
        self.dim = dim
        self.row_bytes = dim * np.dtype(DTYPE).itemsize
        self._fd = os.open(self.path, os.O_RDWR)
        self._map: np.memmap | None = None

    def close(self) -> None:
        self._map = None
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    @property
    def slots(self) -> int:
        """Rows the file holds (used or free)."""
        return os.fstat(self._fd).st_size // self.row_bytes

    def write(self, slots: Sequence[int], vectors: np.ndarray) -> None:
        rows = np.ascontiguousarray(vectors, DTYPE).reshape(-1, self.dim)
        for slot, row in zip(slots, rows, strict=True):
            os.pwrite(self._fd, row.tobytes(), int(slot) * self.row_bytes)

    def zero(self, slots: Sequence[int]) -> None:
        blank = bytes(self.row_bytes)
        for slot in slots:
            if slot < self.slots:
                os.pwrite(self._fd, blank, int(slot) * self.row_bytes)

    def sync(self) -> None:
        os.fdatasync(self._fd)

    def matrix(self) -> np.ndarray:
        """The rows as a read-only memory map (re-mapped when the file grew)."""
        slots = self.slots
        if self._map is None or self._map.shape[0] != slots:
            if slots == 0:
                return np.zeros((0, self.dim), DTYPE)
            self._map = np.memmap(self.path, DTYPE, "r", shape=(slots, self.dim))
        return self._map
