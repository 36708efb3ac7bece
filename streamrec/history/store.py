"""The sightings store: one row per ended track, in a folder beside the gallery.

``faces.db`` gets ``faces.history/`` (0700): ``history.db`` (SQLite, WAL, ``secure_delete``),
``vectors.f16`` (the embeddings) and ``slots.bin`` (per slot what search filters on: sighting,
times, camera; see :mod:`.vectors`), and ``crops/`` (see :mod:`.crops`). Search reads only the
two memory-mapped files and asks SQLite for the hits alone, so opening a history of a million
sightings reads no rows, and every process sees the others' writes at once.
A sibling rather than tables in the gallery: the gallery is small and read on every change by
every running matcher, while the history grows to a million rows written at every track end
and purged by age; apart, history writes never hold the gallery's write lock, its purges and
checkpoints never stall a matcher reload, and the gallery stays small enough to back up often.

A label (a name or ``unknown-N``) belongs to an *identity*, whose key survives renames and
naming: naming ``unknown-7`` "Jane" renames the identity (or moves its sightings into Jane's),
and the old label stays an alias so that late sightings of a running pipeline still land there.
Names are never kept once erased, and never reach a path: crops are addressed by sighting id.

Crash safety: vectors and crops are written before the rows that point at them commit; deleted
rows queue their slot and crop in the same transaction (``free_slots``, ``pending_crops``), and
the vector is zeroed and the file unlinked after the commit, again on the next open if a crash
came in between. So a committed row always has its vector, and a deleted face never survives.
"""

from __future__ import annotations

import itertools
import logging
import re
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from streamrec.errors import GalleryError
from streamrec.files import immediate, private_dir, private_file
from streamrec.gallery.store import Recognizer, validate_name
from streamrec.history.crops import CropFiles
from streamrec.history.records import (
    Erased,
    HistoryPolicy,
    Hit,
    StoredSighting,
    TrackSighting,
)
from streamrec.history.search import HistorySearch
from streamrec.history.vectors import SLOT_META, RowFile

log = logging.getLogger("streamrec.history")

SCHEMA_VERSION = 1
#: an unknown person's label
UNKNOWN_LABEL = re.compile(r"^unknown-\d+$")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS identities (
    id INTEGER PRIMARY KEY AUTOINCREMENT, label TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS aliases (
    label TEXT PRIMARY KEY,
    identity INTEGER NOT NULL REFERENCES identities(id) ON DELETE CASCADE);
CREATE TABLE IF NOT EXISTS cameras (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS sightings (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    slot INTEGER NOT NULL UNIQUE,
    camera INTEGER NOT NULL REFERENCES cameras(id),
    first_seen REAL NOT NULL,
    last_seen REAL NOT NULL,
    quality REAL NOT NULL,
    identity INTEGER REFERENCES identities(id),
    score REAL,
    crop INTEGER NOT NULL,
    bytes INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS sightings_last ON sightings(last_seen);
CREATE INDEX IF NOT EXISTS sightings_identity ON sightings(identity);
CREATE TABLE IF NOT EXISTS negatives (
    id INTEGER PRIMARY KEY,
    identity INTEGER NOT NULL REFERENCES identities(id) ON DELETE CASCADE,
    vector BLOB NOT NULL,
    sighting INTEGER,
    created REAL NOT NULL);
CREATE INDEX IF NOT EXISTS negatives_identity ON negatives(identity);
CREATE TABLE IF NOT EXISTS free_slots (slot INTEGER PRIMARY KEY, zeroed INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS pending_crops (sighting INTEGER PRIMARY KEY);
"""

_ROW = (
    "SELECT s.id, c.name, s.first_seen, s.last_seen, s.quality, i.label, s.score, s.identity, "
    "s.crop FROM sightings s JOIN cameras c ON c.id = s.camera "
    "LEFT JOIN identities i ON i.id = s.identity"
)


def valid_label(label: str) -> str:
    """A person's name or an ``unknown-N`` label, checked by the gallery's one rule."""
    return validate_name(label, label=bool(UNKNOWN_LABEL.match(label)))


def history_folder(gallery: str | Path) -> Path:
    """Where the history of a gallery file lives: ``faces.db`` -> ``faces.history/``."""
    g = Path(gallery).expanduser()
    return g.with_name(g.stem + ".history")


class HistoryStore:
    """The sightings of one gallery's cameras: add, search, relabel, reject, erase, purge.

    Thread-safe (one lock; searches do not take it). Several processes may open the same
    folder; ``revision`` moves with every change any of them makes.
    """

    def __init__(
        self, folder: str | Path, recognizer: Recognizer, policy: HistoryPolicy | None = None
    ) -> None:
        self.folder = private_dir(folder)
        self.recognizer = recognizer
        self.policy = policy or HistoryPolicy()
        self.dim = recognizer.dim
        self._lock = threading.RLock()
        db_path = private_file(self.folder / "history.db")
        try:
            self.db = sqlite3.connect(str(db_path), timeout=30, check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA foreign_keys=ON")
            self.db.execute("PRAGMA secure_delete=ON")
            with self.db:
                self.db.executescript(_SCHEMA)
            self._check_meta()
        except sqlite3.DatabaseError as exc:
            raise GalleryError(f"history {db_path} cannot be read ({exc})") from None
        self.vectors = RowFile.vectors(self.folder / "vectors.f16", self.dim)
        self.slots = RowFile(self.folder / "slots.bin", SLOT_META)
        self.crops = CropFiles(self.folder / "crops")
        self._search: HistorySearch | None = None
        self._recover()

    # --- opening ---------------------------------------------------------------------------

    def _check_meta(self) -> None:
        rec = self.recognizer
        with self.transaction() as db:
            db.executemany(
                "INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)",
                [
                    ("schema_version", str(SCHEMA_VERSION)),
                    ("recognizer_sha256", rec.sha256),
                    ("dim", str(rec.dim)),
                    ("revision", "0"),
                ],
            )
            meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
        if int(meta["schema_version"]) > SCHEMA_VERSION:
            raise GalleryError(f"history {self.folder} is newer than this streamrec: upgrade")
        made = meta["recognizer_sha256"]
        if made != rec.sha256 and made not in rec.compatible:
            raise GalleryError(
                f"history {self.folder} holds embeddings of another recognizer (sha256 "
                f"{made[:12]}...): they do not compare with {rec.name}'s"
            )

    def _recover(self) -> None:
        """Finish what a crash interrupted: zero the rows of freed slots and of sightings that
        never committed, delete pending crops, and free slots nothing owns."""
        with self._lock:
            (top,) = self.db.execute("SELECT COALESCE(MAX(id), 0) FROM sightings").fetchone()
            meta = self.slots.rows()
            size = max(self.vectors.slots, self.slots.slots)
            owner = np.zeros(size, np.int64)
            owner[: len(meta)] = meta["sighting"]
            owner[owner > top] = 0  # written for a row that never committed (ids only grow)
            free = _column(self.db.execute("SELECT slot FROM free_slots"), np.int64)
            listed = np.zeros(size, bool)
            listed[free[free < size]] = True
            stray = np.flatnonzero((owner == 0) & ~listed).tolist()
            with self.transaction() as db:
                db.executemany(
                    "INSERT INTO free_slots (slot, zeroed) VALUES (?, 0)", [(s,) for s in stray]
                )
                db.execute("DELETE FROM free_slots WHERE slot >= ?", (size,))
                db.executemany(  # crops written for rows that never committed
                    "INSERT OR IGNORE INTO pending_crops (sighting) VALUES (?)",
                    [(i,) for i in self.crops.ids(above=int(top))],
                )
            self._finish_deletes()

    def _finish_deletes(self) -> None:
        """Zero the freed slots and unlink the pending crops (after their rows committed)."""
        dirty = [s for (s,) in self.db.execute("SELECT slot FROM free_slots WHERE zeroed = 0")]
        if dirty:
            for rows in (self.slots, self.vectors):
                rows.zero(dirty)
                rows.sync()
            with self.transaction() as db:
                db.executemany(
                    "UPDATE free_slots SET zeroed = 1 WHERE slot = ?", [(s,) for s in dirty]
                )
        pending = [i for (i,) in self.db.execute("SELECT sighting FROM pending_crops")]
        if pending:
            self.crops.delete(pending)
            with self.transaction() as db:
                db.executemany(
                    "DELETE FROM pending_crops WHERE sighting = ?", [(i,) for i in pending]
                )
        if dirty or pending:
            try:
                self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.OperationalError as exc:  # a reader in another process: next time
                log.debug("history checkpoint postponed: %s", exc)

    def close(self) -> None:
        with self._lock:
            self.vectors.close()
            self.slots.close()
            self.db.close()

    def __enter__(self) -> HistoryStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- plumbing --------------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction on the history file, taken at once (for the history's modules:
        call ``bump`` in it when something changed)."""
        with self._lock, immediate(self.db) as db:
            yield db

    def read(self, sql: str, args: Sequence[object] = ()) -> list[tuple]:
        with self._lock:
            return self.db.execute(sql, args).fetchall()

    def _one(self, sql: str, args: Sequence[object] = ()) -> tuple | None:
        with self._lock:
            row: tuple | None = self.db.execute(sql, args).fetchone()
            return row

    def _value(self, sql: str, args: Sequence[object] = ()) -> Any:
        """The one value of a query that always gives one row (an aggregate, the meta)."""
        row = self._one(sql, args)
        assert row is not None
        return row[0]

    @property
    def revision(self) -> int:
        """Moves with every change (by this process or another)."""
        value = self._value("SELECT value FROM meta WHERE key = 'revision'")
        return int(value)

    def bump(self, db: sqlite3.Connection) -> None:
        db.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'revision'")

    def identity_of(self, db: sqlite3.Connection, label: str | None, create: bool) -> int | None:
        if label is None:
            return None
        row = db.execute(
            "SELECT id FROM identities WHERE label = ? UNION ALL "
            "SELECT identity FROM aliases WHERE label = ?",
            (label, label),
        ).fetchone()
        if row is not None:
            return int(row[0])
        if not create:
            return None
        return int(db.execute("INSERT INTO identities (label) VALUES (?)", (label,)).lastrowid or 0)

    def _camera(self, db: sqlite3.Connection, name: str) -> int:
        db.execute("INSERT OR IGNORE INTO cameras (name) VALUES (?)", (name,))
        (cid,) = db.execute("SELECT id FROM cameras WHERE name = ?", (name,)).fetchone()
        return int(cid)

    def _take_slots(self, db: sqlite3.Connection, count: int) -> list[int]:
        free = [
            s
            for (s,) in db.execute(
                "SELECT slot FROM free_slots WHERE zeroed = 1 ORDER BY slot LIMIT ?", (count,)
            )
        ]
        db.executemany("DELETE FROM free_slots WHERE slot = ?", [(s,) for s in free])
        top = max(self.vectors.slots, self.slots.slots)  # new rows go at the end of the files
        return free + list(range(top, top + count - len(free)))

    # --- writing ---------------------------------------------------------------------------

    def add(self, sightings: Sequence[TrackSighting]) -> list[int]:
        """Store sightings (one transaction); their ids."""
        if not sightings:
            return []
        vectors = np.stack(
            [np.asarray(s.embedding, np.float32).reshape(self.dim) for s in sightings]
        )
        ids: list[int] = []
        meta = np.zeros(len(sightings), SLOT_META)
        with self.transaction() as db:
            slots = self._take_slots(db, len(sightings))
            for k, (s, slot) in enumerate(zip(sightings, slots, strict=True)):
                label = valid_label(s.label) if s.label is not None else None
                ident = self.identity_of(db, label, create=True)
                cam = self._camera(db, s.camera)
                cur = db.execute(
                    "INSERT INTO sightings (slot, camera, first_seen, last_seen, quality, "
                    "identity, score, crop, bytes) VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?)",
                    (
                        slot,
                        cam,
                        s.first_seen,
                        s.last_seen,
                        float(s.quality),
                        ident,
                        None if s.score is None else float(s.score),
                        self.vectors.row_bytes + self.slots.row_bytes,
                    ),
                )
                sid = int(cur.lastrowid or 0)
                if s.crop is not None:
                    size = self.crops.write(sid, s.crop)
                    db.execute(
                        "UPDATE sightings SET crop = 1, bytes = bytes + ? WHERE id = ?", (size, sid)
                    )
                else:
                    self.crops.delete([sid])  # a crop left by a crashed write of this id
                ids.append(sid)
                meta[k] = (sid, s.first_seen, s.last_seen, cam, 0)
            # the rows are on disk before the sightings that own them commit
            self.vectors.write(slots, vectors.astype(np.float16))
            self.slots.write(slots, meta)
            self.vectors.sync()
            self.slots.sync()
            self.bump(db)
        return ids

    def _delete(self, where: str, args: Sequence[object] = ()) -> tuple[int, int]:
        """Delete the sightings ``WHERE where``: (rows, crop files)."""
        with self.transaction() as db:
            rows = db.execute(
                f"SELECT id, slot, crop FROM sightings WHERE {where}", args
            ).fetchall()
            if not rows:
                return 0, 0
            db.executemany("DELETE FROM sightings WHERE id = ?", [(r[0],) for r in rows])
            db.executemany(
                "INSERT OR REPLACE INTO free_slots (slot, zeroed) VALUES (?, 0)",
                [(r[1],) for r in rows],
            )
            db.executemany(
                "INSERT OR IGNORE INTO pending_crops (sighting) VALUES (?)",
                [(r[0],) for r in rows if r[2]],
            )
            self.bump(db)
        self._finish_deletes()
        return len(rows), sum(1 for r in rows if r[2])

    def delete(self, ids: Sequence[int]) -> int:
        """Delete these sightings with their crops (a user's review); how many there were."""
        marks = ",".join("?" * len(ids))
        return self._delete(f"id IN ({marks})", tuple(int(i) for i in ids))[0] if ids else 0

    def purge(self, now: float | None = None) -> int:
        """Apply retention and the size caps; how many sightings went."""
        now = time.time() if now is None else now
        gone = 0
        days = self.policy.retention_days
        if days > 0:
            gone += self._delete("last_seen < ?", (now - days * 86400.0,))[0]
        count = self._value("SELECT COUNT(*) FROM sightings")
        over = int(count) - self.policy.max_sightings
        if over > 0:
            gone += self._delete(
                "id IN (SELECT id FROM sightings ORDER BY last_seen, id LIMIT ?)", (over,)
            )[0]
        if self.policy.max_bytes is not None:
            gone += self._trim_bytes(self.policy.max_bytes)
        with self.transaction() as db:  # identities left with nothing
            db.execute(
                "DELETE FROM identities WHERE id NOT IN (SELECT identity FROM sightings WHERE "
                "identity IS NOT NULL) AND id NOT IN (SELECT identity FROM negatives)"
            )
        return gone

    def _trim_bytes(self, cap: int) -> int:
        rows = self.read("SELECT id, bytes FROM sightings ORDER BY last_seen DESC, id DESC")
        total, cut = 0, None
        for sid, size in rows:
            total += int(size)
            if total > cap:
                cut = int(sid)
                break
        if cut is None:
            return 0
        last = self._value("SELECT last_seen FROM sightings WHERE id = ?", (cut,))
        return self._delete("last_seen < ? OR (last_seen = ? AND id <= ?)", (last, last, cut))[0]

    def __len__(self) -> int:
        count = self._value("SELECT COUNT(*) FROM sightings")
        return int(count)

    # --- erasure ----------------------------------------------------------------------------

    def erase(self, labels: Iterable[str]) -> Erased:
        """Erase every sighting, crop and negative of these labels' identities (every label
        each ever had: its aliases go too)."""
        with self._lock:
            idents = {
                i
                for lab in labels
                if (i := self.identity_of(self.db, lab, create=False)) is not None
            }
            if not idents:
                return Erased(0, 0, 0)
            marks = ",".join("?" * len(idents))
            (negs,) = self.db.execute(
                f"SELECT COUNT(*) FROM negatives WHERE identity IN ({marks})", tuple(idents)
            ).fetchone()
            rows, crops = self._delete(f"identity IN ({marks})", tuple(idents))
            with self.transaction() as db:
                db.execute(f"DELETE FROM identities WHERE id IN ({marks})", tuple(idents))
                self.bump(db)
            self._finish_deletes()
        return Erased(rows, crops, int(negs))

    # --- reading ---------------------------------------------------------------------------

    def sighting(self, sighting: int) -> StoredSighting | None:
        row = self._one(f"{_ROW} WHERE s.id = ?", (sighting,))
        return _stored(row) if row else None

    def sightings(self, label: str | None = None, limit: int = 1000) -> list[StoredSighting]:
        """Sightings, newest first; of one label's identity when given."""
        if label is None:
            rows = self.read(f"{_ROW} ORDER BY s.last_seen DESC, s.id DESC LIMIT ?", (limit,))
        else:
            ident = self.identity_of(self.db, label, create=False)
            if ident is None:
                return []
            rows = self.read(
                f"{_ROW} WHERE s.identity = ? ORDER BY s.last_seen DESC, s.id DESC LIMIT ?",
                (ident, limit),
            )
        return [_stored(r) for r in rows]

    def crop_path(self, sighting: int) -> Path | None:
        """The crop file of a sighting, if it has one."""
        row = self._one("SELECT crop FROM sightings WHERE id = ?", (sighting,))
        return self.crops.path(sighting) if row and row[0] else None

    def embeddings(self, ids: Sequence[int]) -> np.ndarray:
        """The stored (float16) embeddings of these sightings, as float32 [N, D]."""
        matrix = self.vectors.rows()
        slots = []
        for sid in ids:
            row = self._one("SELECT slot FROM sightings WHERE id = ?", (sid,))
            if row is None:
                raise GalleryError(f"no sighting {sid} in the history")
            slots.append(int(row[0]))
        return np.asarray(matrix[slots], np.float32).reshape(len(slots), self.dim)

    def labelled(self, unknown_only: bool = False) -> tuple[np.ndarray, list[str], np.ndarray]:
        """(sighting ids, labels, embeddings) of the sightings carrying a label, oldest first;
        only ``unknown-N`` ones with ``unknown_only`` (what grouping works on)."""
        rows = self.read(
            "SELECT s.id, s.slot, i.label FROM sightings s JOIN identities i "
            "ON i.id = s.identity ORDER BY s.id"
        )
        rows = [r for r in rows if not unknown_only or UNKNOWN_LABEL.match(r[2])]
        matrix = self.vectors.rows()
        vectors = np.asarray(matrix[[r[1] for r in rows]], np.float32).reshape(-1, self.dim)
        return np.array([r[0] for r in rows], np.int64), [r[2] for r in rows], vectors

    def search(
        self,
        query: np.ndarray,
        k: int = 20,
        since: float | None = None,
        until: float | None = None,
        camera: str | None = None,
        min_similarity: float = -1.0,
    ) -> list[Hit]:
        """The sightings whose face is most like ``query``, best first (see
        :class:`~.search.HistorySearch`, made once per store for its approximate index)."""
        with self._lock:
            if self._search is None:
                self._search = HistorySearch(self)
        return self._search.search(query, k, since, until, camera, min_similarity)

    def camera_id(self, name: str) -> int | None:
        row = self._one("SELECT id FROM cameras WHERE name = ?", (name,))
        return None if row is None else int(row[0])

    def in_slot(self, slot: int) -> StoredSighting | None:
        """The sighting whose vector is in ``slot`` (None: free, or deleted meanwhile)."""
        row = self._one(f"{_ROW} WHERE s.slot = ?", (slot,))
        return _stored(row) if row else None


def _column(cur: sqlite3.Cursor, dtype: type, width: int = 1) -> np.ndarray:
    """A query's numeric rows as an array [N] (or [N, width]), without a list of tuples."""
    flat: np.ndarray = np.fromiter(itertools.chain.from_iterable(cur), dtype)
    return flat if width == 1 else flat.reshape(-1, width)


def _stored(row: tuple) -> StoredSighting:
    sid, cam, first, last, quality, label, score, ident, crop = row
    return StoredSighting(
        int(sid),
        cam,
        float(first),
        float(last),
        float(quality),
        label,
        None if score is None else float(score),
        None if ident is None else int(ident),
        bool(crop),
    )
