"""The unknowns store: unconfirmed people (``unknown-N``) found by the pipeline, in the gallery
file beside the people, with their best faces for review.

They live in the people table with ``confirmed = 0``: never matched as people until promoted
(named). An ``unknown-N`` label that was erased, merged away or promoted is tombstoned: no
writer (a running pipeline included) can bring it back, and it is never handed out again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import numpy as np

from streamrec.errors import GalleryError
from streamrec.gallery import rows
from streamrec.gallery.file import GalleryFile
from streamrec.gallery.matcher import Matcher
from streamrec.gallery.names import UNKNOWN_LABEL, label_key, ref, validate_name
from streamrec.gallery.types import AddResult, NameConflict, UnknownPerson

log = logging.getLogger("streamrec.gallery")

#: newest samples kept per unconfirmed person (the pipeline adds some for every track)
MAX_UNKNOWN_SAMPLES = 64


class UnknownStore(GalleryFile):
    """Unconfirmed people in the gallery file (the enrolled ones: :class:`PeopleStore`)."""

    def add_unknown(
        self,
        label: str,
        embeddings: np.ndarray,
        faces: Sequence[np.ndarray | None] = (),
        qualities: Sequence[float | None] = (),
        source: str = "",
    ) -> bool:
        """Create or update the unconfirmed person ``label`` (e.g. ``unknown-3``).

        Adds the embeddings (the newest ``MAX_UNKNOWN_SAMPLES`` are kept) and face images
        (``faces[i]`` belongs to ``embeddings[i]``; the ``policy.max_crops`` best by quality are
        kept, in the gallery and, with ``policy.crops_dir``, as files: written in the same
        transaction, so an erasure running meanwhile cannot miss one). Returns False, changing
        nothing, when the label is tombstoned (erased, merged or promoted), belongs to a
        confirmed person or is no ``unknown-N``: no writer brings an erased label back.
        """
        if not UNKNOWN_LABEL.match(label):
            return False
        embeddings = self._vectors(embeddings)
        face_list = list(faces) or [None] * len(embeddings)
        quality_list = list(qualities) or [None] * len(embeddings)
        if not len(face_list) == len(quality_list) == len(embeddings):
            raise GalleryError("add_unknown: one face and one quality per embedding")
        now = time.time()
        with self._tx() as db:
            if db.execute("SELECT 1 FROM tombstones WHERE label = ?", (label,)).fetchone():
                return False
            found = rows.by_name(db, label)
            if found is not None and found[1]:
                return False
            if found is None:
                pid = rows.create(db, label, now, confirmed=False)
            else:
                pid = found[0]
                db.execute("UPDATE people SET last_seen = ? WHERE id = ?", (now, pid))
            jpegs = rows.insert_samples(
                db,
                pid,
                embeddings,
                [source] * len(embeddings),
                face_list,
                quality_list,
                now,
                enrolled=False,
            )
            db.execute(
                "DELETE FROM embeddings WHERE person_id = ? AND id NOT IN (SELECT id FROM "
                "embeddings WHERE person_id = ? ORDER BY id DESC LIMIT ?)",
                (pid, pid, MAX_UNKNOWN_SAMPLES),
            )
            rows.keep_best_faces(db, pid, self.policy.max_crops)
            rows.refresh(db, pid, self.policy, judge=False)
            self._bump(db)
            if self.crops is not None:
                self._save_crops(label, jpegs, quality_list)
        return True

    def _save_crops(
        self, label: str, jpegs: Sequence[bytes | None], qualities: Sequence[float | None]
    ) -> None:
        """The review crop files of a sighting (a failure is logged: the gallery has the faces)."""
        assert self.crops is not None
        for jpeg, q in zip(jpegs, qualities, strict=True):
            if jpeg is None:
                continue
            try:
                self.crops.save(label, jpeg, q)
            except (OSError, GalleryError) as exc:
                log.error("cannot save a review crop of %s: %s", label, exc)

    def unknowns(self) -> list[UnknownPerson]:
        """Unconfirmed people, by label number."""
        found = self._read(rows.PEOPLE + " WHERE p.confirmed = 0")
        out = [u for u in map(rows.person_of, found) if isinstance(u, UnknownPerson)]
        return sorted(out, key=lambda u: label_key(u.label))

    def unknown_count(self) -> int:
        return int(self._read("SELECT COUNT(*) FROM people WHERE confirmed = 0")[0][0])

    def tombstoned(self, label: str) -> bool:
        """The label was erased, merged away or promoted: it never comes back."""
        return bool(self._read("SELECT 1 FROM tombstones WHERE label = ?", (label,)))

    def unknown_matcher(self) -> Matcher:
        """Matching among unconfirmed people only."""
        return self._matcher(False)

    def unknown_samples(self, newest: int) -> dict[str, np.ndarray]:
        """Each unconfirmed person's ``newest`` sample embeddings [n, D], oldest first."""
        found = self._read(
            "SELECT p.name, e.vector FROM people p JOIN embeddings e ON e.person_id = p.id "
            "WHERE p.confirmed = 0 AND e.id IN (SELECT id FROM embeddings "
            "WHERE person_id = p.id ORDER BY id DESC LIMIT ?) ORDER BY p.id, e.id",
            (newest,),
        )
        out: dict[str, list[np.ndarray]] = {}
        for name, vector in found:
            out.setdefault(name, []).append(np.frombuffer(vector, np.float32))
        return {name: np.stack(vectors) for name, vectors in out.items()}

    def next_unknown_index(self) -> int:
        """N for the next ``unknown-N``: above every label used so far (never reused)."""
        names = self._read("SELECT name FROM people UNION ALL SELECT label FROM tombstones")
        used = [int(m.group(1)) for (n,) in names if (m := UNKNOWN_LABEL.match(n))]
        last = self._read("SELECT value FROM meta WHERE key = 'unknown_last'")
        return max([0, *used, int(last[0][0]) if last else 0]) + 1

    def promote(self, label: int | str, name: str, merge: bool = False) -> AddResult:
        """Confirm the unconfirmed ``label`` (id or label) as ``name``.

        Its samples and face images become ``name``'s; the label is tombstoned and joins the
        person's lineage. When ``name`` is an enrolled person's, nothing happens unless
        ``merge`` (:class:`NameConflict`): they are folded into that person, whose enrolled
        photos decide which of the unknown's samples are strays.
        """
        name = validate_name(name)
        with self._tx() as db:
            found = rows.find(db, label)
            if found is None or found[2]:
                raise GalleryError(f"no unconfirmed person {ref(label)} in gallery {self.path}")
            pid, old, _ = found
            target = rows.by_name(db, name)
            if target is None:
                db.execute(
                    "UPDATE people SET name = ?, confirmed = 1, last_seen = NULL WHERE id = ?",
                    (name, pid),
                )
                rows.record(db, pid, old)
            elif not target[1]:
                raise GalleryError(
                    f"'{name}' is an unconfirmed person too: merge them, or name it first"
                )
            elif not merge:
                raise NameConflict(
                    f"'{name}' is enrolled already: merge {old} into them, or choose another name"
                )
            else:
                rows.move(db, pid, target[0])
                pid = target[0]
            rows.tombstone(db, old)
            strays = rows.refresh(db, pid, self.policy, judge=True)
            self._bump(db)
            count = rows.count(db, pid)
        return AddResult(count, strays)

    def purge(self, retention_days: float) -> int:
        """Delete unconfirmed people not seen for ``retention_days`` (0 = never), with their
        review crop files; how many."""
        if not retention_days > 0:  # NaN included
            return 0
        cutoff = time.time() - retention_days * 86400.0
        return self._drop_unknowns(
            "SELECT id, name FROM people WHERE confirmed = 0 AND COALESCE(last_seen, created) < ?",
            (cutoff,),
        )

    def evict_unknowns(self, keep: int) -> int:
        """Keep the ``keep`` most recently seen unconfirmed people, delete the others (with
        their review crop files)."""
        return self._drop_unknowns(
            "SELECT id, name FROM people WHERE confirmed = 0 ORDER BY "
            "COALESCE(last_seen, created) DESC LIMIT -1 OFFSET ?",
            (keep,),
        )

    def _drop_unknowns(self, select: str, args: Sequence[object]) -> int:
        labels: list[str] = []
        with self._tx() as db:
            dropped = db.execute(select, args).fetchall()
            for pid, label in dropped:
                labels += [label, *rows.lineage(db, pid)]
                rows.tombstone(db, label)
                db.execute("DELETE FROM people WHERE id = ?", (pid,))
            if dropped:
                self._bump(db)
        if dropped:
            self._checkpoint()
            self._drop_crops(labels)
        return len(dropped)
