"""Files that hold faces, names or events: created private to the service (0600, folders 0700).

The modes are set at creation, whatever the process umask; existing files keep theirs.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

FILE_MODE = 0o600
DIR_MODE = 0o700


def private_dir(path: str | Path) -> Path:
    """``path`` and any missing parents created as 0700 folders (existing ones are left)."""
    p = Path(path).expanduser()
    missing = []
    for parent in (p, *p.parents):
        if parent.exists():
            break
        missing.append(parent)
    for d in reversed(missing):
        d.mkdir(mode=DIR_MODE, exist_ok=True)
        os.chmod(d, DIR_MODE)  # mkdir's mode is filtered by the umask
    return p


def private_file(path: str | Path) -> Path:
    """Create ``path`` empty as a 0600 file if it does not exist (its folder as 0700)."""
    p = Path(path).expanduser()
    private_dir(p.parent)
    fd = os.open(p, os.O_WRONLY | os.O_CREAT, FILE_MODE)
    os.close(fd)
    return p


def open_private(path: str | Path, mode: str = "a", encoding: str | None = "utf-8") -> IO[Any]:
    """``open(path, mode)`` of a file created 0600 if new ("a" appends, "w" truncates)."""
    p = Path(path).expanduser()
    private_dir(p.parent)
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if "a" in mode else os.O_TRUNC)
    fd = os.open(p, flags, FILE_MODE)
    return os.fdopen(fd, mode, encoding=None if "b" in mode else encoding)


def write_private(path: str | Path, data: bytes | str) -> Path:
    """Write a whole private file atomically: a new temp file beside it (a random name, created
    exclusively: a link planted there is never followed), then a rename over the target (which
    replaces a link at ``path`` rather than writing through it)."""
    p = Path(path).expanduser()
    private_dir(p.parent)
    raw = data.encode() if isinstance(data, str) else data
    fd, name = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)  # 0600
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return p


@contextmanager
def immediate(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """A write transaction on an SQLite file (the gallery, the face history), taken at once:
    concurrent writers queue on the file's lock instead of failing half-way; rolled back on
    any error."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        db.rollback()
        raise
    db.commit()
