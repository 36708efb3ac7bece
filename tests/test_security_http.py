"""Issue 21, the HTTP server: a real server on 127.0.0.1 with the face library (the small real
models, real photos), attacked as a client on the same machine and as a web page in the user's
browser would: slow bodies, connection floods, cross-site writes, wrong tokens, absurd ids,
error answers, huge uploads. Every wait is a poll with a deadline."""

from __future__ import annotations

import contextlib
import http.client
import http.server
import importlib.util
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from face_helpers import single_face

from streamrec.analyzer import FaceAnalyzer
from streamrec.config import HttpConfig
from streamrec.enrolment import enroll_images
from streamrec.errors import ConfigError
from streamrec.gallery.store import Gallery
from streamrec.recognition import Recognition
from streamrec.service import api, compreface
from streamrec.service import http as web
from streamrec.service.http import WebServer
from streamrec.service.metrics import Metrics
from streamrec.service.status import LiveStatus

SELENIUM = importlib.util.find_spec("selenium") is not None
if SELENIUM:  # the browser fixture: Debian chromium driven by Selenium
    from test_faces_page import browser  # noqa: F401

TOKEN = "security-test-token-0123"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
SLOW_POST = (
    b"POST /api/recognize HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    b"Content-Type: multipart/form-data; boundary=x\r\nContent-Length: 1000000\r\n"
)
#: the start of a valid form: the photo's bytes then trickle in
SLOW_BODY = b'--x\r\nContent-Disposition: form-data; name="file"; filename="a.jpg"\r\n\r\n\xff'



def wait_until(predicate: Callable[[], object], what: str, limit: float = 60.0) -> None:
    deadline = time.monotonic() + limit
    while not predicate():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.05)


def send(
    port: int,
    method: str,
    path: str,
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
    source: str = "127.0.0.1",
) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body) of one request sent as given, from address ``source``."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60, source_address=(source, 0))
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
    finally:
        conn.close()


class Site:
    """A real WebServer with the face library mounted, and its gallery and live status."""

    def __init__(self, server: WebServer, gallery: Gallery, status: LiveStatus) -> None:
        self.server, self.gallery, self.status = server, gallery, status
        self.port = server.port

    def request(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, str], bytes]:
        return send(self.port, *args, **kwargs)


@pytest.fixture
def site(analyzer: FaceAnalyzer, tmp_path: Path) -> Iterator[Callable[..., Site]]:
    started: list[Site] = []

    def start(token: str | None = None, gallery: Gallery | None = None, **http: Any) -> Site:
        status = LiveStatus()
        store = gallery or analyzer.open_gallery(tmp_path / f"gallery{len(started)}.db")
        server = WebServer(status, Metrics(), "127.0.0.1", 0, token, HttpConfig(port=0, **http))
        library = api.FaceLibrary(Recognition(analyzer, store), status)
        api.mount(server.app, library)
        compreface.mount(server.app, library)
        server.start()
        started.append(Site(server, store, status))
        return started[-1]

    yield start
    for s in started:
        s.server.stop()
        s.gallery.close()


def multipart(fields: dict[str, str], files: dict[str, tuple[str, bytes]]) -> tuple[str, bytes]:
    """(content type, body) of a multipart form, as a browser's form would send it."""
    boundary = "streamrec-test-boundary"
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
        for k, v in fields.items()
    ]
    for k, (filename, data) in files.items():
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"; filename="{filename}"'
            "\r\nContent-Type: image/jpeg\r\n\r\n"
        )
        parts.append(head.encode() + data + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return f"multipart/form-data; boundary={boundary}", b"".join(parts)


class SlowClients:
    """``n`` connections that each send a request's head and then one body byte per second
    (from one thread); what the server answers each is collected."""

    def __init__(self, port: int, n: int, head: bytes) -> None:
        self.socks = []
        for _ in range(n):
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            sock.sendall(head + b"\r\n" + SLOW_BODY)
            sock.setblocking(False)
            self.socks.append(sock)
        self.answers = [bytearray() for _ in self.socks]
        self.closed = [False] * len(self.socks)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._trickle, daemon=True)
        self._thread.start()

    def _trickle(self) -> None:
        while not self._stop.wait(1.0):  # the attack's pace, not a synchronisation
            for sock in self.socks:
                with contextlib.suppress(OSError):
                    sock.send(b"x")

    def poll(self) -> int:
        """Read what has arrived; how many connections the server has closed."""
        for i, sock in enumerate(self.socks):
            while not self.closed[i]:
                try:
                    data = sock.recv(65536)
                except BlockingIOError:
                    break
                except OSError:  # reset: the server aborted it
                    data = b""
                if not data:
                    self.closed[i] = True
                self.answers[i] += data
        return sum(self.closed)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        for sock in self.socks:
            sock.close()


def warnings_of(caplog: pytest.LogCaptureFixture, logger: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == logger and r.levelno >= 30]


# -- item 2: slow bodies lock nobody out ----------------------------------------------------


def test_unauthenticated_slow_bodies_are_answered_and_closed_at_once(site, caplog) -> None:
    """100 POSTs announcing 1 MB bodies and trickling a byte a second, without the token:
    each gets its 401 and is closed at once (the body deadline is an hour), and /health with
    the token answers meanwhile."""
    s = site(TOKEN, body_timeout=3600, max_connections=1000)
    attack = SlowClients(s.port, 100, SLOW_POST)
    try:
        assert s.request("GET", "/health", AUTH)[0] == 200
        wait_until(lambda: attack.poll() == 100, "every slow request to be answered and closed")
        assert all(a.startswith(b"HTTP/1.1 401") for a in attack.answers), attack.answers[0]
        assert all(b"connection: close" in a.lower() for a in attack.answers)
        assert s.request("GET", "/health", AUTH)[0] == 200
    finally:
        attack.close()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_slow_bodies_cannot_lock_out_a_client_with_the_token(site, caplog) -> None:
    """100 slow bodies with the token fill a cap of 20 connections: the cap sheds the oldest
    slow ones, /health with the token answers, and that is logged once, not 80 times."""
    caplog.set_level(logging.INFO)
    s = site(TOKEN, body_timeout=3600, max_connections=20)
    attack = SlowClients(s.port, 100, SLOW_POST + f"x-api-key: {TOKEN}\r\n".encode())
    try:
        assert s.request("GET", "/health", AUTH)[0] == 200
        wait_until(lambda: attack.poll() >= 80, "the cap to shed the oldest slow requests")
        assert not any(attack.closed[-19:]), "the newest slow requests were closed first"
        assert s.request("GET", "/health", AUTH)[0] == 200
    finally:
        attack.close()
    shed = warnings_of(caplog, "streamrec.service.http")
    assert len(shed) == 1 and "http.max_connections" in shed[0], shed


# -- item 7: cross-site writes ----------------------------------------------------------------


def test_cross_site_writes_are_refused(site, media_dir: Path) -> None:
    s = site(allowed_origins=["https://ha.lan:8123"])  # the default: loopback, no token
    own = f"http://127.0.0.1:{s.port}"
    photo = (media_dir / "face_recognition/obama.jpg").read_bytes()
    kind, form = multipart({"name": "Mallory"}, {"files": ("a.jpg", photo)})
    _, one = multipart({}, {"file": ("a.jpg", photo)})
    writes = [
        ("POST", "/api/people", form),
        ("POST", "/api/recognize", one),
        ("POST", "/api/v1/recognition/faces?subject=Mallory", one),
        ("POST", "/api/v1/recognition/recognize", one),
        ("DELETE", "/api/people/Nobody", None),
    ]
    hostile = [
        {"Origin": "http://evil.example"},
        {"Origin": "null"},  # a sandboxed frame, a file
        {"Origin": f"http://localhost:{s.port + 1}"},  # another port: another origin
        {"Origin": "https://ha.lan:8123.evil.example"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
    ]
    for method, path, body in writes:
        for headers in hostile:
            code, _, answer = s.request(method, path, {**headers, "Content-Type": kind}, body)
            assert code == 403, (method, path, headers, code)
            assert b"http.allowed_origins" in answer
    assert s.gallery.people() == []

    # reads are answered (the browser keeps the answer from the page); same-origin writes,
    # configured origins and clients that are not browsers (no Origin) get through
    assert s.request("GET", "/api/people", {"Origin": "http://evil.example"})[0] == 200
    for headers in (
        {"Origin": own, "Sec-Fetch-Site": "same-origin"},
        {"Origin": "https://ha.lan:8123"},
        {"Sec-Fetch-Site": "none"},  # typed into the address bar
        {},
    ):
        headers["Content-Type"] = kind
        code, _, answer = s.request("POST", "/api/recognize", headers, one)
        assert code == 200 and len(json.loads(answer)["faces"]) == 1, (headers, code, answer)
    code, _, _ = s.request("POST", "/api/people", {"Origin": own, "Content-Type": kind}, form)
    assert code == 201 and [p.name for p in s.gallery.people()] == ["Mallory"]


def test_allowed_origins_must_be_origins() -> None:
    for bad in ("ha.lan", "https://ha.lan/path", "ftp://ha.lan", "https://u:p@ha.lan", "*"):
        with pytest.raises(ValueError, match="scheme://host"):
            HttpConfig(allowed_origins=[bad])
    HttpConfig(allowed_origins=["https://ha.lan:8123", "http://10.0.0.5"])


class _AttackerPage(http.server.BaseHTTPRequestHandler):
    """A web page on another origin whose form enrols a face the server has seen (a recent
    recognition) under the attacker's name, as soon as it is opened."""

    target = ""

    def do_GET(self) -> None:
        page = (
            "<!doctype html><title>cute cats</title>"
            f'<form method="post" enctype="multipart/form-data" action="{self.target}">'
            '<input name="name" value="Mallory"><input name="recent" value="1"></form>'
            "<script>document.forms[0].submit()</script>"
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(page)))
        self.end_headers()
        self.wfile.write(page)

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.skipif(
    not (SELENIUM and os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)),
    reason=f"selenium, {CHROMIUM} and {CHROMEDRIVER} (Debian chromium-driver) not installed",
)
def test_a_page_of_another_site_cannot_enrol_a_face(
    site, analyzer: FaceAnalyzer, media_dir: Path, request: pytest.FixtureRequest
) -> None:
    """A real browser opens a page on another origin that posts a multipart form to the
    server on the default config (loopback, no token): the server refuses it."""
    from selenium.webdriver.support.ui import WebDriverWait

    s = site()
    _, crop = single_face(analyzer, media_dir / "face_recognition/obama.jpg")
    s.status.add_recognition("door", "Barack Obama", 0.9, 7, crop=crop)
    assert s.status.recognition(1) is not None
    _AttackerPage.target = f"http://127.0.0.1:{s.port}/api/people"
    attacker = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _AttackerPage)
    threading.Thread(target=attacker.serve_forever, daemon=True).start()
    driver = request.getfixturevalue("browser")
    try:
        # localhost: another site than 127.0.0.1 for the browser
        driver.get(f"http://localhost:{attacker.server_address[1]}/")
        WebDriverWait(driver, 60, poll_frequency=0.1).until(
            lambda d: "}" in d.page_source, "the form's answer (JSON) in 60 s"
        )
        assert "cross-site request refused" in driver.page_source, driver.page_source
    finally:
        attacker.shutdown()
    assert s.gallery.people() == []


# -- tokens ----------------------------------------------------------------------------------


def test_beyond_loopback_the_token_is_required_and_long() -> None:
    status, metrics = LiveStatus(), Metrics()
    for token in (None, "", "x", "fifteen-chars!!"):
        with pytest.raises(ConfigError, match=r"http\.token of at least 16") as refused:
            WebServer(status, metrics, host="0.0.0.0", port=0, token=token)
        assert "fifteen-chars!!" not in str(refused.value)  # its length only
    WebServer(status, metrics, host="0.0.0.0", port=0, token="sixteen-chars!!!")
    WebServer(status, metrics, host="127.0.0.1", port=0, token="short")  # loopback: any


def test_wrong_tokens_are_throttled_per_client(site, caplog) -> None:
    s = site(TOKEN)
    for i in range(10):
        assert s.request("GET", "/health", {"x-api-key": f"guess-{i}"})[0] == 401
    code, headers, _ = s.request("GET", "/health", {"x-api-key": "guess-10"})
    assert code == 429 and int(headers["retry-after"]) > 0
    assert s.request("GET", "/health", AUTH)[0] == 429  # not even checked while throttled
    assert s.request("GET", "/health")[0] == 401  # no token offered: the usual answer
    # another client address is not concerned
    assert s.request("GET", "/health", AUTH, source="127.0.0.2")[0] == 200
    refusals = warnings_of(caplog, "streamrec.service.http")
    assert len(refusals) == 1 and "wrong token" in refusals[0], refusals
    assert TOKEN not in caplog.text


def test_the_throttle_table_is_bounded() -> None:
    throttle = web._Throttle(burst=2, interval=60.0, size=100)
    for i in range(10_000):
        throttle.failed(f"10.0.{i // 256}.{i % 256}")
    assert len(throttle._clients) == 100
    throttle.failed("10.0.39.15")
    assert throttle.wait("10.0.39.15") > 0  # two failures: out of tries
    assert throttle.wait("192.0.2.1") == 0


# -- ids, error answers, sources -------------------------------------------------------------


def test_absurd_ids_are_404_not_500(site, caplog) -> None:
    s = site()
    huge = "9" * 20
    for path in (
        f"/api/faces/{huge}.jpg",
        f"/api/recent/{huge}.jpg",
        f"/api/faces/{2**63}.jpg",
        "/api/faces/999999999999999999.jpg",  # 18 digits: a valid id of no face
        "/api/faces/-1.jpg",
    ):
        code, _, body = s.request("GET", path)
        assert code == 404, (path, code, body)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_error_answers_carry_no_server_paths(
    site, analyzer: FaceAnalyzer, media_dir: Path, tmp_path: Path
) -> None:
    """A read-only gallery refuses a new person: the answer names the file, not its folder."""
    path = tmp_path / "private folder" / "gallery.db"
    path.parent.mkdir()
    analyzer.open_gallery(path).close()
    store = Gallery(path, analyzer.recognizer)
    store.read_only = True  # what a read-only file or mount makes of it
    s = site(gallery=store)
    photo = (media_dir / "face_recognition/obama.jpg").read_bytes()
    kind, form = multipart({"name": "Someone"}, {"files": ("a.jpg", photo)})
    _, one = multipart({}, {"file": ("a.jpg", photo)})
    for method, url, body in (
        ("POST", "/api/people", form),
        ("POST", "/api/v1/recognition/faces?subject=Someone", one),
    ):
        code, headers, answer = s.request(method, url, {"Content-Type": kind}, body)
        assert code == 409, (url, code, answer)
        assert str(tmp_path).encode() not in answer and b"private folder" not in answer
        assert b"gallery.db is read-only" in answer, answer
        assert int(headers["content-length"]) == len(answer)


def test_paths_are_taken_out_of_texts() -> None:
    home = os.path.expanduser("~")
    cases = {
        f'{{"detail":"gallery {home}/my photos/g.db is busy: try again"}}': (
            '{"detail":"gallery g.db is busy: try again"}'
        ),
        "cannot read /tmp/x/a b/c.jpg (broken)": "cannot read c.jpg (broken)",
        "see /api/people and /health": "see /api/people and /health",
        "'/usr/lib/x.so', /etc/passwd.": "'x.so', passwd.",
        "relative/path stays": "relative/path stays",
    }
    for text, shown in cases.items():
        assert web.without_paths(text.encode()) == shown.encode(), text


def test_sample_sources_show_only_the_file_name(site, analyzer: FaceAnalyzer, media_dir: Path):
    s = site()
    photo = media_dir / "face_recognition/obama.jpg"
    enroll_images(Recognition(analyzer, s.gallery), "Barack Obama", [photo])
    pid = s.gallery.person("Barack Obama").id  # people are addressed by id
    code, _, body = s.request("GET", f"/api/people/{pid}/samples")
    assert code == 200
    assert [x["source"] for x in json.loads(body)] == ["obama.jpg"]
    assert str(photo.parent).encode() not in body


# -- huge uploads ----------------------------------------------------------------------------

_SERVER = """
import sys
from pathlib import Path
from streamrec import FaceAnalyzer, load_config
from streamrec.config import HttpConfig
from streamrec.service import api
from streamrec.service.http import WebServer
from streamrec.service.metrics import Metrics
from streamrec.service.status import LiveStatus
from streamrec.recognition import Recognition

cfg = load_config(None, {"models.detector": "det_500m.onnx",
                         "models.recognizer": "mobilefacenet_128d.onnx", "models.download": False})
analyzer = FaceAnalyzer.from_config(cfg)
status = LiveStatus()
server = WebServer(status, Metrics(), "127.0.0.1", 0, None, HttpConfig(port=0))
recognition = Recognition(analyzer, analyzer.open_gallery(Path(sys.argv[1])))
api.mount(server.app, api.FaceLibrary(recognition, status))
server.start()
print(server.port, flush=True)
sys.stdin.read()
server.stop()
"""


def _peak(pid: int) -> int:
    """The process's peak resident memory (bytes) since its last reset."""
    with open(f"/proc/{pid}/status") as f:
        line = next(x for x in f if x.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024


def test_a_huge_upload_costs_at_most_100_mb(models_dir: Path, media_dir: Path, tmp_path: Path):
    """7071x7071 uploads (JPEG, progressive JPEG, PNG, WebP: each small as a file) raise a
    server's peak memory by less than 100 MB: decoded reduced, or refused from the header."""
    psutil = pytest.importorskip("psutil")
    if not os.access("/proc/self/clear_refs", os.W_OK):
        pytest.skip("/proc/PID/clear_refs (peak memory reset) is not available")
    side = 7071
    image = np.full((side, side, 3), 120, np.uint8)
    face = cv2.imread(str(media_dir / "face_recognition/obama.jpg"))
    image[1000 : 1000 + face.shape[0], 1000 : 1000 + face.shape[1]] = face
    uploads = {
        "jpeg": cv2.imencode(".jpg", image)[1].tobytes(),
        "progressive": cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])[1].tobytes(),
        "png": cv2.imencode(".png", image)[1].tobytes(),
        "webp": cv2.imencode(".webp", image)[1].tobytes(),
    }
    del image
    env = {**os.environ, "STREAMREC_MODELS": str(models_dir)}
    server = subprocess.Popen(
        [sys.executable, "-c", _SERVER, str(tmp_path / "gallery.db")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        port = int(server.stdout.readline())

        def recognize(name: str, data: bytes) -> tuple[int, bytes]:
            kind, body = multipart({}, {"file": (name, data)})
            code, _, answer = send(port, "POST", "/api/recognize", {"Content-Type": kind}, body)
            return code, answer

        small = (media_dir / "face_recognition/obama.jpg").read_bytes()
        assert recognize("warm-up.jpg", small)[0] == 200  # models and code paths loaded
        process = psutil.Process(server.pid)
        for name, data in uploads.items():
            assert len(data) < HttpConfig().max_body, name
            with open(f"/proc/{server.pid}/clear_refs", "w") as f:
                f.write("5")  # the peak starts again from now
            before = process.memory_info().rss
            code, answer = recognize(name, data)
            grown = (_peak(server.pid) - before) / 2**20
            print(f"{name}: {len(data) >> 10} KiB, HTTP {code}, peak +{grown:.0f} MB")
            assert code in (200, 400), (name, code, answer)
            if code == 200:
                assert len(json.loads(answer)["faces"]) == 1, name
            else:
                assert b"image too large" in answer, answer
            assert grown < 100, f"{name}: the peak memory grew by {grown:.0f} MB"
    finally:
        server.stdin.close()
        server.wait(timeout=60)
