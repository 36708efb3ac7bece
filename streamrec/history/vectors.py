"""Fixed-size rows addressed by slot in one file, read memory-mapped: the history's embeddings
(float16) and, beside them, what search filters on (sighting id, times, camera).

A deleted sighting's rows are zeroed at once (an erased face leaves no vector behind) and the
slot is reused. Rows are written with ``pwrite`` and synced before the store commits the rows
that point at them, so a crash never leaves a committed sighting without its rows (rows of a
sighting that never committed are found and zeroed on open).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from streamrec.files import private_file

#: what search needs of a slot without asking SQLite (sighting 0: a free slot)
SLOT_META = np.dtype(
    [("sighting", "<i8"), ("first", "<f8"), ("last", "<f8"), ("camera", "<i4"), ("pad", "<i4")]
)


class RowFile:
    """``[slots]`` rows of ``dtype`` (a sub-array dtype for vectors) in ``path`` (0600)."""

    def __init__(self, path: str | Path, dtype: np.dtype) -> None:
        self.path = private_file(path)
        self.dtype = np.dtype(dtype)
        self.row_bytes = self.dtype.itemsize
        self._fd = os.open(self.path, os.O_RDWR)
        self._map: np.memmap | None = None

    @classmethod
    def vectors(cls, path: str | Path, dim: int) -> RowFile:
        """Float16 embeddings of ``dim`` values a row."""
        return cls(path, np.dtype((np.float16, (dim,))))

    def close(self) -> None:
        self._map = None
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    @property
    def slots(self) -> int:
        """Rows the file holds (used or free)."""
        return os.fstat(self._fd).st_size // self.row_bytes

    def write(self, slots: Sequence[int], rows: np.ndarray) -> None:
        data = np.ascontiguousarray(rows).view(np.uint8).reshape(len(slots), self.row_bytes)
        for slot, row in zip(slots, data, strict=True):
            os.pwrite(self._fd, row.tobytes(), int(slot) * self.row_bytes)

    def zero(self, slots: Sequence[int]) -> None:
        blank = bytes(self.row_bytes)
        size = self.slots
        for slot in slots:
            if slot < size:
                os.pwrite(self._fd, blank, int(slot) * self.row_bytes)

    def sync(self) -> None:
        os.fdatasync(self._fd)

    def rows(self) -> np.ndarray:
        """The rows as a read-only memory map (re-mapped when the file grew): [slots] of the
        dtype, or [slots, dim] for vectors."""
        slots = self.slots
        if self._map is None or len(self._map) != slots:
            if slots == 0:
                return np.zeros((0, *self.dtype.shape), self.dtype.base)
            self._map = np.memmap(self.path, self.dtype, "r", shape=(slots,))
        return self._map
