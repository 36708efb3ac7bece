"""Clearing an erased person's retained MQTT topics from another process (``streamrec erase``).

A short connection of its own (its own client id, no last will) reads the retained topics under
the prefix (subscribe, then a marker on ``<prefix>/bridge/scan``: when it comes back, every
retained message has arrived) and clears only what is the person's: their ``people/<slug>``
topic and its Home Assistant entity, a camera's ``last_name`` naming them and that camera's
snapshot, and their name in a camera's in-view list. It never publishes the bridge status nor
touches anyone else's state: a running daemon and Home Assistant see nothing but the person go.

A camera's snapshot whose person is no longer named (its last name expired) belongs to whoever
was last seen on that camera according to the retained people topics; when nobody is, it is
cleared only if no streamrec is running (``unowned_snapshots``): a running daemon knows whose
it is and clears it itself.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from streamrec.errors import StreamrecError
from streamrec.sinks.mqtt import _ha_id, _json, _set_tls

if TYPE_CHECKING:
    from streamrec.config import MqttConfig


class _Reader:
    """Collects the retained messages of some filters until the marker comes back."""

    def __init__(self, client: mqtt.Client, filters: list[str], marker: str) -> None:
        self.client = client
        self.filters = filters
        self.marker = marker
        self.token = uuid.uuid4().hex
        self.messages: dict[str, bytes] = {}
        self.connected = threading.Event()
        self.done = threading.Event()
        self.refused = ""
        client.on_connect = self._on_connect
        client.on_message = self._on_message

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any
    ) -> None:
        if rc.is_failure:
            self.refused = str(rc)
            self.connected.set()
            return
        client.subscribe([(f, 1) for f in [*self.filters, self.marker]])
        client.publish(self.marker, self.token, qos=1)
        self.connected.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        if msg.topic == self.marker:
            if msg.payload.decode(errors="replace") == self.token:
                self.done.set()
        elif msg.retain and msg.payload and not self.done.is_set():
            self.messages[msg.topic] = bytes(msg.payload)


def clear_retained(
    cfg: MqttConfig, names: Sequence[str], timeout: float, unowned_snapshots: bool
) -> int:
    """Clear the retained topics of ``names`` (a person's labels) on the broker of ``cfg``;
    how many were changed. StreamrecError when the broker does not answer within ``timeout``."""
    prefix = cfg.topic_prefix.strip("/")
    discovery = (cfg.discovery_prefix or "homeassistant").strip("/")
    node = _ha_id(prefix)
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"streamrec-erase-{uuid.uuid4().hex[:12]}",
        clean_session=True,
    )
    if cfg.username is not None:
        client.username_pw_set(cfg.username, cfg.password)
    _set_tls(client, cfg.tls, cfg.ca_certs, cfg.certfile, cfg.keyfile, cfg.tls_insecure)
    filters = [
        f"{prefix}/people/+",
        f"{prefix}/+/last_name",
        f"{prefix}/+/people",
        f"{prefix}/+/snapshot",
        f"{discovery}/sensor/{node}/+/config",
    ]
    reader = _Reader(client, filters, f"{prefix}/bridge/scan")
    where = f"MQTT broker {cfg.host}:{cfg.port}"
    deadline = time.monotonic() + timeout
    client.connect_async(cfg.host, cfg.port, 30)
    client.loop_start()
    try:
        if not reader.connected.wait(timeout) or reader.refused:
            raise StreamrecError(
                f"{where} did not accept a connection within {timeout:g} s"
                + (f" ({reader.refused})" if reader.refused else "")
                + ": the person's retained topics were not cleared; run erase again"
            )
        if not reader.done.wait(max(deadline - time.monotonic(), 0.1)):
            raise StreamrecError(f"{where} did not send its retained topics in {timeout:g} s")
        changes = _changes(reader.messages, set(names), prefix, discovery, node, unowned_snapshots)
        infos = [client.publish(t, v, qos=1, retain=True) for t, v in changes.items()]
        for info in infos:
            info.wait_for_publish(max(deadline - time.monotonic(), 0.1))
            if not info.is_published():
                raise StreamrecError(f"{where} did not confirm clearing the retained topics")
        return len(changes)
    finally:
        client.disconnect()
        client.loop_stop()


def _changes(
    retained: dict[str, bytes],
    names: set[str],
    prefix: str,
    discovery: str,
    node: str,
    unowned_snapshots: bool,
) -> dict[str, bytes]:
    """topic -> new retained value (empty: cleared) for what names one of ``names``."""
    out: dict[str, bytes] = {}
    last_seen: dict[str, tuple[float, str]] = {}  # camera -> (time, name) of who was there last
    for topic, payload in retained.items():
        level, _, leaf = topic[len(prefix) + 1 :].partition("/")
        if level != "people" or not topic.startswith(prefix + "/"):
            continue
        person = _load(payload)
        name, camera = person.get("name"), person.get("camera")
        if not isinstance(name, str):
            continue
        if name in names:
            out[topic] = b""
            out[f"{discovery}/sensor/{node}/person_{leaf}/config"] = b""
        seen = person.get("last_seen_ts")
        if (
            isinstance(camera, str)
            and isinstance(seen, (int, float))
            and seen >= last_seen.get(camera, (float("-inf"), ""))[0]
        ):
            last_seen[camera] = (float(seen), name)
    out = {t: v for t, v in out.items() if t in retained}
    for topic, payload in retained.items():
        if not topic.startswith(prefix + "/"):
            continue
        camera, _, leaf = topic[len(prefix) + 1 :].partition("/")
        if leaf == "last_name" and payload.decode(errors="replace") in names:
            out[topic] = b""
        elif leaf == "people":
            view = _load(payload)
            people = view.get("people")
            if isinstance(people, list) and names & set(map(str, people)):
                kept = [p for p in people if p not in names]
                out[topic] = _json({**view, "people": kept, "count": len(kept)})
        elif leaf == "snapshot":
            named = retained.get(f"{prefix}/{camera}/last_name", b"").decode(errors="replace")
            owner = named or last_seen.get(camera, (0.0, ""))[1]
            if owner in names or (not owner and unowned_snapshots):
                out[topic] = b""
    return out


def _load(payload: bytes) -> dict[str, Any]:
    try:
        value = json.loads(payload)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
