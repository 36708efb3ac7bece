"""The HTTP endpoint against a real server on 127.0.0.1, fed by a thread publishing frames."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from streamrec.errors import ConfigError
from streamrec.service.http import WebServer
from streamrec.service.metrics import CONTENT_TYPE, Metrics
from streamrec.service.status import LiveStatus
from streamrec.telemetry import CameraState

CAMERA = "cam1"
TOKEN = "s3cret-token"
CHROMIUM = "/usr/bin/chromium"


def synthetic_frame(i: int) -> np.ndarray:
    """A grey 640x360 frame with a pure green face box and a name label, like the annotator."""
    img = np.full((360, 640, 3), 70, np.uint8)
    x = 120 + i % 40
    cv2.rectangle(img, (x, 90), (x + 150, 280), (0, 255, 0), 6)
    cv2.putText(img, "alice 0.91", (x, 80), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (0, 255, 0), 2)
    return img


def green_pixels(img: np.ndarray) -> int:
    b, g, r = (img[..., k].astype(int) for k in range(3))
    return int(np.count_nonzero((g > 200) & (r < 60) & (b < 60)))


@pytest.fixture
def live() -> Iterator[tuple[LiveStatus, Metrics]]:
    status, metrics = LiveStatus(max_fps=30, idle_interval=None), Metrics()
    stop = threading.Event()

    def publish() -> None:
        status.set_state(CAMERA, CameraState.RUNNING)
        i = 0
        while not stop.is_set():
            status.frame(CAMERA)
            status.publish_frame(CAMERA, synthetic_frame(i))
            if i % 10 == 0:
                status.add_recognition(CAMERA, "alice", 0.91, track_id=7)
            i += 1
            stop.wait(1 / 20)

    thread = threading.Thread(target=publish, daemon=True)
    thread.start()
    yield status, metrics
    stop.set()
    thread.join()


@contextmanager
def serving(live: tuple[LiveStatus, Metrics], token: str | None = None) -> Iterator[WebServer]:
    status, metrics = live
    server = WebServer(status, metrics, host="127.0.0.1", port=0, token=token)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def get(server: WebServer, path: str, headers: dict[str, str] | None = None):
    """(status, headers, body) of a GET, without raising on 4xx/5xx."""
    req = urllib.request.Request(f"http://127.0.0.1:{server.port}{path}", headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers, err.read()


def wait_until(predicate, what: str, limit: float = 10.0) -> None:
    deadline = time.monotonic() + limit
    while not predicate():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.05)


def open_stream(
    server: WebServer, path: str
) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.request("GET", path)
    return conn, conn.getresponse()


def read_part(resp: http.client.HTTPResponse, boundary: str) -> np.ndarray:
    """The next JPEG of a multipart/x-mixed-replace body, decoded."""
    line = resp.readline()
    while line.strip() != b"--" + boundary.encode():
        assert line, "stream ended before a part"
        line = resp.readline()
    headers = {}
    while (line := resp.readline().strip()) != b"":
        key, _, value = line.decode().partition(":")
        headers[key.lower()] = value.strip()
    assert headers["content-type"] == "image/jpeg"
    img = cv2.imdecode(np.frombuffer(resp.read(int(headers["content-length"])), np.uint8), 1)
    assert img is not None, "a part is not a decodable JPEG"
    return img


def test_health_reports_camera_state_fps_and_age(live):
    status, _ = live
    with serving(live) as server:
        wait_until(lambda: status.snapshot()[CAMERA]["fps"] > 0, "frames")
        code, headers, body = get(server, "/health")
        assert code == 200 and headers["Content-Type"] == "application/json"
        health = json.loads(body)
        assert health["ok"] is True
        cam = health["cameras"][CAMERA]
        assert cam["state"] == "running" and cam["ok"] is True
        assert cam["fps"] > 0
        assert cam["last_frame_age"] >= 0
        assert cam["counters"]["frames"] > 0

        status.set_state("cam2", CameraState.RECONNECTING)
        code, _, body = get(server, "/health")
        assert code == 503
        health = json.loads(body)
        assert health["ok"] is False and health["cameras"]["cam2"]["last_frame_age"] is None


def test_metrics_exposition_has_fed_values(live):
    _, metrics = live
    metrics.add_camera("cam2")
    for _ in range(3):
        metrics.frame(CAMERA)
    metrics.dropped(CAMERA, 2)
    metrics.reconnect(CAMERA)
    metrics.stall(CAMERA)
    metrics.faces(CAMERA, 4)
    metrics.track(CAMERA)
    metrics.identity(CAMERA, "alice")
    metrics.identity(CAMERA, "alice")
    metrics.observe_detect(0.03, batch=2)
    metrics.observe_embed(0.01, batch=4)
    metrics.observe_latency(CAMERA, 0.2)
    metrics.set_camera_state(CAMERA, CameraState.RUNNING)
    metrics.set_camera_fps(CAMERA, 12.5)
    metrics.set_gallery_people(7)
    with serving(live) as server:
        code, headers, body = get(server, "/metrics")
    assert code == 200 and headers["Content-Type"] == CONTENT_TYPE
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }
    cam = (("camera", CAMERA),)
    assert samples[("streamrec_frames_total", cam)] == 3
    assert samples[("streamrec_frames_total", (("camera", "cam2"),))] == 0
    assert samples[("streamrec_dropped_frames_total", cam)] == 2
    assert samples[("streamrec_reconnects_total", cam)] == 1
    assert samples[("streamrec_stalls_total", cam)] == 1
    assert samples[("streamrec_faces_total", cam)] == 4
    assert samples[("streamrec_tracks_total", cam)] == 1
    assert samples[("streamrec_identities_total", (("camera", CAMERA), ("name", "alice")))] == 2
    assert samples[("streamrec_detect_seconds_count", ())] == 1
    assert samples[("streamrec_detect_seconds_sum", ())] == pytest.approx(0.03)
    assert samples[("streamrec_embed_seconds_bucket", (("le", "0.01"),))] == 1
    assert samples[("streamrec_batch_size_sum", (("stage", "embed"),))] == 4
    assert samples[("streamrec_batch_size_sum", (("stage", "detect"),))] == 2
    assert samples[("streamrec_event_latency_seconds_count", cam)] == 1
    assert samples[("streamrec_camera_up", cam)] == 1
    assert samples[("streamrec_camera_fps", cam)] == 12.5
    assert samples[("streamrec_gallery_people", ())] == 7


def test_metrics_instances_are_independent():
    a, b = Metrics(), Metrics()
    a.frame(CAMERA)
    assert b"streamrec_frames_total{" in a.text()
    assert b"streamrec_frames_total{" not in b.text()


def test_non_loopback_bind_requires_token(live):
    status, metrics = live
    for host in ("0.0.0.0", "", "192.168.1.10", "camera-box.lan"):
        with pytest.raises(ConfigError, match=r"http\.token"):
            WebServer(status, metrics, host=host, port=0)
    WebServer(status, metrics, host="0.0.0.0", port=0, token=TOKEN)  # allowed with a token
    for host in ("127.0.0.1", "localhost", "::1"):
        WebServer(status, metrics, host=host, port=0)


def test_port_in_use_is_a_config_error(live):
    with serving(live) as server, pytest.raises(ConfigError, match="cannot listen"):
        WebServer(live[0], live[1], port=server.port).start()


def test_token_via_header_or_query(live):
    with serving(live, token=TOKEN) as server:
        for path in ("/health", "/metrics", "/", "/api/recent", f"/stream/{CAMERA}.mjpg"):
            code, headers, _ = get(server, path)
            assert code == 401, path
            assert headers["WWW-Authenticate"].startswith("Bearer")
        assert get(server, "/health", {"Authorization": "Bearer wrong"})[0] == 401
        assert get(server, "/health?token=wrong")[0] == 401
        assert get(server, "/health", {"Authorization": f"Bearer {TOKEN}"})[0] == 200
        assert get(server, f"/metrics?token={TOKEN}")[0] == 200
        code, _, page = get(server, f"/?token={TOKEN}")
        assert code == 200 and b"<title>streamrec live</title>" in page


def test_recent_recognitions(live):
    status, _ = live
    with serving(live) as server:
        wait_until(lambda: status.recent(1), "a recognition")
        code, _, body = get(server, "/api/recent?n=5")
    recent = json.loads(body)
    assert code == 200 and 1 <= len(recent) <= 5
    assert recent[0]["camera"] == CAMERA and recent[0]["name"] == "alice"
    assert recent[0]["score"] == pytest.approx(0.91) and recent[0]["track_id"] == 7
    assert recent[0]["time"] >= recent[-1]["time"]  # newest first


def test_mjpeg_stream_serves_decodable_jpegs(live):
    with serving(live) as server:
        assert get(server, "/stream/nope.mjpg")[0] == 404
        conn, resp = open_stream(server, f"/stream/{CAMERA}.mjpg")
        try:
            ctype = resp.getheader("Content-Type", "")
            assert resp.status == 200 and ctype.startswith("multipart/x-mixed-replace")
            boundary = ctype.split("boundary=")[1]
            parts = [read_part(resp, boundary) for _ in range(4)]
            assert all(img.shape == (360, 640, 3) for img in parts)
            # the first part may be the "waiting for video" placeholder, then frames follow;
            # the drawn box survives encoding
            assert all(green_pixels(img) > 1000 for img in parts[1:])
        finally:
            resp.close()  # the response holds its own reference to the socket
            conn.close()
        # the server notices the disconnect and ends the streamer thread, whether frames
        # keep coming (write fails) or the camera is silent (idle socket polled)
        wait_until(lambda: server.active_streams == 0, "the streamer to end after disconnect")
        live[0].set_state("silent", CameraState.RECONNECTING)
        conn, resp = open_stream(server, "/stream/silent.mjpg")
        boundary = resp.getheader("Content-Type", "").split("boundary=")[1]
        assert green_pixels(read_part(resp, boundary)) == 0  # the placeholder
        wait_until(lambda: server.active_streams == 1, "the silent stream to start")
        resp.close()
        conn.close()
        wait_until(lambda: server.active_streams == 0, "the silent streamer to end")


def test_stop_ends_open_streams(live):
    server = WebServer(live[0], live[1], port=0)
    server.start()
    conn, resp = open_stream(server, f"/stream/{CAMERA}.mjpg")
    try:
        boundary = resp.getheader("Content-Type", "").split("boundary=")[1]
        read_part(resp, boundary)
        assert server.active_streams == 1
        server.stop()
        assert server.active_streams == 0
        while resp.read(65536):  # the client sees the end of the stream (timeout=10 fails)
            pass
    finally:
        resp.close()
        conn.close()
        server.stop()


def test_only_viewers_pay_for_jpeg_encoding():
    status = LiveStatus(idle_interval=None)
    status.set_state(CAMERA, CameraState.RUNNING)
    assert not status.wants_frame(CAMERA)
    assert not status.publish_frame(CAMERA, synthetic_frame(0))
    assert status.wait_frame(CAMERA, 0, timeout=0) is None
    with status.viewer(CAMERA):
        assert status.publish_frame(CAMERA, synthetic_frame(0))
        version, jpeg = status.wait_frame(CAMERA, 0, timeout=0) or (0, b"")
        assert version == 1 and jpeg.startswith(b"\xff\xd8")
    assert not status.wants_frame(CAMERA)


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} not installed")
def test_browser_renders_live_view(live, tmp_path: Path):
    """Headless Chromium loads the page with ?token=, which must reach the MJPEG <img>."""
    shot = tmp_path / "live.png"
    live[0].set_state("garage", CameraState.RECONNECTING)  # no frames yet: a placeholder
    with serving(live, token=TOKEN) as server:
        cmd = [
            shutil.which(CHROMIUM) or CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--window-size=1024,768",
            "--virtual-time-budget=3000",
            f"--screenshot={shot}",
            "--dump-dom",
            f"http://127.0.0.1:{server.port}/?token={TOKEN}",
        ]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert shot.exists(), done.stderr[-2000:]
    dom = done.stdout
    assert f'<span class="name">{CAMERA}</span>' in dom
    assert '<span class="state ok">running</span>' in dom
    assert '<span class="name">garage</span><span class="state">reconnecting</span>' in dom
    assert '<span class="who">alice</span>' in dom
    img = cv2.imread(str(shot))
    assert img is not None and img.shape[:2] == (768, 1024)
    assert green_pixels(img) > 300, "the annotated MJPEG frame is not on the page"
