"""Online grouping of unknown tracks into stable ``unknown-N`` identities.

An unknown track is given a label once its evidence is in: the label of the nearest existing
unknown identity if the track's mean embedding is close enough to it, else a new one. The label
then stays with the track; the identity's centroid learns from every track that ends with it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np


@dataclass
class UnknownIdentity:
    label: str
    total: np.ndarray  # weighted sum of the L2-normalised track means
    tracks: int = 0
    #: mean embeddings of the tracks that ended with this label in this run
    means: list[np.ndarray] = field(default_factory=list)
    #: (crop image, quality) of the best faces, best first
    crops: list[tuple[np.ndarray, float]] = field(default_factory=list)

    @property
    def centroid(self) -> np.ndarray:
        return self.total / max(float(np.linalg.norm(self.total)), 1e-12)


class UnknownBook:
    """The unknown identities of a run (optionally seeded with those of earlier runs)."""

    def __init__(self, threshold: float, first_index: int = 1, max_crops: int = 5) -> None:
        self.threshold = threshold
        self.next_index = first_index
        self.max_crops = max_crops
        self.identities: dict[str, UnknownIdentity] = {}

    def seed(self, label: str, embedding: np.ndarray) -> None:
        """Add an unknown person known from an earlier run."""
        self.identities[label] = UnknownIdentity(label, embedding.astype(np.float32).copy())

    def assign(self, mean: np.ndarray) -> str:
        """Label for a track whose mean embedding is ``mean``: nearest identity or a new one."""
        best_label, best = None, -1.0
        for ident in self.identities.values():
            sim = float(ident.centroid @ mean)
            if sim > best:
                best_label, best = ident.label, sim
        if best_label is not None and best >= self.threshold:
            return best_label
        label = f"unknown-{self.next_index}"
        self.next_index += 1
        self.identities[label] = UnknownIdentity(label, np.zeros_like(mean, dtype=np.float32))
        return label

    def learn(self, label: str, mean: np.ndarray, crop: np.ndarray | None, quality: float) -> None:
        """Fold an ended track into its identity."""
        ident = self.identities[label]
        ident.total = ident.total + mean.astype(np.float32)
        ident.tracks += 1
        ident.means.append(mean.astype(np.float32))
        if crop is not None:
            ident.crops.append((crop, quality))
            ident.crops.sort(key=lambda c: -c[1])
            del ident.crops[self.max_crops :]


def save_crops(book: UnknownBook, folder: str | Path, run_id: str) -> dict[str, list[str]]:
    """Write each unknown identity's best crops as JPEGs into ``folder/<label>/``."""
    saved: dict[str, list[str]] = {}
    for label, ident in book.identities.items():
        if not ident.crops:
            continue
        target = Path(folder).expanduser() / label
        target.mkdir(parents=True, exist_ok=True)
        for i, (crop, _) in enumerate(ident.crops):
            path = target / f"{run_id}-{i}.jpg"
            cv2.imwrite(str(path), crop)
            saved.setdefault(label, []).append(str(path))
    return saved
