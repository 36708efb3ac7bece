"""Naming back in time: every sighting of a label becomes another label's, once per identity.

Naming ``unknown-7`` "Jane" (or merging it into her, or renaming her) relabels the identity in
the history: its key survives, the old ``unknown-N`` stays an alias so that late sightings of a
running pipeline still land on her, and the one :class:`~.records.Relabelled` returned is the
one retroactive ``identified`` event to emit. Enrolment finds the unknowns to name with
:func:`~.grouping.matching_unknowns`.
"""

from __future__ import annotations

import time

from streamrec.history.records import Relabelled
from streamrec.history.store import UNKNOWN_LABEL, HistoryStore, valid_label
from streamrec.records import Event


def relabel(store: HistoryStore, old: str, new: str) -> Relabelled | None:
    """Every sighting of ``old`` (its identity, with every label it had) becomes ``new``'s.

    Naming ``unknown-N`` back in time, or a rename. ``new``'s identity key survives when it
    exists (the sightings move into it), else ``old``'s (renamed). Returns what changed —
    one :class:`Relabelled` per identity, for one retroactive ``identified`` event — or
    None when ``old`` has no identity here.
    """
    new = valid_label(new)
    with store.transaction() as db:
        src = store.identity_of(db, old, create=False)
        if src is None:
            return None
        (label,) = db.execute("SELECT label FROM identities WHERE id = ?", (src,)).fetchone()
        dst = store.identity_of(db, new, create=False)
        if dst == src:
            return None
        if dst is None:
            db.execute("UPDATE identities SET label = ? WHERE id = ?", (new, src))
            db.execute("DELETE FROM aliases WHERE label = ?", (new,))
            dst = src
        else:
            db.execute("UPDATE sightings SET identity = ? WHERE identity = ?", (dst, src))
            db.execute("UPDATE negatives SET identity = ? WHERE identity = ?", (dst, src))
            db.execute("UPDATE aliases SET identity = ? WHERE identity = ?", (dst, src))
            db.execute("DELETE FROM identities WHERE id = ?", (src,))
        if UNKNOWN_LABEL.match(label):  # late sightings of a running pipeline find the new name
            db.execute(
                "INSERT OR REPLACE INTO aliases (label, identity) VALUES (?, ?)", (label, dst)
            )
        count, first, last = db.execute(
            "SELECT COUNT(*), MIN(first_seen), MAX(last_seen) FROM sightings WHERE identity = ?",
            (dst,),
        ).fetchone()
        cameras = db.execute(
            "SELECT c.name FROM sightings s JOIN cameras c ON c.id = s.camera "
            "WHERE s.identity = ? GROUP BY c.name ORDER BY MAX(s.last_seen)",
            (dst,),
        ).fetchall()
        store.bump(db)
    return Relabelled(dst, label, new, int(count), first, last, tuple(c for (c,) in cameras))


def follow(store: HistoryStore, renamed: dict[str, str]) -> list[Relabelled]:
    """Name back in time every identity of the history whose label the gallery has since
    given another (``Gallery.renamed``: old label -> current label), once: what changed, one
    :class:`Relabelled` (one retroactive ``identified`` event) per identity. Whoever calls it
    first (the CLI, the API, a running pipeline of any process) gets the change."""
    current = {label for (label,) in store.read("SELECT label FROM identities")}
    out = []
    for old in sorted(current & renamed.keys()):
        done = relabel(store, old, renamed[old])
        if done is not None:
            out.append(done)
    return out


def retroactive_event(change: Relabelled) -> Event:
    """The one ``identified`` event of an identity named back in time (``retroactive: true``):
    its earlier label, how many sightings, over which times and cameras (``camera``: the one
    it was seen on last)."""
    return Event(
        "identified",
        "history",
        0,
        0,
        0.0,
        time.time(),
        change.cameras[-1] if change.cameras else None,
        {
            "name": change.new,
            "previous": change.old,
            "retroactive": True,
            "sightings": change.sightings,
            "first_seen": change.first_seen,
            "last_seen": change.last_seen,
            "cameras": list(change.cameras),
        },
    )


def assign(store: HistoryStore, sightings: list[int], label: str | None) -> int:
    """Give these sightings to ``label``'s identity (made if new; None: to nobody), as a user
    reviewing them decides or as a reprocessing finds; how many changed."""
    label = valid_label(label) if label is not None else None
    with store.transaction() as db:
        ident = store.identity_of(db, label, create=True)
        marks = ",".join("?" * len(sightings))
        changed = db.execute(
            f"UPDATE sightings SET identity = ?, score = NULL WHERE id IN ({marks}) "
            "AND identity IS NOT ?",
            (ident, *sightings, ident),
        ).rowcount
        if changed:
            store.bump(db)
    return int(changed)
