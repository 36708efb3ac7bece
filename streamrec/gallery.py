"""The gallery: enrolled people and their embeddings in one SQLite file, and 1:N matching.

The file records the recognizer (name + sha256) it was made with; opening it with another
recognizer is refused, since embeddings of different models are not comparable.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import GalleryError

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS people (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS embeddings (
    id INTEGER PRIMARY KEY,
    person_id INTEGER NOT NULL REFERENCES people(id) ON DELETE CASCADE,
    vector BLOB NOT NULL,
    source TEXT,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS embeddings_person ON embeddings(person_id);
"""


@dataclass(frozen=True)
class Person:
    name: str
    embeddings: int
    created: float


@dataclass(frozen=True)
class Recognizer:
    """Identity of the recognizer a gallery's embeddings come from."""

    name: str
    sha256: str
    dim: int


class Matcher:
    """Immutable snapshot of the gallery for fast matching: best person by cosine similarity.

    A person's score is the best similarity over their templates.
    """

    def __init__(self, names: list[str], templates: np.ndarray, owners: np.ndarray) -> None:
        self.names = names
        self.templates = templates.astype(np.float32)  # [M, D], L2-normalised
        self.owners = owners.astype(np.int64)  # [M] index into names

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
        n = embeddings.shape[0]
        if not self.names or n == 0:
            return np.full(n, -1, np.int64), np.full(n, -1.0, np.float32)
        scores = self.person_scores(embeddings)
        idx = scores.argmax(axis=1)
        return idx, scores[np.arange(n), idx]

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

    def __init__(self, path: str | Path, recognizer: Recognizer) -> None:
        self.path = Path(path)
        self.recognizer = recognizer
        try:
            if self.path.parent and not self.path.parent.exists():
                self.path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(str(self.path), timeout=30, check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA foreign_keys=ON")
            with self.db:
                self.db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise GalleryError(f"gallery {self.path} is not a usable SQLite file: {exc}") from None
        except OSError as exc:
            raise GalleryError(f"cannot open gallery {self.path}: {exc}") from None
        self._check_meta()

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Gallery:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self.db:
            yield self.db

    def _meta(self) -> dict[str, str]:
        return dict(self.db.execute("SELECT key, value FROM meta").fetchall())

    def _check_meta(self) -> None:
        meta = self._meta()
        if not meta:
            with self._tx() as db:
                db.executemany(
                    "INSERT INTO meta (key, value) VALUES (?, ?)",
                    [
                        ("schema_version", str(SCHEMA_VERSION)),
                        ("recognizer_name", self.recognizer.name),
                        ("recognizer_sha256", self.recognizer.sha256),
                        ("dim", str(self.recognizer.dim)),
                        ("revision", "0"),
                    ],
                )
            return
        version = int(meta.get("schema_version", "0"))
        if version > SCHEMA_VERSION:
            raise GalleryError(
                f"gallery {self.path} has schema version {version}; this streamrec reads up to "
                f"{SCHEMA_VERSION}: upgrade streamrec"
            )
        if meta.get("recognizer_sha256") != self.recognizer.sha256:
            raise GalleryError(
                f"gallery {self.path} was made with recognizer {meta.get('recognizer_name')} "
                f"(sha256 {meta.get('recognizer_sha256', '?')[:12]}...), but this run uses "
                f"{self.recognizer.name} (sha256 {self.recognizer.sha256[:12]}...); embeddings of "
                f"different models do not compare: use the same models.recognizer or enrol a new "
                f"gallery"
            )

    @property
    def revision(self) -> int:
        """Increases with every change; lets long-running processes reload when it moves."""
        row = self.db.execute("SELECT value FROM meta WHERE key='revision'").fetchone()
        return int(row[0]) if row else 0

    def _bump(self, db: sqlite3.Connection) -> None:
        db.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key='revision'")

    def add(self, name: str, embeddings: np.ndarray, sources: list[str] | None = None) -> int:
        """Add embeddings [N, D] to ``name`` (created if new); return the person's total."""
        name = name.strip()
        if not name:
            raise GalleryError("a person's name must not be empty")
        embeddings = np.asarray(embeddings, np.float32).reshape(-1, self.recognizer.dim)
        sources = sources or [""] * len(embeddings)
        now = time.time()
        with self._tx() as db:
            db.execute("INSERT OR IGNORE INTO people (name, created) VALUES (?, ?)", (name, now))
            (pid,) = db.execute("SELECT id FROM people WHERE name = ?", (name,)).fetchone()
            db.executemany(
                "INSERT INTO embeddings (person_id, vector, source, created) VALUES (?, ?, ?, ?)",
                [(pid, e.tobytes(), s, now) for e, s in zip(embeddings, sources, strict=True)],
            )
            self._bump(db)
            (count,) = db.execute(
                "SELECT COUNT(*) FROM embeddings WHERE person_id = ?", (pid,)
            ).fetchone()
        return int(count)

    def remove(self, name: str) -> None:
        with self._tx() as db:
            cur = db.execute("DELETE FROM people WHERE name = ?", (name,))
            if cur.rowcount == 0:
                raise GalleryError(f"no person named '{name}' in gallery {self.path}")
            self._bump(db)

    def people(self) -> list[Person]:
        rows = self.db.execute(
            "SELECT p.name, COUNT(e.id), p.created FROM people p "
            "LEFT JOIN embeddings e ON e.person_id = p.id GROUP BY p.id ORDER BY p.name"
        ).fetchall()
        return [Person(n, int(c), float(t)) for n, c, t in rows]

    def matcher(self) -> Matcher:
        rows = self.db.execute(
            "SELECT p.name, e.vector FROM embeddings e JOIN people p ON p.id = e.person_id "
            "ORDER BY p.name, e.id"
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
        return Matcher(names, templates, np.asarray(owners))


def open_existing(path: str | Path) -> Gallery:
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
    return Gallery(p, rec)
