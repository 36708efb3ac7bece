"""The gallery file: one SQLite file (WAL mode, versioned schema) opened for the stores.

The file records the recognizer (name + sha256) it was made with; opening it with another
recognizer is refused, since embeddings of different models are not comparable. Every change
bumps a revision counter, so that running pipelines notice changes made by any process. Deleted
data is overwritten (``secure_delete``) and the write-ahead log is checkpointed after deletions,
so erased faces do not linger in the file.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar
from urllib.parse import quote

import numpy as np

from streamrec.errors import GalleryError
from streamrec.files import immediate, private_file
from streamrec.gallery import schema
from streamrec.gallery.crops import CropFolders
from streamrec.gallery.matcher import Matcher
from streamrec.gallery.types import GalleryPolicy, Recognizer

log = logging.getLogger("streamrec.gallery")

_Self = TypeVar("_Self", bound="GalleryFile")


class GalleryFile:
    """The open file, its lock, transactions and revision; the stores are built on it.

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
                schema.create(self.db)
            self._check_meta()
        except GalleryError:
            self.db.close()
            raise
        except sqlite3.DatabaseError as exc:
            raise GalleryError(schema.damaged(self.path, exc)) from None
        except OSError as exc:
            raise GalleryError(f"cannot open gallery {self.path}: {exc}") from None
        crops = self.policy.crops_dir
        self.crops = (
            CropFolders(crops, self.policy.max_crops) if crops and not self.read_only else None
        )

    def close(self) -> None:
        with self._lock:
            self.db.close()

    def __enter__(self: _Self) -> _Self:
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
                with immediate(self.db) as db:
                    yield db
            except sqlite3.IntegrityError:
                raise
            except sqlite3.DatabaseError as exc:
                raise GalleryError(schema.damaged(self.path, exc)) from None

    def _read(self, sql: str, args: Sequence[object] = ()) -> list[tuple]:
        with self._lock:
            try:
                return self.db.execute(sql, args).fetchall()
            except sqlite3.DatabaseError as exc:
                raise GalleryError(schema.damaged(self.path, exc)) from None

    def _meta(self) -> dict[str, str]:
        return dict(self.db.execute("SELECT key, value FROM meta").fetchall())

    def _check_meta(self) -> None:
        if self.read_only:
            meta = self._meta()
            version = int(meta.get("schema_version", "0"))
            if version != schema.SCHEMA_VERSION:
                raise GalleryError(
                    f"gallery {self.path} is read-only and has schema version {version} (this "
                    f"streamrec uses {schema.SCHEMA_VERSION}): open it writable once to upgrade it"
                )
            self._check_recognizer(meta)
            return
        with self._tx() as db:
            db.executemany(
                "INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)",
                [
                    ("schema_version", str(schema.SCHEMA_VERSION)),
                    ("recognizer_name", self.recognizer.name),
                    ("recognizer_sha256", self.recognizer.sha256),
                    ("dim", str(self.recognizer.dim)),
                    ("revision", "0"),
                ],
            )
            meta = self._meta()
            version = int(meta.get("schema_version", "0"))
            if version > schema.SCHEMA_VERSION:
                raise GalleryError(
                    f"gallery {self.path} has schema version {version}; this streamrec reads up "
                    f"to {schema.SCHEMA_VERSION}: upgrade streamrec"
                )
            self._check_recognizer(meta)
            if version < schema.SCHEMA_VERSION:
                schema.migrate(db, version, self.policy)
                self._bump(db)
                log.info("gallery %s migrated to schema %d", self.path, schema.SCHEMA_VERSION)

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

    @property
    def revision(self) -> int:
        """Increases with every change; lets long-running processes reload when it moves."""
        rows = self._read("SELECT value FROM meta WHERE key='revision'")
        return int(rows[0][0]) if rows else 0

    def _bump(self, db: sqlite3.Connection) -> None:
        db.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key='revision'")

    def touch(self) -> None:
        """Move the revision for a change kept outside this file that every running matcher
        must take in (a face history's "not this person" negatives)."""
        with self._tx() as db:
            self._bump(db)

    def renamed(self) -> dict[str, str]:
        """Each earlier label of a person (their lineage: an ``unknown-N`` named or merged, a
        name before a rename or merge) -> the label they have now."""
        return dict(
            self._read(
                "SELECT l.label, p.name FROM lineage l JOIN people p ON p.id = l.person_id "
                "WHERE l.label != p.name"
            )
        )

    def _vectors(self, embeddings: np.ndarray) -> np.ndarray:
        return np.asarray(embeddings, np.float32).reshape(-1, self.recognizer.dim)

    def _matcher(self, confirmed: bool) -> Matcher:
        """Matching among the confirmed people, or among the unconfirmed ones."""
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

    def _checkpoint(self) -> None:
        """Fold the write-ahead log into the file (deleted pages are zeroed by secure_delete)."""
        if self.read_only:
            return
        with self._lock:
            try:
                self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.OperationalError as exc:  # another process is reading: next time
                log.debug("WAL checkpoint of %s postponed: %s", self.path, exc)

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
