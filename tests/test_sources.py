"""Video sources on real clips made here, a local HTTP server and a real RTSP server."""

from __future__ import annotations

import json
import logging
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
import pytest
import test_daemon
from cli_helpers import LIN, ROOT, SMALL, read_events
from mjpeg_server import MjpegCamera, jpeg_frames
from rtsp_server import RtspStream, describe_status, unavailable
from test_daemon import Daemon, identified, open_tracks, wait_for

from streamrec.errors import ConfigError, SourceError
from streamrec.records import Frame
from streamrec.sources import Gap, Source, SourceOptions, WebcamSource, open_source, redact
from streamrec.sources.base import ItemBuffer
from streamrec.telemetry import CameraState

W, H, FPS, N = 320, 240, 25, 64
# fixtures shared with the daemon tests: `streamrec serve` subprocesses, a gallery of Lin
daemon = test_daemon.daemon
lin_gallery = test_daemon.lin_gallery


def make_clip(
    path: Path,
    codec: str = "libx264",
    n: int = N,
    gop: int | None = None,
    faststart: bool = False,
) -> Path:
    """``n`` frames of a moving box; frame i shows i in binary as 8 white/grey blocks on top."""
    options = {"movflags": "+faststart"} if faststart else {}
    with av.open(str(path), "w", options=options) as out:
        stream = out.add_stream(codec, rate=FPS, options={"g": str(gop)} if gop else {})
        assert isinstance(stream, av.VideoStream)
        stream.width, stream.height = W, H
        stream.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
        for i in range(n):
            image = np.full((H, W, 3), 40, np.uint8)
            x = (i * 4) % (W - 40)
            image[100:140, x : x + 40] = (0, 200, 255)
            for bit in range(8):
                if i >> bit & 1:
                    image[0:30, bit * 40 : (bit + 1) * 40] = 255
            out.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")))
        out.mux(stream.encode())
    return path


def shown_index(image: np.ndarray) -> int:
    """The frame number drawn by ``make_clip``."""
    blocks = [image[5:25, b * 40 + 5 : b * 40 + 35].mean() > 128 for b in range(8)]
    return sum(1 << b for b, on in enumerate(blocks) if on)


def frames_of(source: Source) -> list[Frame]:
    items = list(source)
    assert all(isinstance(i, Frame) for i in items), "files never yield Gap"
    return [i for i in items if isinstance(i, Frame)]


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(tmp_path_factory.mktemp("clips") / "clip.mp4")


def test_file_yields_every_frame_in_order_with_timestamps(clip: Path) -> None:
    with open_source(str(clip)) as source:
        assert not source.live
        assert (source.width, source.height, source.fps, source.total_frames) == (W, H, FPS, N)
        assert source.name == str(clip)
        frames = frames_of(source)
        assert source.stats.state == CameraState.FINISHED
    assert [f.index for f in frames] == list(range(N))
    assert [shown_index(f.image) for f in frames] == list(range(N))
    assert [f.time for f in frames] == pytest.approx([i / FPS for i in range(N)], abs=1e-3)
    for f in frames:
        assert f.source == str(clip)
        assert f.image.shape == (H, W, 3) and f.image.dtype == np.uint8
        assert f.image.flags["C_CONTIGUOUS"]
        assert f.captured > 0
    # BGR: the box is drawn orange (0, 200, 255) in BGR order
    assert frames[0].image[120, 20].tolist() == pytest.approx([0, 200, 255], abs=12)
    stats = source.stats
    assert (stats.frames, stats.dropped, stats.decode_errors, stats.damage) == (N, 0, 0, [])
    assert stats.state == CameraState.STOPPED


@pytest.mark.parametrize(
    ("suffix", "codec"), [("mkv", "libx264"), ("avi", "mpeg4"), ("avi", "mjpeg")]
)
def test_other_containers_and_codecs(tmp_path: Path, suffix: str, codec: str) -> None:
    path = make_clip(tmp_path / f"clip.{suffix}", codec)
    with open_source(str(path)) as source:
        assert source.fps == FPS and source.total_frames == N
        frames = frames_of(source)
    assert [shown_index(f.image) for f in frames] == list(range(N))
    assert frames[-1].time == pytest.approx((N - 1) / FPS, abs=1e-3)
    assert source.stats.damage == []


@pytest.mark.parametrize(("suffix", "codec"), [("mp4", "libx264"), ("avi", "mjpeg")])
def test_grey_levels_without_colour_conversion(tmp_path: Path, suffix: str, codec: str) -> None:
    """``Frame.luma`` reads the decoder's Y plane (limited range for x264, full for MJPEG)
    without making the BGR image, and agrees with converting the BGR image to grey."""
    path = make_clip(tmp_path / f"clip.{suffix}", codec, n=4)
    with open_source(str(path)) as source:
        frames = frames_of(source)
    for f in frames:
        grey = f.luma()
        assert not f.converted, "grey levels never need the colour image"
        assert grey.shape == (H, W) and grey.dtype == np.uint8
        expected = cv2.cvtColor(f.image, cv2.COLOR_BGR2GRAY).astype(int)
        assert np.abs(grey.astype(int) - expected).mean() < 3
        assert grey[5:25, 5:35].mean() > 240 or grey[5:25, 5:35].mean() < 60  # black..white


def test_file_url_and_custom_name(clip: Path) -> None:
    with open_source(clip.as_uri(), name="lobby") as source:
        frames = frames_of(source)
    assert len(frames) == N and {f.source for f in frames} == {"lobby"}


def test_truncated_file_yields_decodable_frames_and_reports_damage(tmp_path: Path) -> None:
    data = make_clip(tmp_path / "full.mp4", faststart=True).read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) * 6 // 10])
    with open_source(str(cut)) as source:
        frames = frames_of(source)
    assert 0 < len(frames) < N
    assert [shown_index(f.image) for f in frames] == list(range(len(frames)))
    assert source.stats.decode_errors >= 1
    assert any("truncated" in d for d in source.stats.damage), source.stats.damage

    # without its index (moov at the end, cut off) nothing is decodable: an error at open
    plain = make_clip(tmp_path / "plain.mp4").read_bytes()
    cut.write_bytes(plain[: len(plain) * 6 // 10])
    with pytest.raises(SourceError, match="not a readable video"):
        open_source(str(cut))


def test_garbage_in_the_middle_is_skipped_and_reported(tmp_path: Path) -> None:
    data = bytearray(make_clip(tmp_path / "clip.mp4", gop=8).read_bytes())
    middle, rng = len(data) // 2, random.Random(7)
    data[middle : middle + 800] = bytes(rng.randrange(256) for _ in range(800))
    damaged = tmp_path / "damaged.mp4"
    damaged.write_bytes(data)
    with open_source(str(damaged)) as source:
        frames = frames_of(source)
    shown = [shown_index(f.image) for f in frames]
    assert shown[:8] == list(range(8))  # before the damage: intact
    assert shown[-8:] == list(range(N - 8, N))  # decoding resumed after it, to the end
    assert len(frames) < N
    assert [f.index for f in frames] == list(range(len(frames)))
    assert source.stats.decode_errors >= 1
    assert any(d.startswith("frame ~") and "skipped" in d for d in source.stats.damage)


def test_rotated_video_is_turned_upright(tmp_path: Path, clip: Path) -> None:
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        pytest.skip("ffmpeg CLI not installed")
    rotated = tmp_path / "rotated.mp4"
    run = partial(subprocess.run, check=True, capture_output=True)
    run([ffmpeg, "-v", "error", "-i", clip, "-c", "copy", "-metadata:s:v", "rotate=90", rotated])
    reference = tmp_path / "frame5.png"  # ffmpeg's own auto-rotation as the reference
    pick = r"select=eq(n\,5)"
    run([ffmpeg, "-v", "error", "-i", rotated, "-vf", pick, "-frames:v", "1", reference])
    with open_source(str(rotated)) as source:
        assert (source.width, source.height) == (H, W)
        frames = frames_of(source)
    grey = cv2.cvtColor(cv2.imread(str(reference)), cv2.COLOR_BGR2GRAY).astype(int)
    assert np.abs(frames[5].luma().astype(int) - grey).mean() < 2.0  # turned like the colours
    assert frames[5].image.shape == (W, H, 3)
    assert np.abs(frames[5].image.astype(int) - cv2.imread(str(reference))).mean() < 1.0
    with open_source(str(rotated), SourceOptions(autorotate=False)) as source:
        assert frames_of(source)[5].image.shape == (H, W, 3)


def _one_line_error(uri: str) -> str:
    with pytest.raises(SourceError) as info:
        open_source(uri)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_unreadable_sources_raise_one_clear_line(tmp_path: Path) -> None:
    assert "not found" in _one_line_error(str(tmp_path / "missing.mp4"))
    assert str(tmp_path / "missing.mp4") in _one_line_error(str(tmp_path / "missing.mp4"))
    text = tmp_path / "notes.txt"
    text.write_text("this is not a video\n" * 50)
    message = _one_line_error(str(text))
    assert "not a readable video" in message and str(text) in message
    assert "directory" in _one_line_error(str(tmp_path))
    for uri in ("ftp://x", "foo://", "ftp://user:pw@host/x.mp4"):
        message = _one_line_error(uri)
        assert "unsupported" in message and "rtsp" in message
        assert "pw@" not in message
    assert "no host" in _one_line_error("rtsp://")
    assert "bad webcam" in _one_line_error("webcam:front")
    assert "empty" in _one_line_error("  ")


def test_still_image_is_a_one_frame_video(tmp_path: Path) -> None:
    image = np.zeros((48, 64, 3), np.uint8)
    image[:, :32] = (255, 0, 0)
    path = tmp_path / "still.png"
    cv2.imwrite(str(path), image)
    with open_source(str(path)) as source:
        frames = frames_of(source)
    assert len(frames) == 1 and np.array_equal(frames[0].image, image)


@pytest.mark.parametrize("uri", ["webcam:57", "57", "/dev/video57"])
def test_missing_webcam_raises(uri: str) -> None:
    message = _one_line_error(uri)
    assert "cannot open webcam" in message and "57" in message


def test_close_stops_the_reader_early_and_is_idempotent(clip: Path) -> None:
    source = open_source(str(clip), SourceOptions(prefetch=2))
    items = iter(source)
    assert [getattr(next(items), "index", None) for _ in range(3)] == [0, 1, 2]
    source.close()
    source.close()
    assert source.stats.state == CameraState.STOPPED
    assert source._thread is not None and not source._thread.is_alive()
    assert list(items) == []
    assert source.stats.frames < N  # the reader stopped, it did not decode everything


def test_item_buffer_newest_wins_but_keeps_gaps() -> None:
    drops: list[int] = []
    buffer: ItemBuffer[int] = ItemBuffer(1, newest_wins=True, on_drop=lambda: drops.append(1))
    gap = Gap("cam", "end of stream", 0.0)
    for item in (1, 2, gap, 3):
        buffer.put(item)
    assert len(drops) == 2  # 1 replaced by 2, 2 predates the gap
    assert [buffer.get(), buffer.get()] == [gap, 3]
    buffer.close()
    assert buffer.get() is None
    assert buffer.put(4) is False


@pytest.fixture
def http_dir(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Quiet, directory=str(tmp_path)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield tmp_path, f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_http_url(http_dir: tuple[Path, str], clip: Path) -> None:
    root, host = http_dir
    shutil.copy(clip, root / "clip.mp4")
    url = f"http://viewer:s3cret@{host}/clip.mp4"
    with open_source(url, SourceOptions(open_timeout=5, stall_timeout=5)) as source:
        assert not source.live
        assert source.name == f"http://***@{host}/clip.mp4"
        frames = frames_of(source)
    assert [shown_index(f.image) for f in frames] == list(range(N))
    message = _one_line_error(f"http://viewer:s3cret@{host}/missing.mp4")
    assert "404" in message and "s3cret" not in message and "***@" in message


def test_redact() -> None:
    assert redact("rtsp://admin:secret@10.0.0.5:554/live") == "rtsp://***@10.0.0.5:554/live"
    assert redact("rtsp://admin@cam/live") == "rtsp://***@cam/live"
    assert redact("rtsp://u:p@ss@cam/x?y=1") == "rtsp://***@cam/x?y=1"
    # user names in camera URLs are masked too (vendor key list), not remembered as secrets
    assert redact("http://cam/stream?user=a&password=hunter2") == (
        "http://cam/stream?user=***&password=***"
    )
    assert redact("rtsp://cam:554/live") == "rtsp://cam:554/live"
    assert redact("/videos/a@b.mp4") == "/videos/a@b.mp4"
    message = "cannot open rtsp://a:b@x/1 and http://c:d@y/2"
    assert redact(message) == "cannot open rtsp://***@x/1 and http://***@y/2"
    # passwords holding / ? # @ and %, secret keys percent-encoded
    for password in ("1234/x5678", "a?b", "a#b", "p@ss", "50%25off", "x/y?z#w@v"):
        url = f"rtsp://admin:{password}@127.0.0.1:8554/live?channel=1"
        assert redact(url) == "rtsp://***@127.0.0.1:8554/live?channel=1", password
    assert redact("http://h/x?%74oken=abcd&a=1") == "http://h/x?%74oken=***&a=1"
    assert redact("http://h/x?Api_Key=abcd") == "http://h/x?Api_Key=***"


def test_registered_secrets_are_masked_anywhere() -> None:
    """A password with a space cannot be told from the text around it: the URL's credentials
    are remembered when the source is opened and masked wherever they appear."""
    from streamrec.redact import register_url

    url = "rtsp://admin:my secret pass@127.0.0.1:1/live"
    register_url(url)
    assert "my secret pass" not in redact(f"failed: {url} (and my secret pass again)")
    assert "my%20secret%20pass" not in redact("rtsp://admin:my%20secret%20pass@h/x")


def test_options_are_validated() -> None:
    with pytest.raises(ConfigError, match="rtsp_transport"):
        SourceOptions(rtsp_transport="quic")
    with pytest.raises(ConfigError, match="stall_timeout"):
        SourceOptions(stall_timeout=0)
    with pytest.raises(ConfigError, match="reconnect_max"):
        SourceOptions(reconnect_initial=5, reconnect_max=1)


def next_matching(
    source: Source, items: Iterator[Frame | Gap], wanted: Callable[[Frame | Gap], bool]
) -> tuple[Frame | Gap, list[Frame | Gap]]:
    """Pull items until one is ``wanted``; returns it and the ones skipped (a watchdog closes
    the source after 60 s so a broken source fails the test instead of hanging it)."""
    watchdog = threading.Timer(60.0, source.close)
    watchdog.start()
    skipped: list[Frame | Gap] = []
    try:
        for item in items:
            if wanted(item):
                return item, skipped
            skipped.append(item)
    finally:
        watchdog.cancel()
    raise AssertionError(f"source ended first: state {source.stats.state}, {source.stats}")


def is_frame(item: Frame | Gap) -> bool:
    return isinstance(item, Frame)


def is_gap(item: Frame | Gap) -> bool:
    return isinstance(item, Gap)


def newest_frames_win(source: Source, items: Iterator[Frame | Gap]) -> Frame:
    """A slow consumer always gets the newest frame, older ones are dropped and counted;
    returns the last frame taken."""
    for _ in range(3):
        before, slept_from = source.stats.frames, time.time()
        deadline = time.monotonic() + 30
        while source.stats.frames < before + 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        frame, skipped = next_matching(source, items, is_frame)
        assert skipped == [] and isinstance(frame, Frame)
        assert frame.index >= before + 2 and frame.captured >= slept_from
    assert source.stats.dropped >= 6
    return frame


def test_webcam_reader_reopens_a_device_that_stops(clip: Path) -> None:
    """The webcam code path on a real OpenCV capture; a file stands in for the camera (there is
    no camera here) and its end plays the camera going away."""
    options = SourceOptions(reconnect_initial=0.05, reconnect_max=0.1)
    source = WebcamSource(str(clip), "cam", options, api=cv2.CAP_FFMPEG)
    with source:
        assert source.live and (source.width, source.height) == (W, H)
        items = iter(source)
        first, _ = next_matching(source, items, is_frame)
        gap, _ = next_matching(source, items, is_gap)
        after, _ = next_matching(source, items, is_frame)
        assert isinstance(first, Frame) and isinstance(gap, Gap) and isinstance(after, Frame)
        assert gap.source == "cam" and "stopped delivering" in gap.reason
        assert after.index > first.index and after.time >= first.time
        assert after.image.shape == (H, W, 3) and after.image.flags["C_CONTIGUOUS"]
        assert source.stats.disconnects >= 1 and source.stats.reconnects >= 1
    assert source.stats.state == CameraState.STOPPED


@pytest.fixture(scope="module")
def rtsp_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    reason = unavailable()
    if reason:
        pytest.skip(reason)
    return make_clip(tmp_path_factory.mktemp("rtsp") / "cam.mp4", n=100, gop=25)


def test_the_test_rtsp_server_moves_off_a_port_taken_before_it_binds(rtsp_clip: Path) -> None:
    """The test camera's TCP port, found free, is taken by someone else before the server
    binds it (benchmarks met this): the server starts on other ports, unless its URL was given
    out (then it keeps trying that one)."""
    camera, told = RtspStream(rtsp_clip), RtspStream(rtsp_clip)
    url = told.url
    with socket.socket() as squatter, socket.socket() as other:
        squatter.bind(("127.0.0.1", camera.client_port))
        other.bind(("127.0.0.1", told.client_port))
        taken = camera.client_port
        camera.start_server()
        try:
            assert camera.client_port != taken
            assert describe_status(camera.url) is not None
        finally:
            camera.stop()
        with pytest.raises(RuntimeError, match="Address already in use"):
            told.start_server()
        assert told.url == url


def test_rtsp_camera_lost_and_back(rtsp_clip: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="streamrec.sources")
    camera = RtspStream(rtsp_clip)
    url = camera.url.replace("rtsp://", "rtsp://admin:hunter2@")
    options = SourceOptions(
        rtsp_transport="udp",
        open_timeout=5,
        stall_timeout=2,
        reconnect_initial=0.2,
        reconnect_max=1,
    )
    try:
        source = open_source(url, options)  # the camera is not up yet: no error, retried
        with source:
            assert source.live
            assert source.name == f"rtsp://***@127.0.0.1:{camera.client_port}/stream"
            deadline = time.monotonic() + 30
            while source.stats.last_error is None and time.monotonic() < deadline:
                time.sleep(0.05)
            assert source.stats.state == CameraState.CONNECTING
            assert "refused" in (source.stats.last_error or "").lower()

            camera.start()
            items = iter(source)
            first, skipped = next_matching(source, items, is_frame)
            assert skipped == []  # no Gap for a camera that was never streaming
            assert isinstance(first, Frame) and first.image.shape == (H, W, 3)
            assert (source.width, source.height) == (W, H)
            assert source.stats.state == CameraState.RUNNING

            newest_frames_win(source, items)
            last = source.stats.frames - 1

            camera.stop()  # server and publisher killed
            gap, skipped = next_matching(source, items, is_gap)
            assert isinstance(gap, Gap) and gap.source == source.name
            assert all(isinstance(i, Frame) for i in skipped)
            assert source.stats.state == CameraState.RECONNECTING
            assert source.stats.disconnects == 1

            camera.start()  # the same Source object picks the camera up again
            frame, skipped = next_matching(source, items, is_frame)
            assert skipped == [] and isinstance(frame, Frame) and frame.index > last
            assert source.stats.reconnects == 1 and source.stats.state == CameraState.RUNNING

            camera.pause_publisher()  # a hung camera: the session stays, no packet flows
            gap, _ = next_matching(source, items, is_gap)
            assert isinstance(gap, Gap) and gap.reason.startswith("stalled")
            assert source.stats.stalls >= 1 and source.stats.disconnects == 2

            camera.resume_publisher()
            frame, _ = next_matching(source, items, is_frame)
            assert source.stats.reconnects == 2
        assert source.stats.state == CameraState.STOPPED
        assert source._thread is not None and not source._thread.is_alive()
        assert list(items) == []
    finally:
        camera.close()
    logged = caplog.text
    assert "hunter2" not in logged
    assert "stream lost: end of stream" in logged and "stream lost: stalled" in logged
    assert "reconnected" in logged


def test_rtsp_camera_that_refuses_tcp_gets_the_udp_hint_once(
    rtsp_clip: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The test server relays RTP over UDP only and answers a TCP SETUP with 400 Bad Request,
    as such cameras do: the log says once what to change, the retries go on."""
    caplog.set_level(logging.WARNING, logger="streamrec.sources")
    options = SourceOptions(rtsp_transport="tcp", reconnect_initial=0.05, reconnect_max=0.1)
    with RtspStream(rtsp_clip) as camera, open_source(camera.url, options) as source:
        deadline = time.monotonic() + 60
        while caplog.text.count("cannot connect") < 3:
            assert time.monotonic() < deadline, caplog.text
            time.sleep(0.05)
        assert source.stats.state == CameraState.CONNECTING
    assert "400 Bad Request" in caplog.text
    assert caplog.text.count("refused RTSP over TCP") == 1, caplog.text
    assert "rtsp_transport: udp" in caplog.text


@pytest.fixture
def mjpeg_camera(clip: Path) -> Iterator[MjpegCamera]:
    """The clip as an MJPEG camera at 200 fps, far faster than the test consumes it."""
    with MjpegCamera(jpeg_frames(str(clip)), fps=200) as camera:
        yield camera


def test_mjpeg_camera_over_http_is_live(
    mjpeg_camera: MjpegCamera, caplog: pytest.LogCaptureFixture
) -> None:
    """An http(s) camera opened live: the newest frame wins (drops counted), the wall clock
    times the frames (MJPEG has no timestamps), it is reopened when the camera goes away or
    hangs, and its credentials never reach the log."""
    caplog.set_level(logging.INFO, logger="streamrec.sources")
    url = mjpeg_camera.url.replace("http://", "http://viewer:s3cret@")
    options = SourceOptions(open_timeout=5, stall_timeout=2, reconnect_initial=0.2, reconnect_max=1)
    with open_source(url, options, live_http=True) as source:
        assert source.live
        assert source.name == redact(url) and "s3cret" not in source.name
        items = iter(source)
        first, skipped = next_matching(source, items, is_frame)
        assert skipped == [] and isinstance(first, Frame)
        assert first.image.shape == (H, W, 3) and (source.width, source.height) == (W, H)
        assert source.stats.state == CameraState.RUNNING

        frame = newest_frames_win(source, items)
        # timed by the wall clock, not by FFmpeg's made-up 25 fps (the camera sends 200 fps)
        elapsed = frame.captured - first.captured
        assert abs((frame.time - first.time) - elapsed) < max(1.0, elapsed / 2)

        mjpeg_camera.stop()
        gap, skipped = next_matching(source, items, is_gap)
        assert isinstance(gap, Gap) and all(isinstance(i, Frame) for i in skipped)
        assert source.stats.state == CameraState.RECONNECTING
        assert source.stats.disconnects == 1
        last = source.stats.frames - 1

        mjpeg_camera.start()  # the same Source picks the camera up again
        frame, skipped = next_matching(source, items, is_frame)
        assert skipped == [] and isinstance(frame, Frame) and frame.index > last
        assert source.stats.reconnects == 1 and source.stats.state == CameraState.RUNNING

        mjpeg_camera.freeze()  # the connection stays open, nothing arrives: a stall
        gap, _ = next_matching(source, items, is_gap)
        assert isinstance(gap, Gap) and gap.reason.startswith("stalled")
        assert source.stats.stalls >= 1

        mjpeg_camera.resume()
        frame, _ = next_matching(source, items, is_frame)
        assert source.stats.reconnects == 2
    assert source.stats.state == CameraState.STOPPED
    assert "s3cret" not in caplog.text
    assert "reconnected" in caplog.text and "stream lost: stalled" in caplog.text


def test_http_recording_or_live_stream_by_choice(
    http_dir: tuple[Path, str], clip: Path, tmp_path: Path
) -> None:
    """An HLS playlist over http: read every frame, in order, as a recording; or live, where the
    end of the playlist is a lost stream that is reopened."""
    root, host = http_dir
    with (
        av.open(clip) as src,
        av.open(str(root / "index.m3u8"), "w", format="hls", options={"hls_time": "1"}) as out,
    ):
        stream = out.add_stream_from_template(src.streams.video[0])
        for packet in src.demux(src.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                out.mux(packet)
    url = f"http://{host}/index.m3u8"
    options = SourceOptions(open_timeout=5, stall_timeout=5, reconnect_initial=0.1)
    with open_source(url, options) as recording:
        assert not recording.live
        assert [shown_index(f.image) for f in frames_of(recording)] == list(range(N))
    with open_source(url, options, live_http=True) as live:
        assert live.live
        items = iter(live)
        first, _ = next_matching(live, items, is_frame)
        gap, _ = next_matching(live, items, is_gap)
        again, _ = next_matching(live, items, is_frame)
        assert isinstance(first, Frame) and isinstance(again, Frame) and isinstance(gap, Gap)
        assert gap.reason == "end of stream" and again.index > first.index
        assert live.stats.reconnects >= 1


def test_serve_mjpeg_camera_stays_live(
    media_dir: Path, lin_gallery: Path, daemon: Callable[[dict[str, Any]], Daemon]
) -> None:
    """``streamrec serve`` with an MJPEG camera made from a real clip that serves faster than
    the pipeline processes it (detector on every frame at 1280 px): frames are dropped and
    counted instead of queueing, so capture-to-event latency stays bounded; the camera is
    reopened when its server restarts."""
    clip = media_dir / "face_recognition/short_hamilton_clip.mp4"
    with MjpegCamera(jpeg_frames(str(clip)), fps=60) as cam:
        d = daemon(
            {
                "gallery": str(lin_gallery),
                "cameras": [{"name": "stage", "source": cam.url}],
                "detector": {"interval": 1, "input_size": 1280},
            }
        )
        wait_for("identified event", lambda: identified(d.events()), 120, d)
        lags = d.event_lags(10)
        dropped = d.metric('streamrec_dropped_frames_total{camera="stage"}')
        frames = d.metric('streamrec_frames_total{camera="stage"}')
        print(f"lags: n={len(lags)} max={max(lags, default=0):.2f} s; {frames=} {dropped=}")
        assert len(lags) >= 5
        assert dropped is not None and dropped > 0
        # queueing every frame at a fraction of 60 fps would lag by more than 8 s after 10 s
        assert max(lags) < 6.0

        cam.stop()
        wait_for("track_end of every track", lambda: not open_tracks(d.events(), "stage"), 30, d)
        before = len(d.events())
        cam.start()
        wait_for("identified after the restart", lambda: identified(d.events(), before), 120, d)
        wait_for(
            "reconnect counted in /metrics",
            lambda: (d.metric('streamrec_reconnects_total{camera="stage"}') or 0) >= 1,
            30,
            d,
        )
        code, _ = d.terminate()
    assert code == 0, d.log()[-3000:]
    assert "Traceback" not in d.log()


def test_run_live_reads_an_mjpeg_camera_until_stopped(
    media_dir: Path, lin_gallery: Path, tmp_path: Path
) -> None:
    """``streamrec run --live URL``: the camera's newest frames (drops counted in the summary)
    until SIGTERM, which ends the run like Ctrl-C (exit 130, every track ended)."""
    clip = media_dir / "face_recognition/short_hamilton_clip.mp4"
    events, summary = tmp_path / "events.jsonl", tmp_path / "summary.json"
    with MjpegCamera(jpeg_frames(str(clip)), fps=60) as cam:
        command = [sys.executable, str(ROOT / "run.py"), "run", "--source", cam.url, "--live"]
        command += ["--gallery", str(lin_gallery), "--events", str(events), "--no-progress"]
        command += ["--summary-json", str(summary), *SMALL]
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 120
            while not any(e["event"] == "identified" for e in events_of(events)):
                assert proc.poll() is None and time.monotonic() < deadline, "no identification"
                time.sleep(0.25)
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(30)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.stderr is not None
    assert code == 130, proc.stderr.read().decode()[-3000:]
    found = events_of(events)
    assert {e["name"] for e in found if e["event"] == "identified"} == {LIN}
    started = {e["track_id"] for e in found if e["event"] == "track_start"}
    assert started == {e["track_id"] for e in found if e["event"] == "track_end"}
    [camera] = json.loads(summary.read_text())["cameras"].values()
    assert camera["dropped"] > 0


def events_of(path: Path) -> list[dict[str, Any]]:
    return read_events(path) if path.exists() else []
