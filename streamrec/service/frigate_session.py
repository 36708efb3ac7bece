"""Frigate's HTTP API with its authentication, as Frigate 0.14+ has it.

Frigate serves its API twice (``docker/main/rootfs/usr/local/nginx``): port 5000, internal and
without authentication, and port 8971, where nginx lets a request through only with a valid JWT
(``Authorization: Bearer`` or the ``frigate_token`` cookie) and never with Basic credentials.
The JWT comes from ``POST /api/login`` (``{"user", "password"}``, ``frigate/api/auth.py``) as a
cookie that expires after ``auth.session_length`` (24 h by default); nginx renews a cookie
within ``auth.refresh_time`` of its end (``Set-Cookie`` on any answer).

:class:`FrigateSession` sends requests without credentials when it has none (port 5000); with
credentials it logs in on first use, sends the cookie, takes every renewed cookie, logs in again
before the token expires (``RENEW_BEFORE``) and once more when Frigate answers 401 (a restart
with a new secret, a changed password). A refused login is one clear log line (once, until a
login succeeds again) and :class:`FrigateAuthError`. The password and the token never reach a
log or an error.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.cookies import CookieError, SimpleCookie
from typing import Any

import urllib3
from urllib3 import BaseHTTPResponse

log = logging.getLogger("streamrec.frigate")

#: log in again this long before the token expires (or a tenth of its life, if shorter)
RENEW_BEFORE = 300.0
#: Frigate's session length when a token's expiry cannot be read (auth.session_length)
DEFAULT_SESSION = 86400.0
LOGIN_PATH = "/api/login"


class FrigateAuthError(RuntimeError):
    """Frigate refused the credentials, or asks for credentials the session does not have."""


@dataclass(frozen=True)
class Credentials:
    user: str
    password: str = field(repr=False)


@dataclass
class _Token:
    cookie: str  # the cookie's name (auth.cookie_name, "frigate_token" by default)
    value: str = field(repr=False)
    expires: float  # epoch seconds
    lifetime: float


def token_expiry(token: str) -> float | None:
    """The ``exp`` claim of a JWT (read, not verified: Frigate checks it)."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return float(claims["exp"])
    except (IndexError, ValueError, KeyError, TypeError):
        return None


class FrigateSession:
    """Requests to one Frigate's API, authenticated as it requires (see the module docstring)."""

    def __init__(
        self,
        base_url: str,
        credentials: Credentials | None = None,
        *,
        http: urllib3.PoolManager | None = None,
        timeout: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        parsed = urllib3.util.parse_url(base_url)
        if parsed.auth and credentials is None:  # user:password@ in the URL: a login, not Basic
            user, _, password = parsed.auth.partition(":")
            credentials = Credentials(user, password)
        self.base = urllib3.util.Url(parsed.scheme, host=parsed.host, port=parsed.port).url + (
            parsed.path or ""
        ).rstrip("/")
        self.credentials = credentials
        self._http = http or urllib3.PoolManager(num_pools=2, maxsize=2)
        self._timeout = timeout
        self._clock = clock
        self._lock = threading.Lock()
        self._token: _Token | None = None
        self._refused_logged = False

    @property
    def logged_in(self) -> bool:
        return self._token is not None

    def request(self, method: str, path: str, **kwargs: Any) -> BaseHTTPResponse:
        """``PoolManager.request`` of ``base + path`` with the session's authentication; the
        answer as it came (a 401 only when logging in again did not help)."""
        token = self._current_token()
        response = self._send(method, path, token, kwargs)
        if response.status != 401:
            return response
        if self.credentials is None:
            self._refused_once(
                f"Frigate {self.base} asks for a login (HTTP 401): that is its authenticated "
                "port (8971); give the Frigate user and password, or use port 5000"
            )
            return response
        with self._lock:
            if self._token is token:  # not renewed meanwhile by another thread
                self._token = None
        response.drain_conn()
        return self._send(method, path, self._current_token(), kwargs)

    def login(self) -> None:
        """Log in now; FrigateAuthError when Frigate refuses the credentials."""
        with self._lock:
            self._token = self._login()

    def close(self) -> None:
        self._http.clear()

    # -- internals -------------------------------------------------------------------------------

    def _current_token(self) -> _Token | None:
        if self.credentials is None:
            return None
        with self._lock:
            token = self._token
            now = self._clock()
            if token is None or now >= token.expires - min(RENEW_BEFORE, token.lifetime / 10):
                token = self._token = self._login()
            return token

    def _send(
        self, method: str, path: str, token: _Token | None, kwargs: dict[str, Any]
    ) -> BaseHTTPResponse:
        headers = dict(kwargs.pop("headers", None) or {})
        if token is not None:
            headers["Cookie"] = f"{token.cookie}={token.value}"
        kwargs.setdefault("timeout", self._timeout)
        response = self._http.request(method, self.base + path, headers=headers, **kwargs)
        if token is not None:
            self._adopt(response, token)
        kwargs["headers"] = headers  # for a retry
        return response

    def _adopt(self, response: BaseHTTPResponse, sent: _Token) -> None:
        """Take a renewed cookie (nginx's ``Set-Cookie`` near the token's end)."""
        renewed = self._cookie(response, sent.cookie)
        if renewed is not None:
            with self._lock:
                if self._token is sent:
                    self._token = renewed

    def _cookie(self, response: BaseHTTPResponse, name: str | None) -> _Token | None:
        """The session cookie an answer sets (``name``, or the first cookie of a login)."""
        for header in response.headers.getlist("Set-Cookie"):
            try:
                jar = SimpleCookie(header)
            except CookieError:
                continue
            for morsel in jar.values():
                if (name is not None and morsel.key != name) or not morsel.value:
                    continue
                now = self._clock()
                expires = token_expiry(morsel.value) or now + DEFAULT_SESSION
                return _Token(morsel.key, morsel.value, expires, max(expires - now, 1.0))
        return None

    def _login(self) -> _Token:
        """POST /api/login (call with the lock held)."""
        assert self.credentials is not None
        body = json.dumps({"user": self.credentials.user, "password": self.credentials.password})
        # a connection error goes up as it is: the caller retries it like any request
        response = self._http.request(
            "POST",
            self.base + LOGIN_PATH,
            body=body.encode(),
            headers={"Content-Type": "application/json"},
            timeout=self._timeout,
            retries=False,
        )
        if response.status == 200:
            token = self._cookie(response, None)
            if token is None:
                raise FrigateAuthError(f"Frigate {self.base}: the login set no session cookie")
            if self._refused_logged:
                log.info("Frigate %s: logged in as %s", self.base, self.credentials.user)
            self._refused_logged = False
            return token
        if response.status in (400, 401, 403, 422):
            self._refused_once(
                f"Frigate {self.base} refused the login of user '{self.credentials.user}' "
                f"(HTTP {response.status}): check the Frigate user and password"
            )
            raise FrigateAuthError(
                f"Frigate {self.base} refused the login (HTTP {response.status})"
            )
        raise FrigateAuthError(f"Frigate {self.base}: login answered HTTP {response.status}")

    def _refused_once(self, message: str) -> None:
        if not self._refused_logged:
            self._refused_logged = True
            log.error("%s", message)
