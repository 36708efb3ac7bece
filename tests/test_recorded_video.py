"""Recorded video done right: events on the clock of the annotated video and of the input's video
stream, --start/--end, the input's audio in the annotated video."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
from cli_helpers import SMALL, assert_one_clear_line, probe_streams, read_events, streamrec

CLIP = "face_recognition/short_hamilton_clip.mp4"


def frames_of(path: Path) -> list[tuple[float, np.ndarray]]:
    """(presentation time, grey image) of every frame, in order."""
    with av.open(str(path)) as c:
        return [
            (float(f.time), f.to_ndarray(format="gray").astype(np.float32))
            for f in c.decode(video=0)
        ]


def closest(image: np.ndarray, candidates: dict[int, np.ndarray]) -> int:
    return min(candidates, key=lambda i: float(np.abs(image - candidates[i]).mean()))


def run(clip: Path, out: Path, *args: str) -> list[dict]:
    streamrec("run", str(clip), "--events", str(out / "events.jsonl"), "--no-progress",
              *SMALL, *args)  # fmt: skip
    return read_events(out / "events.jsonl")


@pytest.fixture(scope="module")
def hamilton(media_dir: Path, models_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("hamilton")
    events = run(media_dir / CLIP, out, "--output", str(out / "annotated.mp4"))
    return media_dir / CLIP, out / "annotated.mp4", events


def test_event_time_is_the_time_of_its_frame_in_the_annotated_video(hamilton) -> None:
    """The clip's audio starts 0.844 s before its video: events used to be that much ahead."""
    clip, annotated, events = hamilton
    source, output = frames_of(clip), frames_of(annotated)
    assert len(output) == len(source) == 275
    fps = 30000 / 1001
    first = events[0]
    assert first["frame"] == 0 and output[0][0] == 0.0
    for event in (first, *(e for e in events if e["event"] != "track_end")):
        when, _ = output[event["frame"]]
        assert abs(event["time"] - when) < 1 / fps, event
        # the input's video stream: the same time, counted from its first frame
        assert abs(event["time"] - (source[event["frame"]][0] - source[0][0])) < 1e-3, event
    # and the frames are the same ones: annotated frame i is input frame i
    for i in (100, 200):
        nearby = {j: source[j][1] for j in range(i - 3, i + 4)}
        assert closest(output[i][1], nearby) == i


def test_the_annotated_video_has_the_input_audio_in_step(hamilton) -> None:
    clip, annotated, _ = hamilton
    streams = probe_streams(annotated)
    audio, video = streams["audio"], streams["video"]
    assert audio["codec_name"] == probe_streams(clip)["audio"]["codec_name"] == "aac"  # copied
    assert float(video["start_time"]) == 0.0
    # the input's audio from its first video frame on: it starts with the video
    assert 0.0 <= float(audio["start_time"]) < 0.05
    assert abs(float(audio["duration"]) - float(video["duration"])) < 0.1


def test_start_and_end_cover_only_that_span(media_dir: Path, tmp_path: Path) -> None:
    clip = media_dir / CLIP
    annotated = tmp_path / "span.mkv"
    events = run(clip, tmp_path, "--start", "3", "--end", "0:06", "--output", str(annotated))
    fps = 30000 / 1001
    first, last = round(3 * fps + 0.5), round(6 * fps - 0.5)  # frames 90 .. 179
    assert events and all(3 <= e["time"] < 6 for e in events)
    assert {e["frame"] for e in events} <= set(range(first, last + 1))
    started = {e["track_id"] for e in events if e["event"] == "track_start"}
    assert started == {e["track_id"] for e in events if e["event"] == "track_end"}
    source, output = frames_of(clip), frames_of(annotated)
    assert len(output) == last - first + 1
    # the clip starts with the frame at 3 s (the seek went to the right place), at time 0
    assert output[0][0] == 0.0
    nearby = {j: source[j][1] for j in range(first - 3, first + 4)}
    assert closest(output[0][1], nearby) == first
    audio = probe_streams(annotated)["audio"]
    assert 0.0 <= float(audio["start_time"]) < 0.05


def test_audio_the_container_cannot_hold_is_re_encoded(media_dir: Path, tmp_path: Path) -> None:
    """WMA (from a webcam recording) cannot go into MP4: AAC instead; a clip without audio
    gives a video without audio."""
    wmv = tmp_path / "wmv.mp4"
    run(media_dir / "webcam_clips/default.wmv", tmp_path, "--end", "3", "--output", str(wmv))
    streams = probe_streams(wmv)
    assert streams["audio"]["codec_name"] == "aac"
    assert abs(float(streams["audio"]["duration"]) - float(streams["video"]["duration"])) < 0.2
    silent = tmp_path / "silent.mp4"
    run(media_dir / "webcam_clips/multi_face.avi", tmp_path, "--end", "1", "--output", str(silent))
    assert set(probe_streams(silent)) == {"video"}


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["--start", "60"], ["no video frame at or after 60 s"]),
        (["--start", "5", "--end", "2"], ["--end", "must be after start"]),
    ],
)
def test_a_span_outside_the_video_is_one_clear_line(
    media_dir: Path, models_dir: Path, tmp_path: Path, args: list[str], needles: list[str]
) -> None:
    out = tmp_path / "out.mp4"
    proc = streamrec("run", str(media_dir / CLIP), "--output", str(out), *args, *SMALL,
                     check=False)  # fmt: skip
    assert_one_clear_line(proc, *needles)
    assert proc.returncode == 2
    assert not out.exists()


def test_a_time_that_is_not_one_is_refused(tmp_path: Path) -> None:
    proc = streamrec("run", "clip.mp4", "--start", "1:75", check=False)
    assert proc.returncode == 2
    assert "'1:75' is not a time" in proc.stderr and "Traceback" not in proc.stderr
