"""HTTP webhook event sink: POSTs each event as JSON from a background thread, in order."""

from __future__ import annotations

import base64
import email.utils
import http.client
import json
import logging
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from email.message import Message
from typing import Any
from urllib.parse import urlsplit

from streamrec.records import Event
from streamrec.redact import redact_url, register, register_url, split_userinfo
from streamrec.sinks.events import DropCounter, SinkError, event_json, mentions

log = logging.getLogger(__name__)

MAX_BACKOFF = 30.0  # seconds between two attempts at most
ABORT_GRACE = 1.0  # seconds close() waits for a request still running after its timeout


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """urllib would follow a redirect of a POST as a GET without the body: report it instead
    (as an HTTPError with the 3xx code, which is given up like a 4xx)."""

    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def _retry_after(headers: Message | None) -> float:
    """Seconds asked for by a Retry-After header (delta or HTTP date), 0 when absent."""
    value = headers.get("Retry-After") if headers is not None else None
    if not value:
        return 0.0
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        return max(email.utils.parsedate_to_datetime(value).timestamp() - time.time(), 0.0)
    except (TypeError, ValueError):
        return 0.0


class WebhookEventSink:
    """POSTs every event (``Content-Type: application/json``) to ``url``, one at a time, in
    order, from a background thread; ``write`` never blocks.

    Connection errors, timeouts, 5xx and 429 are retried ``retries`` times with exponential
    backoff starting at ``backoff`` s (at least what a Retry-After header asks, at most 30 s);
    then the event is given up. Other 4xx answers are given up at once. While the endpoint is
    slow or down, events wait in a buffer of ``buffer_max`` events; when it is full the oldest
    is dropped (counted and logged). A failing endpoint is logged once per burst: a warning when
    it starts failing, one error for the first event given up, a line with the count when it
    delivers again; events given up or dropped are its ``errors`` in ``/health`` (and
    ``streamrec_sink_errors_total``).
    """

    def __init__(
        self,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        timeout: float = 5.0,
        retries: int = 5,
        backoff: float = 0.5,
        buffer_max: int = 10000,
    ) -> None:
        register_url(url)
        headers = dict(headers or {})
        register(*headers.values())
        credentials = split_userinfo(url)
        if credentials is not None:  # user:password@ becomes a Basic Authorization header
            url, user, password = credentials
            if any(k.lower() == "authorization" for k in headers):
                raise SinkError(
                    "webhook: give the credentials either in the URL (user:password@) or in an "
                    "Authorization header, not both"
                )
            token = base64.b64encode(f"{user}:{password}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"
            register(token)
        try:
            parts = urlsplit(url)
            valid = parts.scheme in ("http", "https") and bool(parts.hostname)
            parts.port  # noqa: B018 (raises ValueError on a bad port)
        except ValueError:
            valid = False
        if not valid:
            raise SinkError(
                f"webhook URL must be http://host/... or https://host/..., got {redact_url(url)!r}"
            )
        if buffer_max < 1:
            raise SinkError(f"webhook buffer_max must be at least 1, got {buffer_max}")
        self.url = url
        self.name = redact_url(url)
        self._headers = {"User-Agent": "streamrec", **headers}
        self._headers["Content-Type"] = "application/json"
        self._timeout = timeout
        self._retries = max(int(retries), 0)
        self._backoff = backoff
        self._buffer_max = buffer_max
        self._cond = threading.Condition()
        self._queue: deque[bytes] = deque()
        self._busy = False  # an event is being delivered (it has left the queue)
        self._closing = False
        self._abort = threading.Event()
        self._failing = False  # the endpoint failed since the last success (log once)
        self._problem: str | None = None  # what went wrong last, while failing
        self._given_up = 0  # events given up in the current burst (the first is logged)
        self._dropped = DropCounter(f"webhook {self.name}")
        self.delivered = 0
        self.failed = 0  # events given up after retries or a 4xx answer
        self._thread = threading.Thread(target=self._run, name="webhook-sink", daemon=True)
        self._thread.start()

    @property
    def pending(self) -> int:
        """Events buffered or being delivered."""
        with self._cond:
            return len(self._queue) + self._busy

    @property
    def dropped(self) -> int:
        return self._dropped.count

    def health(self) -> dict[str, Any]:
        """For ``/health``: whether the endpoint answers, what went wrong, events waiting, given
        up (``failed``), dropped, and ``errors``: the events lost (given up or dropped)."""
        return {
            "ok": not self._failing,
            "error": self._problem,
            "errors": self.failed + self.dropped,
            "pending": self.pending,
            "failed": self.failed,
            "dropped": self.dropped,
        }

    def write(self, event: Event) -> None:
        body = event_json(event).encode()
        with self._cond:
            if self._closing:
                raise RuntimeError(f"webhook sink {self.name} is already closed")
            if len(self._queue) >= self._buffer_max:
                self._queue.popleft()
                self._dropped.add()
            self._queue.append(body)
            self._cond.notify()

    def forget(self, name: str) -> None:
        """Erase a person: their events still waiting are never delivered (one being delivered
        right now has left already)."""
        with self._cond:
            kept = [b for b in self._queue if not mentions(json.loads(b), (name,))]
            self._queue = deque(kept)

    def close(self, timeout: float = 5.0) -> None:
        """Deliver what is buffered within ``timeout`` s, then stop; idempotent."""
        with self._cond:
            if self._closing:
                return
            self._closing = True
            self._cond.notify()
        self._thread.join(timeout)
        if self._thread.is_alive():
            self._abort.set()  # stops the retry sleeps; a running request ends on its timeout
            self._thread.join(ABORT_GRACE)
        lost = self.pending
        if lost:
            log.error("webhook %s: %d events were not delivered before close", self.name, lost)

    def __enter__(self) -> WebhookEventSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self) -> None:
        while True:
            with self._cond:
                self._busy = False
                self._cond.wait_for(lambda: self._queue or self._closing)
                if not self._queue or self._abort.is_set():
                    return
                body = self._queue.popleft()
                self._busy = True
            delivered = self._deliver(body)
            if delivered is None:  # aborted by close(): counted as not delivered
                return
            if delivered:
                self.delivered += 1
            else:
                self.failed += 1
                self._given_up += 1

    def _deliver(self, body: bytes) -> bool | None:
        """True when delivered, False when given up, None when close() aborted it."""
        delay = self._backoff
        for attempt in range(self._retries + 1):
            try:
                self._post(body)
            except urllib.error.HTTPError as exc:
                exc.close()
                problem, wait = f"HTTP {exc.code} {exc.reason}", _retry_after(exc.headers)
                if exc.code < 500 and exc.code != 429:
                    self._give_up(f"rejected with {problem}")
                    return False
            except (OSError, http.client.HTTPException) as exc:  # URLError is an OSError
                problem, wait = str(getattr(exc, "reason", exc)), 0.0
            else:
                self._recovered()
                return True
            if not self._failing:
                self._failing = True
                log.warning("webhook %s: %s; retrying with backoff", self.name, problem)
            self._problem = problem
            if attempt == self._retries:
                break
            if self._abort.wait(min(max(delay, wait), MAX_BACKOFF)):
                return None
            delay *= 2
        self._give_up(f"after {attempt + 1} attempts ({problem})")
        return False

    def _give_up(self, why: str) -> None:
        """Log the first event given up of a burst; the next ones are only counted."""
        self._failing = True
        self._problem = why
        if self._given_up == 0:
            log.error(
                "webhook %s: gave up on an event %s; further events given up are counted "
                "until it delivers again",
                self.name,
                why,
            )

    def _recovered(self) -> None:
        if self._failing:
            gone = f" ({self._given_up} event(s) given up meanwhile)" if self._given_up else ""
            log.info("webhook %s: delivering again%s", self.name, gone)
        self._failing, self._problem, self._given_up = False, None, 0

    def _post(self, body: bytes) -> None:
        request = urllib.request.Request(self.url, data=body, headers=self._headers, method="POST")
        with _OPENER.open(request, timeout=self._timeout) as response:
            response.read()
