"""Naming back in time: every sighting of a label becomes another label's, once per identity.

Naming ``unknown-7`` "Jane" (or merging it into her, or renaming her) relabels the identity in
the history: its key survives, the old ``unknown-N`` stays an alias so that late sightings of a
running pipeline still land on her, and the one :class:`~.records.Relabelled` returned is the
one retroactive ``identified`` event to emit. Enrolment finds the unknowns to name with
:func:`~.grouping.matching_unknowns`.
"""

from __future__ import annotations

from streamrec.gallery.store import validate_name
from streamrec.history.records import Relabelled
from streamrec.history.store import UNKNOWN_LABEL, HistoryStore


def relabel(store: HistoryStore, old: str, new: str) -> Relabelled | None:
    """Every sighting of ``old`` (its identity, with every label it had) becomes ``new``'s.

    Naming ``unknown-N`` back in time, or a rename. ``new``'s identity key survives when it
    exists (the sightings move into it), else ``old``'s (renamed). Returns what changed —
    one :class:`Relabelled` per identity, for one retroactive ``identified`` event — or
    None when ``old`` has no identity here.
    """
    new = validate_name(new)
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
        store.bump(db)
    return Relabelled(dst, label, new, int(count), first, last)
