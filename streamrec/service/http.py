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
token of at least ``MIN_TOKEN`` characters. With a token every route needs ``Authorization:
Bearer <token>``, ``x-api-key: <token>`` or ``?token=<token>`` (an ``<img>`` MJPEG stream cannot
send headers; the page forwards its own ``?token=``); a client address that offers wrong tokens
is throttled (429, :class:`_Throttle`). Requests whose ``Host`` is not a loopback name, the
bound address or one of ``http.allowed_hosts`` are refused (DNS rebinding), and so are
state-changing requests from a web page of another site (``Origin``/``Sec-Fetch-Site``, unless
in ``http.allowed_origins``). A refusal closes the connection without reading the body.

Limits (``http:`` keys): ``max_connections`` open connections (past it the one that has owed
its request the longest, idle or slow, else the oldest busy one is closed: a new client is
always served), the request headers
within ``header_timeout`` s and the body within ``body_timeout`` s, bodies up to ``max_body``
bytes (413), ``max_streams`` MJPEG streams (503), and a client that stops reading is dropped
after ``SEND_TIMEOUT`` s. uvicorn has no connection cap or request deadline, so they live in a
subclass of its HTTP/1.1 protocol (:class:`_Connection`). Error answers never carry a path of
this machine (:func:`without_paths`).
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
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Sequence
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
from starlette.convertors import Convertor, register_url_convertor
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from streamrec.config import HttpConfig
from streamrec.errors import ConfigError
from streamrec.logs import Burst
from streamrec.service.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from streamrec.service.metrics import Metrics
from streamrec.service.status import LiveStatus
from streamrec.version import __version__

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
MIN_TOKEN = 16
"""Characters a token needs when the server is reachable from other machines."""
_SAFE_METHODS = ("GET", "HEAD", "OPTIONS")  # they change nothing: cross-site is harmless
_ERROR_BODY_MAX = 65536  # error answers up to this size are searched for server paths
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


class RowId(Convertor[int]):
    """``{id:rowid}`` in a route: an id of at most 18 digits (SQLite's ids stop at 2**63-1,
    19 digits); anything else matches no route, so it is a 404, never a 500."""

    regex = "[0-9]{1,18}"

    def convert(self, value: str) -> int:
        return int(value)

    def to_string(self, value: int) -> str:
        return str(value)


register_url_convertor("rowid", RowId())


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
        if not is_loopback(host) and len(token or "") < MIN_TOKEN:
            raise ConfigError(
                f"http.host={host or '0.0.0.0'} requires http.token of at least {MIN_TOKEN} "
                f"characters{' (it has ' + str(len(token)) + ')' if token else ''}: the live "
                "view, the face library and the metrics would be open to the network; set "
                "http.token (e.g. to the output of 'openssl rand -hex 16') or bind "
                "http.host=127.0.0.1"
            )
        self.config = config if config is not None else HttpConfig()
        self.status = status
        self.metrics = metrics
        self.host = host
        self._port = port
        self._token = token.encode() if token else None
        self._hosts = _HostPolicy(host, self.config.allowed_hosts, has_token=bool(token))
        self._origins = _OriginPolicy(self.config.allowed_origins)
        self._throttle = _Throttle()
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
            "/api/recent/{recent_id:rowid}.jpg",
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

    def offered_tokens(self, headers: Headers, query: bytes) -> list[bytes]:
        """The tokens a request offers (``Authorization: Bearer``, ``x-api-key``, ``?token=``)."""
        offered: list[bytes] = []
        bearer = headers.get("authorization", "")
        if bearer[:7].lower() == "bearer ":
            offered.append(bearer[7:].strip().encode("latin-1"))
        if "x-api-key" in headers:
            offered.append(headers["x-api-key"].strip().encode("latin-1"))
        offered += [t.encode() for t in parse_qs(query.decode("latin-1")).get("token", [])[:1]]
        return offered

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


#: answers a refused key in a route family's own shape: kind is "missing" (no key offered),
#: "wrong" or "throttled" (too many wrong keys from the address)
KeyRefusal = Callable[[str], Response]


def key_refusals(app: FastAPI) -> dict[str, KeyRefusal]:
    """The app's key refusals by path prefix (CompreFace's routes register theirs); the
    default is a 401 (429 when throttled) with ``{"detail"}``."""
    found: dict[str, KeyRefusal] | None = getattr(app.state, "key_refusals", None)
    if found is None:
        found = {}
        app.state.key_refusals = found
    return found


class _Gate:
    """ASGI middleware before every route: Host allow-list, cross-site writes, token (with a
    throttle on wrong ones); adds the security headers to every response (refusals included)
    and takes server paths out of error answers. A refusal closes the connection without
    reading the request's body. Bodies are limited by FastAPI's ``max_body_size`` (413)."""

    def __init__(self, app: ASGIApp, web: WebServer) -> None:
        self.app = app
        self.web = web
        self.refused = Burst(log, logging.WARNING)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        code = 0
        held: list[Message] = []  # an error answer, until its body is complete

        async def send_with_headers(message: Message) -> None:
            nonlocal code
            if message["type"] == "http.response.start":
                code = message["status"]
                headers = MutableHeaders(scope=message)
                for name, value in _SECURITY_HEADERS:
                    headers.setdefault(name, value)
                size = headers.get("content-length", "")
                if code >= 400 and size.isdigit() and int(size) <= _ERROR_BODY_MAX:
                    held.append(message)
                    return
            elif held:
                held.append(message)
                if message.get("more_body", False):
                    return
                start, *parts = held
                held.clear()
                body = without_paths(b"".join(p.get("body", b"") for p in parts))
                MutableHeaders(scope=start)["content-length"] = str(len(body))
                await send(start)
                message = {"type": "http.response.body", "body": body, "more_body": False}
            await send(message)

        refusal = self._refusal(scope)
        if refusal is not None:
            refusal.headers["connection"] = "close"  # its body, if any, is never read
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
        if scope["method"] not in _SAFE_METHODS and web._origins.cross_site(headers):
            self.refused.hit("HTTP: refused a cross-site %s request", scope["method"])
            detail = (
                "cross-site request refused: a page of another site may not change anything "
                "here (list its origin in http.allowed_origins to allow it)"
            )
            return JSONResponse({"detail": detail}, status_code=403)
        if web._token is None:
            return None
        client = _client(scope)
        offered = web.offered_tokens(headers, scope["query_string"])
        wait = web._throttle.wait(client) if offered else 0
        if offered and not wait:
            if any(hmac.compare_digest(t, web._token) for t in offered):
                return None
            web._throttle.failed(client)
            self.refused.hit("HTTP: refused a wrong token from %s", client)
        path = str(scope.get("path", ""))
        shape = next((f for p, f in key_refusals(web.app).items() if path.startswith(p)), None)
        if wait:
            detail = "too many wrong tokens from this address: retry later"
            refusal = (
                shape("throttled")
                if shape is not None
                else JSONResponse({"detail": detail}, status_code=429)
            )
            refusal.headers["retry-after"] = str(wait)
            return refusal
        if shape is not None:
            return shape("wrong" if offered else "missing")
        detail = "unauthorized: send Authorization: Bearer <token>, x-api-key or ?token="
        return JSONResponse(
            {"detail": detail},
            status_code=401,
            headers={"www-authenticate": 'Bearer realm="streamrec"'},
        )


def _client(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "?"


class _Throttle:
    """Wrong tokens per client address: ``burst`` at once, then one every ``interval`` s;
    past that every token the client offers is refused unchecked (429) until it may try again.
    The table is bounded: the clients that failed least recently are forgotten first."""

    def __init__(self, burst: int = 10, interval: float = 6.0, size: int = 4096) -> None:
        self.burst, self.interval, self.size = burst, interval, size
        self._clients: OrderedDict[str, tuple[float, float]] = OrderedDict()  # tries, when

    def _tries(self, client: str, now: float) -> float:
        tries, then = self._clients.get(client, (self.burst, now))
        return min(float(self.burst), tries + (now - then) / self.interval)

    def wait(self, client: str) -> int:
        """Seconds until ``client`` may offer a token again (0: now)."""
        if client not in self._clients:
            return 0
        tries = self._tries(client, time.monotonic())
        return 0 if tries >= 1 else math.ceil((1 - tries) * self.interval)

    def failed(self, client: str) -> None:
        now = time.monotonic()
        self._clients[client] = (self._tries(client, now) - 1, now)
        self._clients.move_to_end(client)
        while len(self._clients) > self.size:
            self._clients.popitem(last=False)


class _OriginPolicy:
    """Whether a state-changing request comes from a web page of another site.

    A browser names the page that makes a request in ``Origin`` (and ``Sec-Fetch-Site``);
    other clients (curl, Home Assistant, Double Take) send neither and are not concerned. The
    page's origin must be the server's own (the ``Host`` it was asked for) or one of
    ``http.allowed_origins``; ``Origin: null`` (a sandboxed frame, a file) is refused.
    """

    def __init__(self, allowed: Sequence[str]) -> None:
        self.allowed = frozenset(_origin(a) for a in allowed)

    def cross_site(self, headers: Headers) -> bool:
        origin = headers.get("origin")
        if origin is None:
            return headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none")
        mine = {_origin(f"{scheme}://{headers.get('host', '')}") for scheme in ("http", "https")}
        return _origin(origin) not in self.allowed | mine


def _origin(text: str) -> str:
    """``scheme://host[:port]`` lower-cased, without the scheme's default port."""
    text = text.strip().lower().rstrip("/")
    for default in ("http://", ":80"), ("https://", ":443"):
        if text.startswith(default[0]) and text.endswith(default[1]):
            text = text[: -len(default[1])]
    return text


_ROOT_ENTRIES: frozenset[str] | None = None
_PATH_START = re.compile(rb"(?:(?<=[\s'\"(=\[])|^)/[^\s'\"/]+/")


def without_paths(body: bytes) -> bytes:
    """``body`` with every absolute path of this machine (``/home/...``, ``/var/...``: its first
    folder exists) replaced by its file name: answers never show where the server keeps things.
    A path may hold spaces: it goes on while the next word still has a ``/``."""
    global _ROOT_ENTRIES
    if _ROOT_ENTRIES is None:
        try:
            _ROOT_ENTRIES = frozenset(os.listdir("/"))
        except OSError:
            _ROOT_ENTRIES = frozenset()
    out, pos = [], 0
    for m in _PATH_START.finditer(body):
        if m.start() < pos or m.group()[1:-1].decode("utf-8", "replace") not in _ROOT_ENTRIES:
            continue
        end = m.end()
        while True:
            word = re.match(rb"[^\s'\"]*", body[end:])
            end += word.end() if word else 0
            after = re.match(rb" ([^\s'\"]*/[^\s'\"]*)", body[end:])
            if after is None:
                break
            end += 1
        path = body[m.start() : end]
        trail = re.search(rb"[.,:;)\]]*$", path)
        cut = trail.start() if trail else len(path)
        out += [body[pos : m.start()], path[:cut].rstrip(b"/").rsplit(b"/", 1)[-1], path[cut:]]
        pos = end
    out.append(body[pos:])
    return b"".join(out)


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
    """What every connection of one server shares: the cap, the deadlines, and who waits.

    ``waiting`` holds the connections that owe the server something, in the order they
    started to owe it: their request's headers (idle keep-alive, or slow) or its body (slow);
    ``busy`` the ones being answered, oldest first.
    """

    def __init__(self, max_connections: int, header_timeout: float, body_timeout: float) -> None:
        self.max_connections = max_connections
        self.header_timeout = header_timeout
        self.body_timeout = body_timeout
        self.waiting: dict[_Connection, None] = {}
        self.busy: dict[_Connection, None] = {}
        self.shed = Burst(log, logging.WARNING)

    def make_room(self) -> None:
        """At the cap, close the connection that has owed its request (headers or body) the
        longest, else the oldest one being answered: a new client (with the token: always the
        one that matters) is never turned away."""
        if len(self.waiting) + len(self.busy) < self.max_connections:
            return
        oldest = next(iter(self.waiting), None) or next(iter(self.busy), None)
        if oldest is not None:
            self.shed.hit(
                "HTTP: %d connections open (http.max_connections): closing the ones idle or "
                "slow the longest (else busy) for new clients",
                self.max_connections,
            )
            oldest._drop()


#: seconds a refused request's body is read and discarded before its connection closes
LINGER = 2.0


class _Connection(H11Protocol):
    """uvicorn's HTTP/1.1 protocol plus what uvicorn leaves out.

    * a connection cap that sheds (:meth:`_Limits.make_room`) rather than refuses;
    * deadlines on what the client owes, counted from when it started to owe it (trickling
      bytes does not extend them): the headers (also between keep-alive requests), the body;
    * a request answered before its body arrived (a refusal, 413) closes the connection
      instead of parsing a body nobody wants (what still comes is discarded for a moment, so
      that the client gets the answer);
    * a send deadline: a client that leaves the send buffer full for ``SEND_TIMEOUT`` s is cut.
    """

    def __init__(self, *args: Any, limits: _Limits, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._limits = limits
        self._phase = ""
        self._deadline: asyncio.TimerHandle | None = None
        self._send_deadline: asyncio.TimerHandle | None = None
        self._lingering = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._limits.make_room()
        self._track()

    def connection_lost(self, exc: Exception | None) -> None:
        self._forget()
        super().connection_lost(exc)

    def handle_events(self) -> None:
        super().handle_events()
        self._track()

    def on_response_complete(self) -> None:
        if self.conn.their_state is h11.SEND_BODY and not self.transport.is_closing():
            self._forget()
            self._linger()
            return
        super().on_response_complete()
        self._track()

    def _linger(self) -> None:
        """Close after an answer given before the body arrived (a refusal): the answer's end is
        sent (half-close), what the client still sends is discarded unparsed for at most
        :data:`LINGER` s, then the connection closes. Closing at once with its data unread
        would reset the connection, and the client could lose the answer."""
        self._lingering = True
        if self.transport.can_write_eof():
            self.transport.write_eof()
        # the body that came before the answer may have paused reading (uvicorn's flow
        # control): unread, the rest would fill the buffers and the close would reset
        self.flow.resume_reading()
        self.loop.call_later(LINGER, self.transport.close)

    def data_received(self, data: bytes) -> None:
        if not self._lingering:
            super().data_received(data)

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
        if self.transport.is_closing():
            return
        state = self.conn.their_state
        phase = "head" if state is h11.IDLE else "body" if state is h11.SEND_BODY else "done"
        if phase == self._phase:
            return
        self._phase = phase
        limits.waiting.pop(self, None)  # and in again at the end: owing since now
        limits.busy.pop(self, None)
        (limits.busy if phase == "done" else limits.waiting)[self] = None
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        if phase == "head":
            self._deadline = self.loop.call_later(limits.header_timeout, self._drop)
        elif phase == "body":
            self._deadline = self.loop.call_later(limits.body_timeout, self._drop)

    def _drop(self) -> None:
        self._forget()
        self.transport.abort()

    def _forget(self) -> None:
        self._limits.waiting.pop(self, None)
        self._limits.busy.pop(self, None)
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
