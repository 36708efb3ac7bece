"""The pipeline's logic on fake models and synthetic frames (milliseconds, no model files)."""

from __future__ import annotations

import collections
import threading
import time

import numpy as np
import pytest
from fakes import (
    BLUE,
    GREEN,
    RED,
    Face,
    FakeEmbedder,
    FakeModels,
    FakeSource,
    ListWriter,
    recognition,
)

from streamrec import load_config
from streamrec.errors import StreamrecError
from streamrec.pipeline import Camera, Pipeline, build_pipeline
from streamrec.records import Frame
from streamrec.telemetry import Observer

SCENE = [Face(RED, 20, 60, dx=1.0), Face(GREEN, 200, 60, frames=range(10, 50))]


class Recorder(Observer):
    def __init__(self) -> None:
        self.calls: collections.Counter[str] = collections.Counter()
        self.images: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()

    def _count(self, what: str) -> None:
        with self._lock:
            self.calls[what] += 1

    def frame_read(self, camera: str) -> None:
        self._count("frame_read")

    def detected(self, camera: str, faces: int, seconds: float) -> None:
        self._count("detected")

    def frame_wanted(self, camera: str) -> bool:
        return camera == "watched"

    def frame_done(self, camera: str, image: np.ndarray | None) -> None:
        self._count("frame_done")
        if image is not None:
            with self._lock:
                self.images[camera] += 1


def build(
    cameras: list[Camera],
    models: FakeModels | None = None,
    people: dict | None = None,
    observers: list[Observer] | None = None,
    **overrides: object,
) -> tuple[Pipeline, ListWriter]:
    cfg = load_config(None, {"gallery": None, **overrides})
    writer = ListWriter()
    rec = recognition(models, people)
    pipeline = build_pipeline(cfg, cameras, writer, rec, None, observers or [])
    return pipeline, writer


def camera(name: str, faces: list[Face] = SCENE, frames: int = 60, **kw: object) -> Camera:
    return Camera(name, FakeSource(name, faces, frames, **kw), interval=5)  # type: ignore[arg-type]


def check_tracks_closed(events: list) -> None:
    def count(kind: str) -> collections.Counter:
        return collections.Counter((e.camera, e.track_id) for e in events if e.event == kind)

    started, ended = count("track_start"), count("track_end")
    assert started == ended and max(started.values(), default=1) == 1


def test_known_face_named_unknown_face_labelled() -> None:
    recorder = Recorder()
    pipeline, writer = build([camera("cam")], people={"alice": RED}, observers=[recorder])
    summary = pipeline.run()
    events = writer.events
    check_tracks_closed(events)
    ends = {e.track_id: e.fields for e in events if e.event == "track_end"}
    assert {(f["name"], f["unknown"]) for f in ends.values()} == {
        (None, "unknown-1"),
        ("alice", None),
    }
    identified = [e for e in events if e.event == "identified"]
    assert [e.fields["name"] for e in identified] == ["alice"]
    assert identified[0].snapshot is not None and identified[0].snapshot.shape == (112, 112, 3)
    assert "snapshot" not in identified[0].to_dict()
    # the facts travel in the events only: the unknown label with its face too
    (unknown,) = [e for e in events if e.event == "unknown"]
    assert unknown.fields["label"] == "unknown-1" and unknown.snapshot is not None
    assert "snapshot" not in unknown.to_dict()
    assert summary.frames == 60 and summary.cameras["cam"].detector_runs == 12
    assert summary.cameras["cam"].people["alice"].tracks == 1
    assert summary.cameras["cam"].tracks == 2
    assert recorder.calls["frame_read"] == recorder.calls["frame_done"] == 60
    assert recorder.calls["detected"] == 12
    assert not recorder.images  # nobody watched, no output: nothing drawn
    assert pipeline.progress == 60


def test_frames_drawn_only_for_a_consumer() -> None:
    written: list[np.ndarray] = []

    class Out:
        def write(self, image: np.ndarray, frame: Frame) -> None:
            written.append(image)

        def close(self) -> None:
            written.append(np.zeros(0))

    recorder = Recorder()
    cams = [camera("file"), camera("watched"), camera("idle")]
    cams[0].outputs = [lambda frame: Out()]
    pipeline, _ = build(cams, people={"alice": RED}, observers=[recorder])
    pipeline.run()
    assert len(written) == 61 and written[-1].size == 0  # every frame, then closed once
    known = [bool((img == (60, 200, 60)).all(axis=2).any()) for img in written[:-1]]
    unknown = [bool((img == (40, 160, 240)).all(axis=2).any()) for img in written[:-1]]
    # alice's good face names her track at once (green); the stranger's box is orange
    assert all(known) and not unknown[0] and unknown[20]
    assert recorder.images == {"file": 60, "watched": 60}  # nothing drawn for "idle"


def test_cameras_are_independent() -> None:
    cams = [camera("a"), camera("b", [Face(BLUE, 100, 100)], frames=40)]
    pipeline, writer = build(cams, people={"alice": RED, "bob": BLUE})
    summary = pipeline.run()
    check_tracks_closed(writer.events)
    named = {(e.camera, e.fields["name"]) for e in writer.events if e.event == "identified"}
    assert named == {("a", "alice"), ("b", "bob")}
    assert summary.cameras["a"].frames == 60 and summary.cameras["b"].frames == 40


def test_a_gap_ends_the_tracks_of_that_camera() -> None:
    cam = camera("live", [Face(RED, 50, 50)], frames=40, gaps=[20])
    pipeline, writer = build([cam], people={"alice": RED})
    pipeline.run()
    check_tracks_closed(writer.events)
    kinds = writer.kinds()
    assert [k for k, _ in kinds if k in ("track_start", "track_end")] == [
        "track_start",
        "track_end",
        "track_start",
        "track_end",
    ]
    end = next(e for e in writer.events if e.event == "track_end")
    assert end.fields["last_frame"] == 19


def test_a_failing_stage_aborts_and_still_ends_every_track() -> None:
    models = FakeModels(embedder=FakeEmbedder(fail_after=1))
    pipeline, writer = build([camera("cam", frames=200)], models)
    with pytest.raises(StreamrecError, match="embed"):
        pipeline.run()
    assert pipeline.summary.error and "embed" in pipeline.summary.error
    check_tracks_closed(writer.events)
    assert any(e.event == "track_start" for e in writer.events)


def test_light_stages_share_the_thread_before_them() -> None:
    """Annotate and output run in the match stage's thread: three stage threads, not five."""
    pipeline, _ = build([camera("cam")])
    groups = [[s.name for s in g] for g in pipeline.graph.groups]
    assert groups == [["detect"], ["embed"], ["match", "annotate", "output"]]
    seen: dict[str, set[str]] = collections.defaultdict(set)

    class Where(Observer):
        def frame_done(self, camera: str, image: np.ndarray | None) -> None:
            seen["output"].add(threading.current_thread().name)

    pipeline, writer = build([camera("cam")], observers=[Where()])
    pipeline.run()
    assert seen["output"] == {"match"}
    check_tracks_closed(writer.events)


def test_a_failing_joined_stage_is_named_in_the_error() -> None:
    """An error in a stage that shares a thread names that stage, not the thread's first."""

    class Broken(Observer):
        def frame_done(self, camera: str, image: np.ndarray | None) -> None:
            raise RuntimeError("broken output")

    pipeline, writer = build([camera("cam")], observers=[Broken()])
    with pytest.raises(StreamrecError, match="output"):
        pipeline.run()
    assert pipeline.summary.error and pipeline.summary.error.startswith("output")
    check_tracks_closed(writer.events)


def test_stop_finishes_in_flight_frames_and_ends_tracks() -> None:
    class StopAt(Observer):
        def frame_done(self, camera: str, image: np.ndarray | None) -> None:
            if pipeline.progress >= 30:
                pipeline.stop()

    pipeline, writer = build([camera("cam", frames=10_000)], observers=[StopAt()])
    summary = pipeline.run()
    assert summary.interrupted and 30 <= summary.frames < 10_000
    check_tracks_closed(writer.events)


@pytest.mark.parametrize("known", [True, False])
def test_detector_interval_and_embedding_budget(known: bool) -> None:
    models = FakeModels()
    people = {"alice": RED} if known else None
    pipeline, _ = build([camera("cam", [Face(RED, 50, 50)], frames=100)], models, people)
    summary = pipeline.run()
    assert models.detector.calls == 20  # every 5th frame
    cfg = load_config(None)
    if known:  # embedded until settled (confident_after), not on every detection
        assert summary.cameras["cam"].embeddings == cfg.recognition.confident_after
    else:  # an unknown track keeps gathering evidence: two looks, then spacing doubling
        assert summary.cameras["cam"].embeddings == 4  # frames 0, 5, 25, 65
    report = summary.to_dict()
    assert report["cameras"]["cam"]["embeddings_per_track"] == summary.cameras["cam"].embeddings
    assert report["embedded_faces"] >= summary.cameras["cam"].embeddings
    assert "per track" in summary.format()


class SlowEmbedder(FakeEmbedder):
    """Takes ``delay`` seconds (plus up to as much again at random) per call."""

    def __init__(self, delay: float, seed: int = 0) -> None:
        super().__init__()
        self.delay = delay
        self.rng = np.random.default_rng(seed)

    def embed(self, crops: list[np.ndarray]) -> np.ndarray:
        time.sleep(self.delay * (1 + float(self.rng.random())))
        return super().embed(crops)


def test_same_input_same_events_whatever_the_timing() -> None:
    """The evidence a track gets does not depend on how fast the embedder answers (the detect
    stage may run ahead of the match stage by whole queues, or not at all)."""
    faces = [
        Face(RED, 20, 40, dx=1.0),
        Face(GREEN, 200, 40, frames=range(10, 150)),
        Face(BLUE, 120, 150, size=40, frames=range(30, 180)),
    ]

    def events(delay: float, seed: int = 0) -> list[tuple]:
        pipeline, writer = build(
            [camera("cam", faces, frames=200)],
            FakeModels(embedder=SlowEmbedder(delay, seed)),
            {"alice": RED, "bob": BLUE},
        )
        pipeline.run()
        return [(e.event, e.track_id, e.frame, sorted(e.fields.items())) for e in writer.events]

    first = events(0.0)
    names = {dict(fields).get("name") for kind, _, _, fields in first if kind == "identified"}
    assert names == {"alice", "bob"}
    for delay, seed in ((0.02, 1), (0.005, 2), (0.03, 3)):
        assert events(delay, seed) == first
