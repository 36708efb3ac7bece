"""The daemon's HTTP endpoint: health, Prometheus metrics and the live view.

Routes (all GET):

* ``/``                      live view page (``streamrec/web/index.html``)
* ``/health``                JSON ``{"ok", "time", "cameras": {name: {state, ok, fps,
                             last_frame_age, counters}}}``; status 200 when ok, else 503
* ``/metrics``               Prometheus text exposition
* ``/api/recent?n=20``       JSON list of recent recognitions, newest first
* ``/stream/<camera>.mjpg``  annotated frames as ``multipart/x-mixed-replace`` MJPEG

It binds 127.0.0.1 unless told otherwise and refuses a non-loopback address without a token.
With a token every route needs ``Authorization: Bearer <token>`` or ``?token=<token>`` (an
``<img>`` MJPEG stream cannot send headers; the page forwards its own ``?token=``).
"""

from __future__ import annotations

import contextlib
import functools
import hmac
import ipaddress
import json
import logging
import re
import select
import socket
import sys
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any, cast
from urllib.parse import parse_qs, unquote, urlsplit

import cv2
import numpy as np

from streamrec.errors import ConfigError
from streamrec.service.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from streamrec.service.metrics import Metrics
from streamrec.service.status import LiveStatus

log = logging.getLogger(__name__)

_BOUNDARY = "streamrecframe"
_TOKEN_RE = re.compile(r"token=[^&\s]*")  # redacted from the request log
_POLL = 0.5  # seconds between stop/disconnect checks of an idle MJPEG stream
_SEND_TIMEOUT = 10.0  # a client that stops reading is dropped after this
_KEEPALIVE = 1.0  # a silent camera's last frame (or placeholder) is repeated this often


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class WebServer:
    """Serves ``status`` and ``metrics`` over HTTP from a daemon thread."""

    def __init__(
        self,
        status: LiveStatus,
        metrics: Metrics,
        host: str = "127.0.0.1",
        port: int = 8080,
        token: str | None = None,
    ) -> None:
        if not token and not is_loopback(host):
            raise ConfigError(
                f"http.host={host or '0.0.0.0'} requires http.token: the live view and metrics "
                "would be open to the network; set http.token or bind http.host=127.0.0.1"
            )
        self.status = status
        self.metrics = metrics
        self.host = host
        self._port = port
        self._token = token.encode() if token else None
        self._page = (resources.files("streamrec.service") / "web" / "index.html").read_bytes()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._streams: set[socket.socket] = set()
        self._streams_cond = threading.Condition()

    @property
    def port(self) -> int:
        """The bound port (the real one after ``start()`` with ``port=0``)."""
        return self._server.server_address[1] if self._server else self._port

    @property
    def active_streams(self) -> int:
        with self._streams_cond:
            return len(self._streams)

    def start(self) -> None:
        try:
            self._server = _Server((self.host, self._port), _Handler, self)
        except OSError as exc:
            raise ConfigError(
                f"http: cannot listen on {self.host}:{self._port}: {exc.strerror or exc}"
            ) from None
        self._stopping.clear()
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="streamrec-http", daemon=True
        )
        self._thread.start()
        log.info("HTTP server on http://%s:%d/", self.host, self.port)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving and end open MJPEG streams (waits up to ``timeout`` for them)."""
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        self.status.wake()
        server.shutdown()
        with self._streams_cond:
            for conn in self._streams:  # unblocks a send to a client that stopped reading
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
            self._streams_cond.wait_for(lambda: not self._streams, timeout)
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout)

    def __enter__(self) -> WebServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def authorized(self, header: str | None, query_token: str | None) -> bool:
        if self._token is None:
            return True
        offered = query_token
        if header and header[:7].lower() == "bearer ":
            offered = header[7:].strip()
        return offered is not None and hmac.compare_digest(offered.encode(), self._token)

    def _add_stream(self, conn: socket.socket) -> None:
        with self._streams_cond:
            self._streams.add(conn)

    def _remove_stream(self, conn: socket.socket) -> None:
        with self._streams_cond:
            self._streams.discard(conn)
            self._streams_cond.notify_all()


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[_Handler], app: WebServer):
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.app = app
        super().__init__(address, handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            log.debug("HTTP client %s dropped", client_address)
        else:
            log.exception("HTTP request from %s failed", client_address)


class _Handler(BaseHTTPRequestHandler):
    server_version = "streamrec"
    timeout = _SEND_TIMEOUT

    @property
    def app(self) -> WebServer:
        return cast(_Server, self.server).app

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), _TOKEN_RE.sub("token=***", format % args))

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        if not self.app.authorized(self.headers.get("Authorization"), _first(query, "token")):
            self._send(HTTPStatus.UNAUTHORIZED, b"unauthorized\n", "text/plain", bearer=True)
            return
        path = url.path
        if path in ("/", "/index.html"):
            self._send(HTTPStatus.OK, self.app._page, "text/html; charset=utf-8")
        elif path == "/health":
            cameras = self.app.status.snapshot()
            ok = all(cam["ok"] for cam in cameras.values())
            code = HTTPStatus.OK if ok else HTTPStatus.SERVICE_UNAVAILABLE
            self._json(code, {"ok": ok, "cameras": cameras})
        elif path == "/metrics":
            self._send(HTTPStatus.OK, self.app.metrics.text(), METRICS_CONTENT_TYPE)
        elif path == "/api/recent":
            n = _first(query, "n")
            self._json(HTTPStatus.OK, self.app.status.recent(int(n) if n and n.isdigit() else 20))
        elif path.startswith("/stream/") and path.endswith(".mjpg"):
            camera = unquote(path[len("/stream/") : -len(".mjpg")])
            if camera not in self.app.status.cameras():
                self._send(HTTPStatus.NOT_FOUND, b"unknown camera\n", "text/plain")
            else:
                self._stream(camera)
        else:
            self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain")

    def _send(self, code: int, body: bytes, ctype: str, bearer: bool = False) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        if bearer:
            self.send_header("WWW-Authenticate", 'Bearer realm="streamrec"')
        self.end_headers()
        self.wfile.write(body)

    def _json(self, code: int, data: Any) -> None:
        self._send(code, json.dumps(data).encode(), "application/json")

    def _stream(self, camera: str) -> None:
        app, conn = self.app, self.connection
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={_BOUNDARY}")
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        app._add_stream(conn)
        version, jpeg, sent = 0, _placeholder_jpeg(), float("-inf")
        try:
            with app.status.viewer(camera):
                while not app._stopping.is_set():
                    got = app.status.wait_frame(camera, version, _POLL)
                    if got is not None:
                        version, jpeg = got
                    elif self._client_gone():
                        break
                    elif time.monotonic() - sent < _KEEPALIVE:
                        continue
                    self._write_part(jpeg)
                    sent = time.monotonic()
        except OSError:  # client went away mid-write, or stop() shut the socket
            pass
        finally:
            self.close_connection = True
            app._remove_stream(conn)

    def _write_part(self, jpeg: bytes) -> None:
        head = f"--{_BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n"
        self.wfile.write(head.encode() + jpeg + b"\r\n")

    def _client_gone(self) -> bool:
        """True when the peer closed the connection (readable with nothing to read)."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True


@functools.cache
def _placeholder_jpeg() -> bytes:
    """Shown until a camera's first frame, so the tile is not blank (and the image loads)."""
    img = np.full((360, 640, 3), 32, np.uint8)
    cv2.putText(img, "waiting for video", (170, 190), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (160,) * 3, 2)
    return cv2.imencode(".jpg", img)[1].tobytes()


def _first(query: dict[str, list[str]], key: str) -> str | None:
    values = query.get(key)
    return values[0] if values else None
