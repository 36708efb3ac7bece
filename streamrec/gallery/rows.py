"""The rows of one person in the gallery file, read and written inside a caller's transaction:
finding them, their samples and faces, their sub-centers, and the lineage of their labels.

Every label a person had (an ``unknown-N`` named or merged in, an earlier name) is kept as their
*lineage*, so that erasing them erases what was written under any of those labels; an
``unknown-N`` that was erased, merged away or promoted is *tombstoned*: never brought back, never
handed out again.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from streamrec.gallery.names import UNKNOWN_LABEL, ref
from streamrec.gallery.subcenters import cluster_person
from streamrec.gallery.types import (
    FaceImage,
    GalleryPolicy,
    NoSuchPerson,
    Person,
    Stray,
    UnknownPerson,
    encode_face,
)

#: a person or an unknown with their counts and thumbnail (see :func:`person_of`)
PEOPLE = (
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
#: face images with their owner's name (see :func:`face_image`)
FACES = (
    "SELECT f.id, p.name, f.sample_id, f.jpeg, f.quality, COALESCE(f.source, ''), "
    "f.created FROM faces f JOIN people p ON p.id = f.person_id"
)


def person_of(row: tuple) -> Person | UnknownPerson:
    """A row of :data:`PEOPLE`."""
    pid, name, created, confirmed, last, e, s, f, chosen, enrolled, best = row
    if not confirmed:
        return UnknownPerson(int(pid), name, int(e), int(f), float(created), float(last))
    thumb = chosen if chosen is not None else enrolled if enrolled is not None else best
    return Person(int(pid), name, int(e), float(created), int(s), int(f), thumb, chosen is not None)


def face_image(row: tuple) -> FaceImage:
    """A row of :data:`FACES`."""
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


def by_name(db: sqlite3.Connection, name: str) -> tuple[int, bool] | None:
    """(id, confirmed) of the person of that exact name."""
    row = db.execute("SELECT id, confirmed FROM people WHERE name = ?", (name,)).fetchone()
    return (int(row[0]), bool(row[1])) if row else None


def find(db: sqlite3.Connection, person: int | str) -> tuple[int, str, bool] | None:
    """(id, name, confirmed) of a person given by row id or exact name."""
    column = "id" if isinstance(person, int) else "name"
    row = db.execute(
        f"SELECT id, name, confirmed FROM people WHERE {column} = ?", (person,)
    ).fetchone()
    return (int(row[0]), str(row[1]), bool(row[2])) if row else None


def found(db: sqlite3.Connection, person: int | str, path: Path) -> tuple[int, str, bool]:
    """As :func:`find`; NoSuchPerson when there is none (``path``: the gallery, for the message)."""
    row = find(db, person)
    if row is None:
        raise NoSuchPerson(f"no person {ref(person)} in gallery {path}")
    return row


def create(db: sqlite3.Connection, name: str, now: float, confirmed: bool) -> int:
    cur = db.execute(
        "INSERT INTO people (name, created, confirmed, last_seen) VALUES (?, ?, ?, ?)",
        (name, now, int(confirmed), None if confirmed else now),
    )
    return int(cur.lastrowid or 0)


def count(db: sqlite3.Connection, pid: int) -> int:
    """A person's samples."""
    (n,) = db.execute("SELECT COUNT(*) FROM embeddings WHERE person_id = ?", (pid,)).fetchone()
    return int(n)


def insert_samples(
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


def keep_best_faces(db: sqlite3.Connection, pid: int, keep: int) -> None:
    """Delete all but the ``keep`` best face images of a person (quality, then newest)."""
    db.execute(
        "DELETE FROM faces WHERE person_id = ? AND id NOT IN (SELECT id FROM faces "
        "WHERE person_id = ? ORDER BY COALESCE(quality, 0) DESC, created DESC, id "
        "LIMIT ?)",
        (pid, pid, keep),
    )


def refresh(db: sqlite3.Connection, pid: int, policy: GalleryPolicy, judge: bool) -> list[Stray]:
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
        policy.subcenters,
        policy.outlier_angle if judge else None,
        trusted if trusted.any() else None,
    )
    db.executemany("DELETE FROM embeddings WHERE id = ?", [(rows[i][0],) for i, _ in result.strays])
    db.executemany(
        "INSERT INTO subcenters (person_id, vector, members) VALUES (?, ?, ?)",
        [
            (pid, c.astype(np.float32).tobytes(), m)
            for c, m in zip(result.centers, result.members, strict=True)
        ],
    )
    return [Stray(name, rows[i][2] or "", a, result.ambiguous) for i, a in result.strays]


# -- lineage ------------------------------------------------------------------------------------


def lineage(db: sqlite3.Connection, pid: int) -> list[str]:
    """The labels a person had besides their name, oldest first."""
    rows = db.execute(
        "SELECT label FROM lineage WHERE person_id = ? ORDER BY created, label", (pid,)
    ).fetchall()
    return [str(r[0]) for r in rows]


def record(db: sqlite3.Connection, pid: int, label: str) -> None:
    """``label`` was one of the person's (a name before a rename, a label named or merged)."""
    db.execute(
        "INSERT OR IGNORE INTO lineage (person_id, label, created) VALUES (?, ?, ?)",
        (pid, label, time.time()),
    )


def tombstone(db: sqlite3.Connection, label: str) -> None:
    """An ``unknown-N`` label is never brought back nor reused (names of people are not
    kept: an erased person leaves no name behind)."""
    if UNKNOWN_LABEL.match(label):
        db.execute(
            "INSERT OR IGNORE INTO tombstones (label, created) VALUES (?, ?)",
            (label, time.time()),
        )


def move(db: sqlite3.Connection, source: int, target: int) -> None:
    """Samples, faces and lineage of person ``source`` become ``target``'s (and its name
    joins their lineage); ``source`` is deleted."""
    db.execute("UPDATE embeddings SET person_id = ? WHERE person_id = ?", (target, source))
    db.execute("UPDATE faces SET person_id = ? WHERE person_id = ?", (target, source))
    db.execute("UPDATE OR IGNORE lineage SET person_id = ? WHERE person_id = ?", (target, source))
    (name,) = db.execute("SELECT name FROM people WHERE id = ?", (source,)).fetchone()
    record(db, target, name)
    db.execute(
        "UPDATE people SET last_seen = MAX(COALESCE(last_seen, 0), COALESCE((SELECT "
        "last_seen FROM people WHERE id = ?), 0)) WHERE id = ? AND confirmed = 0",
        (source, target),
    )
    db.execute("DELETE FROM people WHERE id = ?", (source,))
