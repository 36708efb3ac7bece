"""Clearing an erased person's retained MQTT topics from another process (``streamrec erase``).

A short connection of its own (its own client id, no last will) reads the retained topics under
the prefix (subscribe, then a marker on ``<prefix>/bridge/scan``: when it comes back, every
retained message has arrived) and clears only what is the person's: their ``people/<slug>``
topic and its Home Assistant entities (sensor, device_tracker), a camera's ``last_name`` naming
them (set to ``None``: unknown to Home Assistant) and that camera's snapshot (with its image
entity: an empty picture is not "no picture"), and their name in a camera's in-view list. It
never publishes the bridge status nor touches anyone else's state: a running daemon and Home
Assistant see nothing but the person go.

A camera's snapshot whose person is no longer named (its last name expired) belongs to whoever
was last seen on that camera according to the retained people topics; when nobody is, it is
cleared only if no streamrec is running (``unowned_snapshots``): a running daemon knows whose
it is and clears it itself.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING

from streamrec.errors import StreamrecError
from streamrec.sinks.double_take import subject_name
from streamrec.sinks.mqtt.link import Endpoint, MqttLink, Scan
from streamrec.sinks.mqtt.topics import NONE, ha_id, load_object, to_json

if TYPE_CHECKING:
    from streamrec.config import MqttConfig


def clear_retained(
    cfg: MqttConfig, names: Sequence[str], timeout: float, unowned_snapshots: bool
) -> int:
    """Clear the retained topics of ``names`` (a person's labels) on the broker of ``cfg``;
    how many were changed. StreamrecError when the broker does not answer within ``timeout``."""
    prefix = cfg.topic_prefix.strip("/")
    discovery = (cfg.discovery_prefix or "homeassistant").strip("/")
    node = ha_id(prefix)
    filters = [
        f"{prefix}/people/+",
        f"{prefix}/+/last_name",
        f"{prefix}/+/people",
        f"{prefix}/+/snapshot",
        f"{discovery}/sensor/{node}/+/config",
        f"{discovery}/device_tracker/{node}/+/config",
        f"{discovery}/image/{node}/+/config",
        f"{discovery}/sensor/double-take/+/state",
    ]
    endpoint = Endpoint.of(cfg)
    link = MqttLink(
        endpoint,
        label=f"MQTT broker {endpoint.address}",
        client_id=f"streamrec-erase-{uuid.uuid4().hex[:12]}",
        scan=Scan(filters, f"{prefix}/bridge/scan", qos=1, timeout=None),
        log_problems=False,  # the error says it
    )
    where = link.label
    deadline = time.monotonic() + timeout
    link.start()
    try:
        if not link.wait_connected(timeout):
            raise StreamrecError(
                f"{where} did not accept a connection within {timeout:g} s"
                + (f" ({link.refused})" if link.refused else "")
                + ": the person's retained topics were not cleared; run erase again"
            )
        retained = link.wait_scanned(max(deadline - time.monotonic(), 0.1))
        if retained is None:
            raise StreamrecError(f"{where} did not send its retained topics in {timeout:g} s")
        found = {t: v for t, v in retained.items() if v}
        changes = _changes(found, set(names), prefix, discovery, node, unowned_snapshots)
        changes |= _double_take_changes(found, set(names), discovery)
        with link.lock:
            for topic, value in changes.items():
                link.set_retained(topic, value)
        if not link.sync(max(deadline - time.monotonic(), 0.1)):
            raise StreamrecError(f"{where} did not confirm clearing the retained topics")
        return len(changes)
    finally:
        link.close(0.0)


def _double_take_changes(
    retained: dict[str, bytes], names: set[str], discovery: str
) -> dict[str, bytes]:
    """The Double Take sensors' retained states (``double_take_topics``) that name one of
    ``names`` (Double Take lower-cases names): cleared, with a person's sensor config."""
    subjects = {subject_name(n) for n in names}
    out: dict[str, bytes] = {}
    base = f"{discovery}/sensor/double-take/"
    for topic, payload in retained.items():
        if not (topic.startswith(base) and topic.endswith("/state")):
            continue
        state = load_object(payload)
        lists = [state.get(key) for key in ("matches", "misses")]
        faces = [
            state.get("match"),
            *(f for faces in lists if isinstance(faces, list) for f in faces),
        ]
        if any(isinstance(f, dict) and f.get("name") in subjects for f in faces):
            out[topic] = b""
            if "match" in state:  # a person's own sensor: it goes
                out[topic.removesuffix("/state") + "/config"] = b""
    return out


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
        person = load_object(payload)
        name, camera = person.get("name"), person.get("camera")
        if not isinstance(name, str):
            continue
        if name in names:
            out[topic] = b""
            out[f"{discovery}/sensor/{node}/person_{leaf}/config"] = b""
            out[f"{discovery}/device_tracker/{node}/tracker_{leaf}/config"] = b""
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
            out[topic] = NONE.encode()
        elif leaf == "people":
            view = load_object(payload)
            people = view.get("people")
            if isinstance(people, list) and names & set(map(str, people)):
                kept = [p for p in people if p not in names]
                out[topic] = to_json({**view, "people": kept, "count": len(kept)})
        elif leaf == "snapshot":
            named = retained.get(f"{prefix}/{camera}/last_name", b"").decode(errors="replace")
            named = "" if named == NONE else named
            owner = named or last_seen.get(camera, (0.0, ""))[1]
            if owner in names or (not owner and unowned_snapshots):
                out[topic] = b""
                image = f"{discovery}/image/{node}/{ha_id(camera)}_snapshot/config"
                if image in retained:
                    out[image] = b""
    return out
