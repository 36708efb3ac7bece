"""The daemon's HTTP server: health, Prometheus metrics, the live view and its API.

FastAPI on uvicorn, run from a background thread of the daemon. Routes (all GET):

* ``/`` (``/index.html``)    live view page (``streamrec/service/web/index.html``)
* ``/health``                JSON ``{"ok", "time", "cameras": {name: {state, ok, fps,
                             last_frame_age, counters}}, "sinks": {name: {ok, errors, ...}},
                             "models": [...]}``; status 200 when ok, else 503
* ``/metrics``               Prometheus text exposition
* ``/api/recent?n=20``       JSON list of recent recognitions, newest first (``n`` 0..1000)
                             with their faces' URLs (``/api/recent/<id>.jpg``, :mod:`.api`)
* ``/stream/<camera>.mjpg``  annotated frames as ``multipart/x-mixed-replace`` MJPEG
* ``/openapi.json``          the OpenAPI description (no Swagger UI: it loads third-party
                             scripts, which would see a ``?token=`` in the page address)

Access: binds 127.0.0.1 unless told otherwise and refuses a non-loopback address without a
token. With a token every route needs ``Authorization: Bearer <token>``, ``x-api-key: <token>``
or ``?token=<token>`` (an ``<img>`` MJPEG stream cannot send headers; the page forwards its own
``?token=``). Requests whose ``Host`` is not a loopback name, the bound address or one of
``http.allowed_hosts`` are refused (DNS rebinding).

Limits (``http:`` keys): ``max_connections`` open connections (past it the oldest connection
still waiting for its request is closed, so idle sockets cannot lock clients out), the request
headers within ``header_timeout`` s and the body within ``body_timeout`` s, bodies up to
``max_body`` bytes (413), ``max_streams`` MJPEG streams (503), and a client that stops reading
is dropped after ``SEND_TIMEOUT`` s. uvicorn has no connection cap or request deadline, so they
live in a subclass of its HTTP/1.1 protocol (:class:`_Connection`).
"""

from __future__ import annotations

import asyncio
import base64
import errno
import functools
import hashlib
import hmac
import ipaddress
import logging
import math
import os
import re
import socket
import threading
import time
from collections.abc import AsyncIterator, Sequence
from importlib import resources
from typing import Annotated, Any
from urllib.parse import parse_qs

import anyio.to_thread
import cv2
import h11
import numpy as np
import uvicorn
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from streamrec import __version__
from streamrec.config import HttpConfig
from streamrec.errors import ConfigError
from streamrec.service.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from streamrec.service.metrics import Metrics
from streamrec.service.status import LiveStatus

log = logging.getLogger(__name__)

SEND_TIMEOUT = 10.0
"""Seconds a client may leave the server's send buffer full before it is dropped."""

_BOUNDARY = "streamrecframe"
_POLL = 0.5  # seconds between stop checks of an MJPEG stream waiting for a frame
_KEEPALIVE = 1.0  # a silent camera's last frame (or placeholder) is repeated this often
_RECENT_MAX = 1000
_STOP_GRACE = 2  # seconds open requests get at stop() before they are cancelled
_BACKLOG = 128
_LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
_WILDCARD_BINDS = ("", "0.0.0.0", "::")
_HOST_HEADER = re.compile(r"(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.-]+)(?::\d{1,5})?")
_HOST_PATTERN = re.compile(r"\*|(\*\.)?[a-z0-9_-]+(\.[a-z0-9_-]+)*|[0-9a-f:.]+")
_SECURITY_HEADERS = (
    ("cache-control", "no-store"),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),  # the page address may carry ?token=
    ("x-frame-options", "DENY"),
    ("cross-origin-resource-policy", "same-origin"),
    ("content-security-policy", "default-src 'none'; frame-ancestors 'none'"),
)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class WebServer:
    """Serves ``status`` and ``metrics`` over HTTP from a daemon thread.

    ``config`` supplies the limits and ``allowed_hosts`` (defaults: :class:`HttpConfig`'s);
    ``host``, ``port`` and ``token`` are given on their own so that callers without a config
    (tests, embedding) can pass just those.
    """

    def __init__(
        self,
        status: LiveStatus,
        metrics: Metrics,
        host: str = "127.0.0.1",
        port: int = 8080,
        token: str | None = None,
        config: HttpConfig | None = None,
    ) -> None:
        if not token and not is_loopback(host):
            raise ConfigError(
                f"http.host={host or '0.0.0.0'} requires http.token: the live view and metrics "
                "would be open to the network; set http.token or bind http.host=127.0.0.1"
            )
        self.config = config if config is not None else HttpConfig()
        self.status = status
        self.metrics = metrics
        self.host = host
        self._port = port
        self._token = token.encode() if token else None
        self._hosts = _HostPolicy(host, self.config.allowed_hosts, has_token=bool(token))
        page = (resources.files("streamrec.service") / "web" / "index.html").read_bytes()
        self._page = page
        self._page_csp = page_csp(page)
        self.app = self._build_app()
        """The FastAPI application; more routes may be added to it before :meth:`start`."""
        self._server: uvicorn.Server | None = None
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._streams = 0  # changed on the event loop only

    @classmethod
    def from_config(cls, status: LiveStatus, metrics: Metrics, cfg: HttpConfig) -> WebServer:
        return cls(status, metrics, cfg.host, cfg.port, cfg.token, cfg)

    @property
    def port(self) -> int:
        """The bound port (the real one after ``start()`` with ``port=0``)."""
        return self._sock.getsockname()[1] if self._sock is not None else self._port

    @property
    def active_streams(self) -> int:
        return self._streams

    # -- life cycle ----------------------------------------------------------------------

    def start(self) -> None:
        """Bind and serve; a busy port or a bad host is a one-line :class:`ConfigError`."""
        self._sock = self._listen()
        cfg = self.config
        limits = _Limits(cfg.max_connections, cfg.header_timeout, cfg.body_timeout)
        server = uvicorn.Server(
            uvicorn.Config(
                self.app,
                http=functools.partial(_Connection, limits=limits),  # type: ignore[arg-type]
                ws="none",
                lifespan="off",
                log_config=None,  # the daemon's logging; uvicorn's access log would show ?token=
                access_log=False,
                proxy_headers=False,
                server_header=False,
                backlog=_BACKLOG,
                timeout_keep_alive=max(1, math.ceil(cfg.header_timeout)),
                timeout_graceful_shutdown=_STOP_GRACE,
            )
        )
        uvicorn_log = logging.getLogger("uvicorn.error")
        if uvicorn_log.level == logging.NOTSET:  # its start/stop chatter is not ours to show
            uvicorn_log.setLevel(logging.WARNING)
        self._stopping.clear()
        self._server = server
        self._thread = threading.Thread(
            target=asyncio.run, args=(self._serve(server, self._sock),), name="streamrec-http"
        )
        self._thread.daemon = True
        self._thread.start()
        deadline = time.monotonic() + 10.0
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise ConfigError("http: the server did not start; see the log above")
            time.sleep(0.01)
        log.info("HTTP server on http://%s/", _netloc(self.host or "0.0.0.0", self.port))

    def _listen(self) -> socket.socket:
        where = _netloc(self.host or "0.0.0.0", self._port)
        try:
            family, _, _, _, address = socket.getaddrinfo(
                self.host or None, self._port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )[0]
            return socket.create_server(address, family=family, backlog=_BACKLOG)
        except OSError as exc:
            fix = (
                "set http.port to a free port or stop the program using it"
                if exc.errno == errno.EADDRINUSE
                else "set http.host to an address of this machine (127.0.0.1, 0.0.0.0, ...)"
            )
            # create_server() words its errors with the address again: keep the cause only
            gai = isinstance(exc, socket.gaierror)
            reason = os.strerror(exc.errno) if exc.errno and not gai else exc.strerror or exc
            raise ConfigError(f"http: cannot listen on {where}: {reason}; {fix}") from None

    async def _serve(self, server: uvicorn.Server, sock: socket.socket) -> None:
        await server.serve(sockets=[sock])
        for conn in list(server.server_state.connections):  # past the grace: cut them
            conn.transport.abort()
        await asyncio.sleep(0)  # let their connection_lost callbacks run

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving and end open MJPEG streams; returns within about ``timeout`` s."""
        server, thread, sock = self._server, self._thread, self._sock
        self._server = self._thread = self._sock = None
        if server is not None and thread is not None:
            self._stopping.set()
            self.status.wake()
            server.should_exit = True
            thread.join(timeout)
            if thread.is_alive():
                server.force_exit = True
                thread.join(1.0)
        if sock is not None:  # uvicorn closes it only if it got as far as serving
            sock.close()

    def __enter__(self) -> WebServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the application -----------------------------------------------------------------

    def _build_app(self) -> FastAPI:
        app = FastAPI(
            title="streamrec",
            version=__version__,
            description="Live state, metrics and recognitions of a streamrec daemon.",
            docs_url=None,
            redoc_url=None,
            max_body_size=self.config.max_body,
        )
        app.add_middleware(_Gate, web=self)
        status, metrics = self.status, self.metrics

        @app.exception_handler(RequestValidationError)
        async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
            """422 naming what is wrong, without the input: it may be an uploaded photo (whose
            bytes FastAPI cannot even put into JSON) or a secret."""
            errors = [
                {"type": e["type"], "loc": list(e["loc"]), "msg": e["msg"]} for e in exc.errors()
            ]
            return JSONResponse({"detail": errors}, status_code=422)

        @app.get("/", response_class=HTMLResponse, include_in_schema=False)
        @app.get("/index.html", response_class=HTMLResponse, include_in_schema=False)
        def page() -> Response:
            csp = {"content-security-policy": self._page_csp}
            return HTMLResponse(self._page, headers=csp)

        @app.get("/health", responses={503: {"description": "a camera or sink is not ok"}})
        def health() -> JSONResponse:
            """Per camera: state, ok, fps, last frame age (s), counters; per event sink: ok and
            its errors; how each model runs (provider, precision)."""
            body = status.health()
            return JSONResponse(body, status_code=200 if body["ok"] else 503)

        @app.get("/metrics", response_class=Response)
        def prometheus() -> Response:
            """Prometheus text exposition."""
            return Response(metrics.text(), media_type=METRICS_CONTENT_TYPE)

        @app.get("/api/recent")
        def recent(
            n: Annotated[int, Query(ge=0, le=_RECENT_MAX, description="how many")] = 20,
        ) -> list[dict[str, Any]]:
            """Recent recognitions, newest first: ``id``, ``kind`` (``identified`` or ``unknown``),
            ``camera``, ``name`` and ``score`` (identified), ``label`` (unknown), ``track_id``,
            ``time`` and ``crop`` (URL of the track's face, or null)."""
            return status.recent(n)

        @app.get(
            "/api/recent/{recent_id}.jpg",
            response_class=Response,
            responses={404: {"description": "expired or without a face"}},
        )
        def recent_face(recent_id: int) -> Response:
            """The face of a recent recognition (while it is among the recent ones)."""
            item = status.recognition(recent_id)
            if item is None or item.crop is None:
                return JSONResponse(
                    {"detail": "no such recent recognition with a face (it may have expired)"},
                    status_code=404,
                )
            _, buf = cv2.imencode(".jpg", item.crop, [cv2.IMWRITE_JPEG_QUALITY, 90])
            return Response(buf.tobytes(), media_type="image/jpeg")

        @app.get(
            "/stream/{camera}.mjpg",
            response_class=StreamingResponse,
            responses={404: {"description": "unknown camera"}, 503: {"description": "too many"}},
        )
        async def stream(camera: str) -> Response:
            """The camera's annotated frames as MJPEG (``multipart/x-mixed-replace``)."""
            if camera not in status.cameras():
                return JSONResponse({"detail": "unknown camera"}, status_code=404)
            return _MjpegResponse(self, camera)

        def openapi() -> dict[str, Any]:
            if app.openapi_schema is None:
                schema = _default_openapi()
                schemes = {
                    "bearer": {"type": "http", "scheme": "bearer"},
                    "apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"},
                    "query": {"type": "apiKey", "in": "query", "name": "token"},
                }
                schema.setdefault("components", {})["securitySchemes"] = schemes
                schema["security"] = [{name: []} for name in schemes]
                app.openapi_schema = schema
            return app.openapi_schema

        _default_openapi = app.openapi
        app.openapi = openapi  # type: ignore[method-assign]
        return app

    def authorized(self, headers: Headers, query: bytes) -> bool:
        """Whether the request offers the token (header, ``x-api-key`` or ``?token=``)."""
        if self._token is None:
            return True
        offered: list[bytes] = []
        bearer = headers.get("authorization", "")
        if bearer[:7].lower() == "bearer ":
            offered.append(bearer[7:].strip().encode("latin-1"))
        if "x-api-key" in headers:
            offered.append(headers["x-api-key"].strip().encode("latin-1"))
        offered += [t.encode() for t in parse_qs(query.decode("latin-1")).get("token", [])[:1]]
        return any(hmac.compare_digest(t, self._token) for t in offered)

    async def _mjpeg_parts(self, camera: str) -> AsyncIterator[bytes]:
        status = self.status
        version, jpeg, sent = 0, _placeholder_jpeg(), float("-inf")
        with status.viewer(camera):
            while not self._stopping.is_set():
                got = await anyio.to_thread.run_sync(status.wait_frame, camera, version, _POLL)
                if got is not None:
                    version, jpeg = got
                elif time.monotonic() - sent < _KEEPALIVE:
                    continue
                head = f"--{_BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}"
                yield head.encode() + b"\r\n\r\n" + jpeg + b"\r\n"
                sent = time.monotonic()


class _MjpegResponse(StreamingResponse):
    """One camera's MJPEG stream; over ``max_streams`` open ones it answers 503 instead."""

    def __init__(self, web: WebServer, camera: str) -> None:
        self._web = web
        parts = web._mjpeg_parts(camera)
        super().__init__(parts, media_type=f"multipart/x-mixed-replace; boundary={_BOUNDARY}")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        web = self._web
        if web._streams >= web.config.max_streams:
            await self.body_iterator.aclose()  # type: ignore[attr-defined]
            busy = JSONResponse(
                {"detail": f"{web._streams} live streams open (http.max_streams); retry later"},
                status_code=503,
                headers={"retry-after": "10"},
            )
            await busy(scope, receive, send)
            return
        web._streams += 1
        try:
            await super().__call__(scope, receive, send)
        finally:
            web._streams -= 1


class _Gate:
    """ASGI middleware before every route: Host allow-list and token; adds the security
    headers to every response (refusals included). Bodies are limited by FastAPI's
    ``max_body_size`` (413)."""

    def __init__(self, app: ASGIApp, web: WebServer) -> None:
        self.app = app
        self.web = web

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        code = 0

        async def send_with_headers(message: Message) -> None:
            nonlocal code
            if message["type"] == "http.response.start":
                code = message["status"]
                headers = MutableHeaders(scope=message)
                for name, value in _SECURITY_HEADERS:
                    headers.setdefault(name, value)
            await send(message)

        refusal = self._refusal(scope)
        if refusal is not None:
            await refusal(scope, receive, send_with_headers)
        else:
            await self.app(scope, receive, send_with_headers)
        # the route's pattern, never the path (names of people) nor the query (?token=)
        log.debug("%s %s %d", scope["method"], getattr(scope.get("route"), "path", "-"), code)

    def _refusal(self, scope: Scope) -> Response | None:
        web = self.web
        headers = Headers(scope=scope)
        if not web._hosts.allows(headers.get("host")):
            detail = "unknown Host header: add the server's name to http.allowed_hosts"
            return JSONResponse({"detail": detail}, status_code=421)
        if not web.authorized(headers, scope["query_string"]):
            detail = "unauthorized: send Authorization: Bearer <token>, x-api-key or ?token="
            return JSONResponse(
                {"detail": detail},
                status_code=401,
                headers={"www-authenticate": 'Bearer realm="streamrec"'},
            )
        return None


class _HostPolicy:
    """Which ``Host`` headers are served: loopback names, the bound address, the configured
    names (``name``, ``*.suffix``, ``*``) and, on a wildcard bind, any IP address and this
    machine's name. An IP-literal Host cannot come from DNS rebinding; an unknown name can."""

    def __init__(self, bind: str, allowed: Sequence[str], has_token: bool) -> None:
        names = {*_LOOPBACK_NAMES}
        self.wildcard = bind in _WILDCARD_BINDS
        names.add(socket.gethostname().lower() if self.wildcard else bind.lower())
        self.any = False
        self.suffixes: list[str] = []
        for entry in allowed:
            name = entry.strip().lower().rstrip(".")
            if not _HOST_PATTERN.fullmatch(name):
                raise ConfigError(
                    f"http.allowed_hosts: {entry!r} is not a host name; use names like nvr.lan, "
                    "an IP address, *.lan, or *"
                )
            if name == "*":
                if not has_token:
                    raise ConfigError(
                        "http.allowed_hosts: '*' (any Host) needs http.token, or web pages "
                        "could reach the server through DNS rebinding; list the names instead"
                    )
                self.any = True
            elif name.startswith("*."):
                self.suffixes.append(name[1:])
            else:
                names.add(name)
        self.names = frozenset(names)

    def allows(self, header: str | None) -> bool:
        match = _HOST_HEADER.fullmatch(header or "")
        if match is None:
            return False
        if self.any:
            return True
        name = match.group(1).strip("[]").lower().rstrip(".")
        if name in self.names or any(name.endswith(s) for s in self.suffixes):
            return True
        if not self.wildcard:
            return False
        try:
            ipaddress.ip_address(name)
            return True
        except ValueError:
            return False


class _Limits:
    """What every connection of one server shares: the caps and who is waiting."""

    def __init__(self, max_connections: int, header_timeout: float, body_timeout: float) -> None:
        self.max_connections = max_connections
        self.header_timeout = header_timeout
        self.body_timeout = body_timeout
        self.open: set[_Connection] = set()
        self.waiting: dict[_Connection, None] = {}  # owe their request's headers, oldest first


class _Connection(H11Protocol):
    """uvicorn's HTTP/1.1 protocol plus what uvicorn leaves out.

    * a connection cap: past ``max_connections`` the oldest connection still waiting for its
      request's headers is closed (or the new one, when all are busy);
    * deadlines on what the client owes, counted from when it started to owe it (trickling
      bytes does not extend them): the headers (also between keep-alive requests), the body;
    * a send deadline: a client that leaves the send buffer full for ``SEND_TIMEOUT`` s is cut.
    """

    def __init__(self, *args: Any, limits: _Limits, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._limits = limits
        self._phase = ""
        self._deadline: asyncio.TimerHandle | None = None
        self._send_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        limits = self._limits
        if len(limits.open) >= limits.max_connections:
            oldest = next(iter(limits.waiting), None)
            if oldest is None:
                log.warning("HTTP: all %d connections busy, refusing one", limits.max_connections)
                transport.abort()
                return
            log.debug("HTTP: connection cap reached, closing the oldest idle connection")
            oldest._drop()
        limits.open.add(self)
        self._track()

    def connection_lost(self, exc: Exception | None) -> None:
        self._forget()
        super().connection_lost(exc)

    def handle_events(self) -> None:
        super().handle_events()
        self._track()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._track()

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._send_deadline is None:
            self._send_deadline = self.loop.call_later(SEND_TIMEOUT, self._drop)

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._send_deadline is not None:
            self._send_deadline.cancel()
            self._send_deadline = None

    def shutdown(self) -> None:
        super().shutdown()
        if self.flow.write_paused:  # a client that does not read would hold stop() up
            self._drop()

    def _track(self) -> None:
        """Follow the client's side of the exchange and arm the deadline of what it owes."""
        limits = self._limits
        if self.transport.is_closing() or self not in limits.open:
            return
        state = self.conn.their_state
        phase = "head" if state is h11.IDLE else "body" if state is h11.SEND_BODY else "done"
        if phase == self._phase:
            return
        self._phase = phase
        limits.waiting.pop(self, None)
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        if phase == "head":
            limits.waiting[self] = None
            self._deadline = self.loop.call_later(limits.header_timeout, self._drop)
        elif phase == "body":
            self._deadline = self.loop.call_later(limits.body_timeout, self._drop)

    def _drop(self) -> None:
        self._forget()
        self.transport.abort()

    def _forget(self) -> None:
        self._limits.open.discard(self)
        self._limits.waiting.pop(self, None)
        for timer in (self._deadline, self._send_deadline):
            if timer is not None:
                timer.cancel()
        self._deadline = self._send_deadline = None


def page_csp(page: bytes) -> str:
    """A Content-Security-Policy allowing exactly the page's own inline script and style."""

    def hashes(tag: bytes) -> str:
        blocks = re.findall(rb"<%s[^>]*>(.*?)</%s>" % (tag, tag), page, re.S)
        digests = (base64.b64encode(hashlib.sha256(b).digest()).decode() for b in blocks)
        return " ".join(f"'sha256-{d}'" for d in digests) or "'none'"

    return (
        f"default-src 'none'; script-src {hashes(b'script')}; style-src {hashes(b'style')}; "
        "img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    )


def _netloc(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@functools.cache
def _placeholder_jpeg() -> bytes:
    """Shown until a camera's first frame, so the tile is not blank (and the image loads)."""
    img = np.full((360, 640, 3), 32, np.uint8)
    cv2.putText(img, "waiting for video", (170, 190), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (160,) * 3, 2)
    return cv2.imencode(".jpg", img)[1].tobytes()
