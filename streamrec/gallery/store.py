"""The gallery: enrolled people, their samples, face images and sub-centers, and the unknown
people the pipeline found, in one SQLite file.

:class:`Gallery` is the file opened once with its stores: the people (:mod:`.people`), the
unknown people (:mod:`.unknown_store`) and the running pipelines that use it
(:mod:`.watchers`), over one connection and lock (:mod:`.file`; schema and migrations:
:mod:`.schema`; rows and the lineage of labels: :mod:`.rows`).

Names are data, never paths: every entry point checks a new name with :func:`validate_name`
(one rule, :mod:`.names`), people are found by their row id or their exact name, and the review
crop folders of ``unknowns.crops_dir`` are numbered (:mod:`~streamrec.gallery.crops`). Every label
a person had is kept as their lineage, so that erasing them erases what was written under any
of those labels; the files of every identity the gallery erases, purges, evicts or folds away
are deleted with it.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from urllib.parse import quote

from streamrec.errors import GalleryError
from streamrec.gallery.names import InvalidName, validate_name
from streamrec.gallery.people import PeopleStore
from streamrec.gallery.types import (
    AddResult,
    FaceImage,
    GalleryPolicy,
    NameConflict,
    NoSuchPerson,
    Person,
    Recognizer,
    Removed,
    Sample,
    Stray,
    UnknownPerson,
    encode_face,
)
from streamrec.gallery.unknown_store import UnknownStore
from streamrec.gallery.watchers import WATCH_BEAT, RunningPipelines, Watcher

__all__ = [
    "WATCH_BEAT",
    "AddResult",
    "FaceImage",
    "Gallery",
    "GalleryPolicy",
    "InvalidName",
    "NameConflict",
    "NoSuchPerson",
    "Person",
    "Recognizer",
    "Removed",
    "Sample",
    "Stray",
    "UnknownPerson",
    "Watcher",
    "encode_face",
    "open_existing",
    "validate_name",
]


class Gallery(PeopleStore, UnknownStore, RunningPipelines):
    """People, unknown people and running pipelines of one gallery file (WAL mode, versioned
    schema). One object may be used from several threads: every call takes its lock."""


def open_existing(path: str | Path, policy: GalleryPolicy | None = None) -> Gallery:
    """Open an existing gallery with the recognizer it records (for listing and removal)."""
    p = Path(path)
    if not p.is_file():
        raise GalleryError(f"gallery not found: {p}")
    return Gallery(p, recorded_recognizer(p, "gallery"), policy)


def recorded_recognizer(path: Path, what: str) -> Recognizer:
    """The recognizer an existing streamrec file (a gallery, a face history) records, read
    without changing it; GalleryError saying it is not a streamrec ``what`` otherwise."""
    # a read-only file (or folder) gets no -shm made beside it: it stays readable by anyone
    writable = os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)
    frozen = "" if writable else "&immutable=1"
    try:
        db = sqlite3.connect(f"file:{quote(str(path.resolve()))}?mode=ro{frozen}", uri=True)
        try:
            meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
        finally:
            db.close()
    except sqlite3.DatabaseError:
        raise GalleryError(f"{path} is not a streamrec {what}") from None
    try:
        name = meta.get("recognizer_name", "recorded")
        return Recognizer(name, meta["recognizer_sha256"], int(meta["dim"]))
    except (KeyError, ValueError):
        raise GalleryError(f"{path} is not a streamrec {what} (no recognizer recorded)") from None
