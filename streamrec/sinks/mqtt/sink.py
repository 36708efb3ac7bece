"""MQTT event sink (paho-mqtt 2.x): events, per-person presence, snapshots and Home Assistant
discovery, with a bounded buffer while the broker is away.

Topics (``<prefix>`` is ``topic_prefix``; ``<camera>`` is ``event.camera or event.source`` made
topic-safe; ``<person>`` is the person's name as a topic-safe slug, see ``person_slug``):

- ``<prefix>/<camera>/events``: every event as JSON, QoS ``qos`` (1 by default), not retained.
- ``<prefix>/<camera>/status``: retained camera state set with ``set_status`` ("online",
  "offline", "reconnecting" ...); a camera that sends events before any ``set_status`` is
  announced "online".
- ``<prefix>/<camera>/last_name``: retained, the name of the camera's last identification;
  cleared (an empty retained payload) ``presence_timeout`` s after the camera's last identified
  track ended.
- ``<prefix>/<camera>/people``: retained JSON, who is in view now: ``people`` (names of the open
  identified tracks), ``count`` (their number) and ``faces`` (open tracks, known or not).
- ``<prefix>/<camera>/snapshot``: retained JPEG of the last identification's snapshot
  (``event.snapshot``, a BGR image, when the pipeline attaches one), at most
  ``snapshot_max_width`` wide; encoded once, off the pipeline's thread.
- ``<prefix>/people/<person>``: retained JSON ``{name, state, camera, last_seen, last_seen_ts,
  score}``; ``state`` is the camera the person is seen on, and ``not_home``
  ``presence_timeout`` s after their last track ended (a timer of the sink, not an event).
- ``<prefix>/bridge/status``: retained "online" while this process is connected. MQTT allows
  one last will per connection, so the will is on this bridge topic ("offline"): if the
  process dies, the bridge goes offline while the camera topics keep their last value.
  Consumers must read both (the Home Assistant entities do, with ``availability_mode: all``).
  Use a distinct ``topic_prefix`` per process.
- With ``double_take_topics``: ``double-take/matches/<person>`` and
  ``double-take/cameras/<camera>`` per identification, shaped like Double Take's payloads.

Home Assistant discovery (``ha_discovery``), under ``<discovery_prefix>/<component>/<node>/``:
a sensor per person (camera or ``not_home``, the JSON as attributes), and per camera the
last-name sensor, an occupancy ``binary_sensor``, a people-count sensor and an ``image`` of the
snapshot; with ``device`` and ``origin`` blocks and availability (bridge, and camera status).

State of earlier runs: on its first connection the sink reads the retained people, last-name,
people-in-view and snapshot topics under its prefix (it subscribes, then publishes a marker on
``<prefix>/bridge/scan``: when the marker comes back the broker has sent every retained
message), then unsubscribes. People and last names that a run which died left "present" expire
after the timeout, stale in-view lists are emptied, and ``forget`` finds a person's topics from
earlier runs. ``close`` expires everything at once: a stopped sink leaves nobody present.

Delivery: events go into our own bounded buffer and leave it only when the broker has
acknowledged them (``on_publish`` for QoS 1/2 is called on PUBACK/PUBCOMP). At most ``WINDOW``
messages are handed to paho and not yet acknowledged, so paho's own queue stays bounded even when
the broker accepts the connection but reads nothing. paho would resend its unacknowledged
messages after a reconnect from that queue; we drop its copies instead (``drop_out_messages``)
and republish everything still in our buffer, in order, and every retained topic's latest
value. Events are thus delivered at least once: a duplicate is possible when a PUBACK is lost
with the connection. When the buffer is full the oldest event is dropped (counted and logged).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import ssl
import threading
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import cv2
import numpy as np
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from slugify import slugify

from streamrec.records import Event
from streamrec.sinks.events import DropCounter, SinkError, event_json, mentioned

if TYPE_CHECKING:
    from streamrec.config import MqttConfig

log = logging.getLogger(__name__)

RECONNECT_MIN_DELAY = 1  # seconds, doubled after each failed attempt ...
RECONNECT_MAX_DELAY = 30  # ... up to this
STATUS_GRACE = 1.0  # seconds close() waits for the "offline" messages after draining events
WINDOW = 64  # messages handed to paho and not yet acknowledged, at most
SCAN_TIMEOUT = 10.0  # seconds to wait for the retained state of earlier runs
SCAN_MAX = 10000  # retained messages of earlier runs read at most
NOT_HOME = "not_home"
DOUBLE_TAKE = "double-take"
RESERVED_CAMERAS = ("people", "bridge")  # top levels of our own under the prefix


def topic_segment(name: str) -> str:
    """``name`` as one MQTT topic level: letters, digits, ``_.-`` only.

    A stream URL is reduced to host and path so that credentials never end up in a topic.
    """
    try:
        parts = urlsplit(name)
        if parts.scheme and parts.hostname:
            name = parts.hostname + (f"_{parts.port}" if parts.port else "") + parts.path
    except ValueError:  # e.g. a malformed port: keep the raw name
        pass
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_.") or "unknown"


def camera_segment(camera: str) -> str:
    """The topic level of a camera; never one of the prefix's own levels (``people`` ...)."""
    segment = topic_segment(camera)
    return f"{segment}_camera" if segment in RESERVED_CAMERAS else segment


def person_slug(name: str) -> str:
    """A person's topic level: lower-case ASCII letters, digits and ``_`` (unicode names are
    transliterated: ``José Pérez`` -> ``jose_perez``, ``李小龙`` -> ``li_xiao_long``)."""
    return slugify(name, separator="_") or "person"


def _ha_id(name: str) -> str:
    """Home Assistant discovery ids allow only ``[A-Za-z0-9_-]``."""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", name)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds")


def _json(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def encode_snapshot(image: np.ndarray, max_width: int, quality: int) -> bytes | None:
    """JPEG of a BGR image, scaled down to ``max_width`` pixels wide; None if unusable."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3 or not image.size:
        return None
    height, width = image.shape[:2]
    if width > max_width:
        size = (max_width, max(1, round(height * max_width / width)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return buf.tobytes() if ok else None


@dataclass
class _Pending:
    topic: str
    payload: bytes
    names: frozenset[str]  # the names and labels it carries, so that forget() can drop it


@dataclass
class _Track:
    name: str | None = None
    box: list[float] | None = None


@dataclass
class _Person:
    name: str  # as in the gallery
    slug: str
    camera: str
    last_seen: float  # epoch seconds
    score: float | None
    present: bool  # state is ``camera`` (else not_home)


@dataclass
class _Scan:
    """Retained messages of earlier runs, read once after the first connection."""

    token: str = ""
    messages: dict[str, bytes] = field(default_factory=dict)
    complete: bool = False
    done: bool = False  # adopted into our state (or given up)
    forget: set[str] = field(default_factory=set)  # forget() before the scan was done
    deadline: float | None = None  # monotonic time to give up waiting for the marker


class MqttEventSink:
    """Publishes events and presence to an MQTT broker without ever blocking the pipeline.

    Connecting is asynchronous: an unreachable broker at start is logged and retried forever
    (1 s doubling to 30 s); meanwhile events are buffered. See the module docstring for the
    topics and the delivery guarantees.
    """

    def __init__(
        self,
        host: str,
        port: int = 1883,
        *,
        username: str | None = None,
        password: str | None = None,
        topic_prefix: str = "streamrec",
        client_id: str | None = None,
        qos: int = 1,
        keepalive: int = 30,
        ha_discovery: bool = False,
        discovery_prefix: str = "homeassistant",
        presence_timeout: float = 120.0,
        snapshots: bool = True,
        snapshot_max_width: int = 640,
        snapshot_quality: int = 80,
        double_take_topics: bool = False,
        buffer_max: int = 10000,
        tls: bool = False,
        ca_certs: str | None = None,
        certfile: str | None = None,
        keyfile: str | None = None,
        tls_insecure: bool = False,
    ) -> None:
        prefix, discovery = topic_prefix.strip("/"), discovery_prefix.strip("/")
        for key, value in (("topic_prefix", prefix), ("discovery_prefix", discovery)):
            if not value or "+" in value or "#" in value:
                raise SinkError(f"MQTT {key} must be non-empty without + or #, got {value!r}")
        if qos not in (0, 1, 2):
            raise SinkError(f"MQTT qos must be 0, 1 or 2, got {qos}")
        if buffer_max < 1:
            raise SinkError(f"MQTT buffer_max must be at least 1, got {buffer_max}")
        if presence_timeout <= 0:
            raise SinkError(f"MQTT presence_timeout must be positive, got {presence_timeout}")
        self.address = f"{host}:{port}"
        self.prefix = prefix
        self.bridge_topic = f"{prefix}/bridge/status"
        self._qos = qos
        self._discovery = discovery if ha_discovery else None
        self._node = _ha_id(prefix)
        self._timeout = presence_timeout
        self._snapshots = snapshots
        self._snapshot_width = snapshot_max_width
        self._snapshot_quality = snapshot_quality
        self._double_take = double_take_topics
        self._buffer_max = buffer_max

        self._lock = threading.Condition()  # guards everything below; never held in paho calls
        self._pending: OrderedDict[int, _Pending] = OrderedDict()  # seq -> not yet acknowledged
        self._unsent: deque[int] = deque()  # seqs to hand to paho on the current connection
        self._next_seq = 0
        self._inflight: dict[int, int | str] = {}  # paho mid -> seq or retained topic
        self._acks: deque[int] = deque()  # acknowledged mids, appended by paho's thread
        self._retained: dict[str, bytes] = {self.bridge_topic: b"online"}  # topic -> latest
        self._dirty: dict[str, None] = {}  # retained topics to (re)publish, in order
        self._cameras: set[str] = set()
        self._tracks: dict[tuple[str, int], _Track] = {}  # open tracks by (camera, track id)
        self._people: dict[str, _Person] = {}  # by name
        self._slugs: dict[str, str] = {}  # slug -> name
        self._deadlines: dict[tuple[str, str], float] = {}  # (kind, key) -> monotonic time
        self._snapshot_owner: dict[str, str | None] = {}  # camera -> name (None: earlier run)
        self._snapshot_todo: dict[str, tuple[str, np.ndarray]] = {}  # camera -> (name, image)
        self._scan = _Scan()
        self._generation = 0  # counts successful connects
        self._connected = False
        self._closing = False
        self._stop = False
        self._problem = ""  # last connection problem logged, to log each one once
        self._dropped = DropCounter(f"MQTT {self.address}")
        self._wake = threading.Event()

        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"streamrec-{uuid.uuid4().hex[:12]}",
            clean_session=True,
        )
        if username is not None:
            client.username_pw_set(username, password)
        _set_tls(client, tls, ca_certs, certfile, keyfile, tls_insecure)
        client.will_set(self.bridge_topic, "offline", qos=1, retain=True)
        client.reconnect_delay_set(RECONNECT_MIN_DELAY, RECONNECT_MAX_DELAY)
        client.max_inflight_messages_set(WINDOW)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        self._client = client
        self._sender = threading.Thread(target=self._run, name="mqtt-sink", daemon=True)
        self._sender.start()
        client.connect_async(host, port, keepalive)
        client.loop_start()

    @classmethod
    def from_config(cls, cfg: MqttConfig) -> MqttEventSink:
        """The sink of an ``events.mqtt`` config section."""
        return cls(
            cfg.host,
            cfg.port,
            username=cfg.username,
            password=cfg.password,
            topic_prefix=cfg.topic_prefix,
            qos=cfg.qos,
            ha_discovery=cfg.ha_discovery,
            discovery_prefix=cfg.discovery_prefix,
            presence_timeout=cfg.presence_timeout,
            snapshots=cfg.snapshots,
            snapshot_max_width=cfg.snapshot_max_width,
            snapshot_quality=cfg.snapshot_quality,
            double_take_topics=cfg.double_take_topics,
            buffer_max=cfg.buffer_max,
            tls=cfg.tls,
            ca_certs=cfg.ca_certs,
            certfile=cfg.certfile,
            keyfile=cfg.keyfile,
            tls_insecure=cfg.tls_insecure,
        )

    # -- public API ------------------------------------------------------------------------

    name = "mqtt"

    @property
    def connected(self) -> bool:
        return self._connected

    def health(self) -> dict[str, Any]:
        """For ``/health``: connected to the broker, events waiting and dropped."""
        return {
            "ok": self._connected,
            "connected": self._connected,
            "pending": self.pending,
            "dropped": self.dropped,
            "problem": self._problem or None,
        }

    @property
    def pending(self) -> int:
        """Events not yet acknowledged by the broker."""
        with self._lock:
            return len(self._pending)

    @property
    def in_flight(self) -> int:
        """Messages handed to paho and not yet acknowledged (at most ``WINDOW``)."""
        with self._lock:
            return len(self._inflight)

    @property
    def problem(self) -> str:
        """The last connection problem ("" once connected), e.g. for a health report."""
        return self._problem

    @property
    def dropped(self) -> int:
        """Events dropped because the buffer was full."""
        return self._dropped.count

    def write(self, event: Event) -> None:
        camera = camera_segment(event.camera or event.source)
        name = event.fields.get("name")
        name = name if isinstance(name, str) and name else None
        seen = event.captured or time.time()
        payload = event_json(event).encode()
        with self._lock:
            if self._closing:
                raise RuntimeError(f"MQTT sink {self.address} is already closed")
            self._add_camera(camera)
            self._queue(f"{self.prefix}/{camera}/events", payload, mentioned(event.to_dict()))
            key = (camera, event.track_id)
            if event.event == "track_start":
                box = event.fields.get("box")
                self._tracks[key] = _Track(box=list(box) if box is not None else None)
            elif event.event in ("identified", "renamed"):
                track = self._tracks.setdefault(key, _Track())
                previous, track.name = track.name, name
                if previous is not None and previous != name:
                    self._left(camera, previous, seen)
                if name is not None:
                    self._identified(camera, track, name, event, seen)
            elif event.event == "track_end":
                ended = self._tracks.pop(key, None)
                if ended is not None and ended.name is not None:
                    self._left(camera, ended.name, seen)
            self._update_view(camera)
        self._wake.set()

    def set_status(self, camera: str, status: str) -> None:
        """Publish the retained ``<prefix>/<camera>/status`` (latest value wins)."""
        camera = camera_segment(camera)
        with self._lock:
            self._add_camera(camera)
            self._set_retained(f"{self.prefix}/{camera}/status", status.encode())
        self._wake.set()

    def forget(self, name: str) -> None:
        """Erase a person: clear (empty retained payloads) their people topic, their Home
        Assistant entity, and every camera's last name and snapshot showing them; drop them
        from the sink's state and their undelivered events from the buffer.

        Topics left by earlier runs are found by the scan of the first connection (applied
        when it completes). ``sync`` waits until the broker has it all."""
        with self._lock:
            if not self._scan.done:
                self._scan.forget.add(name)
            person = self._people.pop(name, None)
            if person is not None:
                self._slugs.pop(person.slug, None)
                self._clear_person(person.slug)
            self._deadlines.pop(("person", name), None)
            for track in self._tracks.values():
                if track.name == name:
                    track.name = None
            for camera, topic, value in self._camera_topics("last_name"):
                if value == name.encode():
                    self._set_retained(topic, b"")
                    self._deadlines.pop(("last_name", camera), None)
            for camera in self._cameras:
                self._update_view(camera)
            self._forget_snapshots(name)
            gone = [seq for seq, item in self._pending.items() if name in item.names]
            for seq in gone:
                del self._pending[seq]
            self._unsent = deque(seq for seq in self._unsent if seq in self._pending)
        self._wake.set()

    def sync(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s until the state of earlier runs has been read and every
        event and retained value has been acknowledged by the broker; True if so."""
        with self._lock:
            return self._lock.wait_for(self._idle, timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Expire every presence (nobody is watched any more), wait up to ``timeout`` s for
        everything to be acknowledged, then publish the "offline" statuses (up to 1 s more) and
        disconnect. Idempotent."""
        deadline = time.monotonic() + timeout
        with self._lock:
            if self._closing:
                return
            self._closing = True
            self._tracks.clear()
            for camera in self._cameras:
                self._update_view(camera)
            for person in self._people.values():
                self._deadlines[("person", person.name)] = 0.0
            for camera, _, value in self._camera_topics("last_name"):
                if value:
                    self._deadlines[("last_name", camera)] = 0.0
            self._expire(float("inf"))
        self._wake.set()
        with self._lock:
            self._lock.wait_for(self._idle, timeout)
            lost = len(self._pending)
            self._stop = True
            offline = [self.bridge_topic] + [f"{self.prefix}/{c}/status" for c in self._cameras]
        self._wake.set()
        self._sender.join()
        if lost:
            log.error("MQTT %s: %d events were not delivered before close", self.address, lost)
        if self._connected:
            infos = [self._client.publish(t, "offline", qos=1, retain=True) for t in offline]
            status_deadline = max(deadline, time.monotonic() + STATUS_GRACE)
            for info in infos:
                try:
                    info.wait_for_publish(max(status_deadline - time.monotonic(), 0.01))
                except (RuntimeError, ValueError):  # the connection went away meanwhile
                    break
        self._client.disconnect()
        self._client.loop_stop()

    def __enter__(self) -> MqttEventSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- state (call with self._lock held) -------------------------------------------------

    def _idle(self) -> bool:
        scanned = self._scan.done or (self._generation == 0 and not self._scan.forget)
        return (
            scanned
            and not self._pending
            and not self._dirty
            and not self._inflight
            and not self._snapshot_todo
        )

    def _camera_topics(self, leaf: str) -> list[tuple[str, str, bytes]]:
        """(camera, topic, value) of each retained ``<prefix>/<camera>/<leaf>`` held."""
        found = []
        for topic, value in self._retained.items():
            level, _, rest = topic.removeprefix(f"{self.prefix}/").partition("/")
            if topic.startswith(f"{self.prefix}/") and rest == leaf and level != "people":
                found.append((level, topic, value))
        return found

    def _queue(self, topic: str, payload: bytes, names: frozenset[str]) -> None:
        """Buffer a non-retained message (an event), dropping the oldest when full."""
        if len(self._pending) >= self._buffer_max:
            seq, _ = self._pending.popitem(last=False)
            if self._unsent and self._unsent[0] == seq:  # both in seq order: bounded alike
                self._unsent.popleft()
            self._dropped.add()
        seq = self._next_seq
        self._next_seq += 1
        self._pending[seq] = _Pending(topic, payload, names)
        self._unsent.append(seq)

    def _set_retained(self, topic: str, value: bytes) -> None:
        """Publish ``value`` retained on ``topic`` (an empty value clears the topic)."""
        if self._retained.get(topic) != value:
            self._retained[topic] = value
            self._dirty[topic] = None

    def _add_camera(self, camera: str) -> None:
        if camera in self._cameras:
            return
        self._cameras.add(camera)
        status = f"{self.prefix}/{camera}/status"
        if status not in self._retained:
            self._set_retained(status, b"online")
        self._update_view(camera)
        for component, object_id, config in self._camera_entities(camera):
            self._announce(component, object_id, config)

    def _person(self, name: str) -> _Person:
        person = self._people.get(name)
        if person is None:
            slug = person_slug(name)
            if self._slugs.get(slug, name) != name:  # another name with the same slug
                slug += "_" + hashlib.sha256(name.encode()).hexdigest()[:8]
            person = _Person(name, slug, "", 0.0, None, False)
            self._register(person)
        return person

    def _register(self, person: _Person) -> None:
        self._people[person.name] = person
        self._slugs[person.slug] = person.name
        self._announce("sensor", f"person_{person.slug}", self._person_entity(person))

    def _open_cameras(self, name: str) -> list[str]:
        return [camera for (camera, _), t in self._tracks.items() if t.name == name]

    def _identified(self, camera: str, track: _Track, name: str, event: Event, seen: float) -> None:
        score = event.fields.get("score")
        person = self._person(name)
        person.camera, person.last_seen, person.present = camera, seen, True
        person.score = float(score) if isinstance(score, (int, float)) else None
        self._deadlines.pop(("person", name), None)
        self._publish_person(person)
        self._set_retained(f"{self.prefix}/{camera}/last_name", name.encode())
        self._deadlines.pop(("last_name", camera), None)
        snapshot = getattr(event, "snapshot", None)
        if self._snapshots and isinstance(snapshot, np.ndarray):
            self._snapshot_todo[camera] = (name, snapshot)
        if self._double_take:
            self._double_take_match(camera, track, person, event.track_id, seen)

    def _left(self, camera: str, name: str, seen: float) -> None:
        """One of ``name``'s tracks on ``camera`` ended (or was renamed to someone else)."""
        person = self._people.get(name)
        if person is None:  # forgotten meanwhile
            return
        person.last_seen = max(person.last_seen, seen)
        cameras = self._open_cameras(name)
        if cameras:
            person.camera = cameras[-1]
        else:
            self._deadlines[("person", name)] = time.monotonic() + self._timeout
        self._publish_person(person)
        if not any(t.name for (c, _), t in self._tracks.items() if c == camera):
            self._deadlines[("last_name", camera)] = time.monotonic() + self._timeout

    def _expire(self, now: float) -> None:
        """Run the presence timers that are due at ``now`` (monotonic)."""
        for key, when in list(self._deadlines.items()):
            if when > now:
                continue
            del self._deadlines[key]
            kind, ident = key
            if kind == "person":
                person = self._people.get(ident)
                if person is not None and person.present and not self._open_cameras(ident):
                    person.present = False
                    self._publish_person(person)
            else:
                self._set_retained(f"{self.prefix}/{ident}/last_name", b"")

    def _publish_person(self, p: _Person) -> None:
        last_seen = round(p.last_seen, 3)
        self._set_retained(
            f"{self.prefix}/people/{p.slug}",
            _json(
                {
                    "name": p.name,
                    "state": p.camera if p.present else NOT_HOME,
                    "camera": p.camera,
                    "last_seen": _iso(last_seen),
                    "last_seen_ts": last_seen,
                    "score": p.score,
                }
            ),
        )

    def _update_view(self, camera: str) -> None:
        """Publish who is in view on ``camera`` now."""
        tracks = [t for (c, _), t in self._tracks.items() if c == camera]
        people = sorted({t.name for t in tracks if t.name is not None})
        view = {"camera": camera, "people": people, "count": len(people), "faces": len(tracks)}
        self._set_retained(f"{self.prefix}/{camera}/people", _json(view))

    def _clear_person(self, slug: str) -> None:
        self._set_retained(f"{self.prefix}/people/{slug}", b"")
        discovery = self._discovery or "homeassistant"  # also an entity of an earlier run
        self._set_retained(f"{discovery}/sensor/{self._node}/person_{slug}/config", b"")

    def _forget_snapshots(self, name: str) -> None:
        """Clear the snapshots showing ``name``, and those of earlier runs (owner unknown)."""
        self._snapshot_todo = {c: v for c, v in self._snapshot_todo.items() if v[0] != name}
        for camera, owner in list(self._snapshot_owner.items()):
            if owner in (name, None):
                del self._snapshot_owner[camera]
                self._set_retained(f"{self.prefix}/{camera}/snapshot", b"")

    def _double_take_match(
        self, camera: str, track: _Track, person: _Person, track_id: int, seen: float
    ) -> None:
        """Double Take's ``matches/<name>`` and ``cameras/<camera>`` payloads (the fields an
        automation reads: camera, match name, confidence in percent, box)."""
        match: dict[str, Any] = {
            "name": person.name,
            "confidence": round(person.score * 100, 2) if person.score is not None else None,
            "match": True,
            "detector": "streamrec",
        }
        if track.box is not None and len(track.box) == 4:
            x1, y1, x2, y2 = (round(float(v)) for v in track.box)
            match["box"] = {"top": y1, "left": x1, "width": x2 - x1, "height": y2 - y1}
        base = {"id": f"{camera}-{track_id}", "timestamp": _iso(seen), "camera": camera}
        faces = sum(1 for (c, _) in self._tracks if c == camera)
        counts = {"person": faces, "match": 1, "miss": 0, "unknown": 0}
        by_camera = {**base, "zones": [], "matches": [match], "misses": [], "unknowns": []}
        self._queue(
            f"{DOUBLE_TAKE}/matches/{person.slug}",
            _json({**base, "match": match}),
            frozenset([person.name]),
        )
        self._queue(
            f"{DOUBLE_TAKE}/cameras/{camera}",
            _json({**by_camera, "counts": counts}),
            frozenset([person.name]),
        )

    # -- Home Assistant discovery ----------------------------------------------------------

    def _announce(self, component: str, object_id: str, config: dict[str, Any]) -> None:
        if self._discovery is not None:
            topic = f"{self._discovery}/{component}/{self._node}/{object_id}/config"
            self._set_retained(topic, _json(config))

    def _entity(
        self, unique: str, name: str, device: dict[str, Any], *availability: str
    ) -> dict[str, Any]:
        from streamrec import __version__

        return {
            "name": name,
            "unique_id": f"{self._node}_{unique}",
            "availability": [
                {"topic": t, "payload_available": "online", "payload_not_available": "offline"}
                for t in availability
            ],
            "availability_mode": "all",
            "device": {"manufacturer": "streamrec", "sw_version": __version__, **device},
            "origin": {"name": "streamrec", "sw_version": __version__},
        }

    def _person_entity(self, person: _Person) -> dict[str, Any]:
        topic = f"{self.prefix}/people/{person.slug}"
        device = {"identifiers": [f"{self._node}_people"], "name": "streamrec people"}
        return {
            **self._entity(f"person_{person.slug}", person.name, device, self.bridge_topic),
            "state_topic": topic,
            "value_template": "{{ value_json.state }}",
            "json_attributes_topic": topic,
            "icon": "mdi:account",
        }

    def _camera_entities(self, camera: str) -> Iterator[tuple[str, str, dict[str, Any]]]:
        """(component, object id, config) of each entity of a camera."""
        base, cam = f"{self.prefix}/{camera}", _ha_id(camera)
        device = {
            "identifiers": [f"{self._node}_{cam}"],
            "name": f"streamrec {camera}",
            "model": "face recognition camera",
        }
        availability = (self.bridge_topic, f"{base}/status")

        def entity(kind: str, name: str) -> dict[str, Any]:
            return self._entity(f"{cam}_{kind}", name, device, *availability)

        yield (
            "sensor",
            f"{cam}_last_name",
            {
                **entity("last_name", "Last recognised"),
                "state_topic": f"{base}/last_name",
                "json_attributes_topic": f"{base}/people",
                "icon": "mdi:face-recognition",
            },
        )
        yield (
            "binary_sensor",
            f"{cam}_occupancy",
            {
                **entity("occupancy", "Occupancy"),
                "state_topic": f"{base}/people",
                "value_template": "{{ 'ON' if value_json.faces > 0 else 'OFF' }}",
                "payload_on": "ON",
                "payload_off": "OFF",
                "device_class": "occupancy",
            },
        )
        yield (
            "sensor",
            f"{cam}_count",
            {
                **entity("count", "People in view"),
                "state_topic": f"{base}/people",
                "value_template": "{{ value_json.count }}",
                "state_class": "measurement",
                "icon": "mdi:account-group",
            },
        )
        if self._snapshots:
            yield (
                "image",
                f"{cam}_snapshot",
                {
                    **entity("snapshot", "Snapshot"),
                    "image_topic": f"{base}/snapshot",
                    "content_type": "image/jpeg",
                },
            )

    # -- retained state of earlier runs ----------------------------------------------------

    def _adopt_scan(self) -> None:
        """Take over the retained topics of earlier runs that this run has not written."""
        scan, now = self._scan, time.time()
        for topic, payload in scan.messages.items():
            level, _, leaf = topic[len(self.prefix) + 1 :].partition("/")
            if topic in self._retained:
                continue  # ours by now
            if level == "people":
                self._adopt_person(leaf, payload, now)
            elif leaf == "last_name":
                if payload.decode(errors="replace") in scan.forget:
                    self._set_retained(topic, b"")
                else:
                    self._retained[topic] = payload
                    self._deadlines[("last_name", level)] = time.monotonic() + self._timeout
            elif leaf == "people":
                empty = {"camera": level, "people": [], "count": 0, "faces": 0}
                self._set_retained(topic, _json(empty))
            elif leaf == "snapshot":
                self._snapshot_owner.setdefault(level, None)
        for name in scan.forget:
            self._forget_snapshots(name)
        scan.messages.clear()
        scan.forget.clear()
        scan.done = True
        scan.deadline = None

    def _adopt_person(self, slug: str, payload: bytes, now: float) -> None:
        try:
            data = json.loads(payload)
            name, camera = data["name"], data.get("camera") or ""
            last_seen = float(data.get("last_seen_ts") or 0.0)
            score = data.get("score")
        except (ValueError, TypeError, KeyError):
            return  # not one of ours
        if not isinstance(name, str) or not isinstance(camera, str):
            return
        if name in self._scan.forget:
            self._clear_person(slug)
            return
        if name in self._people or slug in self._slugs:
            return
        present = data.get("state") != NOT_HOME
        score = float(score) if isinstance(score, (int, float)) else None
        person = _Person(name, slug, camera, last_seen, score, present)
        self._retained[f"{self.prefix}/people/{slug}"] = payload
        self._register(person)
        if present:
            left = min(max(last_seen + self._timeout - now, 0.0), self._timeout)
            self._deadlines[("person", name)] = time.monotonic() + left

    def _scan_filters(self) -> list[str]:
        leaves = ("people/+", "+/last_name", "+/people", "+/snapshot", "bridge/scan")
        return [f"{self.prefix}/{leaf}" for leaf in leaves]

    # -- sender thread ---------------------------------------------------------------------

    def _run(self) -> None:
        """The only thread that publishes while open, so retained values keep their order."""
        while True:
            with self._lock:
                scan = self._scan.deadline
                wait = min(self._deadlines.values(), default=scan)
                wait = wait if scan is None or wait is None else min(wait, scan)
            self._wake.wait(None if wait is None else max(wait - time.monotonic(), 0.0))
            self._wake.clear()
            with self._lock:
                now = time.monotonic()
                self._apply_acks()
                self._expire(now)
                if not self._scan.done and self._scan.deadline is not None:
                    if not self._scan.complete and now >= self._scan.deadline:
                        log.warning(
                            "MQTT %s: no answer to the marker; the retained state of earlier "
                            "runs was not read",
                            self.address,
                        )
                        self._scan.complete = True
                    if self._scan.complete:
                        self._adopt_scan()
                todo, self._snapshot_todo = self._snapshot_todo, {}
                if self._stop:
                    return
            self._encode(todo)
            self._publish()
            with self._lock:
                self._lock.notify_all()

    def _encode(self, todo: dict[str, tuple[str, np.ndarray]]) -> None:
        for camera, (name, image) in todo.items():
            jpeg = encode_snapshot(image, self._snapshot_width, self._snapshot_quality)
            with self._lock:
                if jpeg is not None and name in self._people:  # not forgotten meanwhile
                    self._snapshot_owner[camera] = name
                    self._set_retained(f"{self.prefix}/{camera}/snapshot", jpeg)

    def _publish(self) -> None:
        """Hand retained values, then buffered events, to paho while the window has room."""
        while True:
            with self._lock:
                if not self._connected or self._stop or len(self._inflight) >= WINDOW:
                    return
                generation = self._generation
                flight: int | str
                if self._dirty:
                    flight = topic = next(iter(self._dirty))
                    del self._dirty[topic]
                    payload, qos, retain = self._retained[topic], 1, True
                elif self._unsent:
                    flight = seq = self._unsent.popleft()
                    item = self._pending.get(seq)
                    if item is None:  # dropped from a full buffer or forgotten meanwhile
                        continue
                    topic, payload, qos, retain = item.topic, item.payload, self._qos, False
                else:
                    return
            info = self._client.publish(topic, payload, qos=qos, retain=retain)
            with self._lock:
                if self._generation != generation:
                    continue  # reconnected: on_connect has queued everything again
                if info.rc == mqtt.MQTT_ERR_SUCCESS:
                    self._inflight[info.mid] = flight
                    continue
                if isinstance(flight, str):
                    self._dirty[flight] = None
                else:
                    self._unsent.appendleft(flight)
                if info.rc != mqtt.MQTT_ERR_NO_CONN:  # NO_CONN: resent after reconnect
                    log.error("MQTT %s: publish failed (%s)", self.address, info.rc)
                return

    def _apply_acks(self) -> None:
        while self._acks:
            flight = self._inflight.pop(self._acks.popleft(), None)
            if isinstance(flight, int):
                self._pending.pop(flight, None)
            elif (
                flight is not None
                and self._retained.get(flight) == b""
                and flight not in self._dirty
            ):
                del self._retained[flight]  # a cleared topic: nothing left to remember

    # -- paho callbacks (paho's network thread) --------------------------------------------

    def _log_problem(self, problem: str) -> None:
        if problem != self._problem:
            self._problem = problem
            log.warning("MQTT %s: %s; buffering events and retrying", self.address, problem)

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason_code: mqtt.ReasonCode,
        properties: mqtt.Properties | None,
    ) -> None:
        if reason_code.is_failure:
            self._log_problem(f"broker refused the connection ({reason_code})")
            return
        client.drop_out_messages()  # our buffer republishes them, see the module docstring
        with self._lock:
            scan = not self._scan.done
            if scan:
                self._scan.token, self._scan.complete = uuid.uuid4().hex, False
                self._scan.messages.clear()
                self._scan.deadline = time.monotonic() + SCAN_TIMEOUT
            token = self._scan.token
        if scan:  # before we publish anything; QoS 0 throughout, so the marker comes back
            # after the retained messages of the subscriptions
            client.subscribe([(f, 0) for f in self._scan_filters()])
            client.publish(f"{self.prefix}/bridge/scan", token, qos=0)
        with self._lock:
            self._apply_acks()
            self._generation += 1
            self._connected = True
            self._inflight.clear()
            self._unsent = deque(self._pending)
            self._dirty = dict.fromkeys(self._retained)
            backlog = len(self._pending)
        self._problem = ""
        log.info("MQTT %s: connected (%d buffered events to send)", self.address, backlog)
        self._wake.set()

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_codes: list[mqtt.ReasonCode],
        properties: mqtt.Properties | None,
    ) -> None:
        if any(rc.is_failure for rc in reason_codes):
            log.warning(
                "MQTT %s: the broker refused the subscriptions to read retained state "
                "(stale presence of earlier runs is not cleared)",
                self.address,
            )
            with self._lock:
                self._scan.complete = True
            self._wake.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            scan = self._scan
            if scan.complete or scan.done:
                return
            if msg.topic == f"{self.prefix}/bridge/scan":
                if msg.payload.decode(errors="replace") != scan.token:
                    return
                scan.complete = True
            elif msg.retain and len(scan.messages) < SCAN_MAX:
                # a snapshot's bytes are not needed, only that the camera has one
                snapshot = msg.topic.endswith("/snapshot")
                scan.messages[msg.topic] = b"" if snapshot else bytes(msg.payload)
                return
            else:
                return
        client.unsubscribe(self._scan_filters())
        self._wake.set()

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        self._log_problem("cannot connect to the broker")

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason_code: mqtt.ReasonCode,
        properties: mqtt.Properties | None,
    ) -> None:
        with self._lock:
            was_connected, self._connected = self._connected, False
            closing = self._closing
        if closing:
            return
        if was_connected:
            self._log_problem(f"lost the connection ({reason_code})")
        elif not self._problem:  # e.g. a TLS client certificate refused after the handshake
            self._log_problem(f"the broker closed the connection ({reason_code})")

    def _on_publish(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_code: mqtt.ReasonCode,
        properties: mqtt.Properties | None,
    ) -> None:
        # Called with paho's message lock held: only hand the mid to the sender thread.
        if reason_code.is_failure:  # MQTT 5 only: the broker refused it; resending won't help
            log.error("MQTT %s: broker rejected a message (%s)", self.address, reason_code)
        self._acks.append(mid)
        self._wake.set()


def _set_tls(
    client: mqtt.Client,
    tls: bool,
    ca_certs: str | None,
    certfile: str | None,
    keyfile: str | None,
    insecure: bool,
) -> None:
    """TLS with the system's CAs or ``ca_certs``, and a client certificate if given."""
    files = {"ca_certs": ca_certs, "certfile": certfile, "keyfile": keyfile}
    if not tls:
        if any(files.values()):
            raise SinkError("events.mqtt: ca_certs, certfile and keyfile need tls: true")
        return
    if keyfile and not certfile:
        raise SinkError("events.mqtt.keyfile needs events.mqtt.certfile (the client certificate)")
    for key, path in files.items():
        if path and not os.access(path, os.R_OK):
            raise SinkError(f"events.mqtt.{key}: cannot read {path} (a PEM file is expected)")
    try:
        client.tls_set(ca_certs=ca_certs, certfile=certfile, keyfile=keyfile)
    except (ssl.SSLError, ValueError) as exc:
        raise SinkError(
            f"events.mqtt: the TLS files ca_certs/certfile/keyfile were rejected ({exc}); "
            "give PEM files, the key unencrypted and matching the certificate"
        ) from None
    client.tls_insecure_set(insecure)
