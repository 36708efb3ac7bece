"""Track identity, unknown grouping, sub-centers and face quality on synthetic data."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from streamrec.gallery.matcher import Matcher
from streamrec.gallery.subcenters import cluster_person, normalise
from streamrec.gallery.unknowns import UnknownBook
from streamrec.models.quality import (
    evidence_weight,
    face_quality,
    pose_factor,
    sharpness_factor,
    size_factor,
)
from streamrec.pipeline.identity import CameraIdentities, IdentityPolicy, Request, TrackIdentity
from streamrec.records import FaceJob, Label

DIM = 16


def unit(i: int, noise: float = 0.0, seed: int = 0) -> np.ndarray:
    v = np.zeros(DIM, np.float32)
    v[i] = 1.0
    v += np.random.default_rng(seed).normal(0, noise, DIM).astype(np.float32)
    return normalise(v)


def between(i: int, j: int, t: float) -> np.ndarray:
    """A vector at cosine ``cos(t * 90°)`` from unit(i), towards unit(j)."""
    a = t * math.pi / 2
    return normalise(math.cos(a) * unit(i) + math.sin(a) * unit(j))


def weak(other: int) -> np.ndarray:
    """A face at cosine 0.42 from alice (unit 0)."""
    return between(0, other, math.acos(0.42) / (math.pi / 2))


GALLERY = Matcher(["alice", "bob"], np.stack([unit(0), unit(1)]), np.array([0, 1]))
POLICY = IdentityPolicy(threshold=0.4, min_embeddings=2, confident_after=3, refresh_interval=10)


def feed(ident: TrackIdentity, vectors: list[np.ndarray], policy: IdentityPolicy = POLICY) -> list:
    return [policy.update(ident, v, 0.9, GALLERY) for v in vectors]


def job(track_id: int, vector: np.ndarray, quality: float = 0.3, **kw: object) -> FaceJob:
    """An embedded face of a track, ``size`` px at (x, y)."""
    x, y, size = kw.pop("x", 100.0), kw.pop("y", 100.0), kw.pop("size", 50.0)
    box = np.array([x, y, x + size, y + size], np.float32)  # type: ignore[operator]
    kps = np.zeros((5, 2), np.float32)
    return FaceJob(track_id, kps, quality, box, 0.8, embedding=vector, **kw)  # type: ignore[arg-type]


def test_named_only_when_enough_evidence_agrees() -> None:
    ident = TrackIdentity(1, 0, 0.0)
    # one face at 0.42: above the threshold, but one face alone needs 0.45
    assert POLICY.update(ident, weak(5), 0.4, GALLERY) is False
    assert ident.name is None and ident.score == pytest.approx(0.42, abs=0.01)
    assert POLICY.update(ident, weak(6), 0.4, GALLERY) is True  # two agree: their mean is 0.55
    assert ident.name == "alice" and ident.name_changes == 1
    clear = TrackIdentity(2, 0, 0.0)  # one clear face is enough
    assert POLICY.update(clear, unit(0, 0.1), 0.3, GALLERY) is True and clear.name == "alice"


def test_a_stranger_is_never_named() -> None:
    ident = TrackIdentity(1, 0, 0.0)
    feed(ident, [unit(5, 0.05, seed=s) for s in range(6)])
    assert ident.name is None and ident.score is not None and ident.score < 0.4


def test_name_does_not_flicker_on_one_contrary_face() -> None:
    ident = TrackIdentity(1, 0, 0.0)
    feed(ident, [unit(0), unit(0), unit(0)])
    assert ident.name == "alice" and ident.confident
    assert feed(ident, [unit(1)]) == [False]  # the mean still says alice
    assert ident.name == "alice"


def test_renamed_only_when_another_person_clearly_wins() -> None:
    ident = TrackIdentity(1, 0, 0.0)
    feed(ident, [unit(0), unit(0)])
    changes = feed(ident, [unit(1)] * 8)
    assert ident.name == "bob" and changes.count(True) == 1 and ident.names == ["alice", "bob"]


def test_request_schedule_spacing_doubles_and_waits_for_good_faces() -> None:
    policy = IdentityPolicy(0.4, refresh_interval=10, max_refresh_interval=40, recheck_gain=2.0)
    ident = TrackIdentity(1, 0, 0.0)
    asked = {}
    for frame in range(0, 200, 5):
        quality = 0.1 if frame in (30, 35) else 0.3  # two poor faces when the 2nd spacing is due
        kind = policy.request(ident, frame, quality)
        if kind is not None:
            asked[frame] = kind
    # two looks at the first faces; then 20 frames (waiting out two poor faces), 40, 40, ...
    assert list(asked) == [0, 5, 25, 65, 105, 145, 185]
    assert set(asked.values()) == {Request.EXPLORE}
    # a much better face is always wanted: a recheck (also for a settled track)
    assert policy.request(ident, 190, 0.7) is Request.RECHECK
    # a better view (1.25x) gets two looks at once; then it is not better any more
    assert policy.request(ident, 195, 0.9) is Request.EXPLORE
    assert policy.request(ident, 200, 0.9) is Request.EXPLORE
    assert policy.request(ident, 205, 0.9) is None
    # a due request still takes a poor face when none better came for twice the spacing
    slow = TrackIdentity(2, 0, 0.0)
    assert [f for f in range(0, 80, 5) if policy.request(slow, f, 0.5 if f < 10 else 0.2)] == [
        0,
        5,
        45,
    ]


def test_a_settled_track_only_rechecks_and_late_explores_are_dropped() -> None:
    idents = CameraIdentities(POLICY)
    idents.start(1, 0, 0.0)
    assert idents.wants_embedding(1, 0, 0.5) is Request.EXPLORE
    for vector in (unit(0), unit(0), unit(0)):
        used, _ = idents.add(job(1, vector, 0.9), GALLERY)
        assert used
    # named with confidence: no more explore requests, a clearly better face is a recheck
    assert idents.wants_embedding(1, 10, 0.5) is None
    assert idents.wants_embedding(1, 20, 0.9) is Request.RECHECK
    # an explore request the detect stage sent before it saw the track settle: not used
    assert idents.add(job(1, unit(1), request="explore"), GALLERY) == (False, [])
    assert idents.add(job(1, unit(0), request="recheck"), GALLERY)[0]
    ended, _ = idents.end(1, GALLERY)
    assert ended is not None and ended.embeddings == 4


def test_weights_and_effective_count() -> None:
    ident = TrackIdentity(1, 0, 0.0)
    POLICY.update(ident, unit(0), 0.8, GALLERY)
    POLICY.update(ident, unit(1), 0.1, GALLERY)
    assert ident.mean is not None and ident.mean[0] > 5 * ident.mean[1]  # the good face counts
    assert 1.0 < ident.effective < 1.2
    assert evidence_weight(0.8) > 10 * evidence_weight(0.1)
    assert evidence_weight(1.0) == evidence_weight(0.95)  # finite for any quality


def test_a_broken_track_continues_with_its_evidence() -> None:
    idents = CameraIdentities(POLICY)
    idents.start(1, 0, 0.0)
    for frame in (0, 10, 20):
        idents.seen([1], frame, frame / 25)
        idents.add(job(1, unit(0, 0.1, seed=frame), 0.9), GALLERY)
    assert idents.end(1, GALLERY)[0] is not None
    # the same face seen again near where it was: named at once from the merged evidence
    idents.start(2, 30, 1.2)
    idents.seen([2], 30, 1.2)
    used, namings = idents.add(job(2, weak(7), x=110), GALLERY)
    assert used and [(n.track_id, n.name, n.renamed) for n in namings] == [(2, "alice", False)]
    ended, _ = idents.end(2, GALLERY)
    assert ended is not None and ended.continues == 1 and ended.embeddings == 4
    # too far away, too late, or another face: a track of its own
    cases = ((3, 40, weak(7), 600), (4, 200, weak(7), 100), (5, 40, unit(5), 100))
    for track_id, frame, vector, x in cases:
        idents.start(track_id, frame, frame / 25)
        idents.seen([track_id], frame, frame / 25)
        idents.add(job(track_id, vector, x=x), GALLERY)
        ident, _ = idents.end(track_id, GALLERY)
        assert ident is not None and ident.continues is None and ident.name is None


def lost_and_new(
    idents: CameraIdentities, matcher: Matcher, book: UnknownBook | None = None, x: float = 160
) -> None:
    """Track 1 (an unknown face, labelled) is lost at frame 10; track 2, as close to it in
    evidence (and, at ``x``=160, in place), starts there."""
    idents.start(1, 0, 0.0)
    for frame in (0, 5):
        idents.seen([1], frame, frame / 25)
        idents.add(job(1, unit(4, 0.05, seed=frame), 0.9), matcher)
    if book is not None:
        assert idents.label_unknown(1, book, "cam") == "unknown-1"
    idents.start(2, 10, 0.4)
    for frame in (10, 15):
        idents.seen([2], frame, frame / 25)
        idents.add(job(2, unit(4, 0.05, seed=frame), 0.9, x=x), matcher)


def test_a_lost_track_is_continued_only_once_it_has_ended() -> None:
    empty = Matcher.empty(DIM)
    book = UnknownBook(threshold=0.5)
    idents = CameraIdentities(POLICY)
    lost_and_new(idents, empty, book)
    # track 1 may come back: track 2 waits (nothing merged, no label of its own yet)
    assert idents.label_unknown(2, book, "cam") is None
    assert idents.label(2) == Label(None, None, False)
    ended, _ = idents.end(1, empty)  # it did not: track 2 continues it, with its label
    assert ended is not None and ended.continued
    assert idents.label_unknown(2, book, "cam") == "unknown-1"
    done, _ = idents.end(2, empty)
    assert done is not None and done.continues == 1 and done.embeddings == 4


def test_a_lost_track_that_comes_back_keeps_its_label_to_itself() -> None:
    """Two faces alike (the same colour to the fakes, or two far faces of an audience): the
    lost track comes back, so the newer track is another face and another label."""
    empty = Matcher.empty(DIM)
    book = UnknownBook(threshold=0.5)
    idents = CameraIdentities(POLICY)
    lost_and_new(idents, empty, book)
    idents.seen([1, 2], 20, 0.8)  # track 1 is back
    assert idents.label_unknown(2, book, "cam") == "unknown-2"
    assert idents.label(1) != idents.label(2)
    idents.end(1, empty)
    two, _ = idents.end(2, empty)
    assert two is not None and two.continues is None and two.embeddings == 2


@pytest.mark.parametrize("back", [False, True], ids=["ends", "comes back"])
def test_a_label_held_by_a_lost_track_waits_for_it(back: bool) -> None:
    """Track 2 (far from lost track 1, so not its continuation) is closest to track 1's
    identity: it waits until track 1 ends (then takes its label) or comes back (then it is
    someone else)."""
    empty = Matcher.empty(DIM)
    book = UnknownBook(threshold=0.5)
    idents = CameraIdentities(POLICY)
    lost_and_new(idents, empty, book, x=900)
    assert idents.label_unknown(2, book, "cam") is None
    if back:
        idents.seen([1, 2], 20, 0.8)
    else:
        idents.end(1, empty)
        idents.seen([2], 20, 0.8)
    assert idents.label_unknown(2, book, "cam") == ("unknown-2" if back else "unknown-1")


def test_a_face_on_the_same_frame_is_not_continued() -> None:
    """A track that is on the frame where another starts (told before the frame's evidence,
    whatever the order of the evidence) is not that track's past."""
    idents = CameraIdentities(POLICY)
    idents.start(1, 0, 0.0)
    idents.seen([1], 0, 0.0)
    idents.add(job(1, unit(0), 0.9), GALLERY)
    idents.start(2, 5, 0.2)
    idents.seen([1, 2], 5, 0.2)
    idents.add(job(2, weak(5), x=160), GALLERY)
    idents.end(1, GALLERY)
    two, _ = idents.end(2, GALLERY)
    assert two is not None and two.continues is None


def test_one_name_on_one_open_track() -> None:
    """Two open tracks whose evidence says alice: the first holds the name, the second waits
    (no name, no unknown label) and is named when the name is free."""
    book = UnknownBook(threshold=0.5)
    idents = CameraIdentities(POLICY)
    for tid in (1, 2):
        idents.start(tid, 0, 0.0)
    idents.seen([1, 2], 0, 0.0)
    _, first = idents.add(job(1, unit(0, 0.1, seed=1), 0.9), GALLERY)
    assert [n.name for n in first] == ["alice"]
    _, second = idents.add(job(2, unit(0, 0.1, seed=2), 0.9, x=400), GALLERY)
    idents.add(job(2, unit(0, 0.1, seed=3), 0.9, x=400), GALLERY)
    assert second == [] and idents.label(2) == Label(None, pytest.approx(0.96, abs=0.03), False)
    assert idents.label_unknown(2, book, "cam") is None and len(book) == 0
    # a gallery reload does not give it either
    assert idents.rematch(GALLERY) == []
    _, namings = idents.end(1, GALLERY)  # track 1 left: alice is free
    assert [(n.track_id, n.name) for n in namings] == [(2, "alice")]
    label = idents.label(2)
    assert label is not None and label.text == "alice" and label.known


def test_a_track_renamed_away_frees_its_name() -> None:
    idents = CameraIdentities(POLICY)
    for tid in (1, 2):
        idents.start(tid, 0, 0.0)
    idents.seen([1, 2], 0, 0.0)
    idents.add(job(1, unit(0), 0.9), GALLERY)
    idents.add(job(2, unit(0), 0.9, x=400), GALLERY)
    assert idents.label(2) == Label(None, pytest.approx(1.0), False)
    # track 1 turns out to be bob: alice goes to track 2 at once
    namings = []
    for _ in range(8):
        namings += idents.add(job(1, unit(1), 0.9), GALLERY)[1]
    assert [(n.track_id, n.name, n.renamed) for n in namings] == [
        (1, "bob", True),
        (2, "alice", False),
    ]


def test_camera_identities_one_owner() -> None:
    idents = CameraIdentities(POLICY)
    idents.start(7, 0, 0.0)
    assert 7 in idents and 8 not in idents
    assert idents.wants_embedding(7, 0, 0.5) is Request.EXPLORE
    assert idents.wants_embedding(7, 1, 0.5) is Request.EXPLORE  # two looks at a new face
    assert idents.wants_embedding(7, 2, 0.5) is None  # the requests were recorded
    assert idents.wants_embedding(8, 0, 0.5) is None  # never started
    crop = np.zeros((112, 112, 3), np.uint8)
    assert idents.add(job(7, weak(5), crop=crop), GALLERY) == (True, [])
    used, (naming,) = idents.add(job(7, weak(6), 0.9, crop=crop + 1), GALLERY)
    assert used and naming.name == "alice" and not naming.renamed
    assert naming.crop is not None and naming.crop[0, 0, 0] == 1  # the best face so far
    idents.seen([7], 3, 0.1)
    label = idents.label(7)
    assert label is not None and label.text == "alice" and label.known
    ended, _ = idents.end(7, GALLERY)
    assert ended is not None and ended.frames == 1 and ended.last_frame == 3
    assert idents.end(7, GALLERY) == (None, []) and idents.open_tracks() == []


def test_unknown_label_given_once_and_stable() -> None:
    book = UnknownBook(threshold=0.5)
    idents = CameraIdentities(POLICY)
    empty = Matcher.empty(DIM)
    for tid in (1, 2, 3):
        idents.start(tid, 0, 0.0)
    idents.add(job(1, unit(4)), empty)
    assert idents.label_unknown(1, book, "cam") is None  # one embedding is not evidence enough
    idents.add(job(1, unit(4)), empty)
    assert idents.label_unknown(1, book, "cam") == "unknown-1"
    assert idents.label_unknown(1, book, "cam") is None  # only once
    for tid, vec in ((2, unit(4, 0.05)), (3, unit(9))):
        idents.add(job(tid, vec, x=300 * tid), empty)
        idents.add(job(tid, vec, x=300 * tid), empty)
    # the same person, but track 1 (present) carries unknown-1: never two tracks one label
    assert idents.label_unknown(2, book, "cam") == "unknown-2"
    assert idents.label_unknown(3, book, "cam") == "unknown-3"
    ended, _ = idents.end(1, empty)
    assert ended is not None and ended.mean is not None
    book.learn("unknown-1", ended.mean, None, 1.0, "cam")  # what the match stage does at the end
    idents.start(4, 9, 0.3)
    idents.add(job(4, unit(4, 0.05, seed=4), x=900), empty)
    idents.add(job(4, unit(4, 0.05, seed=5), x=900), empty)
    assert idents.label_unknown(4, book, "cam") in {"unknown-1", "unknown-2"}  # known again


def test_unknown_book_learns_bounds_and_reports_every_sighting() -> None:
    seen: list[tuple[str, float]] = []
    book = UnknownBook(
        0.6,
        first_index=5,
        max_identities=3,
        on_sighting=lambda s: seen.append((s.label, s.quality)),
    )
    a = book.assign(unit(0), quality=0.2)
    assert a == "unknown-5"
    book.learn(a, between(0, 1, 0.3), None, 0.9, "cam")
    assert seen == [("unknown-5", 0.2), ("unknown-5", 0.9)]  # written as they happen
    assert book.assign(between(0, 1, 0.2)) == a  # close to a learnt sample
    assert book.assign(between(0, 1, 0.2), exclude={a}) == "unknown-6"  # a is taken
    book.seed("unknown-2", unit(3)[None])
    assert book.assign(unit(3, 0.05)) == "unknown-2"
    assert len(book) == 3
    book.assign(unit(9))  # a fourth identity: the least recently seen goes
    assert len(book) == 3 and "unknown-5" not in book and "unknown-7" in book
    book.forget({"unknown-2"})
    assert book.labels == ["unknown-6", "unknown-7"]


def test_unknown_book_takes_from_the_store_only_what_it_never_held() -> None:
    """The book's own identities lead (the store gets its sightings later); what it evicted
    stays evicted (taking it back would depend on when the store is read)."""
    book = UnknownBook(0.5, max_identities=2)
    a = book.assign(unit(0))
    book.take({a: unit(5)[None], "unknown-7": unit(3)[None]}, next_index=8)
    assert book.assign(unit(0, 0.05)) == a and book.assign(unit(5)) == "unknown-8"
    assert book.labels == [a, "unknown-8"]  # unknown-7 was the least recently seen
    book.take({"unknown-7": unit(3)[None], "unknown-9": unit(4)[None]}, next_index=1)
    assert "unknown-7" not in book and "unknown-9" in book and book.next_index == 9


def test_unknown_book_an_identity_is_as_close_as_its_closest_sample() -> None:
    """Two looks of one stranger (two tracks' means far apart): a track like either finds
    it; a book seeded with the samples gives what the book that learnt them gives."""
    book = UnknownBook(0.8)
    a = book.assign(unit(0))
    book.learn(a, unit(1), None, 0.5, "cam")
    seeded = UnknownBook(0.8)
    seeded.take({a: np.stack([unit(0), unit(1)])}, next_index=2)
    for b in (book, seeded):
        assert b.assign(between(0, 2, 0.2)) == a and b.assign(between(1, 2, 0.2)) == a
        assert b.assign(between(0, 1, 0.5)) != a  # between the two looks (0.71): near neither


def test_subcenters_split_two_looks_and_drop_a_stray() -> None:
    looks = [unit(0, 0.1, s) for s in range(4)] + [unit(1, 0.1, s + 10) for s in range(4)]
    x = np.stack([*looks, unit(8)])
    x[:8] = normalise(x[:8] + unit(2) * 1.2)  # the two looks share most of the identity
    result = cluster_person(x, max_centers=3, outlier_angle=75.0)
    assert [i for i, _ in result.strays] == [8] and not result.ambiguous
    assert len(result.centers) == 2 and sorted(result.members) == [4, 4]
    nothing_judged = cluster_person(x, 3, None)
    assert nothing_judged.strays == [] and sum(nothing_judged.members) == 9


def test_subcenters_tie_keeps_the_earliest() -> None:
    result = cluster_person(np.stack([unit(0), unit(1)]), 3, 60.0)
    assert result.ambiguous and [i for i, _ in result.strays] == [1]


def frontal(size: float = 100.0, yaw: float = 0.0) -> np.ndarray:
    kps = np.array([[0.3, 0.35], [0.7, 0.35], [0.5, 0.55], [0.35, 0.75], [0.65, 0.75]]) * size
    kps[2, 0] += yaw * 0.4 * size  # the nose moves sideways as the head turns
    return kps.astype(np.float32)


def test_quality_is_an_expected_similarity() -> None:
    """Bigger, sharper, more frontal, better detected faces are expected to match better;
    none is worth nothing (every face may be embedded, its evidence weighs less)."""

    def box(size: float) -> np.ndarray:
        return np.array([0, 0, size, size], np.float32)

    rng = np.random.default_rng(0)
    sharp = rng.integers(0, 255, (112, 112, 3), dtype=np.uint8)
    blurred = cv2.GaussianBlur(sharp, (15, 15), 5)
    q = face_quality(box(100), frontal(100), 0.8)
    assert 0.5 < q < 0.95
    assert face_quality(box(20), frontal(20), 0.8) < face_quality(box(40), frontal(40), 0.8) < q
    assert face_quality(box(100), frontal(100, yaw=1.0), 0.8) < q
    assert face_quality(box(100), frontal(100), 0.5) < q
    assert face_quality(box(100), frontal(100), 0.8, blurred) < face_quality(
        box(100), frontal(100), 0.8, sharp
    )
    assert face_quality(box(8), frontal(8, yaw=1.0), 0.3, blurred) > 0


def test_quality_factors() -> None:
    assert pose_factor(frontal()) > 0.8
    assert pose_factor(frontal(yaw=0.5)) < pose_factor(frontal(yaw=0.2)) < pose_factor(frontal())
    assert pose_factor(frontal(yaw=1.0)) == 0.0
    assert size_factor(np.array([0, 0, 40, 40])) == pytest.approx(0.5)
    assert size_factor(np.array([0, 0, 200, 200])) == 1.0
    rng = np.random.default_rng(0)
    sharp = rng.integers(0, 255, (112, 112, 3), dtype=np.uint8)
    blurred = cv2.GaussianBlur(sharp, (15, 15), 5)
    assert sharpness_factor(sharp) > sharpness_factor(blurred)
    assert sharpness_factor(np.zeros((112, 112, 3), np.uint8)) == 0.0
