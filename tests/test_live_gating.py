"""Live cameras at a fraction of a core (issue 22), on fake models and synthetic frames: motion
gating, the extras' schedules, degradation and recovery, the latencies. Behaviour only: no
timing is asserted (a slow detector is made slow on purpose)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np
import pytest
from fakes import (
    GREEN,
    RED,
    Face,
    FakeDetector,
    FakeEmbedder,
    FakeModels,
    FakeSource,
    ListWriter,
    Scene,
    recognition,
)
from prometheus_client.parser import text_string_to_metric_families

from streamrec import load_config
from streamrec.pipeline import Camera, Pipeline, build_pipeline
from streamrec.pipeline.budget import EmbedBudget
from streamrec.pipeline.build import camera_settings
from streamrec.pipeline.degrade import Degradation, Level, levels
from streamrec.pipeline.detect import DetectStage
from streamrec.pipeline.flow import Pyramid, follow, level_for
from streamrec.pipeline.motion import MotionDetector, MotionSettings
from streamrec.pipeline.small_faces import (
    MAX_WAIT,
    MAX_WAIT_GATED,
    SmallFaceSearch,
    SmallFaceSettings,
)
from streamrec.pipeline.stage import Stage
from streamrec.records import Detections, Track, Work
from streamrec.service.metrics import Metrics
from streamrec.service.status import LiveStatus
from streamrec.telemetry import Latency, Observer

INTERVAL = 5
#: a live camera's round for a new face's second look (half the interval, rounded up)
HALF = 3


def wait_for(what: str, condition: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def build(
    cameras: list[Camera],
    models: FakeModels,
    observers: list[Observer] = (),  # type: ignore[assignment]
    taps: list[Stage] = (),  # type: ignore[assignment]
    people: dict[str, tuple[int, int, int]] | None = None,
    **overrides: Any,
) -> tuple[Pipeline, ListWriter]:
    cfg = load_config(None, {"gallery": None, **overrides})
    writer = ListWriter()
    rec = recognition(models, people)
    pipeline = build_pipeline(cfg, cameras, writer, rec, None, list(observers), taps=taps)
    return pipeline, writer


def camera(faces: list[Face], frames: int, **kw: Any) -> Camera:
    return Camera("cam", FakeSource("cam", faces, frames, **kw), interval=INTERVAL)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------ motion


def frames_of(scene: Scene, count: int, faces: list[Face] = ()) -> list[np.ndarray]:  # type: ignore[assignment]
    from fakes import render

    return [
        cv2.cvtColor(render(faces, i, 640, 360, scene), cv2.COLOR_BGR2GRAY) for i in range(count)
    ]


def motions(grey_frames: list[np.ndarray], settings: MotionSettings | None = None) -> list[Any]:
    from streamrec.records import shrink

    detector = MotionDetector(settings or MotionSettings())
    return [detector.update(shrink(g, 100), 640, 360) for g in grey_frames]


def test_sensor_noise_and_slow_light_changes_are_not_motion() -> None:
    dusk = Scene(light=lambda i: 90.0 - 0.2 * i, noise=8.0)  # 40 grey levels darker in 200 frames
    found = motions(frames_of(dusk, 200))
    assert not any(m.regions or m.lightning for m in found)


def test_compression_flicker_is_learnt_per_pixel() -> None:
    """Blocks that flicker on every frame (a textured, badly compressed area) stop counting once
    the background knows them; a new object elsewhere still counts."""
    rng = np.random.default_rng(3)
    base = frames_of(Scene(noise=2.0), 160)
    for i, g in enumerate(base):
        g[40:120, 40:200] = np.clip(g[40:120, 40:200] + rng.choice([-25, 25]), 0, 255)
        if i >= 150:
            g[200:300, 400:480] = 200
    found = motions(base)
    flicker = [i for i, m in enumerate(found[:150]) if m.regions]
    assert flicker and max(flicker) < 100, flicker  # learnt within a few seconds
    x1, y1, x2, y2 = found[150].regions[0]
    assert x1 <= 400 and y1 <= 200 and x2 >= 480 and y2 >= 300


def test_an_ir_switch_is_a_change_of_light_not_motion() -> None:
    """Day to night: the picture's contrast and brightness change at once (and differently in
    each part of it): the background is learnt anew, no motion is reported."""
    rng = np.random.default_rng(5)
    day = cv2.GaussianBlur(rng.integers(0, 255, (360, 640), np.uint8), (0, 0), 8)
    day = cv2.normalize(day, None, 20, 200, cv2.NORM_MINMAX)
    night = cv2.convertScaleAbs(day, alpha=-1.2, beta=250)  # what was dark is bright
    grey = [
        np.clip((day if i < 30 else night) + rng.normal(0, 4, day.shape), 0, 255).astype(np.uint8)
        for i in range(60)
    ]
    found = motions(grey)
    assert [i for i, m in enumerate(found) if m.lightning] == [30]
    assert not any(m.regions for m in found)


def test_a_sudden_change_of_exposure_is_not_motion() -> None:
    exposure = Scene(light=lambda i: 40.0 if i < 30 else 75.0, noise=4.0)
    found = motions(frames_of(exposure, 60))
    assert not any(m.regions or m.lightning for m in found)


def test_motion_is_found_where_it_is_and_masks_hide_it() -> None:
    walker = [Face(RED, 20, 150, size=60, dx=4.0, frames=range(20, 100))]
    grey = frames_of(Scene(), 60, walker)
    found = motions(grey)
    assert not any(m.regions for m in found[:20])
    assert all(m.regions for m in found[20:])
    x1, y1, x2, y2 = found[40].regions[0]
    face_x = 20 + 4 * 40
    assert x1 <= face_x and x2 >= face_x + 60 and y1 <= 150 <= y2
    masked = MotionSettings(masks=[np.array([[0, 0], [640, 0], [640, 360], [0, 360]], np.float32)])
    assert not any(m.regions for m in motions(grey, masked))


# ------------------------------------------------------------------------------ gating


def test_a_static_camera_makes_no_detector_calls_after_warm_up() -> None:
    """Noise, a slow change of light, nobody: the first frame is detected, then none (the next
    look would come after detector.max_skip seconds)."""
    models = FakeModels()
    scene = Scene(light=lambda i: 60.0 + 0.1 * i, noise=6.0)
    pipeline, writer = build([camera([], 120, scene=scene)], models, **{"motion.enabled": True})
    summary = pipeline.run()
    assert summary.frames == 120
    assert models.detector.calls + models.detector.region_calls == 1
    assert writer.events == []


def test_max_skip_looks_at_a_still_camera_again() -> None:
    models = FakeModels()
    overrides = {"motion.enabled": True, "detector.max_skip": 1.0}
    pipeline, _ = build([camera([], 120, scene=Scene())], models, **overrides)  # 4.8 s at 25 fps
    pipeline.run()
    assert models.detector.calls == 5  # frames 0, 25, 50, 75, 100


def test_a_person_walking_into_a_static_scene_is_detected_within_one_interval() -> None:
    models = FakeModels()
    walker = Face(GREEN, -60, 90, size=60, dx=3.0, frames=range(40, 200))
    pipeline, writer = build([camera([walker], 120, scene=Scene())], models,
                             **{"motion.enabled": True})  # fmt: skip
    pipeline.run()
    starts = [e.frame for e in writer.events if e.event == "track_start"]
    assert len(starts) == 1 and 40 <= starts[0] < 40 + INTERVAL, starts
    # while the face is tracked it is detected every interval again
    assert models.detector.calls + models.detector.region_calls > (120 - 40) // INTERVAL


@pytest.mark.parametrize(("fps", "judged"), [(25.0, 60), (30.0, 60), (15.0, 120), (10.0, 120)])
def test_motion_is_judged_on_frames_at_least_the_gap_apart(
    fps: float, judged: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every other frame of a 25 or 30 fps camera, each frame of a 15 fps one; a walker who
    comes in between two judged frames is still detected within one interval."""
    updates = []
    update = MotionDetector.update
    monkeypatch.setattr(
        MotionDetector, "update", lambda self, *a: updates.append(1) or update(self, *a)
    )
    models = FakeModels()
    walker = Face(GREEN, -60, 90, size=60, dx=3.0, frames=range(41, 400))
    cam = Camera("cam", FakeSource("cam", [walker], 120, scene=Scene(), fps=fps), INTERVAL)  # type: ignore[arg-type]
    pipeline, writer = build([cam], models, **{"motion.enabled": True})
    pipeline.run()
    assert len(updates) == judged
    starts = [e.frame for e in writer.events if e.event == "track_start"]
    assert len(starts) == 1 and 41 <= starts[0] < 41 + INTERVAL, starts


@pytest.mark.parametrize("textured", [True, False])
def test_faces_kept_by_flow_are_detected_at_twice_the_interval(textured: bool) -> None:
    """Once a face has had its first looks and flow follows it on every frame, a gated camera's
    next round waits two intervals; a face flow cannot follow (a flat square: no corners) is
    detected every interval."""
    models = FakeModels()
    face = Face(GREEN, 100, 90, size=60, dx=1.0, frames=range(0, 400), textured=textured)
    pipeline, writer = build([camera([face], 200, scene=Scene())], models,
                             **{"motion.enabled": True})  # fmt: skip
    pipeline.run()
    assert [e.event for e in writer.events] == ["track_start", "unknown", "track_end"]  # one track
    calls = models.detector.calls + models.detector.region_calls
    assert (calls <= 200 // (2 * INTERVAL) + 4) if textured else (calls == 200 // INTERVAL), calls


def test_moving_regions_are_detected_alone_when_smaller_than_the_frame() -> None:
    detector = FakeDetector()
    walker = Face(GREEN, 200, 90, size=40, dx=0.0, frames=range(30, 200))
    pipeline, writer = build([camera([walker], 40, scene=Scene())], FakeModels(detector),
                             **{"motion.enabled": True})  # fmt: skip
    pipeline.run()
    # the first frame, a region around the walker on frame 30, the whole frame while tracked
    assert detector.calls == 2 and detector.region_calls == 1
    assert [e.frame for e in writer.events if e.event == "track_start"] == [30]


def test_motion_gating_is_on_for_live_cameras_by_default() -> None:
    cfg = load_config(None)
    live = FakeSource("cam", [], 1, live=True)
    file = FakeSource("cam", [], 1)
    zone = [[0.0, 0.0], [10.0, 0.0], [10.0, 10.0]]
    settings = camera_settings(cfg, Camera("cam", live, 5, [zone]))
    assert settings.gated and settings.live
    assert len(settings.motion.masks) == 1  # the ignore zone is masked for motion too
    assert not camera_settings(cfg, Camera("cam", file, 5)).gated
    off = load_config(None, {"motion.enabled": False})
    assert not camera_settings(off, Camera("cam", live, 5)).gated


def test_a_cameras_motion_section_keeps_the_other_keys_of_the_top_level_one() -> None:
    cfg = load_config(None, {
        "motion": {"threshold": 25, "frame_height": 80},
        "cameras": [
            {"name": "door", "source": "rtsp://door/1",
             "motion": {"mask": [[[0, 0], [9, 0], [9, 9]]]}},
            {"name": "yard", "source": "rtsp://yard/1"},
        ],
    })  # fmt: skip
    door, yard = (cfg.camera_motion(c) for c in cfg.cameras)
    assert (door.threshold, door.frame_height, len(door.mask)) == (25, 80, 1)
    assert (yard.threshold, yard.mask) == (25, [])


# ------------------------------------------------------------------------------ extras


def test_a_tile_that_finds_nothing_waits_longer_and_motion_calls_it_back() -> None:
    detector = FakeDetector(scale=0.5)  # a 320x240 frame: 9 tiles of 160x120
    search = SmallFaceSearch(SmallFaceSettings(), 0.4)
    image = np.zeros((240, 320, 3), np.uint8)
    for _ in range(9):
        search.detect(detector, image, Detections.empty(), [])
    assert detector.region_calls == 9  # every tile once
    for _ in range(191):
        search.detect(detector, image, Detections.empty(), [])
    # then each ever more rarely (2, 4, ... 32 rounds apart): about 10 looks each in 200 rounds
    assert 9 * 8 <= detector.region_calls <= 9 * 11
    before = detector.region_calls
    search.detect(detector, image, Detections.empty(), [], moving=[])
    assert detector.region_calls == before  # nothing moves: no tile
    search.detect(detector, image, Detections.empty(), [], moving=[(250, 200, 260, 210)])
    assert detector.region_calls == before + 1  # motion starts in a tile: searched at once


def test_with_motion_gating_a_fruitless_tile_waits_up_to_four_times_longer() -> None:
    """A tile in constant motion that finds nothing: up to 32 rounds apart ungated, 128 gated
    (where motion starting in a tile calls it back at once)."""
    image = np.zeros((240, 320, 3), np.uint8)
    everywhere = [(0, 0, 320, 240)]
    calls = {}
    for gated, max_wait in (("ungated", MAX_WAIT), ("gated", MAX_WAIT_GATED)):
        detector = FakeDetector(scale=0.5)
        search = SmallFaceSearch(SmallFaceSettings(), 0.4, max_wait)
        for _ in range(1000):
            search.detect(detector, image, Detections.empty(), [], moving=everywhere)
        calls[gated] = detector.region_calls
    # each tile after 1, 2, 4 ... rounds, then every 32 (ungated: ~31 + 5 looks in 1000 rounds)
    # or every 128 (gated: ~8 + 6); one tile a round, so the tiles' turns shift a little
    assert 9 * 32 <= calls["ungated"] <= 9 * 37
    assert 9 * 10 <= calls["gated"] <= 9 * 14


def test_large_faces_are_followed_on_a_smaller_level() -> None:
    rng = np.random.default_rng(0)
    texture = cv2.GaussianBlur(rng.integers(0, 255, (720, 1280), np.uint8), (0, 0), 3)
    moved = np.roll(texture, (6, 8), axis=(0, 1))  # 8 px right, 6 px down
    assert (level_for(30), level_for(100), level_for(240), level_for(1000)) == (0, 1, 2, 3)
    tracks = []
    for i, size in enumerate((40, 240)):
        box = np.array([300 + 400 * i, 200, 300 + 400 * i + size, 200 + size], np.float32)
        kps = np.repeat(box[None, :2] + size / 2, 5, axis=0).astype(np.float32)
        tracks.append(Track(i + 1, box, kps, 0.9, 0, 0, 0))
    got = follow(Pyramid(texture), Pyramid(moved), tracks)
    for track in tracks:
        box, _ = got[track.track_id]
        np.testing.assert_allclose(box - track.box, [8, 6, 8, 6], atol=1.0)


class Jobs(Stage):
    """A tap: the faces sent to the recognizer with each frame."""

    name = "jobs"

    def __init__(self) -> None:
        self.per_frame: list[int] = []

    def process(self, work: Work) -> None:
        if hasattr(work, "jobs"):
            self.per_frame.append(len(work.jobs))


def test_a_burst_of_new_faces_is_embedded_over_several_frames() -> None:
    faces = [Face(c, 10 + 75 * i, 60, size=50) for i, c in enumerate((RED, GREEN, RED, GREEN))]
    jobs = Jobs()
    pipeline, _ = build([camera(faces, 10)], FakeModels(), taps=[jobs])
    summary = pipeline.run()
    assert max(jobs.per_frame) == 2 and jobs.per_frame[:2] == [2, 2]  # not 4 with frame 0
    assert summary.cameras["cam"].embeddings == sum(jobs.per_frame) >= 4


def test_the_recognizer_budget_spreads_faces_at_its_pace() -> None:
    now = [0.0]
    budget = EmbedBudget(share=0.5, clock=lambda: now[0])
    assert all(budget.take() for _ in range(50))  # not measured yet: no limit
    budget.took(4, 0.4)  # 0.1 s a face
    sent = 0
    for _ in range(250):  # 10 s of frames at 25 fps
        now[0] += 0.04
        sent += budget.take()
    assert 45 <= sent <= 51  # half of 10 s of recognizer time: ~50 faces, not 250
    small = EmbedBudget(share=0.5, clock=lambda: now[0])
    small.took(10, 0.05)  # 5 ms a face: a frame's two faces always go
    for _ in range(100):
        now[0] += 0.04
        assert small.take() and small.take()


@pytest.mark.parametrize("live", [True, False])
def test_a_slow_recognizer_gets_live_faces_at_its_pace_and_every_file_face(live: bool) -> None:
    """A burst of eight new faces (frame 20) and a recognizer that takes 40 ms a face, measured on
    a first face: a live camera sends them at the recognizer's pace (the frames are not held
    back), a file two with every frame (the same evidence whatever the timing)."""

    class Slow(FakeEmbedder):
        def embed(self, crops: list[np.ndarray]) -> np.ndarray:
            time.sleep(0.04 * len(crops))
            return super().embed(crops)

    first = Face(GREEN, 260, 180, size=40)
    burst = [Face(c, 10 + 60 * (i % 4), 20 + 100 * (i // 4), size=40, frames=range(20, 40))
             for i, c in enumerate((RED, GREEN) * 4)]  # fmt: skip
    jobs = Jobs()
    models = FakeModels(embedder=Slow())
    pipeline, _ = build([camera([first, *burst], 40, live=live)], models, taps=[jobs])
    pipeline.graph.mux._lanes["cam"].live = False  # every frame is taken: no drop
    pipeline.run()
    sent = jobs.per_frame[20:24]
    assert (sum(sent) < 6) if live else (sent == [2, 2, 2, 2]), jobs.per_frame


# ------------------------------------------------------------------------------ degradation


@pytest.mark.parametrize("new_face", [True, False])
def test_a_degraded_camera_does_not_stretch_a_new_faces_first_looks(new_face: bool) -> None:
    """At interval ×4 a new face gets its second look half a camera interval after its first
    (its name is awaited); a face that has had its looks waits the stretched interval."""
    jobs = Jobs()
    face = Face(GREEN, 100, 90, size=60, frames=range(0, 200))
    pipeline, _ = build([camera([face], 120, live=True)], FakeModels(), taps=[jobs],
                        **{"degradation.window": 3600.0})  # fmt: skip
    pipeline.graph.mux._lanes["cam"].live = False  # every frame is taken: no drop, no timing
    detect = pipeline.graph.stages[0]
    assert isinstance(detect, DetectStage)
    cam = detect.cameras["cam"]
    assert cam.degradation is not None
    cam.degradation.level = Level(5, extras=False, interval_factor=4)
    if not new_face:
        cam.identities.policy.min_embeddings = 1  # the first look is all it needs
    pipeline.run()
    looks = [i for i, n in enumerate(jobs.per_frame) if n]
    assert looks[:2] == ([0, HALF] if new_face else [0, 4 * INTERVAL]), looks


@pytest.mark.parametrize("live", [True, False])
def test_a_new_face_on_a_live_camera_has_its_second_look_after_half_the_interval(
    live: bool,
) -> None:
    """Its name, decided on its second look, comes half an interval sooner; the rounds after
    keep the interval. A file keeps its interval (its evidence does not change)."""
    jobs = Jobs()
    models = FakeModels()
    faces = [Face(GREEN, 100, 90, size=60), Face(RED, 300, 90, size=60, frames=range(12, 200))]
    pipeline, writer = build([camera(faces, 40, live=live)], models, taps=[jobs])
    pipeline.graph.mux._lanes["cam"].live = False  # every frame is taken: no drop, no timing
    pipeline.run()
    looks = [i for i, n in enumerate(jobs.per_frame) if n]
    rounds = [0, HALF] if live else [0, INTERVAL]
    assert looks[:2] == rounds, looks
    # the face that comes at frame 12 (found on the round after it) has its second look at
    # half an interval too, or the interval
    start = next(e.frame for e in writer.events if e.event == "track_start" and e.frame > 0)
    assert start + rounds[1] in looks, (start, looks)
    decided = [e.frame for e in writer.events if e.event == "unknown"]
    assert decided == [rounds[1], start + rounds[1]], decided


def test_degradation_levels_are_declared_in_order() -> None:
    steps = levels(640, 4, 320)
    assert [s.describe() for s in steps] == [
        "normal",
        "extras off",
        "extras off, interval ×2",
        "extras off, interval ×3",
        "extras off, interval ×4",
        "extras off, interval ×4, detection at 480 px",
        "extras off, interval ×4, detection at 384 px",
    ]


def test_degradation_steps_down_on_drops_and_back_after_a_quiet_while() -> None:
    now = [0.0]
    changes: list[Level] = []
    d = Degradation(levels(640, 2, 640), 1.0, 10.0, changes.append, clock=lambda: now[0])
    index = 0

    def run(seconds: float, lost_every: int = 0, waited: float = 0.06) -> None:
        """25 fps; frames taken ``waited`` s after their capture, one in ``lost_every`` lost."""
        nonlocal index
        for _ in range(int(seconds * 25)):
            now[0] += 0.04
            index += 1
            if lost_every and index % lost_every == 0:
                index += 1  # a frame lost before this one
            d.frame(index, index * 0.04, waited)

    run(3.0, lost_every=10, waited=0.005)  # lost, but the others taken at once: not behind
    assert changes == []
    run(3.0, lost_every=10)  # 10 % lost and the others waited: one step per second
    assert [c.number for c in changes] == [1, 2]
    run(9.0)
    assert d.level.number == 2  # not before recover_after
    run(2.0)
    assert d.level.number == 1
    run(2.0, lost_every=10)  # relapse right after the step back: the next wait doubles
    assert d.level.number == 2
    run(15.0)
    assert d.level.number == 2
    run(8.0)
    assert d.level.number == 1


def test_the_first_second_of_a_stream_does_not_degrade_it() -> None:
    """The frames lost while a stream starts (the models' first runs) are its backlog, at
    start-up and after a reconnect; the same loss a window later takes the camera down."""
    now = [100.0]
    changes: list[Level] = []
    d = Degradation(levels(640, 4, 320), 1.0, 10.0, changes.append, clock=lambda: now[0])
    index = 0

    def run(seconds: float, lost: int = 0) -> None:
        """25 fps, each frame taken a frame late; ``lost`` frames lost after the first."""
        nonlocal index
        for i in range(int(seconds * 25)):
            now[0] += 0.04
            index += 1 + (lost if i == 1 else 0)
            d.frame(index, now[0] - 0.04, 0.04)

    now[0] += 3.0  # the models load: the stream's first frame comes seconds after the start
    run(1.0, lost=26)
    run(2.0)
    assert changes == []
    d.restart()
    index += 1000  # a reconnect: the indices jump
    run(1.0, lost=26)
    run(2.0)
    assert changes == []
    run(1.0, lost=26)
    run(0.5)  # past the window's end
    assert changes and changes[-1].number >= 2


def test_degradation_engages_and_recovers_under_a_slow_detector() -> None:
    """A live 25 fps camera with a face and a detector far too slow for it: the camera degrades
    (shown in /health and /metrics), and comes back to normal once the detector is fast."""
    detector = FakeDetector(delay=0.5)
    status, metrics = LiveStatus(), Metrics()
    source = FakeSource("cam", [Face(RED, 40, 60, dx=0.2)], 10**9, live=True, paced=True)
    pipeline, _ = build(
        [Camera("cam", source, interval=INTERVAL)],  # type: ignore[arg-type]
        FakeModels(detector),
        [status, metrics],
        **{"degradation.window": 0.5, "degradation.recover_after": 1.0},
    )
    runner = threading.Thread(target=pipeline.run)
    runner.start()
    try:
        def level() -> int:
            return int(status.snapshot().get("cam", {}).get("degradation", {}).get("level", 0))

        wait_for("degradation", lambda: level() >= 2)
        assert "interval" in status.snapshot()["cam"]["degradation"]["what"]
        assert _gauge(metrics, "streamrec_degradation_level") >= 2
        detector.delay = 0.0
        wait_for("recovery", lambda: level() == 0, timeout=120.0)
        assert _gauge(metrics, "streamrec_degradation_level") == 0
    finally:
        pipeline.stop()
        runner.join(30)
    assert pipeline.summary.cameras["cam"].dropped > 0


def _gauge(metrics: Metrics, name: str) -> float:
    for family in text_string_to_metric_families(metrics.text().decode()):
        for sample in family.samples:
            if sample.name == name and sample.labels.get("camera") == "cam":
                return float(sample.value)
    raise AssertionError(f"{name} not exposed")


# ------------------------------------------------------------------------------ latency


class Latencies(Observer):
    def __init__(self) -> None:
        self.seen: list[tuple[Latency, float]] = []

    def latency(self, camera: str, kind: Latency, seconds: float) -> None:
        self.seen.append((kind, seconds))


def test_track_end_latency_is_reported_separately() -> None:
    """Every frame's latency, the decision of each track, its events; track_end's from the
    frame whose detection round ended the track (named in the event), not its last sighting."""
    faces = [Face(RED, 40, 60, frames=range(0, 40)), Face(GREEN, 200, 60, frames=range(10, 90))]
    seen, metrics = Latencies(), Metrics()
    people = {"alice": RED}
    pipeline, writer = build([camera(faces, 100)], FakeModels(), [seen, metrics], people=people)
    pipeline.run()
    kinds = [k for k, _ in seen.seen]
    events = [e for e in writer.events if e.event in ("track_start", "identified", "unknown")]
    ends = [e for e in writer.events if e.event == "track_end"]
    assert kinds.count(Latency.FRAME) == 100
    assert kinds.count(Latency.EVENT) == len(events) == 4  # 2 starts, alice, unknown-1
    assert kinds.count(Latency.DECISION) == 2
    assert kinds.count(Latency.TRACK_END) == 1  # the stream's end closed the other one
    red = next(e for e in ends if e.fields["name"] == "alice")
    # seen last on frame 39, ended by the detection round that missed it a third time
    assert red.fields["last_frame"] == 39
    assert red.fields["ended_frame"] == 40 + INTERVAL * 2
    assert all(s >= 0 for _, s in seen.seen)
    text = metrics.text().decode()
    assert 'streamrec_track_end_latency_seconds_count{camera="cam"} 1.0' in text
    assert 'streamrec_event_latency_seconds_count{camera="cam"} 4.0' in text
    assert 'streamrec_decision_latency_seconds_count{camera="cam"} 2.0' in text
    assert 'streamrec_frame_latency_seconds_count{camera="cam"} 100.0' in text


@pytest.mark.parametrize("kind", list(Latency))
def test_every_latency_has_its_metric(kind: Latency) -> None:
    metrics = Metrics()
    metrics.add_camera("cam")
    metrics.latency("cam", kind, 0.1)
    assert f"streamrec_{kind.value}_latency_seconds_count" in metrics.text().decode()
