"""The typed records of the face history: what a track leaves, what is stored, what is found."""

from __future__ import annotations

from dataclasses import dataclass

from streamrec.records import TrackSighting

__all__ = ["Erased", "HistoryPolicy", "Hit", "Relabelled", "StoredSighting", "TrackSighting"]


@dataclass(frozen=True)
class StoredSighting:
    """One sighting as the store holds it (the embedding stays in the vector file)."""

    id: int
    camera: str
    first_seen: float
    last_seen: float
    quality: float
    label: str | None
    score: float | None
    identity: int | None  # the identity key: survives renames and naming
    crop: bool  # a crop file exists (``HistoryStore.crop_path(id)``)


@dataclass(frozen=True)
class Hit:
    """A search result: a sighting and how similar its face is to the query."""

    sighting: int  # its id, which also addresses its crop
    similarity: float
    camera: str
    first_seen: float
    last_seen: float
    label: str | None
    score: float | None
    crop: bool


@dataclass(frozen=True)
class Relabelled:
    """One identity whose sightings changed label (one retroactive ``identified`` event each)."""

    identity: int  # the identity key the sightings carry now
    old: str
    new: str
    sightings: int
    first_seen: float | None
    last_seen: float | None
    #: the cameras of its sightings, the one it was seen on last at the end
    cameras: tuple[str, ...] = ()


@dataclass(frozen=True)
class Erased:
    """What :meth:`HistoryStore.erase` removed."""

    sightings: int
    crops: int
    negatives: int


@dataclass(frozen=True)
class HistoryPolicy:
    """How long and how much the history keeps (phase B: the ``history`` config section)."""

    #: sightings whose last sight is older than this many days are purged (0 = keep forever)
    retention_days: float = 30.0
    #: most sightings kept (the oldest go first)
    max_sightings: int = 1_000_000
    #: most bytes of crop files and vectors (the oldest sightings go first; None = no cap)
    max_bytes: int | None = None
    #: sightings waiting for the writer (when full, the worst-quality one is dropped)
    queue_size: int = 256
    #: from this many sightings on, search goes through the approximate index (if installed)
    ann_min_size: int = 2_000_000
