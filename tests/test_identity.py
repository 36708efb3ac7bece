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
from streamrec.records import FaceJob

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
    assert idents.add(job(1, unit(1), request="explore"), GALLERY) == (False, None)
    assert idents.add(job(1, unit(0), request="recheck"), GALLERY)[0]
    ended = idents.end(1)
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
        idents.present(1, frame, frame / 25)
        idents.add(job(1, unit(0, 0.1, seed=frame), 0.9), GALLERY)
    assert idents.end(1) is not None
    # the same face seen again near where it was: named at once from the merged evidence
    idents.start(2, 30, 1.2)
    used, naming = idents.add(job(2, weak(7), x=110), GALLERY)
    assert used and naming is not None and naming.name == "alice" and not naming.renamed
    idents.present(2, 30, 1.2)
    ended = idents.end(2)
    assert ended is not None and ended.continues == 1 and ended.embeddings == 4
    # too far away, too late, or another face: a track of its own
    cases = ((3, 40, weak(7), 600), (4, 200, weak(7), 100), (5, 40, unit(5), 100))
    for track_id, frame, vector, x in cases:
        idents.start(track_id, frame, frame / 25)
        idents.add(job(track_id, vector, x=x), GALLERY)
        ident = idents.end(track_id)
        assert ident is not None and ident.continues is None and ident.name is None


def test_an_open_track_is_continued_only_once_it_is_gone() -> None:
    idents = CameraIdentities(POLICY)
    idents.start(1, 0, 0.0)
    idents.present(1, 0, 0.0)
    idents.add(job(1, unit(0), 0.9), GALLERY)
    idents.present(1, 5, 0.2)
    idents.start(2, 10, 0.4)  # track 1 might still be on this frame: not yet
    assert idents.add(job(2, weak(5)), GALLERY) == (True, None)
    idents.present(2, 10, 0.4)  # track 1 was not on frame 10: lost, track 2 continues it
    used, naming = idents.add(job(2, weak(5)), GALLERY)
    assert used and naming is not None and naming.name == "alice"
    ended = idents.end(2)
    assert ended is not None and ended.continues == 1 and ended.embeddings == 3


def test_camera_identities_one_owner() -> None:
    idents = CameraIdentities(POLICY)
    idents.start(7, 0, 0.0)
    assert 7 in idents and 8 not in idents
    assert idents.wants_embedding(7, 0, 0.5) is Request.EXPLORE
    assert idents.wants_embedding(7, 1, 0.5) is Request.EXPLORE  # two looks at a new face
    assert idents.wants_embedding(7, 2, 0.5) is None  # the requests were recorded
    assert idents.wants_embedding(8, 0, 0.5) is None  # never started
    crop = np.zeros((112, 112, 3), np.uint8)
    assert idents.add(job(7, weak(5), crop=crop), GALLERY) == (True, None)
    used, naming = idents.add(job(7, weak(6), 0.9, crop=crop + 1), GALLERY)
    assert used and naming is not None and naming.name == "alice" and not naming.renamed
    assert naming.crop is not None and naming.crop[0, 0, 0] == 1  # the best face so far
    label = idents.present(7, 3, 0.1)
    assert label is not None and label.text == "alice" and label.known
    ended = idents.end(7)
    assert ended is not None and ended.frames == 1 and ended.last_frame == 3
    assert idents.end(7) is None and idents.open_tracks() == []


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
    ended = idents.end(1)
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
    assert book.assign(between(0, 1, 0.2)) == a  # close to the learnt centroid
    assert book.assign(between(0, 1, 0.2), exclude={a}) == "unknown-6"  # a is taken
    book.seed("unknown-2", unit(3) * 4)
    assert book.assign(unit(3, 0.05)) == "unknown-2"
    assert len(book) == 3
    book.assign(unit(9))  # a fourth identity: the least recently seen goes
    assert len(book) == 3 and "unknown-5" not in book and "unknown-7" in book
    book.forget({"unknown-2"})
    assert book.labels == ["unknown-6", "unknown-7"]


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
