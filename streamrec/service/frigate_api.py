"""Frigate's HTTP API as the Frigate bridge uses it (Frigate 0.14-0.17): the pictures of a tracked
object, its sub label, with retries and backoff, authenticated by
:class:`~streamrec.service.frigate_session.FrigateSession`.

Pictures (``frigate/api/media.py``): while an object is in progress, ``snapshot.jpg`` with
``bbox=0&timestamp=0`` (the live best frame without drawings; ``crop`` applies); once it ended,
``snapshot.jpg`` is the saved file with the boxes drawn and ignores the query, so the clean copy
is fetched instead: ``snapshot-clean.png`` (0.14-0.16) or ``snapshot-clean.webp`` (0.17, read
from ``GET /api/version`` once; the other one is tried on a 404). An object without a snapshot
(``snapshots`` disabled, or not yet) is seen through its camera's ``latest.jpg`` while it is
active, as Double Take does.

Sub labels (``frigate/api/event.py set_sub_label``): ``{"subLabel", "subLabelScore"}``, the score
on Frigate's face score scale (:func:`~streamrec.scales.frigate_face_score`, 0 < s <= 1); a 403
(Frigate 0.16+: the user is not an admin) is one clear log line. Credentials never reach a log.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import quote

import cv2
import numpy as np
from urllib3.exceptions import HTTPError, MaxRetryError
from urllib3.util import Retry

from streamrec.redact import redact
from streamrec.service.frigate_session import Credentials, FrigateAuthError, FrigateSession

if TYPE_CHECKING:
    from streamrec.config import FrigateConfig

log = logging.getLogger("streamrec.frigate")

#: largest picture downloaded
MAX_SNAPSHOT = 32 * 1024 * 1024
#: seconds between two attempts at most
MAX_BACKOFF = 30.0
#: answers that are retried (with the connection errors and timeouts)
RETRY_STATUS = (429, 500, 502, 503, 504)
#: Frigate's limits on a sub label: length, and a score in (0, 1]
SUB_LABEL_MAX = 100
MIN_SUB_LABEL_SCORE = 0.01
#: environment variables read when the config has no frigate.user / frigate.password
USER_ENV = "STREAMREC_FRIGATE_USER"
PASSWORD_ENV = "STREAMREC_FRIGATE_PASSWORD"


@dataclass(frozen=True)
class Picture:
    """A frame of a Frigate object: the image and where it came from (``snapshot``, ``clean``
    or ``latest``)."""

    image: np.ndarray
    source: str


@dataclass
class ApiStats:
    """What the API counts (the bridge's stats read them)."""

    missing: int = 0  # pictures Frigate did not have (404)
    failures: int = 0  # requests that failed after their retries, or were refused
    sub_labels: int = 0  # sub labels Frigate accepted


def credentials(cfg: FrigateConfig, environ: dict[str, str]) -> Credentials | None:
    """The login of ``cfg`` (``user``/``password``, else the environment); None: no login
    (port 5000, or ``user:password@`` in the URL, which the session reads as a login)."""
    user = cfg.user or environ.get(USER_ENV)
    password = cfg.password or environ.get(PASSWORD_ENV)
    return Credentials(user, password or "") if user else None


class FrigateApi:
    """One Frigate's API for a bridge (see the module docstring). ``headers`` are sent with
    every request (a proxy's); logs name the API by its address without credentials."""

    def __init__(
        self,
        cfg: FrigateConfig,
        login: Credentials | None,
        stop: threading.Event,
        stats: ApiStats,
    ) -> None:
        self.session = FrigateSession(cfg.url, login, timeout=cfg.timeout)
        self.base = self.session.base
        self._headers = dict(cfg.headers)
        self._retry = Retry(
            total=cfg.retries,
            backoff_factor=0.5,
            backoff_max=MAX_BACKOFF,
            backoff_jitter=0.2,
            status_forcelist=RETRY_STATUS,
            allowed_methods=None,  # the sub label POST is idempotent
            redirect=False,
        )
        self._stop = stop
        self.stats = stats
        self._down = False
        self._warned: set[str] = set()
        self._clean: list[str] | None = None  # the clean snapshot's suffixes, preferred first

    # -- pictures ----------------------------------------------------------------------------

    def picture(
        self, event_id: str, camera: str, *, ended: bool, has_snapshot: bool, crop: bool
    ) -> Picture | None:
        """The frame to check of an object, or None (none to fetch, Frigate has none, down)."""
        event = quote(event_id, safe="")
        if has_snapshot and ended:
            suffixes = self._clean_suffixes()
            for i, suffix in enumerate(suffixes):
                last = i == len(suffixes) - 1
                found = self._image(f"/api/events/{event}/snapshot-clean.{suffix}", None, last)
                if found is not None:
                    self._clean = [suffix] + [s for s in suffixes if s != suffix]
                    return Picture(found, "clean")
            return None
        if has_snapshot:
            fields = {"bbox": "0", "timestamp": "0", "crop": "1" if crop else "0"}
            found = self._image(f"/api/events/{event}/snapshot.jpg", fields)
            return Picture(found, "snapshot") if found is not None else None
        if not ended:
            found = self._image(f"/api/{quote(camera, safe='')}/latest.jpg", None)
            return Picture(found, "latest") if found is not None else None
        return None

    def _clean_suffixes(self) -> list[str]:
        """``webp`` first from Frigate 0.17 on, else ``png`` first (``GET /api/version``)."""
        if self._clean is None:
            answer = self._request("GET", "/api/version")
            text = answer[1].decode(errors="replace") if answer and answer[0] == 200 else ""
            try:
                major, minor = (int(p) for p in text.strip().split(".")[:2])
                webp = (major, minor) >= (0, 17)
            except ValueError:
                webp = False
            self._clean = ["webp", "png"] if webp else ["png", "webp"]
        return self._clean

    def _image(
        self, path: str, fields: dict[str, str] | None, missing: bool = True
    ) -> np.ndarray | None:
        """The picture at ``path``; None when there is none (a 404 counted with ``missing``),
        or it could not be had."""
        answer = self._request("GET", path, fields=fields)
        if answer is None:
            return None
        status, body = answer
        if status == 404:
            if not missing:
                return None
            self.stats.missing += 1
            self._once(
                "404", "Frigate had no snapshot for an event (HTTP 404); such events are skipped"
            )
            return None
        if status != 200:
            self._refused("a picture", status)
            return None
        image = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            self.stats.failures += 1
            self._once("not an image", "Frigate sent a picture that is not an image")
        return image

    # -- sub labels --------------------------------------------------------------------------

    def sub_label(self, event_id: str) -> str | None:
        """The event's sub label now (``GET /api/events/<id>``); None: none, or unknown."""
        answer = self._request("GET", f"/api/events/{quote(event_id, safe='')}")
        if answer is None or answer[0] != 200:
            return None
        try:
            label = json.loads(answer[1]).get("sub_label")
        except (ValueError, AttributeError):
            return None
        if isinstance(label, list):  # [name, score] in the MQTT messages of some versions
            label = label[0] if label else None
        return label if isinstance(label, str) and label else None

    def set_sub_label(self, event_id: str, name: str, score: float) -> bool:
        """Write ``name`` as the event's sub label (``score`` on Frigate's scale); True if
        Frigate took it."""
        payload = {
            "subLabel": name[:SUB_LABEL_MAX],
            "subLabelScore": round(min(max(score, MIN_SUB_LABEL_SCORE), 1.0), 2),
        }
        answer = self._request(
            "POST",
            f"/api/events/{quote(event_id, safe='')}/sub_label",
            body=json.dumps(payload).encode(),
            headers={"Content-Type": "application/json"},
        )
        if answer is None:
            return False
        if answer[0] == 403:
            self.stats.failures += 1
            self._once(
                "sub label 403",
                "Frigate refused a sub label with HTTP 403: the Frigate user needs the admin "
                "role to set sub labels",
            )
            return False
        if answer[0] != 200:
            self._refused("a sub label", answer[0])
            return False
        self.stats.sub_labels += 1
        return True

    def close(self) -> None:
        self.session.close()

    # -- requests ----------------------------------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        fields: dict[str, str] | None = None,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, bytes] | None:
        """(status, body) of the first answer that is not retried; None when every attempt
        failed (counted, logged once per outage), the login was refused, or the bridge
        stopped."""
        retry = self._retry
        while True:
            response = None
            error: Exception | None = None
            try:
                response = self.session.request(
                    method,
                    path,
                    fields=fields,
                    body=body,
                    headers=self._headers | (headers or {}),
                    retries=False,
                    preload_content=False,
                )
                data = response.read(MAX_SNAPSHOT + 1)
                if len(data) > MAX_SNAPSHOT:
                    raise ValueError(f"an answer larger than {MAX_SNAPSHOT >> 20} MiB")
            except FrigateAuthError:
                self.stats.failures += 1  # the session logged it once
                return None
            except (HTTPError, OSError, ValueError) as exc:
                error = exc
            finally:
                if response is not None:
                    response.release_conn()
            if response is not None and error is None:
                retried = retry.is_retry(method, response.status, "Retry-After" in response.headers)
                if not retried:
                    self._up()
                    return response.status, data
            try:
                retry = retry.increment(method, path, response=response, error=error)
            except (MaxRetryError, HTTPError, OSError) as exc:
                self.stats.failures += 1
                if error is None and response is not None:
                    self._unreachable(f"HTTP {response.status}")
                else:
                    self._unreachable(redact(" ".join(str(error or exc).split())))
                return None
            wait = retry.get_retry_after(response) if response is not None else None
            delay = wait if wait is not None else retry.get_backoff_time()
            if self._stop.wait(min(delay, MAX_BACKOFF)):
                return None

    def _up(self) -> None:
        if self._down:
            self._down = False
            log.info("Frigate %s answers again", self.base)

    def _unreachable(self, reason: str) -> None:
        if not self._down:
            self._down = True
            log.warning(
                "Frigate %s cannot be reached (%s); its events are skipped until it answers",
                self.base,
                reason,
            )

    def _refused(self, what: str, status: int) -> None:
        self.stats.failures += 1
        hint = " (check frigate.user/password or frigate.headers)"
        self._once(
            f"{what} {status}",
            f"Frigate refused {what} with HTTP {status}{hint if status in (401, 403) else ''}",
        )

    def _once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning("%s (logged once)", message)
