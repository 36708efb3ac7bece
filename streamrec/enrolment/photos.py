"""Enrolment of people from photos: each photo with exactly one face is one sample.

A photo is recorded with its path and the sha256 of its bytes: the same photo enrolled again,
from here or uploaded on the Faces page, adds nothing.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from streamrec.errors import GalleryError, MediaError
from streamrec.gallery.names import InvalidName, validate_name
from streamrec.gallery.types import AddResult, Stray
from streamrec.media import image_files, read_image
from streamrec.progress import progress_bar
from streamrec.recognition import NewSample, Recognition

log = logging.getLogger("streamrec.enroll")


@dataclass
class EnrollReport:
    name: str
    added: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, reason)
    #: samples dropped as strays (too far from the dominant sub-center), new or enrolled before
    dropped: list[Stray] = field(default_factory=list)
    #: photos the person already had (same file or same face): nothing to add
    duplicates: list[str] = field(default_factory=list)
    total: int = 0  # embeddings the person holds afterwards

    def record(self, result: AddResult) -> None:
        """Take in the gallery's answer: the total, strays and duplicates no longer counted."""
        self.total = result.total
        self.dropped.extend(result.strays)
        gone = {s.source for s in result.strays} | set(result.duplicates)
        self.duplicates += result.duplicates
        self.added = [a for a in self.added if a not in gone]


def photo_sample(recognition: Recognition, path: Path) -> NewSample:
    """The sample of a photo with exactly one face; MediaError (or OSError) saying why not."""
    face = recognition.single_face(read_image(path))
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return NewSample(face.embedding, face.crop, face.quality, str(path), digest)


def enroll_images(recognition: Recognition, name: str, paths: Iterable[Path]) -> EnrollReport:
    """Add every usable photo of ``name``; files without exactly one face are skipped.

    Photos far from the person's dominant look are dropped as strays (see ``report.dropped``).
    """
    report = EnrollReport(name)
    samples = []
    for path in paths:
        try:
            samples.append(photo_sample(recognition, path))
            report.added.append(str(path))
        except (MediaError, OSError) as exc:
            reason = str(exc).replace(f"cannot read image {path}: ", "")
            report.skipped.append((str(path), reason))
            log.debug("%s: skipped: %s", path, reason)
    if samples:
        report.record(recognition.enrol(name, samples))
    return report


def person_folders(root: Path) -> list[Path]:
    """The sub-folders of ``root``, one per person; GalleryError when there are none (checked
    before a gallery is created, so that a mistake leaves no empty gallery behind)."""
    if not root.is_dir():
        raise GalleryError(f"not a folder: {root} (expected one sub-folder per person)")
    people = sorted(p for p in root.iterdir() if p.is_dir())
    if not people:
        raise GalleryError(f"{root} has no sub-folders (expected one sub-folder per person)")
    for folder in people:
        try:
            validate_name(folder.name)
        except InvalidName as exc:
            raise InvalidName(f"{folder}: the folder's name is the person's name: {exc}") from None
    return people


def import_folder(
    recognition: Recognition, root: Path, progress: bool = False
) -> list[EnrollReport]:
    """Enrol every sub-folder of ``root`` as one person named after the folder; ``progress``:
    a progress bar over the photos (when stderr is a terminal)."""
    photos = {d.name: image_files(d) for d in person_folders(root)}
    with progress_bar(progress, total=sum(map(len, photos.values())), unit="photo") as bar:

        def counted(paths: list[Path]) -> Iterator[Path]:
            for path in paths:
                yield path
                bar.update()

        return [enroll_images(recognition, n, counted(p)) for n, p in photos.items()]
