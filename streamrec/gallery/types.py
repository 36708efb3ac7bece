"""What the gallery hands out and takes: people, unknown people, samples, face images, the
results of changes, the recognizer a gallery belongs to and the policy that shapes people."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from streamrec.errors import GalleryError

if TYPE_CHECKING:
    from streamrec.config import Config

#: JPEG quality of stored face images (112x112 crops: a few kB each)
FACE_JPEG_QUALITY = 90


@dataclass(frozen=True)
class Person:
    id: int  # the row id: how the API addresses them (a name is data, never a path)
    name: str
    embeddings: int  # sample embeddings
    created: float
    subcenters: int = 0  # templates used for matching
    faces: int = 0  # stored face images
    #: their thumbnail's face image: the one the user chose, else the best enrolled photo's
    thumbnail: int | None = None
    thumbnail_chosen: bool = False


@dataclass(frozen=True)
class UnknownPerson:
    """An unconfirmed person found by the pipeline, waiting to be named, merged or purged."""

    id: int
    label: str
    embeddings: int
    faces: int  # stored face images (the best ones)
    first_seen: float
    last_seen: float


@dataclass(frozen=True)
class Sample:
    """One sample: where it came from, and its face image if stored."""

    id: int
    source: str
    created: float
    face: int | None  # id of its face image
    #: added on purpose (a photo, a recognition picked by the user), not from an unknown's sightings
    enrolled: bool = True
    sha256: str | None = None  # of the photo's file, when it was one


@dataclass(frozen=True)
class FaceImage:
    id: int
    person: str
    sample: int | None  # the sample it belongs to (None: a review crop of an unknown)
    jpeg: bytes
    quality: float | None
    source: str
    created: float


@dataclass(frozen=True)
class Stray:
    """A sample dropped because it is too far from its person's dominant sub-center."""

    person: str
    source: str
    angle: float  # degrees to the dominant sub-center
    #: as many samples agree with it as with the kept ones: which are wrong is a guess
    ambiguous: bool = False

    def describe(self) -> str:
        what = (
            f"{'face' if '#' in self.source else 'photo'} {self.source}"
            if self.source
            else "a sample"
        )
        if self.ambiguous:
            return (
                f"{what} is {self.angle:.0f}° from the dominant sub-center of {self.person}, "
                f"but as many photos agree with it as with that one: dropped as inconsistent "
                f"(the earlier photos are kept; add more photos to decide)"
            )
        return (
            f"{what} is {self.angle:.0f}° from the dominant sub-center of {self.person}: "
            f"dropped as a stray (another person?)"
        )


@dataclass(frozen=True)
class AddResult:
    total: int  # samples the person holds afterwards
    strays: list[Stray]  # samples dropped by this change (new or older ones)
    #: sources not added because the person has them already (same source or same face)
    duplicates: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Removed:
    """What an erasure removed; ``labels``: every label the person had (their name first)
    that is nobody else's now: what the event files, MQTT and the crops may still hold."""

    name: str
    samples: int
    faces: int
    labels: tuple[str, ...] = ()
    crops: int = 0  # review crop folders deleted


class NoSuchPerson(GalleryError):
    """No person of that id or name."""


class NameConflict(GalleryError):
    """The name is an enrolled person's: merging into them must be asked for."""


@dataclass(frozen=True)
class Recognizer:
    """Identity of the recognizer a gallery's embeddings come from."""

    name: str
    sha256: str
    dim: int
    #: sha256s of recognizers whose galleries this one's embeddings may join (an INT8 model
    #: declared embedding-compatible with its parent by ``streamrec models optimize``)
    compatible: tuple[str, ...] = ()


@dataclass(frozen=True)
class GalleryPolicy:
    """How the gallery shapes people (the ``enrollment`` and ``unknowns`` config sections)."""

    subcenters: int = 3
    outlier_angle: float = 75.0
    max_crops: int = 5
    #: matchers over this many templates search an approximate index (None = always exact)
    index_min_size: int | None = None
    #: the review crop folders (``unknowns.crops_dir``): deleted with their identities
    crops_dir: Path | None = None

    @classmethod
    def from_config(cls, cfg: Config) -> GalleryPolicy:
        crops = cfg.unknowns.crops_dir
        return cls(
            cfg.enrollment.subcenters,
            cfg.enrollment.outlier_angle,
            cfg.unknowns.max_crops,
            cfg.recognition.index_min_size,
            Path(crops).expanduser() if crops else None,
        )


def encode_face(image: np.ndarray) -> bytes:
    """A face crop (BGR) as the JPEG the gallery stores."""
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, FACE_JPEG_QUALITY])
    if not ok:
        raise GalleryError("cannot encode a face image")
    return buf.tobytes()
