"""JSONL and fan-out event sinks, and the H.264 video writer (checked with PyAV and ffprobe)."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import threading
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from streamrec.records import Event
from streamrec.sinks import FanoutSink, JsonlEventSink, SinkError, VideoWriter
from streamrec.sinks.video import exact_rate, pick_h264_encoder


def make_event(i: int, camera: str | None = "cam1") -> Event:
    return Event(
        event="identified",
        source="rtsp://cam",
        track_id=i,
        frame=i * 3,
        time=i / 25,
        camera=camera,
        fields={"seq": i, "name": "alice", "score": np.float32(0.5), "bbox": np.arange(4.0)},
    )


# -- JSONL / fan-out ---------------------------------------------------------------------------


def test_jsonl_lines_are_flushed_while_open(tmp_path: Path) -> None:
    path = tmp_path / "out" / "nested" / "events.jsonl"
    sink = JsonlEventSink(path)
    try:
        sink.write(make_event(0))
        lines = path.read_text(encoding="utf-8").splitlines()  # read while still open
        assert len(lines) == 1
        row = json.loads(lines[0])
        assert row["seq"] == 0 and row["camera"] == "cam1" and row["event"] == "identified"
        assert row["score"] == 0.5 and row["bbox"] == [0.0, 1.0, 2.0, 3.0]
        sink.write(make_event(1))
        assert len(path.read_text(encoding="utf-8").splitlines()) == 2
    finally:
        sink.close()
    sink.close()  # idempotent
    with pytest.raises(RuntimeError):
        sink.write(make_event(2))


def test_jsonl_appends_and_is_thread_safe(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    with JsonlEventSink(path) as sink:
        sink.write(make_event(-1))
    threads_n, per_thread = 4, 250
    with JsonlEventSink(path) as sink:

        def work(t: int) -> None:
            for i in range(per_thread):
                sink.write(make_event(t * per_thread + i, camera=f"cam{t}"))

        threads = [threading.Thread(target=work, args=(t,)) for t in range(threads_n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    seqs = [json.loads(line)["seq"] for line in path.read_text(encoding="utf-8").splitlines()]
    assert seqs[0] == -1  # the earlier run was kept
    assert sorted(seqs[1:]) == list(range(threads_n * per_thread))


def test_jsonl_unwritable_path_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(SinkError, match="cannot write events to") as info:
        JsonlEventSink(blocker / "events.jsonl")
    assert "\n" not in str(info.value)


class BrokenSink:
    def __init__(self) -> None:
        self.closed = False

    def write(self, event: Event) -> None:
        raise ConnectionError("boom")

    def close(self) -> None:
        self.closed = True
        raise OSError("close failed")


def test_fanout_isolates_a_failing_sink(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "events.jsonl"
    broken = BrokenSink()
    jsonl = JsonlEventSink(path)
    fanout = FanoutSink([broken, jsonl])
    with caplog.at_level(logging.ERROR):
        for i in range(3):
            fanout.write(make_event(i))
        fanout.close()
    assert [json.loads(x)["seq"] for x in path.read_text().splitlines()] == [0, 1, 2]
    assert broken.closed
    # one error line for the burst, every failure counted
    assert caplog.text.count("event sink BrokenSink failed: boom") == 1
    assert fanout.health()["BrokenSink"] == {"ok": False, "errors": 3, "error": "boom"}
    assert fanout.health()["jsonl"]["ok"] is True
    assert "closing event sink BrokenSink failed" in caplog.text
    with pytest.raises(RuntimeError):  # the JSONL sink was closed despite the broken one
        jsonl.write(make_event(3))


# -- video -------------------------------------------------------------------------------------


def test_exact_rate() -> None:
    assert exact_rate(29.97) == Fraction(30000, 1001)
    assert exact_rate(30000 / 1001) == Fraction(30000, 1001)
    assert exact_rate(23.976) == Fraction(24000, 1001)
    assert exact_rate(59.94) == Fraction(60000, 1001)
    assert exact_rate(25) == 25
    assert exact_rate(25.0) == 25
    assert exact_rate(12.5) == Fraction(25, 2)
    assert exact_rate(Fraction(15000, 1001)) == Fraction(15000, 1001)
    with pytest.raises(ValueError):
        exact_rate(0)


def test_encoder_choice(caplog: pytest.LogCaptureFixture) -> None:
    assert pick_h264_encoder("libx264") == "libx264"
    with caplog.at_level(logging.WARNING):
        fallback = pick_h264_encoder("no-such-encoder")
    assert av.Codec(fallback, "w").canonical_name == "h264"
    assert "no-such-encoder is not in this PyAV build" in caplog.text
    with pytest.raises(SinkError, match=r"not an H\.264 encoder"):
        pick_h264_encoder("mpeg4")


def frame_image(i: int, width: int, height: int) -> np.ndarray:
    """A frame whose content encodes its index (a bright bar moving down) on a BGR colour."""
    img = np.zeros((height, width, 3), np.uint8)
    img[:] = (200, 30, 30)  # blue in BGR
    y = (i * 4) % max(height - 4, 1)
    img[y : y + 4] = 255
    return img


def write_video(path: Path, n: int, width: int, height: int, fps: float | Fraction) -> None:
    with VideoWriter(path, width, height, fps) as writer:
        for i in range(n):
            writer.write(frame_image(i, width, height))
        assert writer.frames == n


def ffprobe(path: Path) -> dict[str, str]:
    ffprobe_bin = shutil.which("ffprobe")
    if ffprobe_bin is None:
        pytest.skip("ffprobe (Debian package ffmpeg) is not installed")
    out = subprocess.run(
        [
            ffprobe_bin,
            "-v",
            "error",
            "-count_frames",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=codec_name,pix_fmt,width,height,r_frame_rate,avg_frame_rate,nb_read_frames",
            "-of",
            "json",
            str(path),
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    stream: dict[str, str] = json.loads(out.stdout)["streams"][0]
    return stream


def decode(path: Path) -> tuple[Fraction | None, list[np.ndarray]]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        images = [f.to_ndarray(format="bgr24") for f in container.decode(stream)]
        return stream.average_rate, images


@pytest.mark.parametrize(
    ("fps", "rate"), [(30000 / 1001, "30000/1001"), (29.97, "30000/1001"), (25, "25/1")]
)
def test_video_frame_count_rate_and_codec(tmp_path: Path, fps: float, rate: str) -> None:
    path = tmp_path / "out.mp4"
    n = 48
    write_video(path, n, 160, 96, fps)
    info = ffprobe(path)
    assert info["codec_name"] == "h264" and info["pix_fmt"] == "yuv420p"
    assert (info["width"], info["height"]) == (160, 96)
    assert int(info["nb_read_frames"]) == n
    assert info["r_frame_rate"] == rate and info["avg_frame_rate"] == rate
    average_rate, images = decode(path)
    assert average_rate == Fraction(rate)
    assert len(images) == n
    # Content and colour order survive: frame 5 has its bar where it was drawn, blue background.
    expected = frame_image(5, 160, 96).astype(np.int16)
    assert np.abs(images[5].astype(np.int16) - expected).mean() < 6
    assert images[5][90, 10].argmax() == 0  # B is the largest channel


def test_video_odd_size_mkv(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "odd.mkv"
    write_video(path, 10, 33, 17, 25)
    info = ffprobe(path)
    assert info["codec_name"] == "h264"
    assert (info["width"], info["height"]) == (34, 18)  # padded by one pixel
    assert int(info["nb_read_frames"]) == 10
    _, images = decode(path)
    assert len(images) == 10
    # The padding replicates the last column / row.
    assert np.abs(images[0][:, 33].astype(int) - images[0][:, 32].astype(int)).mean() < 8


def test_video_partial_write_then_close_is_playable(tmp_path: Path) -> None:
    path = tmp_path / "partial.mp4"
    with pytest.raises(KeyboardInterrupt), VideoWriter(path, 64, 48, 30000 / 1001) as writer:
        for i in range(7):
            writer.write(frame_image(i, 64, 48))
        raise KeyboardInterrupt  # an interrupted run: the with-block closes the writer
    writer.close()  # idempotent
    info = ffprobe(path)
    assert int(info["nb_read_frames"]) == 7 and info["r_frame_rate"] == "30000/1001"
    assert len(decode(path)[1]) == 7
    with pytest.raises(RuntimeError):
        writer.write(frame_image(0, 64, 48))


def test_video_rejects_bad_input(tmp_path: Path) -> None:
    with VideoWriter(tmp_path / "x.mp4", 64, 48, 25) as writer:
        with pytest.raises(ValueError, match="expected a 48x64x3 uint8 image"):
            writer.write(np.zeros((48, 64, 3), np.float32))
        with pytest.raises(ValueError):
            writer.write(np.zeros((64, 48, 3), np.uint8))
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(SinkError, match="cannot write video"):
        VideoWriter(blocker / "x.mp4", 64, 48, 25)
    with pytest.raises(SinkError, match="cannot encode"):
        VideoWriter(tmp_path / "y.mp4", 64, 48, 25, preset="no-such-preset")
