"""Track identity, unknown grouping, sub-centers and face quality on synthetic data."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from streamrec.gallery.matcher import Matcher
from streamrec.gallery.subcenters import cluster_person, normalise
from streamrec.gallery.unknowns import UnknownBook
from streamrec.models.quality import pose_factor, sharpness_factor, size_factor
from streamrec.pipeline.identity import CameraIdentities, IdentityPolicy, TrackIdentity

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


GALLERY = Matcher(["alice", "bob"], np.stack([unit(0), unit(1)]), np.array([0, 1]))
POLICY = IdentityPolicy(threshold=0.4, min_embeddings=2, confident_after=3, refresh_interval=10)


def feed(ident: TrackIdentity, vectors: list[np.ndarray], policy: IdentityPolicy = POLICY) -> list:
    return [policy.update(ident, v, 1.0, GALLERY) for v in vectors]


def test_named_only_when_enough_evidence_agrees() -> None:
    ident = TrackIdentity(1, 0, 0.0)
    assert feed(ident, [unit(0, 0.1)]) == [False]  # one embedding is not enough
    assert ident.name is None and ident.score is not None and ident.score > 0.4
    assert feed(ident, [unit(0, 0.1, seed=1)]) == [True]
    assert ident.name == "alice" and ident.name_changes == 1


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


def test_settling_and_rechecks() -> None:
    policy = IdentityPolicy(0.4, 2, 3, refresh_interval=10, unknown_refresh_interval=15)
    ident = TrackIdentity(1, 0, 0.0)
    assert policy.needs_embedding(ident, 0, 0.5)  # a new track
    ident.last_request, ident.best_request = 0, 0.5
    assert not policy.needs_embedding(ident, 5, 0.5)  # refresh interval not reached
    assert policy.needs_embedding(ident, 10, 0.5)  # not settled: refresh
    feed(ident, [unit(0)] * 3, policy)
    assert ident.confident
    ident.last_request = 10
    assert not policy.needs_embedding(ident, 30, 0.6)  # settled, the face is not much better
    assert policy.needs_embedding(ident, 30, 0.8)  # recheck_gain 1.5 x 0.5 = 0.75 < 0.8
    # a settled unknown track: re-checked on a better face, at most every 15 frames
    unknown = TrackIdentity(2, 0, 0.0, last_request=100, best_request=0.2)
    feed(unknown, [unit(7)] * 3, policy)
    assert not policy.needs_embedding(unknown, 112, 0.9)
    assert policy.needs_embedding(unknown, 115, 0.9)
    assert not IdentityPolicy(0.4, recheck_gain=0).needs_embedding(ident, 100, 1.0)


def test_camera_identities_one_owner() -> None:
    idents = CameraIdentities(POLICY)
    idents.start(7, 0, 0.0)
    assert 7 in idents and 8 not in idents
    assert idents.wants_embedding(7, 0, 0.5)
    assert not idents.wants_embedding(7, 1, 0.5)  # the request was recorded
    assert not idents.wants_embedding(8, 0, 0.5)  # never started
    crop = np.zeros((112, 112, 3), np.uint8)
    assert idents.add(7, unit(0), 0.5, crop, GALLERY) is None
    naming = idents.add(7, unit(0), 0.9, crop + 1, GALLERY)
    assert naming is not None and naming.name == "alice" and not naming.renamed
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
    idents.add(1, unit(4), 1.0, None, empty)
    assert idents.label_unknown(1, book, "cam") is None  # one embedding is not evidence enough
    idents.add(1, unit(4), 1.0, None, empty)
    assert idents.label_unknown(1, book, "cam") == "unknown-1"
    assert idents.label_unknown(1, book, "cam") is None  # only once
    for tid, vec in ((2, unit(4, 0.05)), (3, unit(9))):
        idents.add(tid, vec, 1.0, None, empty)
        idents.add(tid, vec, 1.0, None, empty)
    # the same person, but track 1 (present) carries unknown-1: never two tracks one label
    assert idents.label_unknown(2, book, "cam") == "unknown-2"
    assert idents.label_unknown(3, book, "cam") == "unknown-3"
    ended = idents.end(1)
    assert ended is not None and ended.mean is not None
    book.learn("unknown-1", ended.mean, None, 1.0, "cam")  # what the match stage does at the end
    idents.start(4, 9, 0.3)
    idents.add(4, unit(4, 0.05, seed=4), 1.0, None, empty)
    idents.add(4, unit(4, 0.05, seed=5), 1.0, None, empty)
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
