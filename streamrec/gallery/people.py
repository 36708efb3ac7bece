"""The people store: enrolled people, their samples, face images and sub-centers.

Every sample embedding is kept with where it came from and, when there is one, its aligned face
image (a small JPEG in the file itself, so nothing of a person lives outside it); on each change
of a person their sub-centers (at most ``enrollment.subcenters`` templates) are recomputed and
samples too far from the dominant one are dropped as strays (see ``subcenters``). Matching uses
the best sub-center of each person. People are found by their row id or their exact name; every
new name passes :func:`~streamrec.gallery.names.validate_name`.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Sequence

import numpy as np

from streamrec.errors import GalleryError
from streamrec.gallery import rows, schema
from streamrec.gallery.file import GalleryFile
from streamrec.gallery.matcher import Matcher
from streamrec.gallery.names import ref, validate_name
from streamrec.gallery.types import (
    AddResult,
    FaceImage,
    NameConflict,
    NoSuchPerson,
    Person,
    Removed,
    Sample,
    UnknownPerson,
)

log = logging.getLogger("streamrec.gallery")

#: cosine above which two samples of a person are the same face (the same photo enrolled twice)
_SAME_SAMPLE = 0.9999


class PeopleStore(GalleryFile):
    """Enrolled people in the gallery file (the unknown ones: :class:`UnknownStore`)."""

    def add(
        self,
        name: str,
        embeddings: np.ndarray,
        sources: Sequence[str] | None = None,
        faces: Sequence[np.ndarray | None] | None = None,
        qualities: Sequence[float | None] | None = None,
        hashes: Sequence[str | None] | None = None,
    ) -> AddResult:
        """Add samples enrolled on purpose (embeddings [N, D], their sources, aligned face
        images, the faces' qualities and the sha256 of each photo's file) to ``name`` (created
        if new); strays of the person are dropped.

        A sample the person already has is skipped, so importing twice adds nothing: the same
        photo (same sha256, whoever sent it: the CLI, the page, CompreFace), the same source
        when there is no hash (``clip.mp4#frame=N``), or the very same embedding.
        """
        name = validate_name(name)
        embeddings = self._vectors(embeddings)
        sources = list(sources) if sources is not None else [""] * len(embeddings)
        face_list = list(faces) if faces is not None else [None] * len(embeddings)
        quality_list = list(qualities) if qualities is not None else [None] * len(embeddings)
        hash_list = list(hashes) if hashes is not None else [None] * len(embeddings)
        now = time.time()
        with self._tx() as db:
            found = rows.by_name(db, name)
            if found is not None and not found[1]:
                raise GalleryError(
                    f"'{name}' is an unconfirmed person: use 'streamrec unknowns name {name} NAME'"
                )
            pid = found[0] if found is not None else rows.create(db, name, now, confirmed=True)
            have = db.execute(
                "SELECT source, vector, sha256 FROM embeddings WHERE person_id = ?", (pid,)
            ).fetchall()
            new = _new_samples(have, embeddings, sources, hash_list)
            rows.insert_samples(
                db,
                pid,
                embeddings[new],
                [sources[i] for i in new],
                [face_list[i] for i in new],
                [quality_list[i] for i in new],
                now,
                enrolled=True,
                hashes=[hash_list[i] for i in new],
            )
            strays = rows.refresh(db, pid, self.policy, judge=True) if new else []
            if new or found is None:
                self._bump(db)
            count = rows.count(db, pid)
        for stray in strays:
            log.debug("%s", stray.describe())
        skipped = [sources[i] for i in range(len(sources)) if i not in set(new)]
        return AddResult(count, strays, skipped)

    def remove(self, person: int | str) -> Removed:
        """Erase a person (confirmed or not, by id or name) with every sample, sub-center,
        face image, label of their lineage and review crop folder."""
        with self._tx() as db:
            pid, name, _ = rows.found(db, person, self.path)
            labels = [name, *rows.lineage(db, pid)]
            samples = rows.count(db, pid)
            (faces,) = db.execute(
                "SELECT COUNT(*) FROM faces WHERE person_id = ?", (pid,)
            ).fetchone()
            db.execute("DELETE FROM people WHERE id = ?", (pid,))
            for label in labels:
                rows.tombstone(db, label)
            # a label someone else holds now (their name, or one they had) is theirs too
            others = {
                str(n)
                for (n,) in db.execute("SELECT name FROM people UNION SELECT label FROM lineage")
            }
            labels = [name, *(lab for lab in labels[1:] if lab not in others)]
            self._bump(db)
        self._checkpoint()
        folders = self._drop_crops(labels)
        return Removed(name, samples, int(faces), tuple(labels), folders)

    def labels(self, person: int | str) -> list[str]:
        """Every label a person had: their name first, then their lineage, oldest first."""
        with self._lock:
            try:
                pid, name, _ = rows.found(self.db, person, self.path)
                return [name, *rows.lineage(self.db, pid)]
            except sqlite3.DatabaseError as exc:
                raise GalleryError(schema.damaged(self.path, exc)) from None

    def rename(self, person: int | str, new: str) -> str:
        """Rename a confirmed person (unconfirmed ones are named with :meth:`promote`); the
        old name joins their lineage. Returns the new name."""
        new = validate_name(new)
        with self._tx() as db:
            pid, name, confirmed = rows.found(db, person, self.path)
            if not confirmed:
                raise GalleryError(f"no enrolled person {ref(person)} in gallery {self.path}")
            if name == new:
                return new
            if rows.by_name(db, new) is not None:
                raise NameConflict(f"'{new}' exists already: merge instead of renaming")
            db.execute("UPDATE people SET name = ? WHERE id = ?", (new, pid))
            db.execute("DELETE FROM lineage WHERE person_id = ? AND label = ?", (pid, new))
            rows.record(db, pid, name)
            self._bump(db)
        return new

    def merge(self, source: int | str, target: int | str) -> AddResult:
        """Fold ``source`` into ``target`` (each by id or name): an unknown into an unknown or
        a person, or a person into another person. ``source`` leaves the gallery; its name
        and lineage join ``target``'s, its samples keep whether they were enrolled on purpose.
        Into a person, an unknown's samples far from the person's enrolled photos are dropped
        as strays; two people's samples are all kept (a merge is asked for on purpose).
        """
        with self._tx() as db:
            src = rows.found(db, source, self.path)
            dst = rows.found(db, target, self.path)
            if dst[0] == src[0]:
                raise GalleryError(f"{ref(source)} and {ref(target)} are the same person")
            if src[2] and not dst[2]:
                raise GalleryError(
                    f"'{src[1]}' is enrolled and '{dst[1]}' is not: merge {dst[1]} into them"
                )
            rows.move(db, src[0], dst[0])
            rows.tombstone(db, src[1])
            strays = rows.refresh(db, dst[0], self.policy, judge=dst[2] and not src[2])
            if not dst[2]:
                rows.keep_best_faces(db, dst[0], self.policy.max_crops)
            self._bump(db)
            count = rows.count(db, dst[0])
        if self.crops is not None and not dst[2]:
            self.crops.merge(src[1], dst[1])
        return AddResult(count, strays)

    def set_thumbnail(self, person: int | str, face_id: int | None) -> None:
        """Show this face image of the person as their thumbnail (None: the best enrolled)."""
        with self._tx() as db:
            pid, name, _ = rows.found(db, person, self.path)
            if (
                face_id is not None
                and not db.execute(
                    "SELECT 1 FROM faces WHERE id = ? AND person_id = ?", (face_id, pid)
                ).fetchone()
            ):
                raise GalleryError(f"'{name}' has no face image {face_id}")
            db.execute("UPDATE people SET thumbnail = ? WHERE id = ?", (face_id, pid))
            self._bump(db)

    def delete_sample(self, person: int | str, sample_id: int) -> int:
        """Delete one sample of a person (and its face image); returns the samples left.

        A person's last sample cannot go: remove the person instead.
        """
        with self._tx() as db:
            pid, name, _ = rows.found(db, person, self.path)
            row = db.execute(
                "SELECT 1 FROM embeddings WHERE id = ? AND person_id = ?", (sample_id, pid)
            ).fetchone()
            if row is None:
                raise GalleryError(f"'{name}' has no sample {sample_id}")
            if rows.count(db, pid) == 1:
                raise GalleryError(
                    f"sample {sample_id} is the last one of '{name}': remove the person"
                )
            db.execute("DELETE FROM embeddings WHERE id = ?", (sample_id,))
            rows.refresh(db, pid, self.policy, judge=False)
            self._bump(db)
            left = rows.count(db, pid)
        self._checkpoint()
        return left

    # -- reading ---------------------------------------------------------------------------

    def people(self) -> list[Person]:
        """Confirmed people, by name."""
        found = self._read(rows.PEOPLE + " WHERE p.confirmed = 1 ORDER BY p.name")
        return [p for p in map(rows.person_of, found) if isinstance(p, Person)]

    def person(self, person: int | str) -> Person | UnknownPerson:
        """One person (by id or exact name), confirmed or not."""
        column = "id" if isinstance(person, int) else "name"
        found = self._read(rows.PEOPLE + f" WHERE p.{column} = ?", (person,))
        if not found:
            raise NoSuchPerson(f"no person {ref(person)} in gallery {self.path}")
        return rows.person_of(found[0])

    def samples(self, person: int | str) -> list[Sample]:
        """A person's samples, oldest first, with the id of each one's face image."""
        pid = self.person(person).id
        found = self._read(
            "SELECT e.id, COALESCE(e.source, ''), e.created, "
            "(SELECT f.id FROM faces f WHERE f.sample_id = e.id), e.enrolled, e.sha256 "
            "FROM embeddings e WHERE e.person_id = ? ORDER BY e.id",
            (pid,),
        )
        return [
            Sample(int(i), src, float(t), None if f is None else int(f), bool(en), digest)
            for i, src, t, f, en, digest in found
        ]

    def faces(self, person: int | str, limit: int = 100) -> list[FaceImage]:
        """A person's face images, best first (quality, then newest)."""
        pid = self.person(person).id
        found = self._read(
            rows.FACES + " WHERE p.id = ? "
            "ORDER BY COALESCE(f.quality, 0) DESC, f.created DESC, f.id LIMIT ?",
            (pid, limit),
        )
        return [rows.face_image(r) for r in found]

    def face(self, face_id: int) -> FaceImage | None:
        found = self._read(rows.FACES + " WHERE f.id = ?", (face_id,))
        return rows.face_image(found[0]) if found else None

    def vector(self, sample_id: int) -> np.ndarray | None:
        """A sample's embedding (normalised), None if there is no such sample."""
        found = self._read("SELECT vector FROM embeddings WHERE id = ?", (sample_id,))
        return np.frombuffer(found[0][0], np.float32).copy() if found else None

    def matcher(self) -> Matcher:
        """Confirmed people only, one template per sub-center."""
        return self._matcher(True)


def _new_samples(
    have: list[tuple],
    embeddings: np.ndarray,
    sources: Sequence[str],
    hashes: Sequence[str | None],
) -> list[int]:
    """Which of the samples to add a person does not have yet (``have``: their rows' source,
    vector and sha256): the same photo (sha256), the same source without a hash, or the very
    same embedding is skipped."""
    known = {src for src, _, digest in have if src and not digest}
    digests = {digest for _, _, digest in have if digest}
    vectors = [np.frombuffer(v, np.float32) for _, v, _ in have]
    new: list[int] = []
    for i, src in enumerate(sources):
        e, digest = embeddings[i], hashes[i]
        if digest in digests or (
            (src or digest)
            and ((not digest and src in known) or any(float(e @ h) > _SAME_SAMPLE for h in vectors))
        ):
            continue
        new.append(i)
        vectors.append(e)
        if digest:
            digests.add(digest)
        elif src:
            known.add(src)
    return new
