"""The gallery: enrolled people, their samples, face images and sub-centers in one SQLite file.

The file records the recognizer (name + sha256) it was made with; opening it with another
recognizer is refused, since embeddings of different models are not comparable.

Every sample embedding is kept with where it came from and, when there is one, its aligned face
image (a small JPEG in the file itself, so nothing of a person lives outside it); on each change
of a person their sub-centers (at most ``enrollment.subcenters`` templates) are recomputed and
samples too far from the dominant one are dropped as strays (see ``subcenters``). Matching uses
the best sub-center of each person.

Unconfirmed people (``unknown-N`` found by the pipeline, with their best faces for review) live
in the same tables with ``confirmed = 0``: they are never matched as people, until promoted. An
``unknown-N`` label that was erased, merged away or promoted is tombstoned: no writer (a running
pipeline included) can bring it back, and it is never handed out again.

Names are data, never paths: every entry point checks a new name with :func:`validate_name`
(one rule), people are found by their row id or their exact name, and the review crop folders of
``unknowns.crops_dir`` are numbered (:mod:`~streamrec.gallery.crops`). Every label a person had
(an ``unknown-N`` named or merged in, an earlier name) is kept as their lineage, so that erasing
them erases what was written under any of those labels; the files of every identity the gallery
erases, purges, evicts or folds away are deleted with it.

Every change bumps a revision counter, so running pipelines notice changes made by any process
(the CLI, the daemon's API) within a poll. Running pipelines record the revision they have taken
in (:meth:`Gallery.watch`), so an erasure can wait until nothing running still knows the person.
Deleted data is overwritten (``secure_delete``) and the write-ahead log is checkpointed after
deletions, so erased faces do not linger in the file.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

import cv2
import numpy as np

from streamrec.errors import GalleryError
from streamrec.files import private_file
from streamrec.gallery.crops import CropFolders
from streamrec.gallery.matcher import Matcher
from streamrec.gallery.subcenters import cluster_person

if TYPE_CHECKING:
    from streamrec.config import Config

log = logging.getLogger("streamrec.gallery")

SCHEMA_VERSION = 4

#: newest samples kept per unconfirmed person (the pipeline adds some for every track)
MAX_UNKNOWN_SAMPLES = 64
#: cosine above which two samples of a person are the same face (the same photo enrolled twice)
_SAME_SAMPLE = 0.9999
#: JPEG quality of stored face images (112x112 crops: a few kB each)
FACE_JPEG_QUALITY = 90
#: a running pipeline confirms what it has taken in at least this often (seconds) ...
WATCH_BEAT = 2.0
#: ... and is taken for gone (crashed, killed) when it has not for this long
WATCH_STALE = 15.0

_UNKNOWN_LABEL = re.compile(r"^unknown-(\d+)$")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS people (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created REAL NOT NULL,
    confirmed INTEGER NOT NULL DEFAULT 1,
    last_seen REAL,
    thumbnail INTEGER
);
CREATE TABLE IF NOT EXISTS embeddings (
    id INTEGER PRIMARY KEY,
    person_id INTEGER NOT NULL REFERENCES people(id) ON DELETE CASCADE,
    vector BLOB NOT NULL,
    source TEXT,
    created REAL NOT NULL,
    enrolled INTEGER NOT NULL DEFAULT 1,
    sha256 TEXT
);
CREATE INDEX IF NOT EXISTS embeddings_person ON embeddings(person_id);
CREATE TABLE IF NOT EXISTS subcenters (
    id INTEGER PRIMARY KEY,
    person_id INTEGER NOT NULL REFERENCES people(id) ON DELETE CASCADE,
    vector BLOB NOT NULL,
    members INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS subcenters_person ON subcenters(person_id);
CREATE TABLE IF NOT EXISTS faces (
    id INTEGER PRIMARY KEY,
    person_id INTEGER NOT NULL REFERENCES people(id) ON DELETE CASCADE,
    sample_id INTEGER REFERENCES embeddings(id) ON DELETE CASCADE,
    jpeg BLOB NOT NULL,
    quality REAL,
    source TEXT,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS faces_person ON faces(person_id);
CREATE INDEX IF NOT EXISTS faces_sample ON faces(sample_id);
CREATE TABLE IF NOT EXISTS tombstones (label TEXT PRIMARY KEY, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS lineage (
    person_id INTEGER NOT NULL REFERENCES people(id) ON DELETE CASCADE,
    label TEXT NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (person_id, label)
);
CREATE TABLE IF NOT EXISTS watchers (
    id INTEGER PRIMARY KEY,
    pid INTEGER NOT NULL,
    host TEXT NOT NULL,
    started REAL NOT NULL,
    beat REAL NOT NULL,
    revision INTEGER NOT NULL
);
"""

#: schema 1 -> 2: unconfirmed people (confirmed, last_seen)
_MIGRATE_1 = """
ALTER TABLE people ADD COLUMN confirmed INTEGER NOT NULL DEFAULT 1;
ALTER TABLE people ADD COLUMN last_seen REAL;
"""
#: schema 3 -> 4: a chosen thumbnail; samples enrolled on purpose and their photo's sha256
_COLUMNS_4 = (
    ("people", "thumbnail", "INTEGER"),
    ("embeddings", "enrolled", "INTEGER NOT NULL DEFAULT 1"),
    ("embeddings", "sha256", "TEXT"),
)
#: the samples that came from the sightings of an unknown person (``camera NAME``, no track)
_SIGHTINGS_3 = (
    "UPDATE embeddings SET enrolled = 0 "
    "WHERE source LIKE 'camera %' AND source NOT LIKE '% track %'"
)


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


@dataclass(frozen=True)
class Watcher:
    """A running pipeline of this gallery and the revision it has taken in."""

    id: int
    pid: int
    host: str
    beat: float  # wall-clock time of its last confirmation
    revision: int

    def describe(self) -> str:
        return f"streamrec process {self.pid} on {self.host}"


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


class Gallery:
    """People, samples and face images in an SQLite file (WAL mode, versioned schema).

    One object may be used from several threads: every call takes its lock.
    """

    def __init__(
        self, path: str | Path, recognizer: Recognizer, policy: GalleryPolicy | None = None
    ) -> None:
        self.path = Path(path)
        self.recognizer = recognizer
        self.policy = policy or GalleryPolicy()
        self._lock = threading.RLock()
        self.read_only = False
        try:
            if not self.path.exists():
                private_file(self.path)  # 0600 in a 0700 folder: faces and names inside
            self.read_only = not os.access(self.path, os.W_OK) or not os.access(
                self.path.parent, os.W_OK
            )
            if self.read_only:  # no -wal/-shm can be made: read the file as it is
                uri = f"file:{quote(str(self.path.resolve()))}?mode=ro&immutable=1"
                self.db = sqlite3.connect(uri, uri=True, timeout=30, check_same_thread=False)
            else:
                self.db = sqlite3.connect(str(self.path), timeout=30, check_same_thread=False)
                self.db.execute("PRAGMA journal_mode=WAL")
                self.db.execute("PRAGMA foreign_keys=ON")
                self.db.execute("PRAGMA secure_delete=ON")
                with self.db:
                    self.db.executescript(_SCHEMA)
            self._check_meta()
        except GalleryError:
            self.db.close()
            raise
        except sqlite3.DatabaseError as exc:
            raise GalleryError(_damaged(self.path, exc)) from None
        except OSError as exc:
            raise GalleryError(f"cannot open gallery {self.path}: {exc}") from None
        crops = self.policy.crops_dir
        self.crops = (
            CropFolders(crops, self.policy.max_crops) if crops and not self.read_only else None
        )

    def close(self) -> None:
        with self._lock:
            self.db.close()

    def __enter__(self) -> Gallery:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """A write transaction, taken at once so concurrent writers queue instead of failing."""
        if self.read_only:
            raise GalleryError(
                f"gallery {self.path} is read-only: it can be listed and used for matching; "
                "make it (and its folder) writable to change it"
            )
        with self._lock:
            try:
                self.db.execute("BEGIN IMMEDIATE")
                try:
                    yield self.db
                except BaseException:
                    self.db.rollback()
                    raise
                self.db.commit()
            except sqlite3.IntegrityError:
                raise
            except sqlite3.DatabaseError as exc:
                raise GalleryError(_damaged(self.path, exc)) from None

    def _read(self, sql: str, args: Sequence[object] = ()) -> list[tuple]:
        with self._lock:
            try:
                return self.db.execute(sql, args).fetchall()
            except sqlite3.DatabaseError as exc:
                raise GalleryError(_damaged(self.path, exc)) from None

    def _meta(self) -> dict[str, str]:
        return dict(self.db.execute("SELECT key, value FROM meta").fetchall())

    def _check_meta(self) -> None:
        if self.read_only:
            meta = self._meta()
            version = int(meta.get("schema_version", "0"))
            if version != SCHEMA_VERSION:
                raise GalleryError(
                    f"gallery {self.path} is read-only and has schema version {version} (this "
                    f"streamrec uses {SCHEMA_VERSION}): open it writable once to upgrade it"
                )
            self._check_recognizer(meta)
            return
        with self._tx() as db:
            db.executemany(
                "INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)",
                [
                    ("schema_version", str(SCHEMA_VERSION)),
                    ("recognizer_name", self.recognizer.name),
                    ("recognizer_sha256", self.recognizer.sha256),
                    ("dim", str(self.recognizer.dim)),
                    ("revision", "0"),
                ],
            )
            meta = self._meta()
            version = int(meta.get("schema_version", "0"))
            if version > SCHEMA_VERSION:
                raise GalleryError(
                    f"gallery {self.path} has schema version {version}; this streamrec reads up "
                    f"to {SCHEMA_VERSION}: upgrade streamrec"
                )
            self._check_recognizer(meta)
            if version == 1:
                for statement in _MIGRATE_1.strip().split(";"):
                    if statement.strip():
                        db.execute(statement)
            if version <= 3:
                for table, column, declaration in _COLUMNS_4:
                    have = {r[1] for r in db.execute(f"PRAGMA table_info({table})")}
                    if column not in have:
                        db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")
                db.execute(_SIGHTINGS_3)
            if version == 1:
                self._migrate_from_1(db)
            if version <= 2:
                self._migrate_from_2(db)
            if version < SCHEMA_VERSION:
                db.execute(
                    "UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),)
                )
                self._bump(db)
                log.info("gallery %s migrated to schema %d", self.path, SCHEMA_VERSION)

    def _check_recognizer(self, meta: dict[str, str]) -> None:
        made_with = meta.get("recognizer_sha256")
        if made_with != self.recognizer.sha256 and made_with not in self.recognizer.compatible:
            raise GalleryError(
                f"gallery {self.path} was made with recognizer {meta.get('recognizer_name')} "
                f"(sha256 {meta.get('recognizer_sha256', '?')[:12]}...), but this run uses "
                f"{self.recognizer.name} (sha256 {self.recognizer.sha256[:12]}...); "
                f"embeddings of different models do not compare: use the same "
                f"models.recognizer or enrol a new gallery"
            )

    def _migrate_from_1(self, db: sqlite3.Connection) -> None:
        """Schema 1 -> 2: everyone is confirmed; compute sub-centers (samples are all kept)."""
        for (pid,) in db.execute("SELECT id FROM people").fetchall():
            self._refresh(db, pid, judge=False)

    def _migrate_from_2(self, db: sqlite3.Connection) -> None:
        """Schema 2 -> 3: review crops move from files into the gallery (the files are deleted)."""
        has_crops = db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'crops'"
        ).fetchone()
        if not has_crops:
            return
        moved: list[str] = []
        for pid, path, quality, created in db.execute(
            "SELECT person_id, path, quality, created FROM crops"
        ).fetchall():
            try:
                data = Path(path).read_bytes()
            except OSError:
                continue  # already gone
            db.execute(
                "INSERT INTO faces (person_id, sample_id, jpeg, quality, source, created) "
                "VALUES (?, NULL, ?, ?, ?, ?)",
                (pid, data, quality, "review crop", created),
            )
            moved.append(path)
        db.execute("DROP TABLE crops")
        _delete_files(moved)

    @property
    def revision(self) -> int:
        """Increases with every change; lets long-running processes reload when it moves."""
        rows = self._read("SELECT value FROM meta WHERE key='revision'")
        return int(rows[0][0]) if rows else 0

    def _bump(self, db: sqlite3.Connection) -> None:
        db.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key='revision'")

    def _vectors(self, embeddings: np.ndarray) -> np.ndarray:
        return np.asarray(embeddings, np.float32).reshape(-1, self.recognizer.dim)

    def _refresh(self, db: sqlite3.Connection, pid: int, judge: bool) -> list[Stray]:
        """Recompute a person's sub-centers; with ``judge``, drop (and return) their strays.

        Samples enrolled on purpose decide the person's look when there are any: samples that
        came from an unknown's sightings never make them strays, whatever their number.
        """
        rows = db.execute(
            "SELECT id, vector, source, enrolled FROM embeddings WHERE person_id = ? ORDER BY id",
            (pid,),
        ).fetchall()
        db.execute("DELETE FROM subcenters WHERE person_id = ?", (pid,))
        if not rows:
            return []
        (name,) = db.execute("SELECT name FROM people WHERE id = ?", (pid,)).fetchone()
        x = np.stack([np.frombuffer(r[1], np.float32) for r in rows])
        trusted = np.array([bool(r[3]) for r in rows])
        result = cluster_person(
            x,
            self.policy.subcenters,
            self.policy.outlier_angle if judge else None,
            trusted if trusted.any() else None,
        )
        db.executemany(
            "DELETE FROM embeddings WHERE id = ?", [(rows[i][0],) for i, _ in result.strays]
        )
        db.executemany(
            "INSERT INTO subcenters (person_id, vector, members) VALUES (?, ?, ?)",
            [
                (pid, c.astype(np.float32).tobytes(), m)
                for c, m in zip(result.centers, result.members, strict=True)
            ],
        )
        return [Stray(name, rows[i][2] or "", a, result.ambiguous) for i, a in result.strays]

    def _person(self, db: sqlite3.Connection, name: str) -> tuple[int, bool] | None:
        row = db.execute("SELECT id, confirmed FROM people WHERE name = ?", (name,)).fetchone()
        return (int(row[0]), bool(row[1])) if row else None

    def _find(self, db: sqlite3.Connection, ref: int | str) -> tuple[int, str, bool] | None:
        """(id, name, confirmed) of a person given by row id or exact name."""
        column = "id" if isinstance(ref, int) else "name"
        row = db.execute(
            f"SELECT id, name, confirmed FROM people WHERE {column} = ?", (ref,)
        ).fetchone()
        return (int(row[0]), str(row[1]), bool(row[2])) if row else None

    def _found(self, db: sqlite3.Connection, ref: int | str) -> tuple[int, str, bool]:
        found = self._find(db, ref)
        if found is None:
            raise NoSuchPerson(f"no person {_ref(ref)} in gallery {self.path}")
        return found

    def _create(self, db: sqlite3.Connection, name: str, now: float, confirmed: bool) -> int:
        cur = db.execute(
            "INSERT INTO people (name, created, confirmed, last_seen) VALUES (?, ?, ?, ?)",
            (name, now, int(confirmed), None if confirmed else now),
        )
        return int(cur.lastrowid or 0)

    def _insert_samples(
        self,
        db: sqlite3.Connection,
        pid: int,
        embeddings: np.ndarray,
        sources: Sequence[str],
        faces: Sequence[np.ndarray | None],
        qualities: Sequence[float | None],
        now: float,
        enrolled: bool,
        hashes: Sequence[str | None] | None = None,
    ) -> list[bytes | None]:
        """Insert samples with their faces; the faces' JPEGs (None where there is no face)."""
        jpegs: list[bytes | None] = []
        hash_list = list(hashes) if hashes is not None else [None] * len(sources)
        for e, src, face, q, digest in zip(
            embeddings, sources, faces, qualities, hash_list, strict=True
        ):
            cur = db.execute(
                "INSERT INTO embeddings (person_id, vector, source, created, enrolled, sha256) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (pid, e.tobytes(), src, now, int(enrolled), digest),
            )
            jpeg = encode_face(face) if face is not None else None
            if jpeg is not None:
                db.execute(
                    "INSERT INTO faces (person_id, sample_id, jpeg, quality, source, created) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (pid, cur.lastrowid, jpeg, q, src, now),
                )
            jpegs.append(jpeg)
        return jpegs

    def _count(self, db: sqlite3.Connection, pid: int) -> int:
        (count,) = db.execute(
            "SELECT COUNT(*) FROM embeddings WHERE person_id = ?", (pid,)
        ).fetchone()
        return int(count)

    def _lineage(self, db: sqlite3.Connection, pid: int) -> list[str]:
        rows = db.execute(
            "SELECT label FROM lineage WHERE person_id = ? ORDER BY created, label", (pid,)
        ).fetchall()
        return [str(r[0]) for r in rows]

    def _record(self, db: sqlite3.Connection, pid: int, label: str) -> None:
        """``label`` was one of the person's (a name before a rename, a label named or merged)."""
        db.execute(
            "INSERT OR IGNORE INTO lineage (person_id, label, created) VALUES (?, ?, ?)",
            (pid, label, time.time()),
        )

    def add(
        self,
        name: str,
        embeddings: np.ndarray,
        sources: Sequence[str] | None = None,
        faces: Sequence[np.ndarray | None] | None = None,
        qualities: Sequence[float | None] | None = None,
        hashes: Sequence[str | None] | None = None,
    ) -> AddResult:
        """Add samples enrolled on purpose (embeddings [N, D], their sources, aligned face
        images, the faces' qualities and the sha256 of each photo's file) to ``name`` (created
        if new); strays of the person are dropped.

        A sample the person already has is skipped, so importing twice adds nothing: the same
        photo (same sha256, whoever sent it: the CLI, the page, CompreFace), the same source
        when there is no hash (``clip.mp4#frame=N``), or the very same embedding.
        """
        name = validate_name(name)
        embeddings = self._vectors(embeddings)
        sources = list(sources) if sources is not None else [""] * len(embeddings)
        face_list = list(faces) if faces is not None else [None] * len(embeddings)
        quality_list = list(qualities) if qualities is not None else [None] * len(embeddings)
        hash_list = list(hashes) if hashes is not None else [None] * len(embeddings)
        now = time.time()
        with self._tx() as db:
            found = self._person(db, name)
            if found is not None and not found[1]:
                raise GalleryError(
                    f"'{name}' is an unconfirmed person: use 'streamrec unknowns name {name} NAME'"
                )
            pid = found[0] if found is not None else self._create(db, name, now, confirmed=True)
            rows = db.execute(
                "SELECT source, vector, sha256 FROM embeddings WHERE person_id = ?", (pid,)
            ).fetchall()
            known = {src for src, _, digest in rows if src and not digest}
            digests = {digest for _, _, digest in rows if digest}
            have = [np.frombuffer(v, np.float32) for _, v, _ in rows]
            new: list[int] = []
            for i, src in enumerate(sources):
                e, digest = embeddings[i], hash_list[i]
                if digest in digests or (
                    (src or digest)
                    and (
                        (not digest and src in known)
                        or any(float(e @ h) > _SAME_SAMPLE for h in have)
                    )
                ):
                    continue
                new.append(i)
                have.append(e)
                if digest:
                    digests.add(digest)
                elif src:
                    known.add(src)
            self._insert_samples(
                db,
                pid,
                embeddings[new],
                [sources[i] for i in new],
                [face_list[i] for i in new],
                [quality_list[i] for i in new],
                now,
                enrolled=True,
                hashes=[hash_list[i] for i in new],
            )
            strays = self._refresh(db, pid, judge=True) if new else []
            if new or found is None:
                self._bump(db)
            count = self._count(db, pid)
        for stray in strays:
            log.debug("%s", stray.describe())
        skipped = [sources[i] for i in range(len(sources)) if i not in set(new)]
        return AddResult(count, strays, skipped)

    def remove(self, ref: int | str) -> Removed:
        """Erase a person (confirmed or not, by id or name) with every sample, sub-center,
        face image, label of their lineage and review crop folder."""
        with self._tx() as db:
            pid, name, _ = self._found(db, ref)
            labels = [name, *self._lineage(db, pid)]
            samples = self._count(db, pid)
            (faces,) = db.execute(
                "SELECT COUNT(*) FROM faces WHERE person_id = ?", (pid,)
            ).fetchone()
            db.execute("DELETE FROM people WHERE id = ?", (pid,))
            for label in labels:
                self._tombstone(db, label)
            # a label someone else holds now (their name, or one they had) is theirs too
            others = {
                str(n)
                for (n,) in db.execute("SELECT name FROM people UNION SELECT label FROM lineage")
            }
            labels = [name, *(lab for lab in labels[1:] if lab not in others)]
            self._bump(db)
        self._checkpoint()
        folders = self._drop_crops(labels)
        return Removed(name, samples, int(faces), tuple(labels), folders)

    def labels(self, ref: int | str) -> list[str]:
        """Every label a person had: their name first, then their lineage, oldest first."""
        with self._lock:
            try:
                pid, name, _ = self._found(self.db, ref)
                return [name, *self._lineage(self.db, pid)]
            except sqlite3.DatabaseError as exc:
                raise GalleryError(_damaged(self.path, exc)) from None

    def rename(self, ref: int | str, new: str) -> str:
        """Rename a confirmed person (unconfirmed ones are named with :meth:`promote`); the
        old name joins their lineage. Returns the new name."""
        new = validate_name(new)
        with self._tx() as db:
            pid, name, confirmed = self._found(db, ref)
            if not confirmed:
                raise GalleryError(f"no enrolled person {_ref(ref)} in gallery {self.path}")
            if name == new:
                return new
            if self._person(db, new) is not None:
                raise NameConflict(f"'{new}' exists already: merge instead of renaming")
            db.execute("UPDATE people SET name = ? WHERE id = ?", (new, pid))
            db.execute("DELETE FROM lineage WHERE person_id = ? AND label = ?", (pid, new))
            self._record(db, pid, name)
            self._bump(db)
        return new

    def set_thumbnail(self, ref: int | str, face_id: int | None) -> None:
        """Show this face image of the person as their thumbnail (None: the best enrolled)."""
        with self._tx() as db:
            pid, name, _ = self._found(db, ref)
            if face_id is not None and not db.execute(
                "SELECT 1 FROM faces WHERE id = ? AND person_id = ?", (face_id, pid)
            ).fetchone():
                raise GalleryError(f"'{name}' has no face image {face_id}")
            db.execute("UPDATE people SET thumbnail = ? WHERE id = ?", (face_id, pid))
            self._bump(db)

    _PEOPLE = (
        "SELECT p.id, p.name, p.created, p.confirmed, COALESCE(p.last_seen, p.created), "
        "(SELECT COUNT(*) FROM embeddings e WHERE e.person_id = p.id), "
        "(SELECT COUNT(*) FROM subcenters s WHERE s.person_id = p.id), "
        "(SELECT COUNT(*) FROM faces f WHERE f.person_id = p.id), "
        # the chosen thumbnail (if it still exists), else the best enrolled photo's face (the
        # oldest among equals: a new sample never replaces it silently), else the best face
        "(SELECT f.id FROM faces f WHERE f.id = p.thumbnail AND f.person_id = p.id), "
        "(SELECT f.id FROM faces f JOIN embeddings e ON e.id = f.sample_id "
        " WHERE f.person_id = p.id AND e.enrolled = 1 "
        " ORDER BY f.quality IS NULL, f.quality DESC, f.id LIMIT 1), "
        "(SELECT f.id FROM faces f WHERE f.person_id = p.id "
        " ORDER BY f.quality IS NULL, f.quality DESC, f.id LIMIT 1) "
        "FROM people p"
    )

    @staticmethod
    def _row_person(row: tuple) -> Person | UnknownPerson:
        pid, name, created, confirmed, last, e, s, f, chosen, enrolled, best = row
        if not confirmed:
            return UnknownPerson(int(pid), name, int(e), int(f), float(created), float(last))
        thumb = chosen if chosen is not None else enrolled if enrolled is not None else best
        return Person(
            int(pid), name, int(e), float(created), int(s), int(f), thumb, chosen is not None
        )

    def people(self) -> list[Person]:
        """Confirmed people, by name."""
        rows = self._read(self._PEOPLE + " WHERE p.confirmed = 1 ORDER BY p.name")
        return [p for p in map(self._row_person, rows) if isinstance(p, Person)]

    def person(self, ref: int | str) -> Person | UnknownPerson:
        """One person (by id or exact name), confirmed or not."""
        column = "id" if isinstance(ref, int) else "name"
        rows = self._read(self._PEOPLE + f" WHERE p.{column} = ?", (ref,))
        if not rows:
            raise NoSuchPerson(f"no person {_ref(ref)} in gallery {self.path}")
        return self._row_person(rows[0])

    def samples(self, ref: int | str) -> list[Sample]:
        """A person's samples, oldest first, with the id of each one's face image."""
        pid = self.person(ref).id
        rows = self._read(
            "SELECT e.id, COALESCE(e.source, ''), e.created, "
            "(SELECT f.id FROM faces f WHERE f.sample_id = e.id), e.enrolled, e.sha256 "
            "FROM embeddings e WHERE e.person_id = ? ORDER BY e.id",
            (pid,),
        )
        return [
            Sample(int(i), src, float(t), None if f is None else int(f), bool(en), digest)
            for i, src, t, f, en, digest in rows
        ]

    def faces(self, ref: int | str, limit: int = 100) -> list[FaceImage]:
        """A person's face images, best first (quality, then newest)."""
        pid = self.person(ref).id
        rows = self._read(
            "SELECT f.id, p.name, f.sample_id, f.jpeg, f.quality, COALESCE(f.source, ''), "
            "f.created FROM faces f JOIN people p ON p.id = f.person_id WHERE p.id = ? "
            "ORDER BY COALESCE(f.quality, 0) DESC, f.created DESC, f.id LIMIT ?",
            (pid, limit),
        )
        return [_face(r) for r in rows]

    def face(self, face_id: int) -> FaceImage | None:
        rows = self._read(
            "SELECT f.id, p.name, f.sample_id, f.jpeg, f.quality, COALESCE(f.source, ''), "
            "f.created FROM faces f JOIN people p ON p.id = f.person_id WHERE f.id = ?",
            (face_id,),
        )
        return _face(rows[0]) if rows else None

    def delete_sample(self, ref: int | str, sample_id: int) -> int:
        """Delete one sample of a person (and its face image); returns the samples left.

        A person's last sample cannot go: remove the person instead.
        """
        with self._tx() as db:
            pid, name, _ = self._found(db, ref)
            row = db.execute(
                "SELECT 1 FROM embeddings WHERE id = ? AND person_id = ?", (sample_id, pid)
            ).fetchone()
            if row is None:
                raise GalleryError(f"'{name}' has no sample {sample_id}")
            if self._count(db, pid) == 1:
                raise GalleryError(
                    f"sample {sample_id} is the last one of '{name}': remove the person"
                )
            db.execute("DELETE FROM embeddings WHERE id = ?", (sample_id,))
            self._refresh(db, pid, judge=False)
            self._bump(db)
            left = self._count(db, pid)
        self._checkpoint()
        return left

    def _matcher(self, confirmed: bool) -> Matcher:
        rows = self._read(
            "SELECT p.name, s.vector FROM subcenters s JOIN people p ON p.id = s.person_id "
            "WHERE p.confirmed = ? ORDER BY p.name, s.id",
            (int(confirmed),),
        )
        if not rows:
            return Matcher.empty(self.recognizer.dim)
        names: list[str] = []
        owners = []
        for name, _ in rows:
            if not names or names[-1] != name:
                names.append(name)
            owners.append(len(names) - 1)
        templates = np.stack([np.frombuffer(v, np.float32) for _, v in rows])
        return Matcher(names, templates, np.asarray(owners), self.policy.index_min_size)

    def matcher(self) -> Matcher:
        """Confirmed people only, one template per sub-center."""
        return self._matcher(True)

    # --- unconfirmed people ---------------------------------------------------------------

    def add_unknown(
        self,
        label: str,
        embeddings: np.ndarray,
        faces: Sequence[np.ndarray | None] = (),
        qualities: Sequence[float | None] = (),
        source: str = "",
    ) -> bool:
        """Create or update the unconfirmed person ``label`` (e.g. ``unknown-3``).

        Adds the embeddings (the newest ``MAX_UNKNOWN_SAMPLES`` are kept) and face images
        (``faces[i]`` belongs to ``embeddings[i]``; the ``policy.max_crops`` best by quality are
        kept, in the gallery and, with ``policy.crops_dir``, as files: written in the same
        transaction, so an erasure running meanwhile cannot miss one). Returns False, changing
        nothing, when the label is tombstoned (erased, merged or promoted), belongs to a
        confirmed person or is no ``unknown-N``: no writer brings an erased label back.
        """
        if not _UNKNOWN_LABEL.match(label):
            return False
        embeddings = self._vectors(embeddings)
        face_list = list(faces) or [None] * len(embeddings)
        quality_list = list(qualities) or [None] * len(embeddings)
        if not len(face_list) == len(quality_list) == len(embeddings):
            raise GalleryError("add_unknown: one face and one quality per embedding")
        now = time.time()
        with self._tx() as db:
            if db.execute("SELECT 1 FROM tombstones WHERE label = ?", (label,)).fetchone():
                return False
            found = self._person(db, label)
            if found is not None and found[1]:
                return False
            if found is None:
                pid = self._create(db, label, now, confirmed=False)
            else:
                pid = found[0]
                db.execute("UPDATE people SET last_seen = ? WHERE id = ?", (now, pid))
            jpegs = self._insert_samples(
                db,
                pid,
                embeddings,
                [source] * len(embeddings),
                face_list,
                quality_list,
                now,
                enrolled=False,
            )
            db.execute(
                "DELETE FROM embeddings WHERE person_id = ? AND id NOT IN (SELECT id FROM "
                "embeddings WHERE person_id = ? ORDER BY id DESC LIMIT ?)",
                (pid, pid, MAX_UNKNOWN_SAMPLES),
            )
            db.execute(
                "DELETE FROM faces WHERE person_id = ? AND id NOT IN (SELECT id FROM faces "
                "WHERE person_id = ? ORDER BY COALESCE(quality, 0) DESC, created DESC, id "
                "LIMIT ?)",
                (pid, pid, self.policy.max_crops),
            )
            self._refresh(db, pid, judge=False)
            self._bump(db)
            if self.crops is not None:
                self._save_crops(label, jpegs, quality_list)
        return True

    def _save_crops(
        self, label: str, jpegs: Sequence[bytes | None], qualities: Sequence[float | None]
    ) -> None:
        """The review crop files of a sighting (a failure is logged: the gallery has the faces)."""
        assert self.crops is not None
        for jpeg, q in zip(jpegs, qualities, strict=True):
            if jpeg is None:
                continue
            try:
                self.crops.save(label, jpeg, q)
            except (OSError, GalleryError) as exc:
                log.error("cannot save a review crop of %s: %s", label, exc)

    def unknowns(self) -> list[UnknownPerson]:
        """Unconfirmed people, by label number."""
        rows = self._read(self._PEOPLE + " WHERE p.confirmed = 0")
        out = [u for u in map(self._row_person, rows) if isinstance(u, UnknownPerson)]
        return sorted(out, key=lambda u: _label_key(u.label))

    def unknown_count(self) -> int:
        return int(self._read("SELECT COUNT(*) FROM people WHERE confirmed = 0")[0][0])

    def tombstoned(self, label: str) -> bool:
        """The label was erased, merged away or promoted: it never comes back."""
        return bool(self._read("SELECT 1 FROM tombstones WHERE label = ?", (label,)))

    def unknown_matcher(self) -> Matcher:
        """Matching among unconfirmed people only."""
        return self._matcher(False)

    def unknown_samples(self, newest: int) -> dict[str, np.ndarray]:
        """Each unconfirmed person's ``newest`` sample embeddings [n, D], oldest first."""
        rows = self._read(
            "SELECT p.name, e.vector FROM people p JOIN embeddings e ON e.person_id = p.id "
            "WHERE p.confirmed = 0 AND e.id IN (SELECT id FROM embeddings "
            "WHERE person_id = p.id ORDER BY id DESC LIMIT ?) ORDER BY p.id, e.id",
            (newest,),
        )
        out: dict[str, list[np.ndarray]] = {}
        for name, vector in rows:
            out.setdefault(name, []).append(np.frombuffer(vector, np.float32))
        return {name: np.stack(vectors) for name, vectors in out.items()}

    def next_unknown_index(self) -> int:
        """N for the next ``unknown-N``: above every label used so far (never reused)."""
        names = self._read("SELECT name FROM people UNION ALL SELECT label FROM tombstones")
        used = [int(m.group(1)) for (n,) in names if (m := _UNKNOWN_LABEL.match(n))]
        rows = self._read("SELECT value FROM meta WHERE key = 'unknown_last'")
        return max([0, *used, int(rows[0][0]) if rows else 0]) + 1

    def promote(self, label: int | str, name: str, merge: bool = False) -> AddResult:
        """Confirm the unconfirmed ``label`` (id or label) as ``name``.

        Its samples and face images become ``name``'s; the label is tombstoned and joins the
        person's lineage. When ``name`` is an enrolled person's, nothing happens unless
        ``merge`` (:class:`NameConflict`): they are folded into that person, whose enrolled
        photos decide which of the unknown's samples are strays.
        """
        name = validate_name(name)
        with self._tx() as db:
            found = self._find(db, label)
            if found is None or found[2]:
                raise GalleryError(f"no unconfirmed person {_ref(label)} in gallery {self.path}")
            pid, old, _ = found
            target = self._person(db, name)
            if target is None:
                db.execute(
                    "UPDATE people SET name = ?, confirmed = 1, last_seen = NULL WHERE id = ?",
                    (name, pid),
                )
                self._record(db, pid, old)
            elif not target[1]:
                raise GalleryError(
                    f"'{name}' is an unconfirmed person too: merge them, or name it first"
                )
            elif not merge:
                raise NameConflict(
                    f"'{name}' is enrolled already: merge {old} into them, or choose another name"
                )
            else:
                self._move(db, pid, target[0])
                pid = target[0]
            self._tombstone(db, old)
            strays = self._refresh(db, pid, judge=True)
            self._bump(db)
            count = self._count(db, pid)
        return AddResult(count, strays)

    def merge(self, source: int | str, target: int | str) -> AddResult:
        """Fold ``source`` into ``target`` (each by id or name): an unknown into an unknown or
        a person, or a person into another person. ``source`` leaves the gallery; its name
        and lineage join ``target``'s, its samples keep whether they were enrolled on purpose.
        Into a person, an unknown's samples far from the person's enrolled photos are dropped
        as strays; two people's samples are all kept (a merge is asked for on purpose).
        """
        with self._tx() as db:
            src = self._found(db, source)
            dst = self._found(db, target)
            if dst[0] == src[0]:
                raise GalleryError(f"{_ref(source)} and {_ref(target)} are the same person")
            if src[2] and not dst[2]:
                raise GalleryError(
                    f"'{src[1]}' is enrolled and '{dst[1]}' is not: merge {dst[1]} into them"
                )
            self._move(db, src[0], dst[0])
            self._tombstone(db, src[1])
            strays = self._refresh(db, dst[0], judge=dst[2] and not src[2])
            if not dst[2]:
                db.execute(
                    "DELETE FROM faces WHERE person_id = ? AND id NOT IN (SELECT id FROM faces "
                    "WHERE person_id = ? ORDER BY COALESCE(quality, 0) DESC, created DESC, id "
                    "LIMIT ?)",
                    (dst[0], dst[0], self.policy.max_crops),
                )
            self._bump(db)
            count = self._count(db, dst[0])
        if self.crops is not None and not dst[2]:
            self.crops.merge(src[1], dst[1])
        return AddResult(count, strays)

    def _move(self, db: sqlite3.Connection, source: int, target: int) -> None:
        """Samples, faces and lineage of person ``source`` become ``target``'s (and its name
        joins their lineage); ``source`` is deleted."""
        db.execute("UPDATE embeddings SET person_id = ? WHERE person_id = ?", (target, source))
        db.execute("UPDATE faces SET person_id = ? WHERE person_id = ?", (target, source))
        db.execute(
            "UPDATE OR IGNORE lineage SET person_id = ? WHERE person_id = ?", (target, source)
        )
        (name,) = db.execute("SELECT name FROM people WHERE id = ?", (source,)).fetchone()
        self._record(db, target, name)
        db.execute(
            "UPDATE people SET last_seen = MAX(COALESCE(last_seen, 0), COALESCE((SELECT "
            "last_seen FROM people WHERE id = ?), 0)) WHERE id = ? AND confirmed = 0",
            (source, target),
        )
        db.execute("DELETE FROM people WHERE id = ?", (source,))

    def _tombstone(self, db: sqlite3.Connection, label: str) -> None:
        """An ``unknown-N`` label is never brought back nor reused (names of people are not
        kept: an erased person leaves no name behind)."""
        if _UNKNOWN_LABEL.match(label):
            db.execute(
                "INSERT OR IGNORE INTO tombstones (label, created) VALUES (?, ?)",
                (label, time.time()),
            )

    def purge(self, retention_days: float) -> int:
        """Delete unconfirmed people not seen for ``retention_days`` (0 = never), with their
        review crop files; how many."""
        if not retention_days > 0:  # NaN included
            return 0
        cutoff = time.time() - retention_days * 86400.0
        return self._drop_unknowns(
            "SELECT id, name FROM people WHERE confirmed = 0 AND COALESCE(last_seen, created) < ?",
            (cutoff,),
        )

    def evict_unknowns(self, keep: int) -> int:
        """Keep the ``keep`` most recently seen unconfirmed people, delete the others (with
        their review crop files)."""
        return self._drop_unknowns(
            "SELECT id, name FROM people WHERE confirmed = 0 ORDER BY "
            "COALESCE(last_seen, created) DESC LIMIT -1 OFFSET ?",
            (keep,),
        )

    def _drop_unknowns(self, select: str, args: Sequence[object]) -> int:
        labels: list[str] = []
        with self._tx() as db:
            rows = db.execute(select, args).fetchall()
            for pid, label in rows:
                labels += [label, *self._lineage(db, pid)]
                self._tombstone(db, label)
                db.execute("DELETE FROM people WHERE id = ?", (pid,))
            if rows:
                self._bump(db)
        if rows:
            self._checkpoint()
            self._drop_crops(labels)
        return len(rows)

    def _drop_crops(self, labels: Sequence[str]) -> int:
        """Delete the review crop folders of these labels; how many (a failure is logged: the
        rows are gone, and a later erase of the label finds the folder again)."""
        if self.crops is None:
            return 0
        try:
            return len(self.crops.remove(labels))
        except (OSError, GalleryError) as exc:
            log.error("cannot delete review crops: %s", exc)
            return 0

    # --- running pipelines ----------------------------------------------------------------

    def watch(self, revision: int, watcher: int | None = None) -> int | None:
        """Record that this process's pipeline has taken in ``revision`` (and is alive); returns
        its watcher id for the next call (None when the gallery is read-only)."""
        if self.read_only:
            return None
        now = time.time()
        with self._tx() as db:
            if watcher is not None and db.execute(
                "UPDATE watchers SET beat = ?, revision = ? WHERE id = ?",
                (now, revision, watcher),
            ).rowcount:
                return watcher
            db.execute("DELETE FROM watchers WHERE beat < ?", (now - 3600.0,))
            cur = db.execute(
                "INSERT INTO watchers (pid, host, started, beat, revision) VALUES (?, ?, ?, ?, ?)",
                (os.getpid(), socket.gethostname(), now, now, revision),
            )
            return int(cur.lastrowid or 0)

    def unwatch(self, watcher: int) -> None:
        if self.read_only:
            return
        with self._tx() as db:
            db.execute("DELETE FROM watchers WHERE id = ?", (watcher,))

    def lagging(self, revision: int, stale: float = WATCH_STALE) -> list[Watcher]:
        """Running pipelines that have not taken ``revision`` in yet. One that has not
        confirmed anything for ``stale`` seconds, or whose process is gone, is not running."""
        rows = self._read(
            "SELECT id, pid, host, beat, revision FROM watchers WHERE revision < ? AND beat >= ?",
            (revision, time.time() - stale),
        )
        here = socket.gethostname()
        out = []
        for i, pid, host, beat, rev in rows:
            if host == here and not _alive(int(pid)):
                continue
            out.append(Watcher(int(i), int(pid), str(host), float(beat), int(rev)))
        return out

    def running(self) -> list[Watcher]:
        """The pipelines of this gallery that are running (whatever they have taken in)."""
        return self.lagging(1 << 62)

    def _checkpoint(self) -> None:
        """Fold the write-ahead log into the file (deleted pages are zeroed by secure_delete)."""
        if self.read_only:
            return
        with self._lock:
            try:
                self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.OperationalError as exc:  # another process is reading: next time
                log.debug("WAL checkpoint of %s postponed: %s", self.path, exc)


_NAME_MAX = 100


class InvalidName(GalleryError):
    """A name refused by :func:`validate_name` (exit 2 on the command line, 400 over HTTP)."""


def validate_name(name: str, *, label: bool = False) -> str:
    """The one rule for a person's name, at every entry (CLI, REST, CompreFace, the Faces page,
    naming an unknown, renaming, merging): 1..100 printable characters, no path separator
    (``/``, ``\\``), not ``.`` or ``..``, no space at either end, and not ``unknown-N`` (the
    labels of unknown people; ``label=True`` checks such a label). A name is refused, never
    altered: it is shown, matched and erased exactly as given. Names never reach a path
    (folders are numbered), so this is a second line of defence and a guard against names
    that look alike.
    """
    if not isinstance(name, str):
        raise InvalidName("a person's name must be text")
    if not name.strip():
        raise InvalidName("a person's name must not be empty")
    if len(name) > _NAME_MAX:
        raise InvalidName(f"a person's name must be at most {_NAME_MAX} characters")
    if not name.isprintable():
        raise InvalidName(
            "a person's name must not contain control characters (line breaks, tabs, NUL ...)"
        )
    if name != name.strip():
        raise InvalidName("a person's name must not start or end with a space")
    if "/" in name or "\\" in name:
        raise InvalidName("a person's name must not contain a path separator (/ or \\)")
    if set(name) == {"."}:
        raise InvalidName("a person's name must not be made of dots only ('.', '..')")
    if bool(_UNKNOWN_LABEL.match(name)) != label:
        raise InvalidName(
            f"'{name}' is the label of an unconfirmed person (unknown-N): name the person "
            "otherwise"
            if not label
            else f"not an unconfirmed person's label (unknown-N): {name!r}"
        )
    return name


def _ref(ref: int | str) -> str:
    return f"#{ref}" if isinstance(ref, int) else f"'{ref}'"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def _face(row: tuple) -> FaceImage:
    i, name, sample, jpeg, quality, source, created = row
    return FaceImage(
        int(i),
        name,
        None if sample is None else int(sample),
        bytes(jpeg),
        None if quality is None else float(quality),
        source,
        float(created),
    )


def _damaged(path: Path, exc: sqlite3.DatabaseError) -> str:
    if "locked" in str(exc) or "busy" in str(exc):
        return f"gallery {path} is busy (another process holds a write lock): try again"
    return (
        f"gallery {path} cannot be read ({exc}): the file is damaged or not a gallery; "
        "restore a backup (or recover it with: sqlite3 FILE .recover)"
    )


def _label_key(label: str) -> tuple[int, str]:
    m = _UNKNOWN_LABEL.match(label)
    return (int(m.group(1)) if m else 1 << 62, label)


def _delete_files(paths: Sequence[str]) -> None:
    for p in paths:
        try:
            Path(p).unlink(missing_ok=True)
        except OSError as exc:
            log.warning("cannot delete crop %s: %s", p, exc)


def open_existing(path: str | Path, policy: GalleryPolicy | None = None) -> Gallery:
    """Open an existing gallery with the recognizer it records (for listing and removal)."""
    p = Path(path)
    if not p.is_file():
        raise GalleryError(f"gallery not found: {p}")
    # a read-only file (or folder) gets no -shm made beside it: it stays readable by anyone
    frozen = "&immutable=1" if not (os.access(p, os.W_OK) and os.access(p.parent, os.W_OK)) else ""
    try:
        db = sqlite3.connect(f"file:{quote(str(p.resolve()))}?mode=ro{frozen}", uri=True)
        try:
            meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
        finally:
            db.close()
    except sqlite3.DatabaseError:
        raise GalleryError(f"{p} is not a streamrec gallery") from None
    try:
        rec = Recognizer(meta["recognizer_name"], meta["recognizer_sha256"], int(meta["dim"]))
    except (KeyError, ValueError):
        raise GalleryError(f"{p} is not a streamrec gallery (no recognizer recorded)") from None
    return Gallery(p, rec, policy)
