"""Enrolment of people into the gallery from photos.

A photo is recorded with its path and the sha256 of its bytes: the same photo enrolled again,
from here or uploaded on the Faces page, adds nothing.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from streamrec.analyzer import FaceAnalyzer
from streamrec.errors import GalleryError, MediaError
from streamrec.gallery.store import AddResult, Gallery, InvalidName, Stray, validate_name
from streamrec.media import image_files, read_image
from streamrec.models.alignment import align
from streamrec.models.quality import face_quality
from streamrec.progress import progress_bar

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


def _single_face(analyzer: FaceAnalyzer, path: Path) -> tuple[np.ndarray, np.ndarray, float]:
    """Embedding, aligned crop and quality of the one face in an image; MediaError otherwise."""
    image = read_image(path)
    dets = analyzer.detect(image)
    if len(dets) == 0:
        raise MediaError("no face found")
    if len(dets) > 1:
        raise MediaError(f"{len(dets)} faces found, expected one")
    crop = align(image, dets.kps[0], analyzer.embedder.input_size)
    quality = face_quality(dets.boxes[0], dets.kps[0], float(dets.scores[0]), crop)
    return analyzer.embedder.embed([crop])[0], crop, quality


def embed_single_face(analyzer: FaceAnalyzer, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Embedding and aligned crop of the one face in an image; MediaError saying why otherwise."""
    embedding, crop, _ = _single_face(analyzer, path)
    return embedding, crop


def enroll_images(
    analyzer: FaceAnalyzer, gallery: Gallery, name: str, paths: Iterable[Path]
) -> EnrollReport:
    """Add every usable photo of ``name``; files without exactly one face are skipped.

    Photos far from the person's dominant look are dropped as strays (see ``report.dropped``).
    """
    report = EnrollReport(name)
    embeddings, sources, faces, qualities, hashes = [], [], [], [], []
    for path in paths:
        try:
            embedding, face, quality = _single_face(analyzer, path)
            embeddings.append(embedding)
            faces.append(face)
            qualities.append(quality)
            hashes.append(hashlib.sha256(path.read_bytes()).hexdigest())
            sources.append(str(path))
            report.added.append(str(path))
        except (MediaError, OSError) as exc:
            reason = str(exc).replace(f"cannot read image {path}: ", "")
            report.skipped.append((str(path), reason))
            log.debug("%s: skipped: %s", path, reason)
    if embeddings:
        report.record(
            gallery.add(name, np.stack(embeddings), sources, faces, qualities, hashes)
        )
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
    analyzer: FaceAnalyzer, gallery: Gallery, root: Path, progress: bool = False
) -> list[EnrollReport]:
    """Enrol every sub-folder of ``root`` as one person named after the folder; ``progress``:
    a progress bar over the photos (when stderr is a terminal)."""
    photos = {d.name: image_files(d) for d in person_folders(root)}
    with progress_bar(progress, total=sum(map(len, photos.values())), unit="photo") as bar:

        def counted(paths: list[Path]) -> Iterator[Path]:
            for path in paths:
                yield path
                bar.update()

        return [enroll_images(analyzer, gallery, n, counted(p)) for n, p in photos.items()]
