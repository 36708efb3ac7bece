"""MQTT event sink (paho-mqtt 2.x) that keeps events while the broker is away.

Topics (``<prefix>`` is ``topic_prefix``, ``<camera>`` is ``event.camera or event.source``
made topic-safe):

- ``<prefix>/<camera>/events``: every event as JSON, QoS ``qos`` (1 by default), not retained.
- ``<prefix>/<camera>/status``: retained camera state set with ``set_status`` ("online",
  "offline", "reconnecting" ...); a camera that sends events before any ``set_status`` is
  announced "online".
- ``<prefix>/<camera>/last_name``: retained, the last non-empty ``name`` field of an event.
- ``<prefix>/bridge/status``: retained "online" while this process is connected. MQTT allows
  one last will per connection, so the will is on this bridge topic ("offline"): if the
  process dies, the bridge goes offline while the camera topics keep their last value.
  Consumers must read both (the Home Assistant entities do, with ``availability_mode: all``).
  Use a distinct ``topic_prefix`` per process.

Delivery: events go into our own bounded buffer and leave it only when the broker has
acknowledged them (``on_publish`` for QoS 1/2 is called on PUBACK/PUBCOMP). paho keeps its
unacknowledged messages across reconnects and would resend them itself, but it does so from an
unbounded queue that we cannot bound or inspect; so on every (re)connect we drop paho's copies
(``drop_out_messages``) and republish everything still in our buffer, in order. Events are thus
delivered at least once: a duplicate is possible when a PUBACK is lost with the connection.
When the buffer is full the oldest event is dropped (counted and logged).
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
import uuid
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from streamrec.records import Event
from streamrec.sinks.events import DropCounter, SinkError, event_json

log = logging.getLogger(__name__)

RECONNECT_MIN_DELAY = 1  # seconds, doubled after each failed attempt ...
RECONNECT_MAX_DELAY = 30  # ... up to this
STATUS_GRACE = 1.0  # seconds close() waits for the "offline" messages after draining events


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


def _ha_id(name: str) -> str:
    """Home Assistant discovery ids allow only ``[A-Za-z0-9_-]``."""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", name)


@dataclass
class _Pending:
    topic: str
    payload: bytes


class MqttEventSink:
    """Publishes events to an MQTT broker without ever blocking the pipeline.

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
        ha_prefix: str = "homeassistant",
        buffer_max: int = 10000,
        tls: bool = False,
    ) -> None:
        prefix = topic_prefix.strip("/")
        if not prefix or "+" in prefix or "#" in prefix:
            raise SinkError(f"MQTT topic prefix must be non-empty without + or #, got {prefix!r}")
        if qos not in (0, 1, 2):
            raise SinkError(f"MQTT qos must be 0, 1 or 2, got {qos}")
        if buffer_max < 1:
            raise SinkError(f"MQTT buffer_max must be at least 1, got {buffer_max}")
        self.address = f"{host}:{port}"
        self.prefix = prefix
        self.bridge_topic = f"{prefix}/bridge/status"
        self._qos = qos
        self._ha_prefix = ha_prefix.strip("/") if ha_discovery else None
        self._buffer_max = buffer_max

        self._lock = threading.Condition()  # guards everything below; never held in paho calls
        self._pending: OrderedDict[int, _Pending] = OrderedDict()  # seq -> not yet acknowledged
        self._unsent: deque[int] = deque()  # seqs to hand to paho on the current connection
        self._next_seq = 0
        self._mid_seq: dict[int, int] = {}  # paho message id -> seq, current connection only
        self._acks: deque[int] = deque()  # acknowledged mids, appended by paho's thread
        self._retained: dict[str, str] = {self.bridge_topic: "online"}  # topic -> latest value
        self._dirty: dict[str, None] = {}  # retained topics to (re)publish, in order
        self._cameras: set[str] = set()
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
        if tls:
            client.tls_set()
        client.will_set(self.bridge_topic, "offline", qos=1, retain=True)
        client.reconnect_delay_set(RECONNECT_MIN_DELAY, RECONNECT_MAX_DELAY)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        self._client = client
        self._sender = threading.Thread(target=self._run, name="mqtt-sink", daemon=True)
        self._sender.start()
        client.connect_async(host, port, keepalive)
        client.loop_start()

    # -- public API ------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def pending(self) -> int:
        """Events not yet acknowledged by the broker."""
        with self._lock:
            return len(self._pending)

    @property
    def dropped(self) -> int:
        """Events dropped because the buffer was full."""
        return self._dropped.count

    def write(self, event: Event) -> None:
        camera = topic_segment(event.camera or event.source)
        payload = event_json(event).encode()
        name = event.fields.get("name")
        with self._lock:
            if self._closing:
                raise RuntimeError(f"MQTT sink {self.address} is already closed")
            self._add_camera(camera)
            if len(self._pending) >= self._buffer_max:
                self._pending.popitem(last=False)
                self._dropped.add()
            seq = self._next_seq
            self._next_seq += 1
            self._pending[seq] = _Pending(f"{self.prefix}/{camera}/events", payload)
            self._unsent.append(seq)
            if isinstance(name, str) and name:
                self._set_retained(f"{self.prefix}/{camera}/last_name", name)
        self._wake.set()

    def set_status(self, camera: str, status: str) -> None:
        """Publish the retained ``<prefix>/<camera>/status`` (latest value wins)."""
        camera = topic_segment(camera)
        with self._lock:
            self._add_camera(camera)
            self._set_retained(f"{self.prefix}/{camera}/status", status)
        self._wake.set()

    def close(self, timeout: float = 5.0) -> None:
        """Wait up to ``timeout`` s for buffered events to be acknowledged, then publish the
        "offline" statuses (up to 1 s more) and disconnect. Idempotent."""
        deadline = time.monotonic() + timeout
        with self._lock:
            if self._closing:
                return
            self._closing = True
            self._lock.wait_for(lambda: not self._pending, timeout)
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

    # -- internals (call with self._lock held) ---------------------------------------------

    def _set_retained(self, topic: str, value: str) -> None:
        if self._retained.get(topic) != value:
            self._retained[topic] = value
            self._dirty[topic] = None

    def _add_camera(self, camera: str) -> None:
        if camera in self._cameras:
            return
        self._cameras.add(camera)
        status = f"{self.prefix}/{camera}/status"
        if status not in self._retained:
            self._set_retained(status, "online")
        if self._ha_prefix is not None:
            node, cam = _ha_id(self.prefix), _ha_id(camera)
            topic = f"{self._ha_prefix}/sensor/{node}/{cam}_last_name/config"
            self._set_retained(topic, json.dumps(self._ha_config(camera, node, cam)))

    def _ha_config(self, camera: str, node: str, cam: str) -> dict[str, Any]:
        """Home Assistant MQTT discovery: one sensor per camera with the last recognised
        name, the last event as attributes, available while bridge and camera are online."""
        base = f"{self.prefix}/{camera}"
        return {
            "name": "Last recognised",
            "unique_id": f"{node}_{cam}_last_name",
            "state_topic": f"{base}/last_name",
            "json_attributes_topic": f"{base}/events",
            "availability": [{"topic": self.bridge_topic}, {"topic": f"{base}/status"}],
            "availability_mode": "all",
            "payload_available": "online",
            "payload_not_available": "offline",
            "icon": "mdi:face-recognition",
            "device": {
                "identifiers": [f"{node}_{cam}"],
                "name": f"streamrec {camera}",
                "manufacturer": "streamrec",
                "model": "face recognition camera",
            },
        }

    def _apply_acks(self) -> None:
        while self._acks:
            seq = self._mid_seq.pop(self._acks.popleft(), None)
            if seq is not None:
                self._pending.pop(seq, None)
        if not self._pending:
            self._lock.notify_all()

    # -- sender thread ---------------------------------------------------------------------

    def _run(self) -> None:
        """The only thread that publishes while open, so retained values keep their order."""
        while True:
            self._wake.wait()
            self._wake.clear()
            with self._lock:
                self._apply_acks()
                if self._stop:
                    return
                if not self._connected:
                    continue
                generation = self._generation
                retained = [(t, self._retained[t]) for t in self._dirty]
                self._dirty.clear()
                seqs, self._unsent = self._unsent, deque()
            for topic, value in retained:
                self._client.publish(topic, value, qos=1, retain=True)
            for seq in seqs:
                if self._generation != generation:
                    break  # reconnected: on_connect has queued everything again
                with self._lock:
                    item = self._pending.get(seq)
                if item is None:  # dropped from a full buffer meanwhile
                    continue
                info = self._client.publish(item.topic, item.payload, qos=self._qos)
                with self._lock:
                    if info.rc == mqtt.MQTT_ERR_SUCCESS and self._generation == generation:
                        self._mid_seq[info.mid] = seq
                    elif info.rc != mqtt.MQTT_ERR_NO_CONN:  # NO_CONN: resent after reconnect
                        log.error("MQTT %s: publish failed (%s)", self.address, info.rc)

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
            self._apply_acks()
            self._generation += 1
            self._connected = True
            self._mid_seq.clear()
            self._unsent = deque(self._pending)
            self._dirty = dict.fromkeys(self._retained)
            backlog = len(self._pending)
        self._problem = ""
        log.info("MQTT %s: connected (%d buffered events to send)", self.address, backlog)
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
        if was_connected and not closing:
            self._log_problem(f"lost the connection ({reason_code})")

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
