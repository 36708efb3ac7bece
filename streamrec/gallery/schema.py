"""The gallery file's schema (SQLite) and its migrations from earlier versions."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

from streamrec.gallery import rows
from streamrec.gallery.types import GalleryPolicy

log = logging.getLogger("streamrec.gallery")

SCHEMA_VERSION = 4

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


def create(db: sqlite3.Connection) -> None:
    """The tables and indexes of the current schema, where they are missing."""
    with db:
        db.executescript(_SCHEMA)


def migrate(db: sqlite3.Connection, version: int, policy: GalleryPolicy) -> None:
    """Bring a gallery of schema ``version`` to ``SCHEMA_VERSION`` (in the caller's transaction)."""
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
    if version == 1:  # schema 1 -> 2: everyone is confirmed; sub-centers computed
        for (pid,) in db.execute("SELECT id FROM people").fetchall():
            rows.refresh(db, pid, policy, judge=False)
    if version <= 2:
        _crops_into_gallery(db)
    db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),))


def _crops_into_gallery(db: sqlite3.Connection) -> None:
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
    for p in moved:
        try:
            Path(p).unlink(missing_ok=True)
        except OSError as exc:
            log.warning("cannot delete crop %s: %s", p, exc)


def damaged(path: Path, exc: sqlite3.DatabaseError) -> str:
    """What to say when SQLite refuses the file."""
    if "locked" in str(exc) or "busy" in str(exc):
        return f"gallery {path} is busy (another process holds a write lock): try again"
    return (
        f"gallery {path} cannot be read ({exc}): the file is damaged or not a gallery; "
        "restore a backup (or recover it with: sqlite3 FILE .recover)"
    )
