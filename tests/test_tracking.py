"""IoU tracker on synthetic scenes: faces moving on known paths, detector run every N frames."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import cv2
import numpy as np
import pytest

from streamrec.geometry import iou_matrix
from streamrec.pipeline.tracking import IoUTracker, Track, TrackUpdate
from streamrec.records import Detections

SIZE = 80.0
# Landmarks relative to the box (x, y in box units): eyes, nose, mouth corners.
KPS_REL = np.array([[0.3, 0.4], [0.7, 0.4], [0.5, 0.6], [0.35, 0.8], [0.65, 0.8]], np.float32)

Path = Callable[[int], "np.ndarray | None"]  # frame -> ground-truth box, None when absent


def square(x: float, y: float, size: float = SIZE) -> np.ndarray:
    return np.array([x, y, x + size, y + size], np.float32)


def crossing_scene() -> dict[str, Path]:
    """Two faces moving in opposite directions on overlapping rows; they cross at frame 50."""
    return {
        "a": lambda t: square(20 + 4 * t, 100),
        "b": lambda t: square(420 - 4 * t, 130),
    }


def landmarks(boxes: np.ndarray) -> np.ndarray:
    size = boxes[:, 2:] - boxes[:, :2]
    return (boxes[:, None, :2] + KPS_REL[None] * size[:, None]).astype(np.float32)


def relative_landmarks(track: Track) -> np.ndarray:
    return (track.kps - track.box[:2]) / (track.box[2:] - track.box[:2])


@dataclass
class Run:
    """What a simulation saw: ground truth, updates, and the track ids matched to each face."""

    truth: dict[int, dict[str, np.ndarray]] = field(default_factory=dict)
    updates: dict[int, TrackUpdate] = field(default_factory=dict)
    detected: dict[int, dict[str, np.ndarray]] = field(default_factory=dict)
    ids: dict[str, set[int]] = field(default_factory=dict)

    def only_id(self, face: str) -> int:
        assert len(self.ids[face]) == 1, f"face {face} matched tracks {self.ids[face]}"
        return next(iter(self.ids[face]))

    def track(self, frame: int, track_id: int) -> Track | None:
        return next((t for t in self.updates[frame].active if t.track_id == track_id), None)

    def all_started(self) -> list[int]:
        return [t.track_id for u in self.updates.values() for t in u.started]

    def all_ended(self) -> list[int]:
        return [t.track_id for u in self.updates.values() for t in u.ended]


def snapshot(update: TrackUpdate) -> TrackUpdate:
    """Copy the tracks: the tracker updates them in place (it replaces, never mutates, arrays)."""
    active, started, ended = (
        [copy.copy(t) for t in tracks] for tracks in (update.active, update.started, update.ended)
    )
    return TrackUpdate(active, started, ended)


def simulate(
    tracker: IoUTracker,
    scene: dict[str, Path],
    frames: Iterable[int],
    detect: Callable[[int], bool],
    jitter: float = 1.0,
    seed: int = 0,
) -> Run:
    """Feed the tracker; detection order is shuffled and boxes jittered (uniform ± ``jitter``)."""
    rng = np.random.default_rng(seed)
    run = Run(ids={face: set() for face in scene})
    for frame in frames:
        truth = {face: box for face, path in scene.items() if (box := path(frame)) is not None}
        run.truth[frame] = truth
        if not detect(frame):
            run.updates[frame] = snapshot(tracker.update(frame, None))
            continue
        faces = list(truth)
        rng.shuffle(faces)
        boxes = np.array([truth[f] for f in faces], np.float32).reshape(-1, 4)
        boxes += rng.uniform(-jitter, jitter, boxes.shape).astype(np.float32)
        dets = Detections(boxes, np.full(len(faces), 0.9, np.float32), landmarks(boxes))
        run.detected[frame] = dict(zip(faces, boxes, strict=True))
        update = snapshot(tracker.update(frame, dets))
        run.updates[frame] = update
        for track in update.active:
            if track.det_index >= 0:
                run.ids[faces[track.det_index]].add(track.track_id)
    return run


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float(iou_matrix(a[None], b[None])[0, 0])


def test_iou_matrix_matches_pairwise_definition() -> None:
    rng = np.random.default_rng(1)
    xy = rng.uniform(0, 100, (13, 2))
    a = np.concatenate([xy[:7], xy[:7] + rng.uniform(1, 60, (7, 2))], axis=1)
    b = np.concatenate([xy[7:], xy[7:] + rng.uniform(1, 60, (6, 2))], axis=1)
    b[0] = a[0]  # identical pair
    got = iou_matrix(a, b)
    assert got.shape == (7, 6) and got.dtype == np.float32
    for i in range(7):
        for j in range(6):
            w = max(0.0, min(a[i, 2], b[j, 2]) - max(a[i, 0], b[j, 0]))
            h = max(0.0, min(a[i, 3], b[j, 3]) - max(a[i, 1], b[j, 1]))
            area = lambda r: (r[2] - r[0]) * (r[3] - r[1])  # noqa: E731
            expected = w * h / (area(a[i]) + area(b[j]) - w * h)
            assert got[i, j] == pytest.approx(expected, abs=1e-5)
    assert got[0, 0] == pytest.approx(1.0)
    assert iou(square(0, 0, 10), square(5, 0, 10)) == pytest.approx(50 / 150)
    assert iou(square(0, 0, 10), square(20, 20, 10)) == 0.0
    assert iou_matrix(np.zeros((0, 4)), b).shape == (0, 6)
    assert iou_matrix(a, np.zeros((0, 4))).shape == (7, 0)
    degenerate = np.array([[5, 5, 5, 5]], np.float32)
    assert iou_matrix(degenerate, degenerate)[0, 0] == 0.0


@pytest.mark.parametrize("interval", [1, 5])
def test_crossing_faces_keep_ids_and_predictions_follow_motion(interval: int) -> None:
    run = simulate(IoUTracker(), crossing_scene(), range(100), lambda f: f % interval == 0)
    id_a, id_b = run.only_id("a"), run.only_id("b")
    assert id_a != id_b
    assert sorted(run.all_started()) == [1, 2] and run.all_ended() == []
    for frame, truth in run.truth.items():
        assert len(run.updates[frame].active) == 2
        for face, track_id in (("a", id_a), ("b", id_b)):
            track = run.track(frame, track_id)
            assert track is not None and track.last_frame == frame
            assert iou(track.box, truth[face]) > 0.5, (frame, face, track.box, truth[face])
    last = run.track(99, id_a)
    assert last is not None
    assert last.first_frame == 0 and last.frames == 100 and last.hits == len(run.detected)
    np.testing.assert_allclose(last.velocity, [4, 0, 4, 0], atol=1.0)


def test_prediction_between_detections_beats_holding_the_last_box() -> None:
    interval = 5
    run = simulate(IoUTracker(), crossing_scene(), range(100), lambda f: f % interval == 0)
    for face in ("a", "b"):
        track_id = run.only_id(face)
        for frame in range(2 * interval + 1, 100):
            if frame % interval == 0:
                continue
            track = run.track(frame, track_id)
            assert track is not None and track.det_index == -1
            held = run.detected[frame - frame % interval][face]
            truth = run.truth[frame][face]
            assert iou(track.box, truth) > max(0.9, iou(held, truth)), (face, frame)
            np.testing.assert_allclose(relative_landmarks(track), KPS_REL, atol=1e-4)


def test_growing_face_prediction_scales_box_and_landmarks() -> None:
    scene: dict[str, Path] = {
        "a": lambda t: np.array([200 - 1.5 * t, 150 - 1.5 * t, 260 + 1.5 * t, 210 + 1.5 * t])
    }
    run = simulate(IoUTracker(), scene, range(60), lambda f: f % 6 == 0, jitter=0.5)
    track_id = run.only_id("a")
    for frame in range(13, 60):
        track = run.track(frame, track_id)
        assert track is not None
        assert iou(track.box, run.truth[frame]["a"]) > 0.93, frame
        np.testing.assert_allclose(relative_landmarks(track), KPS_REL, atol=1e-4)


def test_irregular_detection_and_skipped_frames() -> None:
    rng = np.random.default_rng(7)
    frames = [f for f in range(120) if f == 0 or rng.random() < 0.7]
    detect_frames, last = {0}, 0
    for f in frames:
        if f - last >= 7 or (f - last >= 1 and rng.random() < 0.3):
            detect_frames.add(f)
            last = f
    run = simulate(IoUTracker(), crossing_scene(), frames, detect_frames.__contains__, seed=3)
    id_a, id_b = run.only_id("a"), run.only_id("b")
    assert id_a != id_b and run.all_ended() == []
    for frame in frames:
        for face, track_id in (("a", id_a), ("b", id_b)):
            track = run.track(frame, track_id)
            assert track is not None
            assert iou(track.box, run.truth[frame][face]) > 0.5, (frame, face)
    final = run.track(frames[-1], id_a)
    assert final is not None and final.frames == len(frames)


def test_leaving_face_ends_once_after_missed_rounds_and_new_face_gets_new_id() -> None:
    max_missed, interval = 2, 5
    scene: dict[str, Path] = {
        "a": lambda t: square(20 + 2 * t, 40) if t < 40 else None,  # last detected at 35
        "b": lambda t: square(300, 300 + t),
        "c": lambda t: square(100, 40) if t >= 70 else None,  # where a was
    }
    tracker = IoUTracker(max_missed=max_missed)
    run = simulate(tracker, scene, range(100), lambda f: f % interval == 0)
    id_a, id_b, id_c = run.only_id("a"), run.only_id("b"), run.only_id("c")
    assert len({id_a, id_b, id_c}) == 3 and id_c > max(id_a, id_b)

    end_frame = 35 + (max_missed + 1) * interval
    ended = [(f, t) for f, u in run.updates.items() for t in u.ended]
    assert [(f, t.track_id) for f, t in ended] == [(end_frame, id_a)]
    track_a = ended[0][1]
    assert track_a.missed == max_missed + 1 and track_a.last_detected == 35
    # lost from the first round that did not find it (40): never drawn where no face is
    assert track_a.last_frame == 39 and track_a.frames == 40
    assert track_a.hits == 8 and track_a.det_index == -1
    for frame in range(36, 40):
        track = run.track(frame, id_a)
        assert track is not None and track.missed == 0
    assert all(run.track(f, id_a) is None for f in range(40, 100))

    started = [(f, t.track_id) for f, u in run.updates.items() for t in u.started]
    assert started == [(0, min(id_a, id_b)), (0, max(id_a, id_b)), (70, id_c)]
    assert run.track(99, id_b) is not None

    remaining = tracker.end_all()
    assert sorted(t.track_id for t in remaining) == sorted([id_b, id_c])
    assert tracker.end_all() == []


def test_end_all_ends_everything_once_and_ids_are_never_reused() -> None:
    tracker = IoUTracker()
    run = simulate(tracker, crossing_scene(), range(20), lambda f: f % 5 == 0)
    ended = tracker.end_all()
    assert sorted(t.track_id for t in ended) == [1, 2]
    assert all(t.last_frame == 19 for t in ended)
    assert tracker.end_all() == []
    # A new video may restart frame indices; tracks start fresh with new ids.
    again = simulate(tracker, crossing_scene(), range(10), lambda f: f % 5 == 0)
    assert sorted(again.all_started()) == [3, 4] and again.all_ended() == []
    assert set(run.all_started()).isdisjoint(again.all_started())
    assert sorted(t.track_id for t in tracker.end_all()) == [3, 4]


def test_empty_detections_count_as_missed_rounds() -> None:
    tracker = IoUTracker(max_missed=1)
    update = tracker.update(0, Detections.empty())
    assert update.active == update.started == update.ended == []
    assert tracker.update(1, None).active == []

    box = square(10, 10)[None]
    dets = Detections(box, np.array([0.8], np.float32), landmarks(box))
    (track,) = tracker.update(2, dets).started
    assert track.track_id == 1 and track.det_index == 0 and track.det_score == pytest.approx(0.8)
    update = tracker.update(3, Detections.empty())
    assert update.active == [] and update.ended == []  # lost: kept, but not present
    assert track.missed == 1 and track.det_index == -1 and track.last_frame == 2
    np.testing.assert_array_equal(track.box, box[0])
    assert [(t.track_id, list(b)) for t, b in tracker.predicted(4)] == [(1, list(box[0]))]
    assert tracker.reported == 1  # lost tracks are still reported
    update = tracker.update(4, Detections.empty())
    assert update.active == [] and update.ended == [track]
    assert tracker.reported == 0
    assert track.last_frame == 2 and track.frames == 1
    assert tracker.end_all() == []


def test_lost_track_comes_back_under_its_id() -> None:
    """A face the detector misses for a round is hidden, then found again as the same track."""
    tracker = IoUTracker(max_missed=2)
    for frame in range(30):
        box = square(100 + frame, 100)[None]
        found = Detections(box, np.array([0.9], np.float32), landmarks(box))
        update = tracker.update(
            frame, None if frame % 5 else Detections.empty() if frame == 10 else found
        )
        assert update.started == ([update.active[0]] if frame == 0 else [])
        assert update.ended == []
        assert [t.track_id for t in update.active] == ([] if 10 <= frame < 15 else [1])
        if update.active:
            assert iou(update.active[0].box, box[0]) > 0.9
    assert update.active[0].frames == 30 - 5


def test_a_face_that_reverses_keeps_its_track() -> None:
    """Moving down, then up: the predicted box overshoots, the last detected box still matches."""
    scene: dict[str, Path] = {
        "a": lambda t: square(200, 100 + 4 * t if t <= 10 else 140 - 4 * (t - 10), 60)
    }
    run = simulate(IoUTracker(), scene, range(20), lambda f: f % 5 == 0, jitter=0.0)
    assert run.only_id("a") == 1 and run.all_ended() == []


def test_frames_without_detections_coast_for_a_bounded_time() -> None:
    horizon = 10
    tracker = IoUTracker(max_velocity_frames=horizon)
    scene: dict[str, Path] = {
        "moving": lambda t: square(20 + 3 * t, 50),
        "still": lambda t: square(300, 50),
    }
    run = simulate(tracker, scene, range(11), lambda f: f % 5 == 0, jitter=0.0)
    for frame in range(11, 60):
        update = tracker.update(frame, None)
        assert update.started == update.ended == [] and len(update.active) == 2
    by_id = {track.track_id: track for track in update.active}
    moving, still = by_id[run.only_id("moving")], by_id[run.only_id("still")]
    np.testing.assert_allclose(moving.box, square(20 + 3 * (10 + horizon), 50), atol=1e-3)
    np.testing.assert_array_equal(still.box, square(300, 50))
    assert moving.last_frame == still.last_frame == 59
    assert moving.frames == 60 and moving.last_detected == 10 and moving.missed == 0
    np.testing.assert_allclose(moving.velocity, [3, 0, 3, 0], atol=1e-4)


def centre_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Centre distance in units of the track box size (not an IoU: works without overlap)."""
    centre_a = (a[:, :2] + a[:, 2:]) / 2
    centre_b = (b[:, :2] + b[:, 2:]) / 2
    size = (a[:, 2:] - a[:, :2]).mean(axis=1)
    return np.linalg.norm(centre_a[:, None] - centre_b[None], axis=2) / size[:, None]


def test_custom_distance_tracks_fast_small_faces() -> None:
    # 20 px faces moving 30 px per frame never overlap between consecutive detections.
    scene: dict[str, Path] = {
        "a": lambda t: square(10 + 30 * t, 50, 20),
        "b": lambda t: square(900 - 30 * t, 400, 20),
    }
    default = simulate(IoUTracker(), scene, range(30), lambda f: True)
    assert len(default.ids["a"]) > 1  # IoU gate rejects every step

    custom = IoUTracker(distance=centre_distance, max_distance=2.0)
    run = simulate(custom, scene, range(30), lambda f: True)
    assert run.only_id("a") != run.only_id("b")
    assert sorted(run.all_started()) == [1, 2] and run.all_ended() == []


def test_custom_distance_gate_and_shape_check() -> None:
    far = np.concatenate([square(0, 0, 10)[None], square(500, 500, 10)[None]])
    dets = Detections(far, np.ones(2, np.float32), landmarks(far))
    far_right = far + np.array([1000, 0, 1000, 0], np.float32)
    moved = Detections(far_right, np.ones(2, np.float32), landmarks(far_right))

    ungated = IoUTracker(distance=centre_distance)  # no max_distance: any finite cost matches
    ungated.update(0, dets)
    update = ungated.update(1, moved)
    assert update.started == [] and [t.det_index for t in update.active] == [0, 1]

    infinite = IoUTracker(distance=lambda a, b: np.full((len(a), len(b)), np.inf))
    infinite.update(0, dets)
    assert [t.track_id for t in infinite.update(1, dets).started] == [3, 4]

    broken = IoUTracker(distance=lambda a, b: np.zeros((len(b), len(a) + 1)))
    broken.update(0, dets)
    with pytest.raises(ValueError, match="shape"):
        broken.update(1, dets)


def test_min_hits_hides_tentative_tracks() -> None:
    scene: dict[str, Path] = {
        "face": lambda t: square(50 + t, 50),
        "blip": lambda t: square(400, 400) if t == 4 else None,  # one-frame false positive
        "late": lambda t: square(400, 50) if t >= 10 else None,
    }
    tracker = IoUTracker(min_hits=3)
    run = simulate(tracker, scene, range(11), lambda f: True)
    assert tracker.reported == 1  # "late" is tentative (one hit)
    run = simulate(IoUTracker(min_hits=3), scene, range(20), lambda f: True)
    assert run.ids["blip"] == set()  # never reported
    started = [(f, t.track_id) for f, u in run.updates.items() for t in u.started]
    assert started == [(2, 1), (12, 2)] and run.all_ended() == []
    assert run.only_id("face") == 1 and run.only_id("late") == 2
    assert all(run.updates[f].active == [] for f in (0, 1))
    first = run.updates[2].started[0]
    assert first.first_frame == 0 and first.hits == first.frames == 3


def test_frame_index_must_increase() -> None:
    tracker = IoUTracker()
    tracker.update(5, None)
    with pytest.raises(ValueError, match="increase"):
        tracker.update(5, None)
    with pytest.raises(ValueError):
        IoUTracker(min_hits=0)


def test_optical_flow_keeps_boxes_on_a_face_that_turns_back() -> None:
    """Between detections the tracker alone extrapolates the last motion; following the
    face's own pixels keeps the box on it when it reverses (down, then up again)."""
    from streamrec.pipeline.flow import Pyramid, follow

    rng = np.random.default_rng(0)
    background = rng.integers(0, 256, (300, 400), dtype=np.uint8)  # grey, as flow sees frames
    texture = cv2.GaussianBlur(rng.integers(0, 256, (60, 60), dtype=np.uint8), (5, 5), 1)

    def y(t: int) -> int:
        return 100 + 5 * t if t <= 6 else 130 - 7 * (t - 6)

    def frame(t: int) -> np.ndarray:
        image = background.copy()
        image[y(t) : y(t) + 60, 150:210] = texture
        return image

    def run(with_flow: bool) -> float:
        tracker, previous, worst = IoUTracker(), None, 1.0
        for t in range(16):
            image, truth = frame(t), square(150, y(t), 60)
            if t % 5 == 0:
                box = truth[None]
                update = tracker.update(t, Detections(box, np.ones(1, np.float32), landmarks(box)))
            else:
                moved = None
                if with_flow:
                    moved = follow(Pyramid(previous), Pyramid(image), tracker.present)
                update = tracker.update(t, None, moved)
            worst = min(worst, iou(update.active[0].box, truth))
            previous = image
        return worst

    assert run(with_flow=True) > 0.85
    assert run(with_flow=False) < 0.6
