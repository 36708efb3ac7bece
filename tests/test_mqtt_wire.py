"""The MQTT sink's messages on the wire, against a recording (``mqtt_wire.json``).

A scripted run of :class:`MqttEventSink` on a real Mosquitto broker (retained state of an
earlier run, two cameras, names and renames, an unknown face, Double Take topics, Home Assistant
discovery, a snapshot, erasures, a name collision, close) is recorded by a subscriber that sees
each message's retain flag (MQTT 5, retain as published): topic, payload and retain flag, in
order per topic. Every step waits until the broker has acknowledged everything, so the recording
does not depend on timing. The recording was made before the sink was split into a link and
publishers (issue 23); refresh it after an intended change of the messages with
``python tests/test_mqtt_wire.py`` (then review the diff).
"""

from __future__ import annotations

import hashlib
import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.subscribeoptions import SubscribeOptions
from test_mqtt import MOSQUITTO, WAIT, Broker, wait_until
from test_security_erase import publish_retained

from streamrec.records import Event
from streamrec.sinks import MqttEventSink

RECORDING = Path(__file__).with_name("mqtt_wire.json")
T0 = 1_700_000_000.0  # capture times of the scripted events (no wall clock on the wire)
EARLIER = 1_600_000_000.0  # last seen of the earlier run's people: long expired


class Recorder:
    """Every message under ``#`` as (topic, payload, retain), retain flags as published."""

    def __init__(self, port: int) -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self.lock = threading.Lock()
        ready = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id="wire-recorder", protocol=mqtt.MQTTv5
        )
        options = SubscribeOptions(qos=1, retainAsPublished=True)
        self.client.on_connect = lambda c, *a: c.subscribe("#", options=options)
        self.client.on_subscribe = lambda *a: ready.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port, keepalive=10)
        self.client.loop_start()
        assert ready.wait(WAIT), "the recorder did not subscribe"

    def _on_message(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain)))

    def has(self, topic: str, payload: bytes | None = None) -> bool:
        with self.lock:
            return any(t == topic and payload in (None, p) for t, p, _ in self.messages)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _payload(topic: str, payload: bytes) -> str:
    """A payload as text; the scan marker's random token and JPEG bytes made comparable."""
    if topic.endswith("/bridge/scan"):
        return "<token>"
    if payload.startswith(b"\xff\xd8"):
        return "jpeg sha256 " + hashlib.sha256(payload).hexdigest()
    return payload.decode()


def per_topic(messages: list[tuple[str, bytes, bool]]) -> dict[str, list[list[Any]]]:
    """topic -> [[payload, retain], ...] in the order received (the recorder's own marker out)."""
    out: dict[str, list[list[Any]]] = {}
    for topic, payload, retain in messages:
        if not topic.startswith("wire-end/"):
            out.setdefault(topic, []).append([_payload(topic, payload), retain])
    return dict(sorted(out.items()))


def _event(kind: str, track: int, camera: str, step: int, **fields: Any) -> Event:
    source = "rtsp://10.0.0.9/live"
    return Event(kind, source, track, step, step / 25.0, T0 + step, camera, fields)


def _earlier_run(port: int) -> dict[str, bytes]:
    """Retained topics a run that died left behind (a person still present, a stale view)."""
    person = {"name": "Old Friend", "state": "garage", "camera": "garage",
              "last_seen": "2020-09-13T12:26:40.000+00:00", "last_seen_ts": EARLIER,
              "score": 0.8}  # fmt: skip
    topics = {
        "rec/people/old_friend": json.dumps(person).encode(),
        "rec/garage/last_name": b"Old Friend",
        "rec/garage/people": b'{"camera":"garage","people":["Old Friend"],"count":1,"faces":1}',
        "rec/garage/snapshot": b"\xff\xd8 an earlier snapshot",
        "ha/sensor/rec/person_old_friend/config": b'{"name":"Old Friend"}',
    }
    publish_retained(port, topics)
    return topics


def _image() -> np.ndarray:
    y, x = np.mgrid[0:112, 0:112]
    return np.dstack([x * 2, y * 2, (x + y)]).astype(np.uint8)


def record(port: int) -> dict[str, list[list[Any]]]:
    """Run the script against the broker on ``port``; the messages per topic."""
    recorder = Recorder(port)
    try:
        for topic, payload in _earlier_run(port).items():
            wait_until(lambda t=topic, p=payload: recorder.has(t, p), f"retained {topic}")
        sink = MqttEventSink(
            "127.0.0.1",
            port,
            client_id="wire-sink",
            topic_prefix="rec",
            ha_discovery=True,
            discovery_prefix="ha",
            double_take_topics=True,
            presence_timeout=3600,
        )
        try:
            _script(sink, recorder)
        finally:
            sink.close(timeout=WAIT)
        marker = f"wire-end/{time.time_ns()}"  # after every acknowledged message of the sink
        end = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="wire-end")
        end.connect("127.0.0.1", port)
        end.loop_start()
        end.publish(marker, b"end", qos=1).wait_for_publish(WAIT)
        end.disconnect()
        end.loop_stop()
        wait_until(lambda: recorder.has(marker), "the end marker")
        with recorder.lock:
            return per_topic(recorder.messages)
    finally:
        recorder.close()


def _script(sink: MqttEventSink, recorder: Recorder) -> None:
    def step(*events: Event) -> None:
        for e in events:
            sink.write(e)
            assert sink.sync(WAIT), "the sink did not get everything acknowledged"

    assert sink.sync(WAIT)
    # the earlier run's person, long gone, expires at once
    wait_until(
        lambda: any(
            t == "rec/people/old_friend" and b"not_home" in p for t, p, _ in recorder.messages
        ),
        "the earlier run's person not_home",
    )
    sink.set_status("front door", "online")
    assert sink.sync(WAIT)
    box = [10.0, 20.0, 110.0, 150.0]
    step(
        _event("track_start", 1, "front door", 1, box=box),
        _event("identified", 1, "front door", 2, name="Alice", score=0.81),
    )
    crop = _image()
    named = _event("identified", 2, "back yard", 3, name="Bob", score=0.66)
    named.snapshot = crop
    step(_event("track_start", 2, "back yard", 3, box=[1, 2, 3, 4]), named)
    step(
        _event("renamed", 2, "back yard", 4, name="Carol", score=0.9),
        _event("track_start", 3, "front door", 5, box=box),
        _event("unknown", 3, "front door", 6, label="unknown-4"),
        _event("track_end", 1, "front door", 7, name="Alice", score=0.81),
    )
    sink.set_status("back yard", "reconnecting")
    assert sink.sync(WAIT)
    for name in ("Alice", "Old Friend"):
        sink.forget(name)
        assert sink.sync(WAIT)
    step(
        _event("track_start", 4, "people", 8, box=box),
        _event("identified", 4, "people", 9, name="José", score=0.5),
        _event("track_start", 5, "people", 10, box=box),
        _event("identified", 5, "people", 11, name="Jose", score=0.55),
        _event("renamed", 5, "people", 12, name=None, score=None),
    )


def test_messages_match_the_recording(tmp_path: Path) -> None:
    import pytest

    if not Path(MOSQUITTO).exists():
        pytest.skip("mosquitto (Debian package) is not installed")
    broker = Broker(tmp_path)
    broker.start()
    try:
        got = record(broker.port)
    finally:
        broker.stop()
    expected = json.loads(RECORDING.read_text())
    assert list(got) == list(expected), "other topics than recorded"
    for topic, messages in expected.items():
        assert got[topic] == messages, f"{topic}: other messages than recorded"


if __name__ == "__main__":  # record (or refresh) mqtt_wire.json; review the diff
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        b = Broker(Path(tmp))
        b.start()
        try:
            recorded = record(b.port)
        finally:
            b.stop()
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else RECORDING
    out.write_text(json.dumps(recorded, indent=1, ensure_ascii=False) + "\n")
    print(f"{sum(map(len, recorded.values()))} messages on {len(recorded)} topics -> {out}")
