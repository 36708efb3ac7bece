"""One connection to an MQTT broker (paho-mqtt 2.x): what the event sink, the Frigate bridge and
``streamrec erase`` share.

A :class:`MqttLink` connects in the background and reconnects forever (1 s doubling to 30 s),
logging each problem once. It publishes two kinds of messages:

- buffered messages (events): they wait in a bounded buffer (the oldest dropped when full,
  counted and logged) and leave it only when the broker has acknowledged them (``on_publish``
  for QoS 1/2 is called on PUBACK/PUBCOMP); :meth:`MqttLink.drop` removes those naming an
  erased person;
- retained values: the latest value of each topic is kept and published (an empty value
  clears the topic; a cleared topic is forgotten once acknowledged).

At most ``WINDOW`` messages are handed to paho and not yet acknowledged, so paho's own queue
stays bounded even when the broker accepts the connection but reads nothing. paho would resend
its unacknowledged messages after a reconnect from that queue; we drop its copies instead
(``drop_out_messages``) and republish, in order, every retained topic's latest value, then
everything still in our buffer. Messages are thus delivered at least once: a duplicate is
possible when a PUBACK is lost with the connection. One thread (the sender) publishes, so
retained values keep their order; an owner's ``tick`` runs on it before each round (timers,
work kept off the caller's thread).

It can also read: :class:`Scan` reads the retained messages under some filters once after the
first connection (subscribe, then publish a marker: when the marker comes back the broker has
sent every retained message of the subscriptions); :meth:`MqttLink.subscribe` follows a topic on
every connection.
"""

from __future__ import annotations

import logging
import os
import ssl
import threading
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from streamrec.sinks.events import DropCounter, SinkError

if TYPE_CHECKING:
    from streamrec.config import MqttConfig

log = logging.getLogger("streamrec.sinks.mqtt")

RECONNECT_MIN_DELAY = 1  # seconds, doubled after each failed attempt ...
RECONNECT_MAX_DELAY = 30  # ... up to this
STATUS_GRACE = 1.0  # seconds close() waits for its last messages after draining the rest
WINDOW = 64  # messages handed to paho and not yet acknowledged, at most
SCAN_TIMEOUT = 10.0  # seconds to wait for the marker of a scan
SCAN_MAX = 10000  # retained messages a scan reads at most


@dataclass(frozen=True)
class Tls:
    """TLS with the system's CAs or ``ca_certs``, and a client certificate if given."""

    ca_certs: str | None = None
    certfile: str | None = None
    keyfile: str | None = None
    insecure: bool = False  # skip the check of the broker's host name

    @classmethod
    def of(
        cls,
        tls: bool,
        ca_certs: str | None = None,
        certfile: str | None = None,
        keyfile: str | None = None,
        insecure: bool = False,
    ) -> Tls | None:
        """The TLS of the ``events.mqtt`` keys (None: plain); SinkError for files without it."""
        if not tls:
            if ca_certs or certfile or keyfile:
                raise SinkError("events.mqtt: ca_certs, certfile and keyfile need tls: true")
            return None
        return cls(ca_certs, certfile, keyfile, insecure)


@dataclass(frozen=True)
class Endpoint:
    """A broker and how to log in to it."""

    host: str
    port: int = 1883
    username: str | None = None
    password: str | None = None
    tls: Tls | None = None

    @classmethod
    def of(cls, cfg: MqttConfig) -> Endpoint:
        """The broker of an ``events.mqtt`` section."""
        tls = Tls.of(cfg.tls, cfg.ca_certs, cfg.certfile, cfg.keyfile, cfg.tls_insecure)
        return cls(cfg.host, cfg.port, cfg.username, cfg.password, tls)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass
class Scan:
    """The retained messages under ``filters``, read once after the first connection."""

    filters: list[str]
    marker: str  # a topic the scan publishes its token on (and subscribes to)
    qos: int = 0
    #: whether a topic's payload is kept (else b"": only that the topic exists)
    keep: Callable[[str], bool] = lambda topic: True
    #: seconds to wait for the marker before giving up (None: as long as the owner waits)
    timeout: float | None = SCAN_TIMEOUT
    token: str = ""
    messages: dict[str, bytes] = field(default_factory=dict)
    complete: bool = False  # nothing more to wait for (the marker came back, or given up)
    answered: bool = False  # the marker came back: every retained message is in
    taken: bool = False  # handed to the owner (or given up)
    deadline: float | None = None  # monotonic time to give up waiting for the marker

    @property
    def under_way(self) -> bool:
        return not self.complete and not self.taken

    @property
    def topics(self) -> list[str]:
        """What it subscribes to: the filters and the marker."""
        return [*self.filters, self.marker]

    def begin(self) -> None:
        """A (new) connection: start again with a new token."""
        self.token, self.complete = uuid.uuid4().hex, False
        self.messages.clear()
        if self.timeout is not None:
            self.deadline = time.monotonic() + self.timeout

    def take(self, msg: mqtt.MQTTMessage) -> bool | None:
        """Take in a message while under way: True when it was the marker (the scan is
        complete), False when it was the scan's, None when it is not."""
        if msg.topic == self.marker:
            if msg.payload.decode(errors="replace") != self.token:
                return False
            self.complete = self.answered = True
            return True
        if msg.retain and len(self.messages) < SCAN_MAX:
            self.messages[msg.topic] = bytes(msg.payload) if self.keep(msg.topic) else b""
            return False
        return False if any(mqtt.topic_matches_sub(f, msg.topic) for f in self.filters) else None

    def give_up(self, now: float) -> bool:
        """Stop waiting once past the deadline; True if it was given up just now."""
        if self.complete or self.deadline is None or now < self.deadline:
            return False
        self.complete = True
        return True

    def hand_over(self) -> dict[str, bytes] | None:
        """The messages once complete (once; then None)."""
        if self.taken or not self.complete:
            return None
        self.taken, self.deadline = True, None
        messages, self.messages = self.messages, {}
        return messages


@dataclass
class _Pending:
    topic: str
    payload: bytes
    names: frozenset[str]  # the names and labels it carries, so that drop() can find it


class _Outbox:
    """What waits to be published: the buffer, the retained values, what paho holds."""

    def __init__(self, buffer_max: int, dropped: DropCounter) -> None:
        self.buffer_max = buffer_max
        self.dropped = dropped
        self.pending: OrderedDict[int, _Pending] = OrderedDict()  # seq -> not yet acknowledged
        self.unsent: deque[int] = deque()  # seqs to hand to paho on the current connection
        self.next_seq = 0
        self.inflight: dict[int, int | str] = {}  # paho mid -> seq or retained topic
        self.acks: deque[int] = deque()  # acknowledged mids, appended by paho's thread
        self.retained: dict[str, bytes] = {}  # topic -> latest value
        self.dirty: dict[str, None] = {}  # retained topics to (re)publish, in order

    def queue(self, topic: str, payload: bytes, names: frozenset[str]) -> None:
        if len(self.pending) >= self.buffer_max:
            seq, _ = self.pending.popitem(last=False)
            if self.unsent and self.unsent[0] == seq:  # both in seq order: bounded alike
                self.unsent.popleft()
            self.dropped.add()
        seq = self.next_seq
        self.next_seq += 1
        self.pending[seq] = _Pending(topic, payload, names)
        self.unsent.append(seq)

    def set_retained(self, topic: str, value: bytes) -> None:
        if self.retained.get(topic) != value:
            self.retained[topic] = value
            self.dirty[topic] = None

    def drop(self, name: str) -> None:
        gone = [seq for seq, item in self.pending.items() if name in item.names]
        for seq in gone:
            del self.pending[seq]
        self.unsent = deque(seq for seq in self.unsent if seq in self.pending)

    def restart(self) -> None:
        """A new connection: everything is handed to paho again, retained values first."""
        self.apply_acks()
        self.inflight.clear()
        self.unsent = deque(self.pending)
        self.dirty = dict.fromkeys(self.retained)

    def apply_acks(self) -> None:
        while self.acks:
            flight = self.inflight.pop(self.acks.popleft(), None)
            if isinstance(flight, int):
                self.pending.pop(flight, None)
            elif isinstance(flight, str) and self._cleared(flight):
                del self.retained[flight]  # a cleared topic: nothing left to remember

    def _cleared(self, topic: str) -> bool:
        """A retained topic cleared (empty) and not to be published again."""
        return self.retained.get(topic) == b"" and topic not in self.dirty

    def next(self, qos: int) -> tuple[int | str, str, bytes, int, bool] | None:
        """The next message to hand to paho: (flight, topic, payload, qos, retain)."""
        if self.dirty:
            topic = next(iter(self.dirty))
            del self.dirty[topic]
            return topic, topic, self.retained[topic], 1, True
        while self.unsent:
            seq = self.unsent.popleft()
            item = self.pending.get(seq)
            if item is not None:  # else dropped from a full buffer or forgotten meanwhile
                return seq, item.topic, item.payload, qos, False
        return None

    def give_back(self, flight: int | str) -> None:
        if isinstance(flight, str):
            self.dirty[flight] = None
        else:
            self.unsent.appendleft(flight)

    def idle(self) -> bool:
        return not self.pending and not self.dirty and not self.inflight


@dataclass
class _Reader:
    topic: str
    qos: int
    on_message: Callable[[bytes], None]
    on_ready: Callable[[], None] | None


class MqttLink:
    """A connection to one broker; see the module docstring.

    ``label`` starts its log lines (``MQTT host:port``); ``will`` is the last will (topic,
    payload), retained; ``buffer_max`` bounds the buffer (None: a link that buffers nothing
    itself, its problems are logged as "retrying"); ``tick`` is called on the sender thread
    before each round and returns when it wants to be called again (monotonic, None: when
    woken). ``start()`` connects.
    """

    def __init__(
        self,
        endpoint: Endpoint,
        *,
        label: str,
        client_id: str,
        will: tuple[str, bytes] | None = None,
        qos: int = 1,
        buffer_max: int | None = None,
        keepalive: int = 30,
        scan: Scan | None = None,
        tick: Callable[[], float | None] | None = None,
        log_problems: bool = True,
    ) -> None:
        self.endpoint = endpoint
        self.label = label
        self._qos = qos
        self._keepalive = keepalive
        self._scan = scan
        self._tick = tick
        self._log_problems = log_problems
        self._buffers = bool(buffer_max)
        self._retrying = "buffering events and retrying" if buffer_max else "retrying"
        #: guards the link's state; never held in paho calls. An owner may hold it to make
        #: several changes at once (the sender hands none of them to paho before it is
        #: released) and wait on it: it is notified after every round of the sender.
        self.lock = threading.Condition(threading.RLock())
        self._out = _Outbox(buffer_max or 1, DropCounter(label))
        self._readers: dict[int, _Reader] = {}  # subscribe mid -> reader (current connection)
        self._subscriptions: list[_Reader] = []
        self._scan_mid: int | None = None
        self.connects = 0  # successful connections so far
        self._connected = False
        self._refused = ""
        self._closing = False
        self._stop = False
        self._problem = ""  # last connection problem logged, to log each one once
        self._wake = threading.Event()
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
        if endpoint.username is not None:
            client.username_pw_set(endpoint.username, endpoint.password)
        set_tls(client, endpoint.tls)
        if will is not None:
            client.will_set(will[0], will[1], qos=1, retain=True)
        client.reconnect_delay_set(RECONNECT_MIN_DELAY, RECONNECT_MAX_DELAY)
        client.max_inflight_messages_set(WINDOW)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        self._client = client
        self._sender = threading.Thread(target=self._run, name="mqtt-link", daemon=True)

    def start(self) -> None:
        """Connect (in the background, retried forever) and start the sender."""
        self._sender.start()
        self._client.connect_async(self.endpoint.host, self.endpoint.port, self._keepalive)
        self._client.loop_start()

    def subscribe(
        self,
        topic: str,
        qos: int,
        on_message: Callable[[bytes], None],
        on_ready: Callable[[], None] | None = None,
    ) -> None:
        """Follow ``topic`` on every connection (before ``start()``); ``on_message`` gets the
        payloads (on paho's thread), ``on_ready`` is called when the broker took it."""
        self._subscriptions.append(_Reader(topic, qos, on_message, on_ready))

    # -- state --------------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def problem(self) -> str:
        """The last connection problem ("" once connected)."""
        return self._problem

    @property
    def refused(self) -> str:
        """Why the broker refused the last connection ("" when it did not)."""
        return self._refused

    @property
    def pending(self) -> int:
        """Buffered messages not yet acknowledged by the broker."""
        with self.lock:
            return len(self._out.pending)

    @property
    def in_flight(self) -> int:
        """Messages handed to paho and not yet acknowledged (at most ``WINDOW``)."""
        with self.lock:
            return len(self._out.inflight)

    @property
    def dropped(self) -> int:
        """Buffered messages dropped because the buffer was full."""
        return self._out.dropped.count

    def idle(self) -> bool:
        """Everything acknowledged: nothing buffered, to publish or in flight (lock held)."""
        return self._out.idle()

    def wait_connected(self, timeout: float) -> bool:
        """Wait until connected (or refused) for up to ``timeout`` s; whether connected."""
        with self.lock:
            self.lock.wait_for(lambda: self._connected or self._refused, timeout)
            return self._connected

    # -- publishing ---------------------------------------------------------------------------

    def queue(self, topic: str, payload: bytes, names: frozenset[str]) -> None:
        """Buffer a message (not retained); ``names``: who it names (see :meth:`drop`)."""
        with self.lock:
            self._out.queue(topic, payload, names)

    def set_retained(self, topic: str, value: bytes) -> None:
        """Publish ``value`` retained on ``topic`` (latest value wins; empty clears it)."""
        with self.lock:
            self._out.set_retained(topic, value)

    def adopt(self, topic: str, value: bytes) -> None:
        """Take ``value`` as the topic's current retained value without publishing it (it is
        on the broker already: found by a scan); republished after a reconnect like ours."""
        with self.lock:
            self._out.retained[topic] = value

    def retained(self, topic: str) -> bytes | None:
        """The latest value of a retained topic of ours (None: none, or cleared long ago)."""
        with self.lock:
            return self._out.retained.get(topic)

    def drop(self, name: str) -> None:
        """Remove the buffered messages that name ``name`` (an erased person or label)."""
        with self.lock:
            self._out.drop(name)

    def wake(self) -> None:
        """Let the sender run a round now (after queueing, or when ``tick`` has work)."""
        self._wake.set()

    def sync(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s until everything has been acknowledged; True if so."""
        self._wake.set()
        with self.lock:
            return self.lock.wait_for(self._out.idle, timeout)

    def scanned(self) -> dict[str, bytes] | None:
        """The scan's messages once it is complete (once; then None), for ``tick``."""
        with self.lock:
            return self._scan.hand_over() if self._scan is not None else None

    def wait_scanned(self, timeout: float) -> dict[str, bytes] | None:
        """Wait up to ``timeout`` s for the scan's marker; its messages (None: no marker)."""
        with self.lock:
            scan = self._scan
            assert scan is not None
            if not self.lock.wait_for(lambda: scan.complete, timeout) or not scan.answered:
                return None
            return self.scanned()

    def close(self, timeout: float, last: dict[str, bytes] | None = None) -> None:
        """Wait up to ``timeout`` s for everything to be acknowledged, then publish ``last``
        (retained, e.g. "offline" statuses; up to ``STATUS_GRACE`` s more) and disconnect."""
        deadline = time.monotonic() + timeout
        with self.lock:
            self._closing = True
            self.lock.wait_for(self._out.idle, timeout)
            lost = len(self._out.pending)
            self._stop = True
        self._wake.set()
        if self._sender.ident is not None:
            self._sender.join()
        if lost:
            log.error("%s: %d events were not delivered before close", self.label, lost)
        if self._connected and last:
            infos = [self._client.publish(t, v, qos=1, retain=True) for t, v in last.items()]
            status_deadline = max(deadline, time.monotonic() + STATUS_GRACE)
            for info in infos:
                try:
                    info.wait_for_publish(max(status_deadline - time.monotonic(), 0.01))
                except (RuntimeError, ValueError):  # the connection went away meanwhile
                    break
        self._client.disconnect()
        self._client.loop_stop()

    # -- sender thread ------------------------------------------------------------------------

    def _run(self) -> None:
        """The only thread that publishes while open, so retained values keep their order."""
        wanted: float | None = None  # when tick wants to run again
        while True:
            with self.lock:
                scan = self._scan.deadline if self._scan is not None else None
                wait = min((t for t in (wanted, scan) if t is not None), default=None)
            self._wake.wait(None if wait is None else max(wait - time.monotonic(), 0.0))
            self._wake.clear()
            with self.lock:
                self._out.apply_acks()
                self._scan_timeout()
                if self._stop:
                    return
            if self._tick is not None:
                wanted = self._tick()
            self._publish()
            with self.lock:
                self.lock.notify_all()

    def _scan_timeout(self) -> None:
        if self._scan is not None and self._scan.give_up(time.monotonic()):
            log.warning(
                "%s: no answer to the marker; the retained state of earlier runs was not read",
                self.label,
            )

    def _publish(self) -> None:
        """Hand retained values, then buffered messages, to paho while the window has room."""
        while True:
            with self.lock:
                if not self._connected or self._stop or len(self._out.inflight) >= WINDOW:
                    return
                generation = self.connects
                message = self._out.next(self._qos)
                if message is None:
                    return
            flight, topic, payload, qos, retain = message
            info = self._client.publish(topic, payload, qos=qos, retain=retain)
            with self.lock:
                if self.connects != generation:
                    continue  # reconnected: on_connect has queued everything again
                if info.rc == mqtt.MQTT_ERR_SUCCESS:
                    self._out.inflight[info.mid] = flight
                    continue
                self._out.give_back(flight)
                if info.rc != mqtt.MQTT_ERR_NO_CONN:  # NO_CONN: resent after reconnect
                    log.error("%s: publish failed (%s)", self.label, info.rc)
                return

    # -- paho callbacks (paho's network thread) ----------------------------------------------

    def _log_problem(self, problem: str) -> None:
        if problem != self._problem:
            self._problem = problem
            if self._log_problems:
                log.warning("%s: %s; %s", self.label, problem, self._retrying)

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason_code: mqtt.ReasonCode,
        properties: mqtt.Properties | None,
    ) -> None:
        if reason_code.is_failure:
            with self.lock:
                self._refused = str(reason_code)
                self.lock.notify_all()
            self._log_problem(f"broker refused the connection ({reason_code})")
            return
        client.drop_out_messages()  # our buffer republishes them, see the module docstring
        self._start_scan(client)  # before we publish anything
        readers: dict[int, _Reader] = {}
        for reader in self._subscriptions:
            mid = client.subscribe(reader.topic, qos=reader.qos)[1]
            if mid is not None:
                readers[mid] = reader
        with self.lock:
            self._readers = readers
            self._out.restart()
            self.connects += 1
            self._connected, self._refused = True, ""
            backlog = len(self._out.pending)
            self.lock.notify_all()
        self._problem = ""
        backlog_note = f" ({backlog} buffered events to send)" if self._buffers else ""
        log.info("%s: connected%s", self.label, backlog_note)
        self._wake.set()

    def _start_scan(self, client: mqtt.Client) -> None:
        with self.lock:
            scan = self._scan
            if scan is None or scan.taken:
                return
            scan.begin()
        # the marker comes back after the retained messages of the subscriptions
        self._scan_mid = client.subscribe([(f, scan.qos) for f in scan.topics])[1]
        client.publish(scan.marker, scan.token, qos=scan.qos)

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_codes: list[mqtt.ReasonCode],
        properties: mqtt.Properties | None,
    ) -> None:
        refused = any(rc.is_failure for rc in reason_codes)
        if mid == self._scan_mid and refused:
            log.warning(
                "%s: the broker refused the subscriptions to read retained state "
                "(stale presence of earlier runs is not cleared)",
                self.label,
            )
            with self.lock:
                if self._scan is not None:
                    self._scan.complete = True
            self._wake.set()
            return
        with self.lock:
            reader = self._readers.get(mid)
        if reader is None:
            return
        if refused:
            self._log_problem(f"the broker refused the subscription to {reader.topic}")
        elif reader.on_ready is not None:
            reader.on_ready()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        if self._scanning(msg):
            return
        for reader in self._subscriptions:
            if mqtt.topic_matches_sub(reader.topic, msg.topic):
                reader.on_message(bytes(msg.payload))

    def _scanning(self, msg: mqtt.MQTTMessage) -> bool:
        """Whether ``msg`` belongs to the scan under way (then it is taken in here)."""
        with self.lock:
            scan = self._scan
            if scan is None or not scan.under_way:
                return False
            taken = scan.take(msg)
            if not taken:
                return taken is not None
            self.lock.notify_all()
        self._client.unsubscribe(scan.topics)
        self._wake.set()
        return True

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
        with self.lock:
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
            log.error("%s: broker rejected a message (%s)", self.label, reason_code)
        self._out.acks.append(mid)
        self._wake.set()


def set_tls(client: mqtt.Client, tls: Tls | None) -> None:
    """Set up ``tls`` on ``client``; SinkError naming the events.mqtt keys when refused."""
    if tls is None:
        return
    if tls.keyfile and not tls.certfile:
        raise SinkError("events.mqtt.keyfile needs events.mqtt.certfile (the client certificate)")
    files = {"ca_certs": tls.ca_certs, "certfile": tls.certfile, "keyfile": tls.keyfile}
    for key, path in files.items():
        if path and not os.access(path, os.R_OK):
            raise SinkError(f"events.mqtt.{key}: cannot read {path} (a PEM file is expected)")
    try:
        client.tls_set(ca_certs=tls.ca_certs, certfile=tls.certfile, keyfile=tls.keyfile)
    except (ssl.SSLError, ValueError) as exc:
        raise SinkError(
            f"events.mqtt: the TLS files ca_certs/certfile/keyfile were rejected ({exc}); "
            "give PEM files, the key unencrypted and matching the certificate"
        ) from None
    client.tls_insecure_set(tls.insecure)
