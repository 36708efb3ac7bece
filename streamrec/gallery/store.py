"""The gallery: enrolled people, their sample embeddings and sub-centers in one SQLite file.

The file records the recognizer (name + sha256) it was made with; opening it with another
recognizer is refused, since embeddings of different models are not comparable.

Every sample embedding is kept; on each change of a person their sub-centers (at most
``enrollment.subcenters`` templates) are recomputed and samples too far from the dominant one
are dropped as strays (see ``subcenters``). Matching uses the best sub-center of each person.

Unconfirmed people (``unknown-N`` found by the pipeline, with crop images for review) live in
the same tables with ``confirmed = 0``: they are never matched as people, until promoted.
"""

from __future__ import annotations

import logging
import re
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from streamrec.errors import GalleryError
from streamrec.gallery.index import TemplateIndex
from streamrec.gallery.subcenters import cluster_person

if TYPE_CHECKING:
    from streamrec.config import Config

log = logging.getLogger("streamrec.gallery")

SCHEMA_VERSION = 2

#: newest samples kept per unconfirmed person (the pipeline adds some for every track)
MAX_UNKNOWN_SAMPLES = 64

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
CREATE TABLE IF NOT EXISTS crops (
    id INTEGER PRIMARY KEY,
    person_id INTEGER NOT NULL REFERENCES people(id) ON DELETE CASCADE,
    path TEXT NOT NULL,
    quality REAL,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS crops_person ON crops(person_id);
"""

#: schema 1 -> 2: unconfirmed people (confirmed, last_seen); subcenters and crops are new tables
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


@dataclass(frozen=True)
class UnknownPerson:
    """An unconfirmed person found by the pipeline, waiting to be named or purged."""

    label: str
    embeddings: int
    crops: list[str]  # saved crop images, best first
    first_seen: float
    last_seen: float


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


class Matcher:
    """Immutable snapshot of the gallery for fast matching: best person by cosine similarity.

    A person's score is the best similarity over their templates (sub-centers).
    """

    def __init__(
        self,
        names: list[str],
        templates: np.ndarray,
        owners: np.ndarray,
        index_min_size: int | None = None,
    ) -> None:
        self.names = names
        self.templates = templates.astype(np.float32)  # [M, D], L2-normalised
        self.owners = owners.astype(np.int64)  # [M] index into names
        self.index = TemplateIndex(self.templates, min_size=index_min_size)

    @classmethod
    def empty(cls, dim: int) -> Matcher:
        return cls([], np.zeros((0, dim), np.float32), np.zeros((0,), np.int64))

    def __len__(self) -> int:
        return len(self.names)

    def person_scores(self, embeddings: np.ndarray) -> np.ndarray:
        """[N, P] best similarity of each embedding to each person."""
        sims = embeddings @ self.templates.T
        out = np.full((embeddings.shape[0], len(self.names)), -1.0, np.float32)
        np.maximum.at(out.T, self.owners, sims.T)
        return out

    def best(self, embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Index of the best person (or -1 with an empty gallery) and its score, per row."""
        # a person's score is their best template's, so the best person owns the best template
        template, score = self.index.search(embeddings)
        return np.where(template >= 0, self.owners[np.maximum(template, 0)], -1), score

    def match(
        self, embeddings: np.ndarray, threshold: float
    ) -> list[tuple[str | None, float | None]]:
        """(name, score) per embedding; name is None when the best score is below threshold."""
        idx, scores = self.best(embeddings)
        return [
            (self.names[i] if i >= 0 and s >= threshold else None, float(s) if i >= 0 else None)
            for i, s in zip(idx.tolist(), scores.tolist(), strict=True)
        ]


class Gallery:
    """People and embeddings in an SQLite file (WAL mode, versioned schema)."""

    def __init__(
        self, path: str | Path, recognizer: Recognizer, policy: GalleryPolicy | None = None
    ) -> None:
        self.path = Path(path)
        self.recognizer = recognizer
        self.policy = policy or GalleryPolicy()
        try:
            if self.path.parent and not self.path.parent.exists():
                self.path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(str(self.path), timeout=30, check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA foreign_keys=ON")
            with self.db:
                self.db.executescript(_SCHEMA)
            self._check_meta()
        except GalleryError:
            self.db.close()
            raise
        except sqlite3.DatabaseError as exc:
            raise GalleryError(f"gallery {self.path} is not a usable SQLite file: {exc}") from None
        except OSError as exc:
            raise GalleryError(f"cannot open gallery {self.path}: {exc}") from None

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Gallery:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """A write transaction, taken at once so concurrent writers queue instead of failing."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.rollback()
            raise
        self.db.commit()

    def _meta(self) -> dict[str, str]:
        return dict(self.db.execute("SELECT key, value FROM meta").fetchall())

    def _check_meta(self) -> None:
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
            made_with = meta.get("recognizer_sha256")
            if made_with != self.recognizer.sha256 and made_with not in self.recognizer.compatible:
                raise GalleryError(
                    f"gallery {self.path} was made with recognizer {meta.get('recognizer_name')} "
                    f"(sha256 {meta.get('recognizer_sha256', '?')[:12]}...), but this run uses "
                    f"{self.recognizer.name} (sha256 {self.recognizer.sha256[:12]}...); "
                    f"embeddings of different models do not compare: use the same "
                    f"models.recognizer or enrol a new gallery"
                )
            if version == 1:
                self._migrate_from_1(db)

    def _migrate_from_1(self, db: sqlite3.Connection) -> None:
        """Schema 1 -> 2: everyone is confirmed; compute sub-centers (samples are all kept)."""
        for statement in _MIGRATE_1.strip().split(";"):
            if statement.strip():
                db.execute(statement)
        for (pid,) in db.execute("SELECT id FROM people").fetchall():
            self._refresh(db, pid, judge=False)
        db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),))
        self._bump(db)
        log.info("gallery %s migrated from schema 1 to %d", self.path, SCHEMA_VERSION)

    @property
    def revision(self) -> int:
        """Increases with every change; lets long-running processes reload when it moves."""
        row = self.db.execute("SELECT value FROM meta WHERE key='revision'").fetchone()
        return int(row[0]) if row else 0

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

    def add(self, name: str, embeddings: np.ndarray, sources: list[str] | None = None) -> AddResult:
        """Add embeddings [N, D] to ``name`` (created if new); strays of the person are dropped."""
        name = name.strip()
        if not name:
            raise GalleryError("a person's name must not be empty")
        embeddings = self._vectors(embeddings)
        sources = sources or [""] * len(embeddings)
        now = time.time()
        with self._tx() as db:
            found = self._person(db, name)
            if found is not None and not found[1]:
                raise GalleryError(
                    f"'{name}' is an unconfirmed person: use 'streamrec unknowns name {name} NAME'"
                )
            pid = found[0] if found is not None else self._create(db, name, now, confirmed=True)
            db.executemany(
                "INSERT INTO embeddings (person_id, vector, source, created) VALUES (?, ?, ?, ?)",
                [(pid, e.tobytes(), s, now) for e, s in zip(embeddings, sources, strict=True)],
            )
            strays = self._refresh(db, pid, judge=True)
            self._bump(db)
            (count,) = db.execute(
                "SELECT COUNT(*) FROM embeddings WHERE person_id = ?", (pid,)
            ).fetchone()
        for stray in strays:
            log.debug("%s", stray.describe())
        return AddResult(int(count), strays)

    def _crop_paths(self, db: sqlite3.Connection, pid: int) -> list[str]:
        rows = db.execute("SELECT path FROM crops WHERE person_id = ?", (pid,)).fetchall()
        return [p for (p,) in rows]

    def remove(self, name: str) -> None:
        """Delete a person (confirmed or not) with every sample, sub-center and crop file."""
        with self._tx() as db:
            found = self._person(db, name)
            if found is None:
                raise GalleryError(f"no person named '{name}' in gallery {self.path}")
            crops = self._crop_paths(db, found[0])
            db.execute("DELETE FROM people WHERE id = ?", (found[0],))
            self._bump(db)
        _delete_files(crops)

    def people(self) -> list[Person]:
        """Confirmed people, by name."""
        rows = self.db.execute(
            "SELECT p.name, p.created, "
            "(SELECT COUNT(*) FROM embeddings e WHERE e.person_id = p.id), "
            "(SELECT COUNT(*) FROM subcenters s WHERE s.person_id = p.id) "
            "FROM people p WHERE p.confirmed = 1 ORDER BY p.name"
        ).fetchall()
        return [Person(n, int(e), float(t), int(s)) for n, t, e, s in rows]

    def _matcher(self, confirmed: bool) -> Matcher:
        rows = self.db.execute(
            "SELECT p.name, s.vector FROM subcenters s JOIN people p ON p.id = s.person_id "
            "WHERE p.confirmed = ? ORDER BY p.name, s.id",
            (int(confirmed),),
        ).fetchall()
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
        crops: Sequence[str] = (),
        qualities: Sequence[float] | None = None,
    ) -> None:
        """Create or update the unconfirmed person ``label`` (e.g. ``unknown-3``).

        Adds the embeddings (the newest ``MAX_UNKNOWN_SAMPLES`` are kept) and the crop files
        (the gallery owns them from now on): the ``policy.max_crops`` best are kept by
        ``qualities`` (missing = 0), newer first on ties; the files of the others are deleted.
        """
        label = label.strip()
        if not label:
            raise GalleryError("an unknown person's label must not be empty")
        embeddings = self._vectors(embeddings)
        scores = list(qualities) if qualities is not None else [None] * len(crops)
        if len(scores) != len(crops):
            raise GalleryError(f"{len(crops)} crops but {len(scores)} qualities")
        now = time.time()
        with self._tx() as db:
            found = self._person(db, label)
            if found is not None and found[1]:
                raise GalleryError(f"'{label}' is a confirmed person, not an unknown one")
            if found is None:
                pid = self._create(db, label, now, confirmed=False)
            else:
                pid = found[0]
                db.execute("UPDATE people SET last_seen = ? WHERE id = ?", (now, pid))
            db.executemany(
                "INSERT INTO embeddings (person_id, vector, source, created) VALUES (?, ?, ?, ?)",
                [(pid, e.tobytes(), label, now) for e in embeddings],
            )
            db.execute(
                "DELETE FROM embeddings WHERE person_id = ? AND id NOT IN (SELECT id FROM "
                "embeddings WHERE person_id = ? ORDER BY id DESC LIMIT ?)",
                (pid, pid, MAX_UNKNOWN_SAMPLES),
            )
            known = {p for (p,) in db.execute("SELECT path FROM crops WHERE person_id = ?", (pid,))}
            db.executemany(
                "INSERT INTO crops (person_id, path, quality, created) VALUES (?, ?, ?, ?)",
                [
                    (pid, str(c), q, now)
                    for c, q in zip(crops, scores, strict=True)
                    if c not in known
                ],
            )
            ranked = db.execute(
                "SELECT id, path FROM crops WHERE person_id = ? "
                "ORDER BY COALESCE(quality, 0) DESC, created DESC, id",
                (pid,),
            ).fetchall()
            dropped = ranked[self.policy.max_crops :]
            db.executemany("DELETE FROM crops WHERE id = ?", [(i,) for i, _ in dropped])
            self._refresh(db, pid, judge=False)
            self._bump(db)
        _delete_files([p for _, p in dropped])

    def unknowns(self) -> list[UnknownPerson]:
        """Unconfirmed people, by label number."""
        rows = self.db.execute(
            "SELECT p.id, p.name, p.created, COALESCE(p.last_seen, p.created), "
            "(SELECT COUNT(*) FROM embeddings e WHERE e.person_id = p.id) "
            "FROM people p WHERE p.confirmed = 0"
        ).fetchall()
        out = []
        for pid, label, first, last, count in rows:
            crops = self.db.execute(
                "SELECT path FROM crops WHERE person_id = ? "
                "ORDER BY COALESCE(quality, 0) DESC, created DESC, id",
                (pid,),
            ).fetchall()
            out.append(UnknownPerson(label, int(count), [c for (c,) in crops], first, last))
        return sorted(out, key=lambda u: _label_key(u.label))

    def unknown_matcher(self) -> Matcher:
        """Matching among unconfirmed people only."""
        return self._matcher(False)

    def next_unknown_index(self) -> int:
        """N for the next ``unknown-N``: above every label used so far (never reused)."""
        used = [
            int(m.group(1))
            for (n,) in self.db.execute("SELECT name FROM people")
            if (m := _UNKNOWN_LABEL.match(n))
        ]
        row = self.db.execute("SELECT value FROM meta WHERE key = 'unknown_last'").fetchone()
        return max([0, *used, int(row[0]) if row else 0]) + 1

    def promote(self, label: str, name: str) -> AddResult:
        """Confirm the unconfirmed ``label`` as ``name`` (merged into ``name`` if enrolled).

        Its crop files are deleted: they were only kept for review.
        """
        name = name.strip()
        if not name:
            raise GalleryError("a person's name must not be empty")
        with self._tx() as db:
            found = self._person(db, label)
            if found is None or found[1]:
                raise GalleryError(f"no unconfirmed person '{label}' in gallery {self.path}")
            pid = found[0]
            crops = self._crop_paths(db, pid)
            db.execute("DELETE FROM crops WHERE person_id = ?", (pid,))
            self._remember_label(db, label)
            target = self._person(db, name)
            if target is None:
                db.execute(
                    "UPDATE people SET name = ?, confirmed = 1, last_seen = NULL WHERE id = ?",
                    (name, pid),
                )
            elif not target[1]:
                raise GalleryError(
                    f"'{name}' is an unconfirmed person too: name it first, then merge into it"
                )
            else:
                db.execute(
                    "UPDATE embeddings SET person_id = ? WHERE person_id = ?", (target[0], pid)
                )
                db.execute("DELETE FROM people WHERE id = ?", (pid,))
                pid = target[0]
            strays = self._refresh(db, pid, judge=True)
            self._bump(db)
            (count,) = db.execute(
                "SELECT COUNT(*) FROM embeddings WHERE person_id = ?", (pid,)
            ).fetchone()
        _delete_files(crops)
        return AddResult(int(count), strays)

    def _remember_label(self, db: sqlite3.Connection, label: str) -> None:
        """Keep the highest unknown-N ever used, so a promoted label is never handed out again."""
        m = _UNKNOWN_LABEL.match(label)
        if m:
            db.execute(
                "INSERT INTO meta (key, value) VALUES ('unknown_last', ?) ON CONFLICT(key) DO "
                "UPDATE SET value = MAX(CAST(value AS INTEGER), CAST(excluded.value AS INTEGER))",
                (m.group(1),),
            )

    def purge(self, retention_days: float) -> int:
        """Delete unconfirmed people (and crop files) not seen for ``retention_days``; 0 = never.

        Returns how many were deleted.
        """
        if retention_days <= 0:
            return 0
        cutoff = time.time() - retention_days * 86400.0
        with self._tx() as db:
            rows = db.execute(
                "SELECT id, name FROM people WHERE confirmed = 0 "
                "AND COALESCE(last_seen, created) < ?",
                (cutoff,),
            ).fetchall()
            crops = [c for pid, _ in rows for c in self._crop_paths(db, pid)]
            for pid, label in rows:
                self._remember_label(db, label)
                db.execute("DELETE FROM people WHERE id = ?", (pid,))
            if rows:
                self._bump(db)
        _delete_files(crops)
        return len(rows)


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
    try:
        db = sqlite3.connect(f"file:{p}?mode=ro", uri=True)
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
