"""The HTTP endpoint against a real server on 127.0.0.1, fed by a thread publishing frames."""

from __future__ import annotations

import http.client
import json
import logging
import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from fastapi import Request
from prometheus_client.parser import text_string_to_metric_families

from streamrec.config import HttpConfig
from streamrec.errors import ConfigError
from streamrec.service import http as web
from streamrec.service.http import WebServer
from streamrec.service.metrics import CONTENT_TYPE, Metrics
from streamrec.service.status import LiveStatus
from streamrec.telemetry import CameraState

CAMERA = "cam1"
TOKEN = "s3cret-token-4321"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
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


def _publishing(frame: Callable[[int], np.ndarray]) -> Iterator[tuple[LiveStatus, Metrics]]:
    """A live status fed ``frame(i)`` at 20 fps by a thread, with a recognition every 10th."""
    status, metrics = LiveStatus(max_fps=30, idle_interval=None), Metrics()
    stop = threading.Event()

    def publish() -> None:
        status.set_state(CAMERA, CameraState.RUNNING)
        i = 0
        while not stop.is_set():
            status.frame(CAMERA)
            status.publish_frame(CAMERA, frame(i))
            if i % 10 == 0:
                status.add_recognition(CAMERA, "alice", 0.91, track_id=7)
            i += 1
            stop.wait(1 / 20)

    thread = threading.Thread(target=publish, daemon=True)
    thread.start()
    yield status, metrics
    stop.set()
    thread.join()


@pytest.fixture
def live() -> Iterator[tuple[LiveStatus, Metrics]]:
    yield from _publishing(synthetic_frame)


@pytest.fixture
def noisy_live() -> Iterator[tuple[LiveStatus, Metrics]]:
    """Frames of noise: large JPEGs that fill a stalled client's socket buffers in seconds."""
    noise = np.random.default_rng(0).integers(0, 256, (360, 640, 3), np.uint8)
    yield from _publishing(lambda i: np.roll(noise, i, axis=1))


def make_server(
    live: tuple[LiveStatus, Metrics], token: str | None = None, **keys: Any
) -> WebServer:
    """A server on 127.0.0.1 and a free port, built from ``http:`` config ``keys``."""
    cfg = HttpConfig(host="127.0.0.1", port=0, token=token, **keys)
    return WebServer.from_config(live[0], live[1], cfg)


@contextmanager
def serving(
    live: tuple[LiveStatus, Metrics], token: str | None = None, **keys: Any
) -> Iterator[WebServer]:
    with make_server(live, token, **keys) as server:
        yield server


def get(server: WebServer, path: str, headers: dict[str, str] | None = None):
    """(status, headers, body) of a GET, without raising on 4xx/5xx."""
    req = urllib.request.Request(f"http://127.0.0.1:{server.port}{path}", headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers, err.read()


def request(
    server: WebServer,
    method: str,
    path: str,
    headers: dict[str, str] | None = None,
    body: Any = None,
) -> tuple[int, http.client.HTTPMessage, bytes]:
    """Any request, with headers sent as given (``Host`` included)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.headers, resp.read()
    finally:
        conn.close()


def closed_by_peer(sock: socket.socket) -> bool:
    """True once the server has closed ``sock`` (EOF or reset); never blocks."""
    sock.setblocking(False)
    try:
        return sock.recv(65536) == b""
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True


def frames_served(server: WebServer) -> int:
    code, _, body = get(server, "/health", AUTH)
    assert code == 200
    return int(json.loads(body)["cameras"][CAMERA]["counters"]["frames"])


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
        assert abs(health["time"] - time.time()) < 60  # wall clock of the answer
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


def test_startup_errors_are_one_line_config_errors(live):
    with serving(live) as server, pytest.raises(ConfigError, match="cannot listen") as busy:
        WebServer(live[0], live[1], port=server.port).start()
    assert "http.port" in str(busy.value) and "\n" not in str(busy.value)
    assert "while attempting" not in str(busy.value)  # the cause once, not Python's wording
    with pytest.raises(ConfigError, match="cannot listen") as bad:
        WebServer(live[0], live[1], host="no-such-host.invalid", port=0, token=TOKEN).start()
    assert "http.host" in str(bad.value) and "\n" not in str(bad.value)


def test_token_via_header_query_or_api_key(live, caplog):
    caplog.set_level(logging.DEBUG)
    paths = ("/health", "/metrics", "/", "/api/recent", f"/stream/{CAMERA}.mjpg", "/openapi.json")
    with serving(live, token=TOKEN) as server:
        for path in (*paths, "/nothing-here"):
            code, headers, _ = get(server, path)
            assert code == 401, path
            assert headers["WWW-Authenticate"].startswith("Bearer")
        assert get(server, "/health", {"Authorization": "Bearer wrong"})[0] == 401
        assert get(server, "/health", {"x-api-key": "wrong"})[0] == 401
        assert get(server, "/health?token=wrong")[0] == 401
        assert get(server, f"/health?token={TOKEN}x")[0] == 401
        assert get(server, "/health", AUTH)[0] == 200
        assert get(server, "/health", {"x-api-key": TOKEN})[0] == 200
        assert get(server, f"/metrics?token={TOKEN}")[0] == 200
        code, _, page = get(server, f"/?token={TOKEN}")
        assert code == 200 and b"<title>streamrec live</title>" in page
        code, _, body = get(server, "/openapi.json", AUTH)
        spec = json.loads(body)
        assert code == 200 and {"/health", "/api/recent", "/stream/{camera}.mjpg"} <= set(
            spec["paths"]
        )
        assert set(spec["components"]["securitySchemes"]) == {"bearer", "apiKey", "query"}
    assert any(
        r.name == "streamrec.service.http" and "/health" in r.getMessage() for r in caplog.records
    )
    assert TOKEN not in caplog.text  # requests are logged, the token never


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
    live[0].set_state("<img src=x onerror=alert(1)>", CameraState.RUNNING)  # text, never HTML
    live[0].add_recognition(CAMERA, "<i>eve</i>", 0.8, track_id=9)
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
    assert '<span class="name">&lt;img src=x onerror=alert(1)&gt;</span>' in dom
    assert '<span class="who">&lt;i&gt;eve&lt;/i&gt;</span>' in dom
    assert '<img src="x"' not in dom and "<i>eve</i>" not in dom
    img = cv2.imread(str(shot))
    assert img is not None and img.shape[:2] == (768, 1024)
    assert green_pixels(img) > 300, "the annotated MJPEG frame is not on the page"


def test_recent_rejects_bad_n_with_a_clear_4xx(live):
    with serving(live) as server:
        for n in ("%C2%B2", "abc", "-1", "1001", "1e3", "99999999999999999999999"):
            code, headers, body = get(server, f"/api/recent?n={n}")
            assert code == 422, n
            assert headers["Content-Type"] == "application/json"
            detail = json.loads(body)["detail"][0]
            assert detail["loc"] == ["query", "n"] and detail["msg"], n
        code, _, body = get(server, "/api/recent?n=0")
        assert code == 200 and json.loads(body) == []


def test_security_headers(live):
    with serving(live, token=TOKEN) as server:
        code, headers, _ = get(server, "/", AUTH)
        assert code == 200
        csp = headers["Content-Security-Policy"]
        # exactly the page's own inline script and style may run; nothing from elsewhere
        assert "script-src 'sha256-" in csp and "style-src 'sha256-" in csp
        assert "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
        for path, headers_sent in (("/health", AUTH), ("/api/recent", AUTH), ("/health", {})):
            code, headers, _ = get(server, path, headers_sent)
            assert code in (200, 401)
            assert headers["Cache-Control"] == "no-store"
            assert headers["X-Content-Type-Options"] == "nosniff"
            assert headers["Referrer-Policy"] == "no-referrer"
            assert headers["Content-Security-Policy"].startswith("default-src 'none'")


def test_host_allow_list(live):
    hosts = ["nvr.lan", "*.home.arpa"]
    with serving(live, token=TOKEN, allowed_hosts=hosts) as server:
        port = server.port
        good = (f"127.0.0.1:{port}", "localhost", f"[::1]:{port}", "nvr.lan", "cam.home.arpa:8080")
        for host in good:
            assert request(server, "GET", "/health", {**AUTH, "Host": host})[0] == 200, host
        bad = ("evil.example", "nvr.lan.evil.example", "127.0.0.1.nip.io", "home.arpa", "a@b")
        for host in bad:
            code, _, body = request(server, "GET", "/health", {**AUTH, "Host": host})
            assert code == 421 and b"http.allowed_hosts" in body, host
    with serving(live) as server:  # no token: a rebinding page must not get through either
        assert request(server, "GET", "/health", {"Host": "rebind.evil.example"})[0] == 421
        assert request(server, "GET", "/health")[0] == 200


def test_host_allow_list_config_errors(live):
    for entry in ("bad host", "http://nvr.lan", "nvr.lan/x"):
        with pytest.raises(ConfigError, match=r"http\.allowed_hosts"):
            make_server(live, TOKEN, allowed_hosts=[entry])
    with pytest.raises(ConfigError, match=r"http\.allowed_hosts: '\*'.*http\.token"):
        make_server(live, allowed_hosts=["*"])
    make_server(live, TOKEN, allowed_hosts=["*"])


def test_wildcard_bind_accepts_ip_hosts_but_not_unknown_names():
    policy = web._HostPolicy("0.0.0.0", ["nvr.lan"], has_token=True)
    assert policy.allows("192.168.1.20:8080") and policy.allows("[fe80::1]:8080")
    assert policy.allows(socket.gethostname()) and policy.allows("nvr.lan")
    assert not policy.allows("evil.example") and not policy.allows(None)


def test_body_size_limit(live):
    server = make_server(live, max_body=1000)

    @server.app.post("/echo")
    async def echo(request: Request) -> dict[str, int]:
        return {"size": len(await request.body())}

    with server:
        code, _, body = request(server, "POST", "/echo", body=b"x" * 500)
        assert code == 200 and json.loads(body) == {"size": 500}
        assert request(server, "POST", "/echo", body=b"x" * 1001)[0] == 413
        assert request(server, "POST", "/health", body=b"x" * 5000)[0] == 413  # unread body
        chunked = iter([b"x" * 400] * 3)  # no Content-Length: counted as it arrives
        assert request(server, "POST", "/echo", body=chunked)[0] == 413


def test_a_refused_upload_gets_its_413_while_the_client_still_sends(live):
    """The server answers a body over ``http.max_body`` before it arrives; the client, still
    sending, must get that answer rather than a reset (what it still sends is discarded)."""
    size = 8 << 20
    head = f"POST /health HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {size}\r\n\r\n"
    answer = b""
    with serving(live, max_body=1000) as server:
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        with sock:
            sock.sendall(head.encode() + b"x" * size)  # the body close behind the headers
            while chunk := sock.recv(65536):  # until the server's half-close
                answer += chunk
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:100]


def test_idle_connections_do_not_lock_out_clients(live):
    """300 connections that never send a request: /health still answers, the camera state
    keeps updating, and the server closes them all (cap, then the header deadline)."""
    with serving(live, token=TOKEN, header_timeout=2.0) as server:
        idle = [
            socket.create_connection(("127.0.0.1", server.port), timeout=10) for _ in range(300)
        ]
        try:
            asked = time.monotonic()
            first = frames_served(server)  # asserts 200 with the token
            print(f"/health with 300 idle connections open: {time.monotonic() - asked:.3f} s")
            wait_until(lambda: frames_served(server) > first, "the camera state to move on")
            closed: set[int] = set()

            def all_closed() -> bool:
                closed.update(i for i, s in enumerate(idle) if i in closed or closed_by_peer(s))
                return len(closed) == len(idle)

            wait_until(all_closed, "the server to close the idle connections", limit=30)
            assert frames_served(server) > first
        finally:
            for sock in idle:
                sock.close()


def test_request_deadlines_hold_against_trickling_clients(live):
    """Sending a byte at a time does not extend the header or the body deadline."""
    server = make_server(live, header_timeout=1.0, body_timeout=1.0)

    @server.app.post("/echo")
    async def echo(request: Request) -> dict[str, int]:
        return {"size": len(await request.body())}

    head = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: " + b"a" * 2000
    post = b"POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2000\r\n\r\n"
    with server:
        for prefix, trickled in ((b"", head), (post, b"x" * 2000)):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            try:
                sock.sendall(prefix)
                sent = 0
                deadline = time.monotonic() + 60
                while not closed_by_peer(sock):
                    assert time.monotonic() < deadline, "the server kept a trickling client"
                    try:
                        sock.sendall(trickled[sent : sent + 1])
                    except (BrokenPipeError, ConnectionResetError):
                        break
                    sent += 1
                    assert sent < len(trickled), "the whole request trickled in; never cut"
                    time.sleep(0.01)
            finally:
                sock.close()
        assert get(server, "/health")[0] == 200


def test_mjpeg_stream_cap(live):
    with serving(live, max_streams=2) as server:
        path = f"/stream/{CAMERA}.mjpg"
        streams = [open_stream(server, path) for _ in range(2)]
        try:
            for _, resp in streams:
                read_part(resp, resp.getheader("Content-Type", "").split("boundary=")[1])
            code, headers, body = get(server, path)
            assert code == 503 and headers["Retry-After"] and b"http.max_streams" in body
            assert get(server, "/health")[0] == 200  # other routes are not capped
            conn, resp = streams.pop()
            resp.close()
            conn.close()
            wait_until(lambda: server.active_streams == 1, "a stream slot to free")
            streams.append(open_stream(server, path))
            assert streams[-1][1].status == 200
        finally:
            for conn, resp in streams:
                resp.close()
                conn.close()


def test_connection_cap_sheds_the_oldest_stream_when_all_are_busy(live):
    """Every connection streaming: a new client is still served, and the oldest stream goes."""
    with serving(live, max_connections=2, max_streams=2) as server:
        path = f"/stream/{CAMERA}.mjpg"
        streams = [open_stream(server, path) for _ in range(2)]
        try:
            for _, resp in streams:
                read_part(resp, resp.getheader("Content-Type", "").split("boundary=")[1])
            assert get(server, "/health")[0] == 200
            wait_until(lambda: server.active_streams == 1, "the oldest stream to be closed")
            newest = streams[1][1]
            read_part(newest, newest.getheader("Content-Type", "").split("boundary=")[1])
        finally:
            for conn, resp in streams:
                resp.close()
                conn.close()
        wait_until(lambda: server.active_streams == 0, "the streams to end")


def test_client_that_stops_reading_is_dropped(noisy_live, monkeypatch):
    monkeypatch.setattr(web, "SEND_TIMEOUT", 0.5)
    with serving(noisy_live) as server:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", server.port))
        try:
            sock.sendall(f"GET /stream/{CAMERA}.mjpg HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
            wait_until(lambda: server.active_streams == 1, "the stream to start")
            # never read: once the buffers are full the server gives up on this client
            wait_until(lambda: server.active_streams == 0, "the stalled stream to be cut", 120)
        finally:
            sock.close()
        assert get(server, "/health")[0] == 200


def test_stop_ends_a_stream_whose_client_stopped_reading(noisy_live, monkeypatch, caplog):
    """stop() does not wait for a client that does not read, nor cancel it with errors."""
    monkeypatch.setattr(web, "SEND_TIMEOUT", 3600.0)
    stalled = threading.Event()
    pause_writing = web._Connection.pause_writing

    def spy(self: web._Connection) -> None:
        pause_writing(self)
        stalled.set()

    monkeypatch.setattr(web._Connection, "pause_writing", spy)
    server = make_server(noisy_live)
    server.start()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    try:
        sock.connect(("127.0.0.1", server.port))
        sock.sendall(f"GET /stream/{CAMERA}.mjpg HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        wait_until(stalled.is_set, "the server's send buffer to fill", 120)
        server.stop()
        assert server.active_streams == 0
        assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    finally:
        sock.close()
        server.stop()
