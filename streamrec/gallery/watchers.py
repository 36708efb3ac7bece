"""Running pipelines of a gallery and the revision each has taken in.

A running pipeline records the revision it has taken in (:meth:`RunningPipelines.watch`), at
once when it moved and every ``WATCH_BEAT`` seconds anyway, so that an erasure can wait until
nothing running still knows the person (``streamrec erase``).
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass

from streamrec.gallery.file import GalleryFile

#: a running pipeline confirms what it has taken in at least this often (seconds) ...
WATCH_BEAT = 2.0
#: ... and is taken for gone (crashed, killed) when it has not for this long
WATCH_STALE = 15.0


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


class RunningPipelines(GalleryFile):
    """The ``watchers`` table of the gallery file."""

    def watch(self, revision: int, watcher: int | None = None) -> int | None:
        """Record that this process's pipeline has taken in ``revision`` (and is alive); returns
        its watcher id for the next call (None when the gallery is read-only)."""
        if self.read_only:
            return None
        now = time.time()
        with self._tx() as db:
            if (
                watcher is not None
                and db.execute(
                    "UPDATE watchers SET beat = ?, revision = ? WHERE id = ?",
                    (now, revision, watcher),
                ).rowcount
            ):
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
        found = self._read(
            "SELECT id, pid, host, beat, revision FROM watchers WHERE revision < ? AND beat >= ?",
            (revision, time.time() - stale),
        )
        here = socket.gethostname()
        out = []
        for i, pid, host, beat, rev in found:
            if host == here and not _alive(int(pid)):
                continue
            out.append(Watcher(int(i), int(pid), str(host), float(beat), int(rev)))
        return out

    def running(self) -> list[Watcher]:
        """The pipelines of this gallery that are running (whatever they have taken in)."""
        return self.lagging(1 << 62)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True
