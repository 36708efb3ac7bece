"""Sighting crops: one private JPEG file per sighting, addressed by the sighting's id only.

A name never reaches a path: ``crops/000012/123456.jpg`` is sighting 123456. Files are 0600 in
0700 folders, written atomically; ids are never reused (the store's ids only grow).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from streamrec.files import private_dir, write_private
from streamrec.gallery.store import encode_face

log = logging.getLogger("streamrec.history")

#: crops per sub-folder (a million crops in one folder would be slow to list)
PER_FOLDER = 10_000


class CropFiles:
    """The crop files of a history, under ``folder``."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = private_dir(folder)

    def path(self, sighting: int) -> Path:
        return self.folder / f"{int(sighting) // PER_FOLDER:06d}" / f"{int(sighting)}.jpg"

    def write(self, sighting: int, crop: np.ndarray) -> int:
        """Write a sighting's crop; its size in bytes."""
        data = encode_face(crop)
        write_private(self.path(sighting), data)
        return len(data)

    def delete(self, sightings: Iterable[int]) -> int:
        """Delete the crops of these sightings; how many files were there."""
        count = 0
        for s in sightings:
            p = self.path(s)
            try:
                p.unlink()
                count += 1
            except FileNotFoundError:
                pass
            except OSError as exc:  # kept in the store's pending list: retried on next open
                log.warning("cannot delete crop of sighting %d: %s", s, exc)
                raise
        return count

    def ids(self, above: int = 0) -> list[int]:
        """The sighting ids above ``above`` that have a crop file (reconciling after a crash
        looks past the newest committed id: only the newest folders are listed)."""
        found = []
        for sub in self.folder.iterdir():
            if sub.is_dir() and sub.name.isdigit() and (int(sub.name) + 1) * PER_FOLDER > above:
                found += [int(p.stem) for p in sub.glob("*.jpg") if p.stem.isdigit()]
        return [i for i in found if i > above]
