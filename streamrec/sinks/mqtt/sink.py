"""The MQTT event sink: events, presence, snapshots, Home Assistant discovery and Double Take
topics over one :class:`~streamrec.sinks.mqtt.link.MqttLink`, never blocking the pipeline."""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING, Any

from streamrec.models.registry import FALLBACK_THRESHOLD
from streamrec.records import Event
from streamrec.sinks.double_take import PERSON_RESET_SECONDS
from streamrec.sinks.events import SinkError, event_json, mentioned
from streamrec.sinks.mqtt.discovery import HomeAssistantDiscovery
from streamrec.sinks.mqtt.double_take import DoubleTakeTopics
from streamrec.sinks.mqtt.link import Endpoint, MqttLink, Scan, Tls
from streamrec.sinks.mqtt.presence import Presence
from streamrec.sinks.mqtt.publisher import Publisher
from streamrec.sinks.mqtt.snapshots import Snapshots
from streamrec.sinks.mqtt.topics import camera_segment

if TYPE_CHECKING:
    from streamrec.config import MqttConfig

#: the retained topics of earlier runs read at the first connection (under the prefix)
SCANNED = ("people/+", "+/last_name", "+/people", "+/snapshot")


class MqttEventSink:
    """Publishes events and presence to an MQTT broker without ever blocking the pipeline.

    Connecting is asynchronous: an unreachable broker at start is logged and retried forever
    (1 s doubling to 30 s); meanwhile events are buffered. See :mod:`streamrec.sinks.mqtt` for
    the topics and the delivery guarantees.
    """

    name = "mqtt"

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
        tracker_zones: dict[str, str] | None = None,
        snapshots: bool = True,
        snapshot_max_width: int = 640,
        snapshot_quality: int = 80,
        double_take_topics: bool = False,
        threshold: float = FALLBACK_THRESHOLD,
        double_take_timezone: str = "UTC",
        double_take_reset: float = PERSON_RESET_SECONDS,
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
        secure = Tls.of(tls, ca_certs, certfile, keyfile, tls_insecure)
        self.link = MqttLink(
            Endpoint(host, port, username, password, secure),
            label=f"MQTT {self.address}",
            client_id=client_id or f"streamrec-{uuid.uuid4().hex[:12]}",
            will=(self.bridge_topic, b"offline"),
            qos=qos,
            buffer_max=buffer_max,
            keepalive=keepalive,
            scan=Scan(
                [f"{prefix}/{leaf}" for leaf in SCANNED],
                f"{prefix}/bridge/scan",
                keep=lambda topic: not topic.endswith("/snapshot"),  # only that there is one
            ),
            tick=self._tick,
        )
        self.link.set_retained(self.bridge_topic, b"online")
        zones = {camera_segment(c): z for c, z in (tracker_zones or {}).items()}
        self._presence = Presence(self.link, prefix, presence_timeout, [], zones)
        ha = HomeAssistantDiscovery(
            self.link, prefix, discovery if ha_discovery else None, self.bridge_topic, snapshots
        )
        self._publishers: list[Publisher] = [
            Snapshots(
                self.link, prefix, snapshots, snapshot_max_width, snapshot_quality, ha.snapshot
            ),
            ha,
        ]
        if double_take_topics:
            self._publishers.append(
                DoubleTakeTopics(
                    self.link,
                    threshold,
                    discovery if ha_discovery else None,
                    timezone=double_take_timezone,
                    reset_after=double_take_reset,
                )
            )
        self._presence.publishers = self._publishers
        self._forgotten: set[str] | None = set()  # erased before the scan was read (then None)
        self._enrolled: list[str] = []  # announced before the scan was read
        self._closing = False
        self.link.start()

    @classmethod
    def from_config(cls, cfg: MqttConfig, threshold: float | None = None) -> MqttEventSink:
        """The sink of an ``events.mqtt`` config section (``threshold``: the recognition
        threshold, for Double Take's confidence)."""
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
            tracker_zones=cfg.tracker_zones,
            snapshots=cfg.snapshots,
            snapshot_max_width=cfg.snapshot_max_width,
            snapshot_quality=cfg.snapshot_quality,
            double_take_topics=cfg.double_take_topics,
            threshold=FALLBACK_THRESHOLD if threshold is None else threshold,
            double_take_timezone=cfg.double_take_timezone,
            buffer_max=cfg.buffer_max,
            tls=cfg.tls,
            ca_certs=cfg.ca_certs,
            certfile=cfg.certfile,
            keyfile=cfg.keyfile,
            tls_insecure=cfg.tls_insecure,
        )

    # -- public API ------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self.link.connected

    @property
    def pending(self) -> int:
        """Events not yet acknowledged by the broker."""
        return self.link.pending

    @property
    def in_flight(self) -> int:
        """Messages handed to paho and not yet acknowledged (at most ``WINDOW``)."""
        return self.link.in_flight

    @property
    def problem(self) -> str:
        """The last connection problem ("" once connected), e.g. for a health report."""
        return self.link.problem

    @property
    def dropped(self) -> int:
        """Events dropped because the buffer was full."""
        return self.link.dropped

    def health(self) -> dict[str, Any]:
        """For ``/health``: connected to the broker, events waiting and dropped."""
        return {
            "ok": self.connected,
            "connected": self.connected,
            "pending": self.pending,
            "dropped": self.dropped,
            "problem": self.problem or None,
        }

    def write(self, event: Event) -> None:
        camera = camera_segment(event.camera or event.source)
        name = event.fields.get("name")
        name = name if isinstance(name, str) and name else None
        seen = event.captured or time.time()
        payload = event_json(event).encode()
        with self.link.lock:
            if self._closing:
                raise RuntimeError(f"MQTT sink {self.address} is already closed")
            if event.fields.get("retroactive"):  # the past named (face history): no presence
                self.link.queue(f"{self.prefix}/history", payload, mentioned(event.to_dict()))
                self.link.wake()
                return
            self._presence.add_camera(camera)
            self.link.queue(f"{self.prefix}/{camera}/events", payload, mentioned(event.to_dict()))
            self._presence.write(camera, event, name, seen)
        self.link.wake()

    def announce(self, names: list[str]) -> None:
        """The enrolled people: each one's topic and Home Assistant entities exist from now on
        (not_home until seen), not only after a first sighting. Applied once the state of
        earlier runs has been read (it keeps their last sighting)."""
        with self.link.lock:
            if self._closing:
                return
            if self._forgotten is None:
                self._presence.announce(names)
            else:
                self._enrolled = list(names)
        self.link.wake()

    def set_status(self, camera: str, status: str) -> None:
        """Publish the retained ``<prefix>/<camera>/status`` (latest value wins)."""
        with self.link.lock:
            self._presence.set_status(camera_segment(camera), status)
        self.link.wake()

    def forget(self, name: str) -> None:
        """Erase a person: clear (empty retained payloads) their people topic, their Home
        Assistant entity, and every camera's last name and snapshot showing them; drop them
        from the sink's state and their undelivered events from the buffer.

        Topics left by earlier runs are found by the scan of the first connection (applied
        when it completes). ``sync`` waits until the broker has it all."""
        with self.link.lock:
            if self._forgotten is not None:
                self._forgotten.add(name)
            self._presence.forget(name)
            self.link.drop(name)
        self.link.wake()

    def sync(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s until the state of earlier runs has been read and every
        event and retained value has been acknowledged by the broker; True if so."""
        self.link.wake()
        with self.link.lock:
            return self.link.lock.wait_for(self._idle, timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Expire every presence (nobody is watched any more), wait up to ``timeout`` s for
        everything to be acknowledged, then publish the "offline" statuses (up to 1 s more) and
        disconnect. Idempotent."""
        deadline = time.monotonic() + timeout
        with self.link.lock:
            if self._closing:
                return
            self._closing = True
            self._presence.close()
        self.link.wake()
        with self.link.lock:
            self.link.lock.wait_for(self._idle, timeout)
            cameras = sorted(self._presence.cameras)
        offline = [self.bridge_topic] + [f"{self.prefix}/{c}/status" for c in cameras]
        last = dict.fromkeys(offline, b"offline")
        for p in self._publishers:
            last |= p.offline()
        self.link.close(max(deadline - time.monotonic(), 0.0), last)

    def __enter__(self) -> MqttEventSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the link's sender thread ----------------------------------------------------------

    def _idle(self) -> bool:
        """Nothing left to do (call with the link's lock held)."""
        scanned = self._forgotten is None or (self.link.connects == 0 and not self._forgotten)
        return scanned and not any(p.busy() for p in self._publishers) and self.link.idle()

    def _tick(self) -> float | None:
        """Timers, the retained state of earlier runs, snapshots: before each publishing round
        of the link; when to run again."""
        with self.link.lock:
            now = time.monotonic()
            self._presence.expire(now)
            for p in self._publishers:
                p.expire(now)
            found = self.link.scanned()
            if found is not None:
                self._adopt(found)
        for p in self._publishers:
            p.work()
        with self.link.lock:
            timers = [self._presence.due(), *(p.due() for p in self._publishers)]
            return min((t for t in timers if t is not None), default=None)

    def _adopt(self, found: dict[str, bytes]) -> None:
        """Take over the retained topics of earlier runs that this run has not written."""
        earlier = {t: v for t, v in found.items() if self.link.retained(t) is None}
        forgotten, self._forgotten = self._forgotten or set(), None
        self._presence.adopt(earlier, forgotten)
        for p in self._publishers:
            p.adopt(earlier, forgotten)
        enrolled, self._enrolled = self._enrolled, []
        self._presence.announce([n for n in enrolled if n not in forgotten])
