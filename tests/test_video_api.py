"""The Python API: streamrec.process over the real pipeline, FaceAnalyzer's construction, short
reprs, the exported names."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import (
    LIN,
    ROOT,
    SMALL,
    lin_gallery,
    read_events,
    same_values,
    streamrec,
    without_capture_times,
)

import streamrec as sr
from streamrec.errors import ConfigError, StreamrecError
from streamrec.sinks import JsonlEventSink

CLIP = "face_recognition/short_hamilton_clip.mp4"
#: threads of a running pipeline (stages, the clip's reader, the API's own)
PIPELINE_THREADS = {"detect", "embed", "match", "annotate", "output", "streamrec.process"}


@pytest.fixture(scope="module")
def lin_db(models_dir: Path, media_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return lin_gallery(tmp_path_factory.mktemp("lin") / "gallery.db", media_dir)


def pipeline_threads() -> set[str]:
    return {
        t.name
        for t in threading.enumerate()
        if t.name in PIPELINE_THREADS or t.name.startswith(("read ", "source "))
    }


def wait_until_gone() -> None:
    """The pipeline's threads end (a deadline, not a fixed wait)."""
    deadline = time.monotonic() + 30
    while pipeline_threads():
        assert time.monotonic() < deadline, pipeline_threads()
        time.sleep(0.1)


def complete(events: list[dict]) -> bool:
    """Every started track has ended."""
    started = {e["track_id"] for e in events if e["event"] == "track_start"}
    return started == {e["track_id"] for e in events if e["event"] == "track_end"}


def test_process_gives_the_events_of_streamrec_run(
    analyzer: sr.FaceAnalyzer, lin_db: Path, media_dir: Path, tmp_path: Path
) -> None:
    clip = str(media_dir / CLIP)
    # unknown people not written to the gallery: a run that writes them changes the gallery
    # as it goes, and the labels of later unknowns depend on when it reads the changes back
    keep = ["--set", "unknowns.persist=false"]
    jsonl = tmp_path / "run.jsonl"
    streamrec("run", clip, "--gallery", str(lin_db), "--events", str(jsonl), *SMALL, *keep)
    cli = without_capture_times(read_events(jsonl))

    config = sr.load_config(None, [*SMALL[1::2], *keep[1::2]])
    seen: list[sr.Event] = []
    frames: list[sr.AnnotatedFrame] = []
    events = sr.process(
        clip,
        gallery=lin_db,
        config=config,
        analyzer=analyzer,
        on_event=seen.append,
        on_frame=frames.append,
    )
    yielded = list(events)
    api = without_capture_times([e.to_dict() for e in yielded])
    assert {e["event"] for e in cli} >= {"track_start", "identified", "unknown", "track_end"}
    assert len(api) == len(cli)
    for a, b in zip(api, cli, strict=True):
        assert same_values(a, b), (a, b)
    assert seen == yielded  # on_event got each event as it was yielded
    # every annotated frame, in order, at its media time, with boxes drawn on it
    assert [f.index for f in frames] == list(range(275))
    assert frames[100].time == pytest.approx(100 / 29.97, abs=1e-3)
    assert frames[100].image.shape == (360, 640, 3)
    assert not np.array_equal(frames[100].image, frames[100].frame.image)
    assert events.summary is not None and events.summary.frames == 275
    assert LIN in events.summary.cameras[clip].people
    wait_until_gone()


def test_closing_early_stops_the_pipeline_and_ends_every_track(
    analyzer: sr.FaceAnalyzer, media_dir: Path, tmp_path: Path
) -> None:
    jsonl = tmp_path / "events.jsonl"
    with sr.process(media_dir / CLIP, analyzer=analyzer, sinks=[JsonlEventSink(jsonl)]) as events:
        for event in events:
            if event.event == "unknown":
                break
    wait_until_gone()
    written = read_events(jsonl)
    assert complete(written), written
    assert max(e["frame"] for e in written) < 200  # stopped, not run to the end
    assert next(events, None) is None  # over


def test_breaking_out_of_a_for_loop_closes_the_run(
    analyzer: sr.FaceAnalyzer, media_dir: Path, tmp_path: Path
) -> None:
    jsonl = tmp_path / "events.jsonl"
    for _event in sr.process(media_dir / CLIP, analyzer=analyzer, sinks=[JsonlEventSink(jsonl)]):
        break  # the iterator is dropped here
    wait_until_gone()
    assert complete(read_events(jsonl))


def test_stop_still_delivers_the_last_events(analyzer: sr.FaceAnalyzer, media_dir: Path) -> None:
    events = sr.process(media_dir / CLIP, analyzer=analyzer)
    got = []
    for event in events:
        got.append(event.to_dict())
        if event.event == "unknown":
            events.stop()  # as from a timer or a signal handler
    assert complete(got) and got[-1]["event"] == "track_end"
    assert events.summary is not None and events.summary.interrupted
    assert events.summary.frames < 275
    wait_until_gone()


def test_an_error_in_a_callback_reaches_the_caller(analyzer: sr.FaceAnalyzer, media_dir: Path):
    def broken(frame: sr.AnnotatedFrame) -> None:
        raise ValueError("my bug")

    with (
        pytest.raises(ValueError, match="my bug"),
        sr.process(media_dir / CLIP, analyzer=analyzer, on_frame=broken) as events,
    ):
        events.run()
    wait_until_gone()


def test_mistakes_raise_at_once_and_leave_no_file(
    analyzer: sr.FaceAnalyzer, media_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out.mp4"
    with pytest.raises(StreamrecError, match="video file not found"):
        sr.process(tmp_path / "missing.mp4", analyzer=analyzer, output=out)
    with pytest.raises(StreamrecError, match="gallery not found"):
        sr.process(media_dir / CLIP, analyzer=analyzer, gallery=tmp_path / "no.db", output=out)
    with pytest.raises(StreamrecError, match="no video frame at or after 60 s"):
        sr.process(media_dir / CLIP, analyzer=analyzer, start=60, output=out)
    with pytest.raises(ConfigError, match="end"):
        sr.process(media_dir / CLIP, analyzer=analyzer, start=5, end=2, output=out)
    for span in ({"start": 1e308}, {"start": float("nan")}, {"start": 1, "end": 1e308}):
        with pytest.raises(ConfigError, match=r"--(start|end)\) must be .* 1e\+09"):
            sr.process(media_dir / CLIP, analyzer=analyzer, output=out, **span)
    assert not list(tmp_path.iterdir())
    wait_until_gone()


def test_face_analyzer_by_keywords_path_or_config(
    models_dir: Path, small_config: sr.Config, tmp_path: Path
) -> None:
    by_name = sr.FaceAnalyzer(detector="det_500m.onnx", recognizer="mobilefacenet_128d.onnx")
    assert repr(by_name) == (
        "FaceAnalyzer(detector='det_500m.onnx', recognizer='mobilefacenet_128d.onnx', "
        "threshold=0.40)"
    )
    by_path = sr.FaceAnalyzer(detector=models_dir / "det_500m.onnx",
                              recognizer=models_dir / "mobilefacenet_128d_b1.onnx")  # fmt: skip
    assert by_path.recognizer_model.path == models_dir / "mobilefacenet_128d_b1.onnx"
    yaml = tmp_path / "my.yaml"
    yaml.write_text("models: {detector: det_500m.onnx, recognizer: mobilefacenet_128d.onnx}\n"
                    "recognition: {threshold: 0.5}\n")  # fmt: skip
    assert sr.FaceAnalyzer(yaml).threshold == 0.5
    assert sr.FaceAnalyzer(str(yaml), recognizer="mobilefacenet_128d_b1.onnx").threshold == 0.5
    assert sr.FaceAnalyzer.from_config(small_config).cfg is small_config
    with pytest.raises(ConfigError, match=r"config file not found: nope\.yaml"):
        sr.FaceAnalyzer("nope.yaml")
    with pytest.raises(TypeError, match="Config or the path of a YAML config file, not int"):
        sr.FaceAnalyzer(42)  # type: ignore[arg-type]
    with pytest.raises(StreamrecError, match=r"no-such-model\.onnx"):
        sr.FaceAnalyzer(detector="no-such-model.onnx", recognizer="mobilefacenet_128d.onnx")


def test_a_face_shows_briefly(analyzer: sr.FaceAnalyzer, media_dir: Path) -> None:
    (face,) = analyzer.analyze(sr.read_image(media_dir / "face_recognition/obama.jpg"))
    text = repr(face)
    assert text.startswith("Face(bbox=[") and text.endswith("embedding=<128-d>)"), text
    assert len(text) < 120
    image = np.zeros((100, 100, 3), np.uint8)
    sr.draw_face(image, np.array([10, 20, 60, 90]), "obama", 0.8)
    assert image.any()


def test_import_streamrec_is_cheap_and_exports_the_api() -> None:
    code = (
        "import sys, streamrec\n"
        "heavy = {'cv2', 'av', 'onnxruntime', 'numpy', 'scipy'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
        "for name in streamrec.__all__: getattr(streamrec, name)\n"
        "print(sorted(streamrec.__all__))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    for name in ("process", "FaceAnalyzer", "draw_face", "Event", "Face", "load_config"):
        assert f"'{name}'" in proc.stdout
