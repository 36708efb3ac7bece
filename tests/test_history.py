"""The face history's logic on generated data: store, retention, caps, erase, relabel, reject,
search (exact against brute force, filters), the writer's queue, grouping and negatives."""

from __future__ import annotations

import os
import stat
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from streamrec.errors import GalleryError
from streamrec.gallery.matcher import Matcher
from streamrec.gallery.store import Recognizer
from streamrec.history.grouping import UnknownGroups, UnknownSighting, matching_unknowns
from streamrec.history.naming import relabel
from streamrec.history.negatives import GuardedMatcher, NegativeRule, NegativeStore
from streamrec.history.records import HistoryPolicy, TrackSighting
from streamrec.history.search import top_k
from streamrec.history.store import HistoryStore, history_folder
from streamrec.history.vectors import SLOT_META
from streamrec.history.writer import HistoryWriter

DIM = 16
REC = Recognizer("fake", "f" * 64, DIM)


def unit(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, np.float32)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def sighting(
    rng: np.random.Generator,
    label: str | None = "unknown-1",
    t: float = 1000.0,
    camera: str = "door",
    vector: np.ndarray | None = None,
    quality: float = 0.5,
    crop: bool = True,
) -> TrackSighting:
    v = unit(rng.standard_normal(DIM)) if vector is None else unit(vector)
    image = rng.integers(0, 255, (112, 112, 3), dtype=np.uint8) if crop else None
    return TrackSighting(camera, t, t + 5, v, image, quality, label, 0.6 if label else None)


@pytest.fixture
def store(tmp_path: Path):
    with HistoryStore(history_folder(tmp_path / "faces.db"), REC) as s:
        yield s


def test_sibling_folder_private_files_addressed_by_id(store: HistoryStore, tmp_path: Path) -> None:
    assert store.folder == tmp_path / "faces.history"
    rng = np.random.default_rng(0)
    (sid,) = store.add([sighting(rng, label="Jane Doe")])
    path = store.crop_path(sid)
    assert path is not None and path.is_file()
    assert "Jane" not in str(path) and path.stem == str(sid)
    for p in [store.folder, path.parent, store.folder / "history.db", path]:
        mode = stat.S_IMODE(os.stat(p).st_mode)
        assert mode & 0o077 == 0, f"{p} is {oct(mode)}"
    got = store.sighting(sid)
    assert got is not None and got.label == "Jane Doe" and got.camera == "door" and got.crop


def test_search_matches_brute_force_with_filters(store: HistoryStore) -> None:
    rng = np.random.default_rng(1)
    batch = [
        sighting(rng, label=f"unknown-{i % 7}", t=1000.0 + i, camera=("a", "b")[i % 2], crop=False)
        for i in range(300)
    ]
    ids = store.add(batch)
    x = np.stack([s.embedding for s in batch]).astype(np.float16).astype(np.float32)
    q = unit(rng.standard_normal(DIM))
    sims = x @ q
    hits = store.search(q, k=10)
    assert [h.sighting for h in hits] == [ids[i] for i in np.argsort(-sims)[:10]]
    best = -np.sort(-sims)[:10]
    assert np.allclose([h.similarity for h in hits], best, atol=1e-5)
    # time span (overlap) and camera
    keep = [i for i, s in enumerate(batch) if s.last_seen >= 1100 and s.first_seen <= 1200]
    keep = [i for i in keep if batch[i].camera == "b"]
    hits = store.search(q, k=5, since=1100, until=1200, camera="b")
    assert [h.sighting for h in hits] == [ids[i] for i in sorted(keep, key=lambda i: -sims[i])[:5]]
    assert all(h.camera == "b" and h.last_seen >= 1100 and h.first_seen <= 1200 for h in hits)
    assert store.search(q, camera="nowhere") == []


def test_top_k_chunks_threads_and_masks() -> None:
    rng = np.random.default_rng(2)
    m = unit(rng.standard_normal((5000, DIM))).astype(np.float16)
    q = unit(rng.standard_normal((3, DIM)))
    valid = rng.random(5000) > 0.3
    rows, sims = top_k(m, q, 7, valid, threads=2, chunk=333)
    full = q @ m.astype(np.float32).T
    full[:, ~valid] = -np.inf
    assert (rows == np.argsort(-full, axis=1)[:, :7]).all()
    assert np.allclose(sims, -np.sort(-full, axis=1)[:, :7], atol=1e-5)
    rows, _ = top_k(m[:3], q, 10, np.array([True, False, True]))
    assert sorted(rows[0][:2].tolist()) == [0, 2] and rows[0][2:].tolist() == [-1]


def test_retention_and_caps_delete_crops_and_vectors(store: HistoryStore) -> None:
    rng = np.random.default_rng(3)
    now = 1_000_000.0
    old = store.add([sighting(rng, t=now - 40 * 86400) for _ in range(3)])
    new = store.add([sighting(rng, t=now - i) for i in range(5)])
    paths = [store.crops.path(i) for i in old]
    assert all(p.is_file() for p in paths)
    assert store.purge(now) == 3
    assert not any(p.exists() for p in paths) and len(store) == 5
    matrix = store.vectors.rows()
    assert not np.asarray(matrix[:3], np.float32).any(), "erased vectors are zeroed"
    # caps: rows, then bytes (the oldest go first)
    store.policy = HistoryPolicy(max_sightings=3)
    assert store.purge(now) == 2 and {s.id for s in store.sightings()} == set(new[:3])
    newest = store.db.execute("SELECT bytes FROM sightings ORDER BY last_seen DESC LIMIT 2")
    store.policy = HistoryPolicy(max_bytes=sum(b for (b,) in newest))
    assert store.purge(now) == 1 and {s.id for s in store.sightings()} == set(new[:2])
    # freed slots are reused: the vector file does not grow
    slots = store.vectors.slots
    store.add([sighting(rng, t=now) for _ in range(3)])
    assert store.vectors.slots == slots


def test_relabel_names_back_in_time_once_per_identity(store: HistoryStore) -> None:
    rng = np.random.default_rng(4)
    store.add([sighting(rng, label="unknown-3", t=100.0 + i) for i in range(4)])
    store.add([sighting(rng, label="Jane", t=50.0)])
    done = relabel(store, "unknown-3", "Jane")
    assert done is not None and done.old == "unknown-3" and done.new == "Jane"
    assert done.sightings == 5 and done.first_seen == 50.0 and done.last_seen == 108.0
    assert {s.label for s in store.sightings()} == {"Jane"}
    assert relabel(store, "unknown-3", "Jane") is None  # nothing left to change
    # a late sighting of the old label (a running pipeline) lands on the new name
    (late,) = store.add([sighting(rng, label="unknown-3")])
    assert store.sighting(late).label == "Jane"  # type: ignore[union-attr]
    # a rename keeps the identity key
    jane = store.sightings("Jane")[0].identity  # Jane existed: her key is kept
    assert jane == done.identity
    renamed = relabel(store, "Jane", "Jane Doe")
    assert renamed is not None and renamed.identity == jane
    assert {s.identity for s in store.sightings()} == {jane}
    # search shows the name
    assert all(h.label == "Jane Doe" for h in store.search(unit(rng.standard_normal(DIM))))


def test_erase_every_label_the_person_ever_had(store: HistoryStore) -> None:
    rng = np.random.default_rng(5)
    store.add([sighting(rng, label="unknown-1") for _ in range(3)])
    keep = store.add([sighting(rng, label="unknown-2") for _ in range(2)])
    relabel(store, "unknown-1", "Jane")
    store.add([sighting(rng, label="Jane")])
    NegativeStore(store).add("Jane", unit(rng.standard_normal(DIM)))
    paths = [store.crops.path(s.id) for s in store.sightings("Jane")]
    erased = store.erase(["unknown-1"])  # her former label finds her
    assert (erased.sightings, erased.crops, erased.negatives) == (4, 4, 1)
    assert not any(p.exists() for p in paths)
    assert store.sightings("Jane") == [] and NegativeStore(store).all() == {}
    assert {s.id for s in store.sightings()} == set(keep)
    assert store.erase(["Jane"]).sightings == 0
    # nothing of her is left in the file
    store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    for f in store.folder.glob("history.db*"):
        assert b"Jane" not in f.read_bytes(), f


def test_reject_makes_a_negative_and_unlabels(store: HistoryStore) -> None:
    rng = np.random.default_rng(6)
    (sid,) = store.add([sighting(rng, label="Jane")])
    assert NegativeStore(store).reject(sid) == "Jane"
    s = store.sighting(sid)
    assert s is not None and s.label is None and s.identity is None
    negs = NegativeStore(store).all()
    assert list(negs) == ["Jane"] and negs["Jane"].shape == (1, DIM)
    assert np.allclose(negs["Jane"][0], store.embeddings([sid])[0])
    with pytest.raises(GalleryError):
        NegativeStore(store).reject(10_000)


def test_crash_recovery_zeroes_and_unlinks(tmp_path: Path) -> None:
    folder = tmp_path / "h"
    rng = np.random.default_rng(7)
    with HistoryStore(folder, REC) as s:
        ids = s.add([sighting(rng) for _ in range(3)])
        # a crash after the delete committed, before its slot was zeroed and its crop unlinked
        with s.transaction() as db:
            db.execute("DELETE FROM sightings WHERE id = ?", (ids[0],))
            db.execute("INSERT INTO free_slots (slot, zeroed) VALUES (0, 0)")
            db.execute("INSERT INTO pending_crops (sighting) VALUES (?)", (ids[0],))
        # a crop and the rows of a sighting that never committed
        s.crops.write(ids[-1] + 1, np.zeros((112, 112, 3), np.uint8))
        s.vectors.write([3], unit(rng.standard_normal(DIM)).astype(np.float16)[None])
        s.slots.write([3], np.array([(ids[-1] + 1, 1.0, 2.0, 1, 0)], SLOT_META))
    with HistoryStore(folder, REC) as s:
        assert not s.crops.path(ids[0]).exists() and not s.crops.path(ids[-1] + 1).exists()
        m = np.asarray(s.vectors.rows(), np.float32)
        assert not m[0].any() and not m[3].any() and m[1].any()
        assert s.slots.rows()["sighting"].tolist() == [0, ids[1], ids[2], 0]
        assert len(s) == 2 and len(s.search(unit(rng.standard_normal(DIM)), k=10)) == 2
        assert s.add([sighting(rng), sighting(rng)]) and s.vectors.slots == 4


def test_another_recognizer_is_refused(tmp_path: Path) -> None:
    HistoryStore(tmp_path / "h", REC).close()
    with pytest.raises(GalleryError, match="another recognizer"):
        HistoryStore(tmp_path / "h", Recognizer("other", "0" * 64, DIM))


def test_two_processes_see_each_others_writes(tmp_path: Path) -> None:
    rng = np.random.default_rng(8)
    with HistoryStore(tmp_path / "h", REC) as a, HistoryStore(tmp_path / "h", REC) as b:
        v = unit(rng.standard_normal(DIM))
        (sid,) = a.add([sighting(rng, vector=v)])
        assert [h.sighting for h in b.search(v, k=1)] == [sid]
        b.erase(["unknown-1"])
        assert a.search(v, k=1) == []


def test_writer_bounded_queue_drops_worst_quality(store: HistoryStore) -> None:
    rng = np.random.default_rng(9)
    now = time.time()
    gate = threading.Event()
    real_add = store.add

    def slow_add(batch):  # the disk is stuck until the gate opens
        gate.wait(30)
        return real_add(batch)

    store.add = slow_add  # type: ignore[method-assign]
    writer = HistoryWriter(store, size=4, purge_every=1e9)
    try:
        assert writer.put(sighting(rng, quality=0.9, t=now))
        # the writer took the first one; wait until it is blocked in add
        deadline = 30.0
        while writer.pending() and deadline > 0:
            gate.wait(0.01)
            deadline -= 0.01
        for q in (0.5, 0.2, 0.6, 0.7):
            assert writer.put(sighting(rng, quality=q, t=now))
        assert writer.put(sighting(rng, quality=0.8, t=now))  # the 0.2 one goes
        assert not writer.put(sighting(rng, quality=0.1, t=now))  # worse than every waiting one
        assert writer.dropped == 2
        gate.set()
    finally:
        writer.close()
    assert sorted(round(s.quality, 1) for s in store.sightings()) == [0.5, 0.6, 0.7, 0.8, 0.9]
    assert not writer.put(sighting(rng))  # closed


def _groups_fixture(rng: np.random.Generator) -> list[UnknownSighting]:
    """A seen as unknown-1 (door) and later as unknown-2 (yard); B as unknown-3; C, who looks
    somewhat like A, as unknown-4; D, A's twin, as unknown-5, always next to A."""
    a, b = unit(rng.standard_normal(DIM)), unit(rng.standard_normal(DIM))
    c = unit(a + 0.9 * unit(rng.standard_normal(DIM)))
    specs = [(a, "unknown-1", "door", 0.0)] * 3 + [(a, "unknown-2", "yard", 500.0)] * 3
    specs += [(b, "unknown-3", "door", 100.0)] * 3 + [(c, "unknown-4", "door", 200.0)] * 2
    specs += [(a, "unknown-5", "door", 0.0), (a, "unknown-5", "yard", 500.0)]
    out = []
    for i, (center, label, camera, t) in enumerate(specs):
        v = unit(center + 0.05 * rng.standard_normal(DIM))
        out.append(UnknownSighting(i, label, camera, t, t + 10, v))
    return out


def test_grouping_suggests_true_merges_only() -> None:
    rng = np.random.default_rng(10)
    points = _groups_fixture(rng)
    groups = UnknownGroups(DIM, eps=0.5, min_points=2, suggest=0.85)
    for p in points:
        groups.add(p)
    found = groups.suggestions()
    assert [(s.label, s.into) for s in found] == [("unknown-2", "unknown-1")]
    assert found[0].similarity >= 0.85 and found[0].sightings == (3, 3)
    # C is in A's group (density) but below the suggestion threshold; D never (seen with A)
    (big, *_) = groups.groups()
    assert {groups.points[i].label for i in big} >= {"unknown-1", "unknown-2", "unknown-5"}
    # incremental == batch: the same groups whatever the order
    other = UnknownGroups(DIM, eps=0.5, min_points=2, suggest=0.85)
    other.rebuild(list(reversed(points)))

    def as_sets(g: UnknownGroups) -> set[frozenset[int]]:
        return {frozenset(g.points[i].id for i in grp) for grp in g.groups()}

    assert as_sets(groups) == as_sets(other)


def test_dbscan_border_points_do_not_chain_groups() -> None:
    e = np.eye(DIM, dtype=np.float32)
    # two dense pairs, and a border point near one core of each
    mid = unit(e[0] + e[1])
    pts = [e[0], e[0], e[1], e[1], mid]
    g = UnknownGroups(DIM, eps=0.7, min_points=3)
    for i, v in enumerate(pts):
        g.add(UnknownSighting(i, f"unknown-{i}", "c", i * 10.0, i * 10.0 + 1, v))
    # 0,1 and the midpoint (0.707 to each) : the midpoint is core (itself + 0,1 + 2,3 = 5)
    assert len(g.groups()) == 1
    g2 = UnknownGroups(DIM, eps=0.7, min_points=4)
    for i, v in enumerate(pts[:4]):
        g2.add(UnknownSighting(i, "unknown-1", "c", 0, 1, v))
    assert g2.groups() == []  # no core with min_points 4
    # a poor face joins nothing: such embeddings crowd together whoever they are
    poor = UnknownSighting(9, "unknown-9", "c", 0, 1, e[0], quality=0.1)
    assert not g.add(poor) and len(g) == 5


def test_negative_rule_vetoes_only_closer_faces() -> None:
    rng = np.random.default_rng(11)
    jane, john = unit(rng.standard_normal(DIM)), unit(rng.standard_normal(DIM))
    stranger = unit(jane + 0.5 * unit(rng.standard_normal(DIM)))
    base = Matcher(["Jane", "John"], np.stack([jane, john]), np.array([0, 1]))
    guarded = GuardedMatcher(base, {"Jane": stranger[None]})
    again = unit(stranger + 0.1 * rng.standard_normal(DIM))  # the stranger seen again
    herself = unit(jane + 0.1 * rng.standard_normal(DIM))
    q = np.stack([again, herself])
    plain = base.person_scores(q)
    scores = guarded.person_scores(q)
    assert scores[0, 0] == -1.0 and plain[0, 0] > 0.5  # vetoed for Jane
    assert scores[0, 1] == plain[0, 1]  # John's score untouched
    assert scores[1, 0] == plain[1, 0]  # Jane herself is still Jane
    idx, _ = guarded.best(q)
    assert idx.tolist() == [1, 0]
    names = [n for n, _ in guarded.match(q, 0.4)]
    assert names[0] is None and names[1] == "Jane"
    assert not NegativeRule(["John"], {"Jane": stranger[None]})


def test_approximate_index_behind_the_same_call(tmp_path: Path) -> None:
    pytest.importorskip("faiss")
    rng = np.random.default_rng(12)
    policy = HistoryPolicy(ann_min_size=100)
    with HistoryStore(tmp_path / "h", REC, policy) as store:
        people = unit(rng.standard_normal((60, DIM)))  # faces come in people, not uniformly
        batch = [
            sighting(
                rng,
                label=f"unknown-{i % 9}",
                t=1000.0 + i,
                camera="ab"[i % 2],
                crop=False,
                vector=people[i % 60] + 0.25 * rng.standard_normal(DIM),
            )
            for i in range(1500)
        ]
        ids = store.add(batch)
        x = store.embeddings(ids)
        queries = unit(x[:40] + 0.1 * rng.standard_normal((40, DIM)))
        overlap = []
        for q in queries:
            exact = [ids[i] for i in np.argsort(-(x @ q))[:5]]
            found = [h.sighting for h in store.search(q, k=5)]
            assert found[0] == exact[0]
            overlap.append(len(set(found) & set(exact)) / 5)
        assert np.mean(overlap) >= 0.95
        assert store._search is not None and store._search.ann is not None
        assert len(store._search.ann) == 1500
        # erased sightings are never returned; new ones are found; filters still apply
        store.erase(["unknown-0"])
        new = store.add([sighting(rng, label="Jane", vector=queries[0], crop=False)])
        hits = store.search(queries[0], k=20)
        assert hits[0].sighting == new[0] and all(h.label != "unknown-0" for h in hits)
        hits = store.search(queries[1], k=5, camera="b", since=1500.0)
        assert hits and all(h.camera == "b" and h.last_seen >= 1500.0 for h in hits)


def test_enrolling_finds_the_unknowns_to_name_back_in_time(store: HistoryStore) -> None:
    rng = np.random.default_rng(13)
    jane, other = unit(rng.standard_normal(DIM)), unit(rng.standard_normal(DIM))
    store.add(
        [
            sighting(rng, "unknown-4", vector=jane + 0.2 * unit(rng.standard_normal(DIM)))
            for _ in range(3)
        ]
    )
    store.add([sighting(rng, "unknown-5", vector=other) for _ in range(2)])
    store.add([sighting(rng, "John", vector=jane)])  # named sightings are not candidates
    found = matching_unknowns(store, jane[None], 0.6)
    assert [(label, n) for label, _, n in found] == [("unknown-4", 3)]
    assert found[0][1] >= 0.9
    assert matching_unknowns(store, jane[None], 0.999) == []
