"""Frigate as a source: recognise the people in the snapshots of Frigate's tracked objects.

A camera with ``frigate:`` (instead of ``source:``) subscribes to ``<topic_prefix>/events`` on
Frigate's MQTT broker. For each ``new``/``update``/``end`` message of a followed label (``person``)
that has a snapshot and is not a false positive, it fetches the snapshot from Frigate's HTTP API
(``GET /api/events/<id>/snapshot.jpg``, the full frame without Frigate's drawings, or cropped),
finds, embeds and names the faces with the daemon's Recognition service (the gallery as it is
now), and publishes the result as streamrec events through the daemon's sinks. A better snapshot
of the same object (an ``update`` with a newer ``snapshot.frame_time``) is checked again, up to
``max_snapshots`` per object. With ``sub_label: true`` the name is written back to Frigate
(``POST /api/events/<id>/sub_label``).

Each Frigate object is one streamrec track on the Frigate camera (``camera`` is Frigate's camera
name, ``source`` the bridge's name): ``identified`` (a face matched: ``name``, ``score``,
``box``), ``renamed`` (a later snapshot named someone else with a higher score), ``unknown``
(faces, none in the gallery; once per object, without an ``unknown-N`` label) and ``track_end``
(Frigate ended the object: the best ``name`` or null, ``snapshots`` checked, most ``faces`` seen;
``reason`` when the bridge ended it instead: ``stopped``, ``evicted``). Every event carries
``frigate_event`` (Frigate's id), ``frigate_label``, ``frigate_score`` (its ``top_score``) and
``zones`` (its ``current_zones``); ``frame`` is the snapshot's number within the object, ``time``
its seconds since the object started, ``captured`` Frigate's capture time of the snapshot.
Track ids start at ``FIRST_TRACK_ID`` so that they never meet a pipeline track on a streamrec
camera of the same name (MQTT presence keys tracks by camera and id).

Bounded and never blocking the cameras: messages wait in a queue of ``queue_size`` Frigate
objects (a newer message of a queued object replaces it; when full the oldest is dropped and
counted), one worker thread does the HTTP requests (timeout, retries with exponential backoff,
``Retry-After`` honoured) and the recognition, the MQTT client reconnects by itself, and a
Frigate that is down is logged once per outage. The API's credentials (in the URL, or
``headers``) never reach a log, and names never reach the log either.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote

import cv2
import numpy as np
import urllib3
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from urllib3 import HTTPHeaderDict
from urllib3.exceptions import HTTPError, MaxRetryError
from urllib3.util import Retry

from streamrec.errors import ConfigError
from streamrec.records import Event
from streamrec.sinks.mqtt.link import Endpoint, MqttLink, Tls
from streamrec.sources import redact

if TYPE_CHECKING:
    from streamrec.config import CameraConfig, Config, FrigateConfig
    from streamrec.recognition import FoundFace, GalleryChange, Recognition
    from streamrec.telemetry import EventWriter

log = logging.getLogger("streamrec.frigate")

#: track ids of Frigate objects start here (pipeline tracks count from 1 per camera)
FIRST_TRACK_ID = 1_000_000_000
#: Frigate objects followed at once; beyond, the least recently started one is ended
MAX_OBJECTS = 1000
#: largest MQTT message read (Frigate's event messages are a few KiB)
MAX_MESSAGE = 256 * 1024
#: largest snapshot downloaded
MAX_SNAPSHOT = 32 * 1024 * 1024
#: seconds between two attempts at most
MAX_BACKOFF = 30.0
#: answers that are retried (with the connection errors and timeouts)
RETRY_STATUS = (429, 500, 502, 503, 504)
#: Frigate's limits on a sub label: length, and a score in (0, 1]
SUB_LABEL_MAX = 100
MIN_SUB_LABEL_SCORE = 0.01

_LOOSE = ConfigDict(extra="ignore")


class _Snapshot(BaseModel):
    model_config = _LOOSE
    frame_time: float | None = None


class FrigateObject(BaseModel):
    """The fields of a Frigate tracked object (``before``/``after``) that the bridge reads."""

    model_config = _LOOSE
    # used in API paths: Frigate's ids are "<start time>-<random letters and digits>"
    id: str = Field(pattern=r"^[0-9]+(\.[0-9]+)?-[A-Za-z0-9]+$", max_length=64)
    camera: str = Field(min_length=1, max_length=256)
    label: str = Field(max_length=256)
    top_score: float | None = None
    false_positive: bool | None = False
    start_time: float
    frame_time: float | None = None
    has_snapshot: bool = False
    current_zones: list[str] = Field(default_factory=list, max_length=100)
    snapshot: _Snapshot | None = None


class FrigateMessage(BaseModel):
    """A message on ``<topic_prefix>/events``."""

    model_config = _LOOSE
    type: Literal["new", "update", "end"]
    after: FrigateObject


_MESSAGE = TypeAdapter(FrigateMessage)


@dataclass
class FrigateStats:
    """Counters of one bridge (read them at any time)."""

    messages: int = 0  # event messages received
    ignored: int = 0  # other labels or cameras, false positives, no snapshot yet
    invalid: int = 0  # not a Frigate event message
    dropped: int = 0  # queued objects dropped because the queue was full
    snapshots: int = 0  # snapshots checked for faces
    missing: int = 0  # snapshots Frigate did not have (404)
    failures: int = 0  # requests that failed after their retries (Frigate down, errors)
    identified: int = 0  # objects named
    sub_labels: int = 0  # sub labels Frigate accepted


@dataclass
class Broker:
    """Where Frigate's events are read from: a broker and Frigate's ``topic_prefix``."""

    endpoint: Endpoint
    topic_prefix: str = "frigate"


@dataclass
class _Object:
    """A followed Frigate object: one streamrec track."""

    track_id: int
    camera: str
    start_time: float
    attempts: int = 0  # snapshots fetched or tried
    snapshots: int = 0  # snapshots checked
    checked: float | None = None  # frame_time of the last snapshot fetched or tried
    captured: float | None = None
    name: str | None = None
    score: float | None = None
    faces: int = 0
    unknown: bool = False  # the unknown event was sent
    frigate: dict[str, Any] = field(default_factory=dict)  # frigate_* fields of the events


class FrigateApi:
    """Frigate's HTTP API: snapshots and sub labels, with retries and backoff.

    Credentials in the URL become a Basic ``Authorization`` header; ``headers`` are sent with
    every request. Logs name the API by its address without credentials, never a header.
    """

    def __init__(
        self,
        url: str,
        headers: dict[str, str],
        timeout: float,
        retries: int,
        stop: threading.Event,
        stats: FrigateStats,
    ) -> None:
        parsed = urllib3.util.parse_url(url)
        # credentials in the URL as Basic auth, unless ``headers`` authorise otherwise
        self._headers = HTTPHeaderDict(urllib3.make_headers(basic_auth=parsed.auth or None))
        for key, value in headers.items():
            self._headers[key] = value  # replaces a header of another case
        self.base = urllib3.util.Url(parsed.scheme, host=parsed.host, port=parsed.port).url + (
            parsed.path or ""
        ).rstrip("/")
        self._http = urllib3.PoolManager(num_pools=2, maxsize=2, timeout=timeout)
        self._retry = Retry(
            total=retries,
            backoff_factor=0.5,
            backoff_max=MAX_BACKOFF,
            backoff_jitter=0.2,
            status_forcelist=RETRY_STATUS,
            allowed_methods=None,  # the sub label POST is idempotent
            redirect=False,
        )
        self._stop = stop
        self._stats = stats
        self._down = False
        self._warned: set[str] = set()

    def snapshot(self, event_id: str, crop: bool) -> np.ndarray | None:
        """The snapshot of an event as a BGR image; None if Frigate has none or is down."""
        fields = {"bbox": "0", "timestamp": "0", "crop": "1" if crop else "0"}
        answer = self._request("GET", f"/api/events/{quote(event_id)}/snapshot.jpg", fields=fields)
        if answer is None:
            return None
        status, body = answer
        if status == 404:
            self._stats.missing += 1
            self._once(
                "404", "Frigate had no snapshot for an event (HTTP 404); such events are skipped"
            )
            return None
        if status != 200:
            self._refused("a snapshot", status)
            return None
        image = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            self._stats.failures += 1
            self._once("not an image", "Frigate sent a snapshot that is not an image")
        return image

    def set_sub_label(self, event_id: str, name: str, score: float) -> bool:
        """Write ``name`` as the event's sub label; True if Frigate took it."""
        payload = {
            "subLabel": name[:SUB_LABEL_MAX],
            "subLabelScore": round(min(max(score, MIN_SUB_LABEL_SCORE), 1.0), 2),
        }
        answer = self._request(
            "POST",
            f"/api/events/{quote(event_id)}/sub_label",
            body=json.dumps(payload).encode(),
            headers={"Content-Type": "application/json"},
        )
        if answer is None:
            return False
        if answer[0] != 200:
            self._refused("a sub label", answer[0])
            return False
        self._stats.sub_labels += 1
        return True

    def close(self) -> None:
        self._http.clear()

    def _request(
        self,
        method: str,
        path: str,
        fields: dict[str, str] | None = None,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, bytes] | None:
        """(status, body) of the first answer that is not retried; None when every attempt
        failed (counted, logged once per outage) or the bridge stopped."""
        retry = self._retry
        url = self.base + path
        while True:
            response = None
            error: Exception | None = None
            try:
                response = self._http.request(
                    method,
                    url,
                    fields=fields,
                    body=body,
                    headers=self._headers | (headers or {}),  # they replace the pool's
                    retries=False,
                    preload_content=False,
                )
                data = response.read(MAX_SNAPSHOT + 1)
                if len(data) > MAX_SNAPSHOT:
                    raise ValueError(f"an answer larger than {MAX_SNAPSHOT >> 20} MiB")
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
                self._stats.failures += 1
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
        self._stats.failures += 1
        hint = " (check frigate.headers or the credentials in frigate.url)"
        self._once(
            f"{what} {status}",
            f"Frigate refused {what} with HTTP {status}{hint if status in (401, 403) else ''}",
        )

    def _once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning("%s (logged once)", message)


def broker_of(cfg: Config, cam: CameraConfig) -> Broker:
    """Frigate's broker for a bridge: its own ``mqtt.host``, else the broker of events.mqtt."""
    assert cam.frigate is not None
    own = cam.frigate.mqtt
    if own.host:
        endpoint = Endpoint(own.host, own.port, own.username, own.password)
        return Broker(endpoint, own.topic_prefix)
    events = cfg.events.mqtt
    if events is None:
        where = cfg.source_file or "the config"
        raise ConfigError(
            f"{where}: camera '{cam.name}': frigate.mqtt.host is not set and there is no "
            "events.mqtt broker to use instead: set it to the broker Frigate publishes on"
        )
    tls = Tls.of(events.tls, events.ca_certs, events.certfile, events.keyfile, events.tls_insecure)
    endpoint = Endpoint(events.host, events.port, events.username, events.password, tls)
    return Broker(endpoint, own.topic_prefix)


class FrigateBridge:
    """One ``cameras:`` entry with ``frigate:``; see the module docstring. ``start()`` connects
    and starts the worker, ``close()`` stops them and ends every followed object."""

    def __init__(
        self,
        name: str,
        cfg: FrigateConfig,
        broker: Broker,
        recognition: Recognition,
        events: EventWriter,
    ) -> None:
        self.name = name
        self.cfg = cfg
        self.broker = broker
        self.stats = FrigateStats()
        self.topic = f"{broker.topic_prefix.strip('/')}/events"
        self._recognition = recognition
        self._events = events
        self._threshold = cfg.min_score if cfg.min_score is not None else recognition.threshold
        #: a person who leaves the gallery leaves the objects followed under their name
        self._unsubscribe = recognition.subscribe(self._gallery_changed)
        self._stop = threading.Event()
        self._api = FrigateApi(
            cfg.url, cfg.headers, cfg.timeout, cfg.retries, self._stop, self.stats
        )
        self._lock = threading.Condition()  # guards the queue, the objects and the counters
        self._pending: OrderedDict[str, FrigateMessage] = OrderedDict()
        self._objects: OrderedDict[str, _Object] = OrderedDict()
        self._next_track = FIRST_TRACK_ID
        self._closed = False
        self._invalid_logged = False
        self._worker = threading.Thread(target=self._work, name=f"frigate {name}", daemon=True)
        where = broker.endpoint.address
        self._link = MqttLink(
            broker.endpoint,
            label=f"Frigate bridge {name}: {where}",
            client_id=f"streamrec-frigate-{uuid.uuid4().hex[:12]}",
        )
        self._link.subscribe(
            self.topic,
            1,
            self.offer,
            lambda: log.info("Frigate bridge %s: reading %s on %s", name, self.topic, where),
        )

    @classmethod
    def from_config(
        cls,
        cfg: Config,
        cam: CameraConfig,
        recognition: Recognition,
        events: EventWriter,
    ) -> FrigateBridge:
        """The bridge of a ``cameras:`` entry with ``frigate:``; ConfigError without a broker."""
        assert cam.frigate is not None
        broker = broker_of(cfg, cam)
        return cls(cam.name, cam.frigate, broker, recognition, events)

    # -- life cycle --------------------------------------------------------------------------

    def start(self) -> None:
        """Connect to the broker (in the background, retried forever) and start the worker."""
        self._worker.start()
        self._link.start()
        log.info(
            "Frigate bridge %s: events from %s/%s, snapshots from %s",
            self.name,
            self.broker.endpoint.address,
            self.topic,
            self._api.base,
        )

    def _gallery_changed(self, change: GalleryChange) -> None:
        for name in change.left:
            self.forget(name)

    def forget(self, name: str) -> None:
        """A person left the gallery (erased, renamed, merged away): the objects followed under
        their name lose it at once (their ``track_end`` names nobody)."""
        with self._lock:
            for obj in self._objects.values():
                if obj.name == name:
                    obj.name, obj.score = None, None

    def close(self, timeout: float = 2.0) -> None:
        """Stop reading, give the worker ``timeout`` s to finish the object in hand (a request
        still waiting is abandoned), then end every followed object. Idempotent."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._unsubscribe()
        self._link.close(0.0)
        with self._lock:
            self._lock.notify_all()
        if self._worker.ident is not None:
            self._worker.join(timeout)
        with self._lock:
            for obj in self._objects.values():
                self._end(obj, "stopped")
            self._objects.clear()
            self._pending.clear()
            self._closed = True  # a request the worker still waits for emits nothing
        self._api.close()

    # -- Frigate's messages (paho's thread) ------------------------------------------------

    def offer(self, payload: bytes) -> None:
        """Take one message of ``<topic_prefix>/events``: queue it, or count why not."""
        message = None
        if len(payload) <= MAX_MESSAGE:
            with contextlib.suppress(ValidationError):
                message = _MESSAGE.validate_json(payload)
        with self._lock:
            self.stats.messages += 1
            if message is None:
                self.stats.invalid += 1
                if not self._invalid_logged:
                    self._invalid_logged = True
                    log.warning(
                        "Frigate bridge %s: ignoring a message on %s that is not a Frigate "
                        "event (logged once, then counted)",
                        self.name,
                        self.topic,
                    )
                return
            if not self._wanted(message):
                self.stats.ignored += 1
                return
            event_id = message.after.id
            if event_id not in self._pending and len(self._pending) >= self.cfg.queue_size:
                self._pending.popitem(last=False)
                self.stats.dropped += 1
                if self.stats.dropped == 1 or self.stats.dropped % 100 == 0:
                    log.warning(
                        "Frigate bridge %s: queue full, dropped the oldest object "
                        "(%d dropped so far)",
                        self.name,
                        self.stats.dropped,
                    )
            self._pending[event_id] = message  # a queued object keeps its place, newest state
            self._lock.notify_all()

    def _wanted(self, message: FrigateMessage) -> bool:
        obj, cfg = message.after, self.cfg
        if obj.label not in cfg.labels or (cfg.cameras and obj.camera not in cfg.cameras):
            return False
        if message.type == "end" and obj.id in self._objects:
            return True
        return obj.has_snapshot and not obj.false_positive

    # -- the worker --------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            with self._lock:
                while not self._pending and not self._stop.is_set():
                    self._lock.wait()
                if self._stop.is_set():
                    return
                _, message = self._pending.popitem(last=False)
            try:
                self._handle(message)
            except Exception:
                log.exception("Frigate bridge %s: checking an event failed", self.name)

    def _handle(self, message: FrigateMessage) -> None:
        after = message.after
        with self._lock:
            obj = self._objects.get(after.id)
            if obj is None:
                obj = self._follow(after)
            obj.frigate = {
                "frigate_event": after.id,
                "frigate_label": after.label,
                "frigate_score": after.top_score,
                "zones": list(after.current_zones),
            }
            shot = after.snapshot.frame_time if after.snapshot is not None else None
            fresh = obj.attempts == 0 or (shot is not None and shot != obj.checked)
            check = after.has_snapshot and fresh and obj.attempts < self.cfg.max_snapshots
            if check:
                obj.attempts += 1
                obj.checked = shot  # also when it fails: a newer snapshot is tried, not this one
        if check:
            image = self._api.snapshot(after.id, self.cfg.crop)
            if image is not None:
                self._recognise(obj, image, shot or after.frame_time or time.time())
        if message.type == "end":
            with self._lock:
                if self._objects.pop(after.id, None) is not None:
                    self._end(obj, None)

    def _follow(self, after: FrigateObject) -> _Object:
        """Start following a Frigate object (call with the lock held)."""
        if len(self._objects) >= MAX_OBJECTS:
            _, oldest = self._objects.popitem(last=False)
            self._end(oldest, "evicted")
        obj = _Object(self._next_track, after.camera, after.start_time)
        self._next_track += 1
        self._objects[after.id] = obj
        return obj

    def _recognise(self, obj: _Object, image: np.ndarray, captured: float) -> None:
        faces = self._recognition.faces(image)
        best = _best(faces, self._recognition.identify(faces, self._threshold))
        with self._lock:
            self.stats.snapshots += 1
            obj.snapshots += 1
            obj.captured = captured
            obj.faces = max(obj.faces, len(faces))
            if best is None or self._closed:
                return
            face, name, score = best
            if name is None or score is None:
                if obj.name is None and not obj.unknown:
                    obj.unknown = True
                    shown = None if score is None else round(score, 4)
                    self._emit("unknown", obj, None, faces=len(faces), score=shown, box=_box(face))
                return
            kind = self._naming(obj, name, score)
            if kind is None:
                return
            crop = face.crop
            self._emit(kind, obj, crop, name=name, score=round(score, 4), box=_box(face))
        if self.cfg.sub_label:
            self._api.set_sub_label(str(obj.frigate["frigate_event"]), name, score)

    def _naming(self, obj: _Object, name: str, score: float) -> str | None:
        """The event a match makes (call with the lock held): ``identified`` for the object's
        first name, ``renamed`` for another name with a higher score, else None."""
        if obj.name is None:
            kind = "identified"
            self.stats.identified += 1
        elif name != obj.name and score > (obj.score or 0.0):
            kind = "renamed"
        else:
            if name == obj.name:
                obj.score = max(score, obj.score or 0.0)
            return None
        obj.name, obj.score = name, score
        return kind

    def _end(self, obj: _Object, reason: str | None) -> None:
        """The object's ``track_end``, if anything was checked (call with the lock held)."""
        if obj.snapshots == 0:
            return
        fields: dict[str, Any] = {
            "name": obj.name,
            "score": None if obj.score is None else round(obj.score, 4),
            "snapshots": obj.snapshots,
            "faces": obj.faces,
        }
        if reason is not None:
            fields["reason"] = reason
        self._emit("track_end", obj, None, **fields)

    def _emit(self, kind: str, obj: _Object, crop: np.ndarray | None, **fields: Any) -> None:
        """Write one event of ``obj`` to the sinks (call with the lock held)."""
        if self._closed:
            return
        captured = obj.captured if obj.captured is not None else obj.start_time
        event = Event(
            kind,
            self.name,
            obj.track_id,
            max(obj.snapshots - 1, 0),
            round(max(captured - obj.start_time, 0.0), 3),
            captured,
            obj.camera,
            {**fields, **obj.frigate},
            crop,
        )
        try:
            self._events.write(event)
        except Exception:
            log.exception("Frigate bridge %s: writing an event failed", self.name)


def _best(
    faces: list[FoundFace], named: list[tuple[str | None, float | None]]
) -> tuple[FoundFace, str | None, float | None] | None:
    """The face to report: the best named one, else the one closest to someone (or the first
    one when the gallery is empty), with its name (None: nobody) and similarity."""
    if not faces:
        return None
    ranked = [(face, name, score) for face, (name, score) in zip(faces, named, strict=True)]
    return max(ranked, key=lambda r: (r[1] is not None, -2.0 if r[2] is None else r[2]))


def _box(face: FoundFace) -> list[float]:
    return [round(float(v), 1) for v in face.box]
