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

Every change bumps a revision counter, so running pipelines notice changes made by any process
(the CLI, the daemon's API) within a poll. Deleted data is overwritten (``secure_delete``) and
the write-ahead log is checkpointed after deletions, so erased faces do not linger in the file.
"""

from __future__ import annotations

import logging
import os
import re
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
from streamrec.gallery.matcher import Matcher
from streamrec.gallery.subcenters import cluster_person

if TYPE_CHECKING:
    from streamrec.config import Config

log = logging.getLogger("streamrec.gallery")

SCHEMA_VERSION = 3

#: newest samples kept per unconfirmed person (the pipeline adds some for every track)
MAX_UNKNOWN_SAMPLES = 64
#: cosine above which two samples of a person are the same face (the same photo enrolled twice)
_SAME_SAMPLE = 0.9999
#: JPEG quality of stored face images (112x112 crops: a few kB each)
FACE_JPEG_QUALITY = 90

_UNKNOWN_LABEL = re.compile(r"^unknown-(\d+)$")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS people (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created REAL NOT NULL,
    confirmed INTEGER NOT NULL DEFAULT 1,
    last_seen REAL
);
CREATE TABLE IF NOT EXISTS embeddings (
    id INTEGER PRIMARY KEY,
    person_id INTEGER NOT NULL REFERENCES people(id) ON DELETE CASCADE,
    vector BLOB NOT NULL,
    source TEXT,
    created REAL NOT NULL
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
"""

#: schema 1 -> 2: unconfirmed people (confirmed, last_seen)
_MIGRATE_1 = """
ALTER TABLE people ADD COLUMN confirmed INTEGER NOT NULL DEFAULT 1;
ALTER TABLE people ADD COLUMN last_seen REAL;
"""


@dataclass(frozen=True)
class Person:
    name: str
    embeddings: int  # sample embeddings
    created: float
    subcenters: int = 0  # templates used for matching
    faces: int = 0  # stored face images


@dataclass(frozen=True)
class UnknownPerson:
    """An unconfirmed person found by the pipeline, waiting to be named, merged or purged."""

    label: str
    embeddings: int
    faces: int  # stored face images (the best ones)
    first_seen: float
    last_seen: float


@dataclass(frozen=True)
class Sample:
    """One enrolled sample: where it came from, and its face image if stored."""

    id: int
    source: str
    created: float
    face: int | None  # id of its face image


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
    """What an erasure removed."""

    name: str
    samples: int
    faces: int


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

    @classmethod
    def from_config(cls, cfg: Config) -> GalleryPolicy:
        return cls(
            cfg.enrollment.subcenters,
            cfg.enrollment.outlier_angle,
            cfg.unknowns.max_crops,
            cfg.recognition.index_min_size,
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
        for statement in _MIGRATE_1.strip().split(";"):
            if statement.strip():
                db.execute(statement)
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
        """Recompute a person's sub-centers; with ``judge``, drop (and return) their strays."""
        rows = db.execute(
            "SELECT id, vector, source FROM embeddings WHERE person_id = ? ORDER BY id", (pid,)
        ).fetchall()
        db.execute("DELETE FROM subcenters WHERE person_id = ?", (pid,))
        if not rows:
            return []
        (name,) = db.execute("SELECT name FROM people WHERE id = ?", (pid,)).fetchone()
        x = np.stack([np.frombuffer(v, np.float32) for _, v, _ in rows])
        result = cluster_person(
            x, self.policy.subcenters, self.policy.outlier_angle if judge else None
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
    ) -> None:
        for e, src, face, q in zip(embeddings, sources, faces, qualities, strict=True):
            cur = db.execute(
                "INSERT INTO embeddings (person_id, vector, source, created) VALUES (?, ?, ?, ?)",
                (pid, e.tobytes(), src, now),
            )
            if face is not None:
                db.execute(
                    "INSERT INTO faces (person_id, sample_id, jpeg, quality, source, created) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (pid, cur.lastrowid, encode_face(face), q, src, now),
                )

    def _count(self, db: sqlite3.Connection, pid: int) -> int:
        (count,) = db.execute(
            "SELECT COUNT(*) FROM embeddings WHERE person_id = ?", (pid,)
        ).fetchone()
        return int(count)

    def add(
        self,
        name: str,
        embeddings: np.ndarray,
        sources: Sequence[str] | None = None,
        faces: Sequence[np.ndarray | None] | None = None,
    ) -> AddResult:
        """Add samples (embeddings [N, D], their sources and aligned face images) to ``name``
        (created if new); strays of the person are dropped.

        A sample from a source (a file path, ``clip.mp4#frame=N``) that the person already has,
        or with the very same embedding as one of theirs (the same photo under another name),
        is skipped: importing twice adds nothing.
        """
        name = validate_name(name)
        embeddings = self._vectors(embeddings)
        sources = list(sources) if sources is not None else [""] * len(embeddings)
        face_list = list(faces) if faces is not None else [None] * len(embeddings)
        now = time.time()
        with self._tx() as db:
            found = self._person(db, name)
            if found is not None and not found[1]:
                raise GalleryError(
                    f"'{name}' is an unconfirmed person: use 'streamrec unknowns name {name} NAME'"
                )
            pid = found[0] if found is not None else self._create(db, name, now, confirmed=True)
            rows = db.execute(
                "SELECT source, vector FROM embeddings WHERE person_id = ?", (pid,)
            ).fetchall()
            known = {src for src, _ in rows if src}
            have = [np.frombuffer(v, np.float32) for _, v in rows]
            new: list[int] = []
            for i, src in enumerate(sources):
                e = embeddings[i]
                if src and (src in known or any(float(e @ h) > _SAME_SAMPLE for h in have)):
                    continue
                new.append(i)
                have.append(e)
                known.add(src)
            self._insert_samples(
                db,
                pid,
                embeddings[new],
                [sources[i] for i in new],
                [face_list[i] for i in new],
                [None] * len(new),
                now,
            )
            strays = self._refresh(db, pid, judge=True) if new else []
            if new or found is None:
                self._bump(db)
            count = self._count(db, pid)
        for stray in strays:
            log.debug("%s", stray.describe())
        skipped = [sources[i] for i in range(len(sources)) if i not in set(new)]
        return AddResult(count, strays, skipped)

    def remove(self, name: str) -> Removed:
        """Erase a person (confirmed or not) with every sample, sub-center and face image."""
        with self._tx() as db:
            found = self._person(db, name)
            if found is None:
                raise GalleryError(f"no person named '{name}' in gallery {self.path}")
            pid = found[0]
            samples = self._count(db, pid)
            (faces,) = db.execute(
                "SELECT COUNT(*) FROM faces WHERE person_id = ?", (pid,)
            ).fetchone()
            db.execute("DELETE FROM people WHERE id = ?", (pid,))
            self._tombstone(db, name)
            self._bump(db)
        self._checkpoint()
        return Removed(name, samples, int(faces))

    def rename(self, name: str, new: str) -> None:
        """Rename a confirmed person (unconfirmed ones are named with :meth:`promote`)."""
        new = validate_name(new)
        with self._tx() as db:
            found = self._person(db, name)
            if found is None or not found[1]:
                raise GalleryError(f"no enrolled person named '{name}' in gallery {self.path}")
            if self._person(db, new) is not None:
                raise GalleryError(f"'{new}' exists already: merge instead of renaming")
            db.execute("UPDATE people SET name = ? WHERE id = ?", (new, found[0]))
            self._bump(db)

    def people(self) -> list[Person]:
        """Confirmed people, by name."""
        rows = self._read(
            "SELECT p.name, p.created, "
            "(SELECT COUNT(*) FROM embeddings e WHERE e.person_id = p.id), "
            "(SELECT COUNT(*) FROM subcenters s WHERE s.person_id = p.id), "
            "(SELECT COUNT(*) FROM faces f WHERE f.person_id = p.id) "
            "FROM people p WHERE p.confirmed = 1 ORDER BY p.name"
        )
        return [Person(n, int(e), float(t), int(s), int(f)) for n, t, e, s, f in rows]

    def person(self, name: str) -> Person | UnknownPerson:
        """One person, confirmed or not."""
        rows = self._read(
            "SELECT p.name, p.created, p.confirmed, COALESCE(p.last_seen, p.created), "
            "(SELECT COUNT(*) FROM embeddings e WHERE e.person_id = p.id), "
            "(SELECT COUNT(*) FROM subcenters s WHERE s.person_id = p.id), "
            "(SELECT COUNT(*) FROM faces f WHERE f.person_id = p.id) "
            "FROM people p WHERE p.name = ?",
            (name,),
        )
        if not rows:
            raise GalleryError(f"no person named '{name}' in gallery {self.path}")
        n, created, confirmed, last, e, s, f = rows[0]
        if confirmed:
            return Person(n, int(e), float(created), int(s), int(f))
        return UnknownPerson(n, int(e), int(f), float(created), float(last))

    def samples(self, name: str) -> list[Sample]:
        """A person's samples, oldest first, with the id of each one's face image."""
        self.person(name)  # raises if unknown
        rows = self._read(
            "SELECT e.id, COALESCE(e.source, ''), e.created, "
            "(SELECT f.id FROM faces f WHERE f.sample_id = e.id) "
            "FROM embeddings e JOIN people p ON p.id = e.person_id WHERE p.name = ? "
            "ORDER BY e.id",
            (name,),
        )
        return [
            Sample(int(i), src, float(t), None if f is None else int(f)) for i, src, t, f in rows
        ]

    def faces(self, name: str, limit: int = 100) -> list[FaceImage]:
        """A person's face images, best first (quality, then newest)."""
        rows = self._read(
            "SELECT f.id, p.name, f.sample_id, f.jpeg, f.quality, COALESCE(f.source, ''), "
            "f.created FROM faces f JOIN people p ON p.id = f.person_id WHERE p.name = ? "
            "ORDER BY COALESCE(f.quality, 0) DESC, f.created DESC, f.id LIMIT ?",
            (name, limit),
        )
        return [_face(r) for r in rows]

    def face(self, face_id: int) -> FaceImage | None:
        rows = self._read(
            "SELECT f.id, p.name, f.sample_id, f.jpeg, f.quality, COALESCE(f.source, ''), "
            "f.created FROM faces f JOIN people p ON p.id = f.person_id WHERE f.id = ?",
            (face_id,),
        )
        return _face(rows[0]) if rows else None

    def delete_sample(self, name: str, sample_id: int) -> int:
        """Delete one sample of ``name`` (and its face image); returns the samples left.

        A person's last sample cannot go: remove the person instead.
        """
        with self._tx() as db:
            found = self._person(db, name)
            if found is None:
                raise GalleryError(f"no person named '{name}' in gallery {self.path}")
            pid = found[0]
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
        kept). Returns False, changing nothing, when the label is tombstoned (erased, merged or
        promoted) or belongs to a confirmed person: no writer brings an erased label back.
        """
        label = validate_name(label)
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
            self._insert_samples(
                db, pid, embeddings, [source] * len(embeddings), face_list, quality_list, now
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
        return True

    def unknowns(self) -> list[UnknownPerson]:
        """Unconfirmed people, by label number."""
        rows = self._read(
            "SELECT p.name, "
            "(SELECT COUNT(*) FROM embeddings e WHERE e.person_id = p.id), "
            "(SELECT COUNT(*) FROM faces f WHERE f.person_id = p.id), "
            "p.created, COALESCE(p.last_seen, p.created) "
            "FROM people p WHERE p.confirmed = 0"
        )
        out = [UnknownPerson(n, int(e), int(f), float(c), float(s)) for n, e, f, c, s in rows]
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

    def promote(self, label: str, name: str) -> AddResult:
        """Confirm the unconfirmed ``label`` as ``name`` (merged into ``name`` if enrolled).

        Its samples and face images become ``name``'s; the label is tombstoned.
        """
        name = validate_name(name)
        with self._tx() as db:
            found = self._person(db, label)
            if found is None or found[1]:
                raise GalleryError(f"no unconfirmed person '{label}' in gallery {self.path}")
            pid = found[0]
            target = self._person(db, name)
            if target is None:
                db.execute(
                    "UPDATE people SET name = ?, confirmed = 1, last_seen = NULL WHERE id = ?",
                    (name, pid),
                )
            elif not target[1]:
                raise GalleryError(
                    f"'{name}' is an unconfirmed person too: merge them, or name it first"
                )
            else:
                self._move(db, pid, target[0])
                pid = target[0]
            self._tombstone(db, label)
            strays = self._refresh(db, pid, judge=True)
            self._bump(db)
            count = self._count(db, pid)
        return AddResult(count, strays)

    def merge(self, source: str, target: str) -> AddResult:
        """Fold the unconfirmed ``source`` into ``target`` (unconfirmed or enrolled)."""
        with self._tx() as db:
            src = self._person(db, source)
            dst = self._person(db, target)
            if src is None or src[1]:
                raise GalleryError(f"no unconfirmed person '{source}' in gallery {self.path}")
            if dst is None or dst[0] == src[0]:
                raise GalleryError(f"no other person '{target}' in gallery {self.path}")
            self._move(db, src[0], dst[0])
            self._tombstone(db, source)
            strays = self._refresh(db, dst[0], judge=dst[1])
            if not dst[1]:
                db.execute(
                    "DELETE FROM faces WHERE person_id = ? AND id NOT IN (SELECT id FROM faces "
                    "WHERE person_id = ? ORDER BY COALESCE(quality, 0) DESC, created DESC, id "
                    "LIMIT ?)",
                    (dst[0], dst[0], self.policy.max_crops),
                )
            self._bump(db)
            count = self._count(db, dst[0])
        return AddResult(count, strays)

    def _move(self, db: sqlite3.Connection, source: int, target: int) -> None:
        """Samples and faces of person ``source`` become ``target``'s; ``source`` is deleted."""
        db.execute("UPDATE embeddings SET person_id = ? WHERE person_id = ?", (target, source))
        db.execute("UPDATE faces SET person_id = ? WHERE person_id = ?", (target, source))
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
        """Delete unconfirmed people not seen for ``retention_days`` (0 = never); how many."""
        if retention_days <= 0:
            return 0
        cutoff = time.time() - retention_days * 86400.0
        return self._drop_unknowns(
            "SELECT id, name FROM people WHERE confirmed = 0 AND COALESCE(last_seen, created) < ?",
            (cutoff,),
        )

    def evict_unknowns(self, keep: int) -> int:
        """Keep the ``keep`` most recently seen unconfirmed people, delete the others."""
        return self._drop_unknowns(
            "SELECT id, name FROM people WHERE confirmed = 0 ORDER BY "
            "COALESCE(last_seen, created) DESC LIMIT -1 OFFSET ?",
            (keep,),
        )

    def _drop_unknowns(self, select: str, args: Sequence[object]) -> int:
        with self._tx() as db:
            rows = db.execute(select, args).fetchall()
            for pid, label in rows:
                self._tombstone(db, label)
                db.execute("DELETE FROM people WHERE id = ?", (pid,))
            if rows:
                self._bump(db)
        if rows:
            self._checkpoint()
        return len(rows)

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


def validate_name(name: str) -> str:
    """A person's name or label: trimmed, 1..100 printable characters."""
    name = " ".join(str(name).split())
    if not name:
        raise GalleryError("a person's name must not be empty")
    if len(name) > _NAME_MAX:
        raise GalleryError(f"a person's name must be at most {_NAME_MAX} characters")
    if not name.isprintable():
        raise GalleryError("a person's name must not contain control characters")
    return name


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
