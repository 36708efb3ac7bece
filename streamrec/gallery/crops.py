"""Review crops of unknown people as JPEG files (``unknowns.crops_dir``): one folder per identity.

A folder is named by its identity's number (``unknown-7`` -> ``7``), never by a name: nothing a
user types reaches a path. Every path is built from a number, resolved and checked to stay inside
the root (a planted symbolic link pointing elsewhere is refused). A file's name starts with the
crop's quality (``q0.8123-...``), so the best ``max_crops`` are kept across restarts and
processes. Folders of earlier versions (``unknown-7``) are renamed when the folder is opened.

Who deletes what: the gallery deletes the folders of the identities it erases, purges, evicts or
folds into another (:class:`~streamrec.gallery.store.Gallery`); a run without a gallery purges
and evicts here (:meth:`CropFolders.purge`, :meth:`CropFolders.evict`).
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import shutil
import time
from collections.abc import Iterable
from pathlib import Path

from streamrec.errors import GalleryError
from streamrec.files import private_dir

log = logging.getLogger("streamrec.gallery")

_LABEL = re.compile(r"^unknown-(\d{1,18})$")
_FOLDER = re.compile(r"^\d{1,18}$")
_FILE = re.compile(r"^q(\d\.\d{4})-.*\.jpg$")
_counter = itertools.count()


def label_number(label: str) -> int | None:
    """N of an ``unknown-N`` label; None for any other name (a person's: it has no folder)."""
    m = _LABEL.match(label)
    return int(m.group(1)) if m else None


def inside(root: Path, part: str) -> Path:
    """``root/part``, refused unless it is a direct child of ``root`` once resolved (a symbolic
    link there is refused too: it would lead elsewhere)."""
    base = root.resolve()
    path = base / part
    if path.is_symlink() or path.resolve().parent != base:
        raise GalleryError(f"refused: {part!r} does not stay inside {root}")
    return path


class CropFolders:
    """``root/<N>/q<quality>-<time>-<pid>-<n>.jpg``: the best ``max_crops`` faces of unknown-N."""

    def __init__(self, root: str | Path, max_crops: int) -> None:
        self.root = Path(root).expanduser()
        self.max_crops = max_crops
        self._migrate()

    def folder(self, label: str) -> Path | None:
        """The folder of an ``unknown-N`` label (it may not exist); None for other names."""
        number = label_number(label)
        return None if number is None else inside(self.root, str(number))

    def numbers(self) -> list[int]:
        """The identity numbers that have a folder."""
        if not self.root.is_dir():
            return []
        return [int(p.name) for p in self.root.iterdir() if _FOLDER.match(p.name)]

    def save(self, label: str, jpeg: bytes, quality: float | None) -> Path | None:
        """Keep ``jpeg`` if it is among the label's ``max_crops`` best; the file, or None."""
        folder = self.folder(label)
        if folder is None:
            return None
        q = min(max(float(quality or 0.0), 0.0), 9.9999)
        kept = self._files(folder)
        if len(kept) >= self.max_crops and q <= kept[-1][0]:
            return None
        private_dir(folder)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        path = folder / f"q{q:.4f}-{stamp}-{os.getpid()}-{next(_counter)}.jpg"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
        fd = os.open(path, flags, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(jpeg)
        self._trim(folder)
        return path

    def remove(self, labels: Iterable[str]) -> list[Path]:
        """Delete the folders of these labels (names of people have none); those deleted."""
        gone = []
        for label in labels:
            number = label_number(label)
            if number is None:
                continue
            planted = self.root / str(number)
            if planted.is_symlink():  # not ours: the link goes, what it points to stays
                log.warning("review crops: %s is a symbolic link; removed the link only", planted)
                planted.unlink()
                continue
            folder = inside(self.root, str(number))
            if folder.is_dir():
                shutil.rmtree(folder)
                gone.append(folder)
        return gone

    def merge(self, source: str, target: str) -> None:
        """The crops of ``source`` become ``target``'s (the best ``max_crops`` kept)."""
        src, dst = self.folder(source), self.folder(target)
        if src is None or not src.is_dir():
            return
        if dst is None:  # folded into a person: the folder stays theirs (found by lineage)
            return
        private_dir(dst)
        for path in src.iterdir():
            if path.is_file() and not path.is_symlink():
                os.replace(path, dst / path.name)
        shutil.rmtree(src)
        self._trim(dst)

    def purge(self, days: float) -> int:
        """Delete the folders not written for ``days`` days (a run without a gallery)."""
        if days <= 0:
            return 0
        cutoff = time.time() - days * 86400.0
        old = [n for n, t in self._ages() if t < cutoff]
        self.remove(f"unknown-{n}" for n in old)
        return len(old)

    def evict(self, keep: int) -> int:
        """Keep the ``keep`` most recently written folders, delete the others."""
        ages = sorted(self._ages(), key=lambda a: -a[1])
        old = [n for n, _ in ages[keep:]]
        self.remove(f"unknown-{n}" for n in old)
        return len(old)

    def _ages(self) -> list[tuple[int, float]]:
        out = []
        for n in self.numbers():
            try:
                out.append((n, (self.root / str(n)).stat().st_mtime))
            except OSError:
                continue
        return out

    def _files(self, folder: Path) -> list[tuple[float, Path]]:
        """The folder's crops, best first (files of earlier versions count as quality 0)."""
        if not folder.is_dir():
            return []
        found = []
        for path in folder.iterdir():
            if path.suffix.lower() == ".jpg" and path.is_file() and not path.is_symlink():
                m = _FILE.match(path.name)
                found.append((float(m.group(1)) if m else 0.0, path))
        return sorted(found, key=lambda f: (-f[0], f[1].name))

    def _trim(self, folder: Path) -> None:
        for _, path in self._files(folder)[self.max_crops :]:
            path.unlink(missing_ok=True)

    def _migrate(self) -> None:
        """Rename the ``unknown-N`` folders of earlier versions to ``N`` (merged into ``N`` if
        both exist) and trim each to ``max_crops``."""
        if not self.root.is_dir():
            return
        for path in list(self.root.iterdir()):
            number = label_number(path.name)
            if number is None or path.is_symlink() or not path.is_dir():
                continue
            try:
                target = inside(self.root, str(number))
                if target.exists():
                    for f in path.iterdir():
                        if f.is_file() and not f.is_symlink():
                            os.replace(f, target / f.name)
                    shutil.rmtree(path)
                else:
                    os.replace(path, target)
                self._trim(target)
                log.info("review crops of %s moved to the folder %s", path.name, target.name)
            except (OSError, GalleryError) as exc:
                log.warning("cannot move the review crops folder %s: %s", path.name, exc)
