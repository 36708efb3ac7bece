"""MqttEventSink against a real Mosquitto broker on 127.0.0.1 (stopped, frozen, restarted, with
TLS): events, per-person presence, snapshots, Home Assistant discovery, erasure, bounds.

The broker runs with persistence and the test subscriber keeps a persistent session
(clean_session=False): a restarted broker then still holds the subscription and queues what
arrives before the subscriber is back, so every event the sink delivers reaches the
subscriber. Without that, the test could not tell an event the sink lost from one that only
the subscriber missed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import cv2
import ha_mqtt_schemas as ha
import jinja2
import numpy as np
import paho.mqtt.client as mqtt
import pytest
import yaml
from cli_helpers import LIN, SMALL, streamrec
from paho.mqtt.enums import CallbackAPIVersion

from streamrec.config import DEFAULT_CONFIG, MqttConfig, load_config
from streamrec.errors import ConfigError
from streamrec.records import Event
from streamrec.sinks import MqttEventSink, SinkError
from streamrec.sinks.mqtt import WINDOW, camera_segment, person_slug

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
pytestmark = pytest.mark.skipif(
    not os.access(MOSQUITTO, os.X_OK), reason="mosquitto (Debian package) is not installed"
)
WAIT = 30.0  # seconds before a wait_until gives up (the failure case only)


def wait_until(cond: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Broker:
    """A mosquitto process on 127.0.0.1:port that can be stopped and started again."""

    def __init__(self, workdir: Path, extra: str = "") -> None:
        self.port = free_port()
        self.workdir = workdir
        self.config = workdir / "mosquitto.conf"
        self.config.write_text(
            textwrap.dedent(f"""\
                listener {self.port} 127.0.0.1
                allow_anonymous true
                persistence true
                persistence_location {workdir}/
                user root
                log_dest file {workdir}/mosquitto.log
                """)
            + extra
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.config)])
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    log = (self.workdir / "mosquitto.log").read_text(errors="replace")
                    raise RuntimeError(f"mosquitto did not start:\n{log}") from None
                time.sleep(0.05)

    def freeze(self) -> None:
        """SIGSTOP: connections stay open but nothing is read or acknowledged."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: mosquitto saves its persistence file
            self.proc.send_signal(signal.SIGCONT)  # in case it is frozen
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


class Subscriber:
    """A paho client with a persistent session that records every message on ``topic``."""

    def __init__(self, port: int, client_id: str, topic: str = "#", clean: bool = False) -> None:
        self.messages: list[mqtt.MQTTMessage] = []
        self.lock = threading.Lock()
        self.subscribed = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean
        )
        self.client.reconnect_delay_set(1, 2)
        self.client.on_connect = lambda c, *a: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect_async("127.0.0.1", port, keepalive=10)
        self.client.loop_start()
        if not self.subscribed.wait(WAIT):
            raise AssertionError("test subscriber did not subscribe")

    def _on_message(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.messages.append(msg)

    def on(self, topic: str) -> list[mqtt.MQTTMessage]:
        with self.lock:
            return [m for m in self.messages if m.topic == topic]

    def last(self, topic: str) -> str | None:
        found = self.on(topic)
        return found[-1].payload.decode() if found else None

    def seqs(self, topic: str) -> set[int]:
        return {json.loads(m.payload)["seq"] for m in self.on(topic)}

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    b = Broker(tmp_path)
    b.start()
    try:
        yield b
    finally:
        b.stop()


@pytest.fixture
def subscribers() -> Iterator[list[Subscriber]]:
    made: list[Subscriber] = []
    try:
        yield made
    finally:
        for s in made:
            s.close()


def event(seq: int, camera: str = "cam1", name: str | None = None) -> Event:
    fields: dict[str, Any] = {"seq": seq}
    if name is not None:
        fields["name"] = name
    return Event(
        "identified", "rtsp://user:secret@10.0.0.9/live", seq, seq, seq / 25.0, None, camera, fields
    )


def test_events_status_and_no_loss_across_broker_restart(
    broker: Broker, subscribers: list[Subscriber]
) -> None:
    sub = Subscriber(broker.port, "test-sub")
    subscribers.append(sub)
    sink = MqttEventSink("127.0.0.1", broker.port, client_id="sink-1")
    try:
        wait_until(lambda: sink.connected, "the sink to connect")
        sink.set_status("cam1", "online")
        for i in range(20):
            sink.write(event(i))
        wait_until(lambda: sub.seqs("streamrec/cam1/events") == set(range(20)), "first events")
        msg = sub.on("streamrec/cam1/events")[0]
        row = json.loads(msg.payload)
        assert row["event"] == "identified" and row["camera"] == "cam1" and msg.qos == 1

        # Status and bridge state are retained: a client that subscribes later gets them.
        late = Subscriber(broker.port, "late", topic="streamrec/+/status", clean=True)
        subscribers.append(late)
        wait_until(lambda: late.last("streamrec/cam1/status") == "online", "retained status")
        assert late.on("streamrec/cam1/status")[0].retain
        wait_until(lambda: late.last("streamrec/bridge/status") == "online", "bridge status")

        # Events sent to a frozen broker (never acknowledged), written while it is down and
        # after it is back are all delivered.
        broker.freeze()
        for i in range(20, 40):
            sink.write(event(i))
        broker.stop()
        wait_until(lambda: not sink.connected, "the sink to notice the outage")
        for i in range(40, 90):
            sink.write(event(i))
        sink.set_status("cam1", "reconnecting")
        assert sink.pending >= 50
        broker.start()
        for i in range(90, 100):
            sink.write(event(i))
        wait_until(
            lambda: sub.seqs("streamrec/cam1/events") == set(range(100)),
            "every event after the broker restart",
        )
        wait_until(lambda: sink.pending == 0, "all events acknowledged")
        wait_until(lambda: sub.last("streamrec/cam1/status") == "reconnecting", "new status")
        assert sink.dropped == 0
    finally:
        sink.close(timeout=5)
    wait_until(lambda: sub.last("streamrec/cam1/status") == "offline", "offline on close")
    wait_until(lambda: sub.last("streamrec/bridge/status") == "offline", "bridge offline")
    sink.close()  # idempotent
    with pytest.raises(RuntimeError):
        sink.write(event(0))


def test_broker_down_at_start(broker: Broker, subscribers: list[Subscriber]) -> None:
    sub = Subscriber(broker.port, "test-sub-2", topic="streamrec/+/events")
    subscribers.append(sub)
    broker.stop()
    sink = MqttEventSink("127.0.0.1", broker.port)  # must not raise
    try:
        for i in range(30):
            sink.write(event(i, camera="rtsp://admin:pw@10.1.2.3:554/stream1"))
        assert not sink.connected and sink.pending == 30
        broker.start()
        # A URL source becomes host_port_path in the topic, without the credentials.
        topic = "streamrec/10.1.2.3_554_stream1/events"
        wait_until(lambda: sub.seqs(topic) == set(range(30)), "buffered events after start")
    finally:
        sink.close(timeout=5)


def test_last_will_when_the_process_dies(broker: Broker, subscribers: list[Subscriber]) -> None:
    sub = Subscriber(broker.port, "will-watch", topic="streamrec/bridge/status")
    subscribers.append(sub)
    code = textwrap.dedent(f"""\
        import time
        from streamrec.sinks import MqttEventSink
        sink = MqttEventSink("127.0.0.1", {broker.port})
        while not sink.connected:
            time.sleep(0.02)
        print("connected", flush=True)
        time.sleep(60)
        """)
    repo = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([repo, os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "connected"
        wait_until(lambda: sub.last("streamrec/bridge/status") == "online", "bridge online")
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        wait_until(lambda: sub.last("streamrec/bridge/status") == "offline", "the last will")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_buffer_is_bounded_and_close_does_not_hang_without_broker() -> None:
    sink = MqttEventSink("127.0.0.1", free_port(), buffer_max=5)
    try:
        for i in range(8):
            sink.write(event(i))
        assert sink.pending == 5 and sink.dropped == 3
    finally:
        sink.close(timeout=0.2)
    with pytest.raises(SinkError, match="topic_prefix"):
        MqttEventSink("127.0.0.1", topic_prefix="a/#")
    with pytest.raises(SinkError, match="discovery_prefix"):
        MqttEventSink("127.0.0.1", discovery_prefix="/")


# -- presence, snapshots, discovery, erasure ---------------------------------------------------


def ev(
    kind: str, track: int, camera: str = "front door", name: str | None = None, **fields: Any
) -> Event:
    """A pipeline event as the match stage emits it (``name``/``score`` for identifications)."""
    if name is not None:
        fields["name"] = name
    return Event(kind, "rtsp://u:pw@10.0.0.9/live", track, 0, 0.0, time.time(), camera, fields)


def seen(sink: MqttEventSink, camera: str, track: int, name: str, score: float = 0.7) -> None:
    """A face appears on ``camera`` and is identified as ``name``."""
    sink.write(ev("track_start", track, camera, box=[10.0, 20.0, 110.0, 150.0]))
    sink.write(ev("identified", track, camera, name=name, score=score))


def retained(port: int) -> dict[str, bytes]:
    """Every retained message on the broker now. The broker sends the retained messages of a
    subscription before anything published after it, so a marker published after subscribing
    tells when they have all arrived."""
    marker = f"test-marker/{uuid.uuid4().hex}"
    found: dict[str, bytes] = {}
    done, subscribed = threading.Event(), threading.Event()

    def on_message(client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        if msg.topic == marker:
            done.set()
        elif msg.retain:
            found[msg.topic] = bytes(msg.payload)

    client = mqtt.Client(CallbackAPIVersion.VERSION2)
    client.on_message = on_message
    client.on_subscribe = lambda *a: subscribed.set()
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        client.subscribe("#")
        assert subscribed.wait(WAIT), "subscription to # not acknowledged"
        client.publish(marker, b"marker")
        assert done.wait(WAIT), "the marker did not come back"
    finally:
        client.disconnect()
        client.loop_stop()
    return found


def state_of(sub: Subscriber, topic: str) -> str | None:
    last = sub.last(topic)
    if not last:
        return None
    person = json.loads(last)
    return person.get("presence", person.get("state"))  # "state" of a run before issue 24


def test_topic_levels_of_people_and_cameras() -> None:
    assert person_slug("alice") == "alice"
    assert person_slug("José Pérez") == "jose_perez"
    assert person_slug("李小龙") == "li_xiao_long"
    assert person_slug("a/b #+ c") == "a_b_c"
    assert person_slug("#/+") == "person"
    assert camera_segment("front door") == "front_door"
    assert camera_segment("rtsp://admin:pw@10.1.2.3:554/s1") == "10.1.2.3_554_s1"
    assert camera_segment("people") == "people_camera"  # <prefix>/people/ is the people's


def test_presence_per_person_expires_after_the_timeout(
    broker: Broker, subscribers: list[Subscriber]
) -> None:
    sub = Subscriber(broker.port, "presence", topic="rec/#", clean=True)
    subscribers.append(sub)
    timeout = 1.0
    sink = MqttEventSink("127.0.0.1", broker.port, topic_prefix="rec", presence_timeout=timeout)
    person, view = "rec/people/jose_perez", "rec/front_door/people"
    try:
        seen(sink, "front door", 1, "José Pérez", 0.71)
        sink.write(ev("track_start", 2))  # an unknown face beside him
        wait_until(lambda: state_of(sub, person) == "front_door", "the person on front_door")
        data = json.loads(sub.last(person) or "")
        assert data["name"] == "José Pérez" and data["camera"] == "front_door"
        assert data["score"] == 0.71 and abs(data["last_seen_ts"] - time.time()) < WAIT
        assert datetime.fromisoformat(data["last_seen"]).timestamp() == pytest.approx(
            data["last_seen_ts"], abs=1e-3
        )
        in_view = {"camera": "front_door", "people": ["José Pérez"], "count": 1, "faces": 2}
        wait_until(lambda: json.loads(sub.last(view) or "{}") == in_view, "who is in view")
        wait_until(lambda: sub.last("rec/front_door/last_name") == "José Pérez", "last name")

        # Seen on a second camera while still in view on the first: the newest camera wins,
        # and when that track ends he is still on the first one.
        seen(sink, "garage", 7, "José Pérez", 0.6)
        wait_until(lambda: state_of(sub, person) == "garage", "the person on garage")
        sink.write(ev("track_end", 7, "garage", name="José Pérez"))
        wait_until(lambda: state_of(sub, person) == "front_door", "back on front_door")

        ended = time.monotonic()
        sink.write(ev("track_end", 1, name="José Pérez"))
        sink.write(ev("track_end", 2))
        empty = {"camera": "front_door", "people": [], "count": 0, "faces": 0}
        wait_until(lambda: json.loads(sub.last(view) or "{}") == empty, "nobody in view")
        # No event after the last track_end: the sink's own timer sends him away.
        wait_until(lambda: state_of(sub, person) == "not_home", "not_home after the timeout")
        states = [json.loads(m.payload)["presence"] for m in sub.on(person)]
        assert states[-1] == "not_home" and "not_home" not in states[:-1]
        away = next(m for m in sub.on(person) if json.loads(m.payload)["presence"] == "not_home")
        assert away.timestamp - ended >= timeout, "not_home came before the timeout"
        cleared = ("rec/front_door/last_name", "rec/garage/last_name")
        wait_until(lambda: all(sub.last(t) == "None" for t in cleared), "last names cleared")
        assert sink.sync(WAIT)
        kept = retained(broker.port)
        assert kept["rec/front_door/last_name"] == b"None"  # Home Assistant's unknown
        assert json.loads(kept[person])["presence"] == "not_home"
    finally:
        sink.close(timeout=5)


def test_renamed_tracks_name_collisions_and_double_take_topics(
    broker: Broker, subscribers: list[Subscriber]
) -> None:
    sub = Subscriber(broker.port, "dt", clean=True)
    subscribers.append(sub)
    sink = MqttEventSink(
        "127.0.0.1", broker.port, topic_prefix="rec", double_take_topics=True, presence_timeout=60
    )
    try:
        seen(sink, "front door", 3, "bob", 0.5)
        sink.write(ev("renamed", 3, name="alice", score=0.8))
        wait_until(lambda: state_of(sub, "rec/people/alice") == "front_door", "alice present")
        # bob's only track is now alice's: he left it (and goes not_home after the timeout)
        bob = json.loads(sub.last("rec/people/bob") or "")
        assert bob["presence"] == "front_door" and bob["name"] == "bob"
        wait_until(
            lambda: (
                json.loads(sub.last("rec/front_door/people") or "{}").get("people") == ["alice"]
            ),
            "alice alone in view",
        )

        # Double Take's layout: a match per name and per camera, confidence in percent
        # (tests/test_double_take.py has every byte)
        wait_until(lambda: sub.last("double-take/matches/alice") is not None, "match topic")
        match = json.loads(sub.last("double-take/matches/alice") or "")
        assert match["camera"] == "front_door" and match["match"]["name"] == "alice"
        assert match["match"]["confidence"] > 60 and match["match"]["match"] is True
        assert match["match"]["box"] == {"top": 20, "left": 10, "width": 100, "height": 130}
        cameras = "double-take/cameras/front_door"
        wait_until(lambda: any(b'"alice"' in m.payload for m in sub.on(cameras)), "its camera")
        by_camera = json.loads(sub.last(cameras) or "")
        assert [m["name"] for m in by_camera["matches"]] == ["alice"]
        assert by_camera["counts"]["match"] == 1 and by_camera["counts"]["person"] == 1
        assert sink.sync(WAIT)
        kept = {t for t in retained(broker.port) if t.startswith("double-take/")}
        assert kept == {"double-take/available", "double-take/cameras/front_door/person"}

        # Two names with the same slug keep two topics; the display name is in the payload.
        seen(sink, "garage", 4, "Anna Smith")
        seen(sink, "garage", 5, "anna smith")
        second = "rec/people/anna_smith_" + hashlib.sha256(b"anna smith").hexdigest()[:8]
        wait_until(lambda: sub.last(second) is not None, "the second anna's topic")
        assert json.loads(sub.last("rec/people/anna_smith") or "")["name"] == "Anna Smith"
        assert json.loads(sub.last(second) or "")["name"] == "anna smith"
    finally:
        sink.close(timeout=5)
    # Closing stops watching: nobody stays present.
    people = ("rec/people/alice", "rec/people/bob", "rec/people/anna_smith", second)
    wait_until(lambda: all(state_of(sub, t) == "not_home" for t in people), "not_home on close")


@pytest.fixture
def photo(media_dir: Path) -> np.ndarray:
    image = cv2.imread(str(media_dir / "face_recognition" / "obama.jpg"))
    assert image is not None
    return image


def test_snapshot_arrives_as_a_decodable_jpeg(
    broker: Broker, subscribers: list[Subscriber], photo: np.ndarray
) -> None:
    sub = Subscriber(broker.port, "snap", topic="rec/+/snapshot", clean=True)
    subscribers.append(sub)
    width = 160
    assert photo.shape[1] > width
    sink = MqttEventSink("127.0.0.1", broker.port, topic_prefix="rec", snapshot_max_width=width)
    try:
        sink.write(ev("track_start", 1))
        identified = ev("identified", 1, name="obama", score=0.9)
        identified.snapshot = photo  # type: ignore[attr-defined]  # set by the pipeline
        sink.write(identified)
        wait_until(lambda: bool(sub.on("rec/front_door/snapshot")), "the snapshot")
        msg = sub.on("rec/front_door/snapshot")[-1]
        jpeg = cv2.imdecode(np.frombuffer(msg.payload, np.uint8), cv2.IMREAD_COLOR)
        assert msg.payload[:2] == b"\xff\xd8" and jpeg is not None
        height = round(photo.shape[0] * width / photo.shape[1])
        assert jpeg.shape == (height, width, 3)
        expected = cv2.resize(photo, (width, height), interpolation=cv2.INTER_AREA)
        assert np.abs(jpeg.astype(int) - expected).mean() < 8  # the same picture
        assert sink.sync(WAIT)
        assert retained(broker.port)["rec/front_door/snapshot"] == msg.payload
    finally:
        sink.close(timeout=5)


# What Home Assistant's MQTT discovery accepts (its documentation, "MQTT Discovery" and the
# sensor, binary_sensor and image platforms): the keys each component knows (full names; the
# sink uses no abbreviations, so an abbreviation or a typo is an unknown key here).
COMMON_KEYS = {
    "name", "unique_id", "object_id", "availability", "availability_mode", "device", "origin",
    "icon", "json_attributes_topic", "json_attributes_template", "enabled_by_default",
    "entity_category", "qos",
}  # fmt: skip
COMPONENT_KEYS = {
    "sensor": COMMON_KEYS | {"state_topic", "value_template", "state_class", "device_class",
                             "unit_of_measurement", "expire_after", "force_update"},
    "binary_sensor": COMMON_KEYS | {"state_topic", "value_template", "payload_on",
                                    "payload_off", "device_class", "expire_after", "off_delay"},
    "image": COMMON_KEYS | {"image_topic", "content_type", "image_encoding", "url_topic",
                            "url_template"},
    "device_tracker": COMMON_KEYS | {"state_topic", "value_template", "source_type",
                                     "payload_home", "payload_not_home", "payload_reset"},
}  # fmt: skip
DEVICE_KEYS = {
    "identifiers", "connections", "name", "manufacturer", "model", "model_id", "sw_version",
    "hw_version", "serial_number", "via_device", "suggested_area", "configuration_url",
}  # fmt: skip
ORIGIN_KEYS = {"name", "sw_version", "support_url"}
AVAILABILITY_KEYS = {"topic", "payload_available", "payload_not_available", "value_template"}
DISCOVERY_TOPIC = re.compile(
    r"^ha/(sensor|binary_sensor|image|device_tracker)/([\w-]+/)?[\w-]+/config$", re.ASCII
)


def check_discovery(configs: dict[str, dict[str, Any]], published: dict[str, bytes]) -> None:
    """Every payload against the rules; topics it reads must be published (retained)."""
    unique_ids: list[str] = []
    for topic, config in configs.items():
        where = f"{topic}: "
        # Home Assistant's own discovery schemas (core 2026.2.3) take it, no key dropped
        found = ha.discover(topic, json.dumps(config).encode(), prefix=topic.split("/")[0])
        assert found.config is not None and not found.dropped, where + str(found.dropped)
        found = DISCOVERY_TOPIC.match(topic)
        assert found, where + "not <prefix>/<component>/[<node_id>/]<object_id>/config"
        component = found.group(1)
        assert not set(config) - COMPONENT_KEYS[component], where + "unknown keys"
        if component == "image":
            assert ("image_topic" in config) != ("url_topic" in config), where + "image source"
            assert config.get("content_type", "image/jpeg").startswith("image/")
        else:
            assert isinstance(config.get("state_topic"), str), where + "state_topic required"
        if component == "binary_sensor":
            assert config.get("device_class") in (None, "occupancy", "motion", "presence")
        if "state_class" in config:
            assert config["state_class"] in ("measurement", "total", "total_increasing")
        assert isinstance(config.get("unique_id"), str), where + "a device needs a unique_id"
        unique_ids.append(config["unique_id"])
        device = config["device"]
        assert not set(device) - DEVICE_KEYS, where + "unknown device keys"
        assert device.get("identifiers") or device.get("connections"), where + "device ids"
        assert set(config["origin"]) <= ORIGIN_KEYS and config["origin"]["name"]
        assert config.get("availability_mode", "latest") in ("all", "any", "latest")
        assert "availability_topic" not in config  # exclusive with the availability list
        for item in config["availability"]:
            assert set(item) <= AVAILABILITY_KEYS and "topic" in item, where + "availability"
            available = item.get("payload_available", "online").encode()
            assert published.get(item["topic"]) == available, where + f"{item['topic']} offline"
        for key in ("state_topic", "json_attributes_topic", "image_topic"):
            assert "+" not in config.get(key, "") and "#" not in config.get(key, "")
            if key != "image_topic" and key in config:  # an image may not be there yet
                assert config[key] in published, where + f"{key} {config[key]} not published"
    assert len(unique_ids) == len(set(unique_ids)), "unique_id used twice"


def render(config: dict[str, Any], published: dict[str, bytes]) -> str:
    """The state Home Assistant shows: value_template applied to the state topic's payload."""
    payload = published[config["state_topic"]].decode()
    template = jinja2.Environment().from_string(config["value_template"])
    return template.render(value=payload, value_json=json.loads(payload)).strip()


def test_home_assistant_discovery_validates(
    broker: Broker, subscribers: list[Subscriber], photo: np.ndarray
) -> None:
    sink = MqttEventSink(
        "127.0.0.1", broker.port, topic_prefix="rec", ha_discovery=True, discovery_prefix="ha"
    )
    try:
        sink.set_status("front door", "online")
        seen(sink, "front door", 1, "José Pérez")
        identified = ev("identified", 2, "garage", name="李小龙", score=0.6)
        identified.snapshot = photo  # type: ignore[attr-defined]
        sink.write(ev("track_start", 2, "garage"))
        sink.write(identified)
        assert sink.sync(WAIT)
        published = retained(broker.port)
        configs = {t: json.loads(v) for t, v in published.items() if t.startswith("ha/")}
        cameras = {
            f"ha/{component}/rec/{camera}_{kind}/config"
            for camera in ("front_door", "garage")
            for component, kind in (
                ("sensor", "last_name"),
                ("binary_sensor", "occupancy"),
                ("sensor", "count"),
                ("image", "snapshot"),
            )
        }
        people = {
            f"ha/{component}/rec/{kind}_{p}/config"
            for p in ("jose_perez", "li_xiao_long")
            for component, kind in (("sensor", "person"), ("device_tracker", "tracker"))
        }
        # an image entity only with a picture: garage has one, front door none yet
        assert set(configs) == cameras - {"ha/image/rec/front_door_snapshot/config"} | people
        check_discovery(configs, published)

        # The templates give the states Home Assistant would show.
        person = configs["ha/sensor/rec/person_jose_perez/config"]
        assert person["name"] == "José Pérez" and render(person, published) == "front_door"
        assert render(configs["ha/binary_sensor/rec/garage_occupancy/config"], published) == "ON"
        assert render(configs["ha/sensor/rec/garage_count/config"], published) == "1"
        last_name = configs["ha/sensor/rec/front_door_last_name/config"]
        assert last_name["unique_id"] == "rec_front_door_last_name"  # as before: no duplicate
        assert published[last_name["state_topic"]].decode() == "José Pérez"
        image = configs["ha/image/rec/garage_snapshot/config"]
        assert image["content_type"] == "image/jpeg" and image["image_topic"] in published
        assert person["availability"] == [
            {"topic": "rec/bridge/status", "payload_available": "online",
             "payload_not_available": "offline"}
        ]  # fmt: skip
    finally:
        sink.close(timeout=5)


def test_forget_clears_every_retained_topic_of_a_person(
    broker: Broker, subscribers: list[Subscriber], photo: np.ndarray
) -> None:
    args: dict[str, Any] = {"topic_prefix": "rec", "ha_discovery": True, "presence_timeout": 60}
    first = MqttEventSink("127.0.0.1", broker.port, **args)
    try:
        for camera, track, name in (("front door", 1, "alice"), ("garage", 2, "bob")):
            sink_event = ev("identified", track, camera, name=name, score=0.8)
            sink_event.snapshot = photo  # type: ignore[attr-defined]
            first.write(ev("track_start", track, camera))
            first.write(sink_event)
        seen(first, "hall", 3, "alice")
        assert first.sync(WAIT)
        before = retained(broker.port)
        for topic in ("rec/people/alice", "homeassistant/sensor/rec/person_alice/config",
                      "rec/front_door/snapshot", "rec/hall/last_name"):  # fmt: skip
            assert topic in before
        # Erase while she is in view: her topics go, bob's stay, she is out of the view.
        first.forget("alice")
        assert first.sync(WAIT)
        after = retained(broker.port)
        assert not [t for t, v in after.items() if b"alice" in v or "alice" in t]
        assert "rec/front_door/snapshot" not in after
        assert "homeassistant/image/rec/front_door_snapshot/config" not in after
        assert after["rec/front_door/last_name"] == b"None"
        assert json.loads(after["rec/hall/people"]) == {
            "camera": "hall", "people": [], "count": 0, "faces": 1
        }  # fmt: skip
        assert after["rec/garage/last_name"] == b"bob" and "rec/garage/snapshot" in after
        assert "homeassistant/sensor/rec/person_bob/config" in after
        seen(first, "hall", 4, "bob")  # the sink goes on
        assert first.sync(WAIT)
    finally:
        first.close(timeout=5)

    # A new process (e.g. `streamrec erase`) finds bob's topics left by the earlier run.
    left = retained(broker.port)
    assert "rec/people/bob" in left and "rec/garage/snapshot" in left
    second = MqttEventSink("127.0.0.1", broker.port, **args)
    try:
        second.forget("bob")
        assert second.sync(WAIT)
        gone = retained(broker.port)
        assert not [t for t, v in gone.items() if b"bob" in v or "bob" in t]
        assert "rec/garage/snapshot" not in gone  # whose it was is unknown: cleared too
    finally:
        second.close(timeout=5)


def test_stale_presence_of_a_run_that_died_expires(
    broker: Broker, subscribers: list[Subscriber]
) -> None:
    # What a killed run leaves behind: carol present, her name on the camera, in view.
    now = time.time()
    stale = {
        "rec/people/carol": {"name": "Carol", "state": "porch", "camera": "porch",
                             "last_seen": "", "last_seen_ts": now, "score": 0.9},
        "rec/porch/people": {"camera": "porch", "people": ["Carol"], "count": 1, "faces": 1},
    }  # fmt: skip
    client = mqtt.Client(CallbackAPIVersion.VERSION2)
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    try:
        infos = [client.publish(t, json.dumps(v), qos=1, retain=True) for t, v in stale.items()]
        infos.append(client.publish("rec/porch/last_name", "Carol", qos=1, retain=True))
        for info in infos:
            info.wait_for_publish(WAIT)
    finally:
        client.disconnect()
        client.loop_stop()
    sub = Subscriber(broker.port, "stale", topic="rec/#", clean=True)
    subscribers.append(sub)
    sink = MqttEventSink("127.0.0.1", broker.port, topic_prefix="rec", presence_timeout=1.0)
    try:
        wait_until(lambda: state_of(sub, "rec/people/carol") == "not_home", "carol not_home")
        wait_until(lambda: sub.last("rec/porch/last_name") == "None", "the stale last name cleared")
        empty = {"camera": "porch", "people": [], "count": 0, "faces": 0}
        wait_until(lambda: json.loads(sub.last("rec/porch/people") or "{}") == empty, "empty")
        assert json.loads(sub.last("rec/people/carol") or "")["name"] == "Carol"
    finally:
        sink.close(timeout=5)


def test_buffer_bound_holds_while_the_broker_is_frozen_or_down(
    broker: Broker, subscribers: list[Subscriber]
) -> None:
    sub = Subscriber(broker.port, "bound", topic="streamrec/+/events")
    subscribers.append(sub)
    bound = 200
    sink = MqttEventSink("127.0.0.1", broker.port, buffer_max=bound, client_id="bounded")
    try:
        wait_until(lambda: sink.connected, "the sink to connect")
        assert sink.sync(WAIT)
        # Frozen: the connection stays open but nothing is acknowledged (what made paho's own
        # queue grow without bound before).
        broker.freeze()
        for i in range(3000):
            sink.write(event(i, name=f"p{i % 50}"))
        assert sink.pending == bound and sink.dropped == 3000 - bound
        wait_until(lambda: sink.in_flight >= WINDOW, "the window to fill")
        assert sink.in_flight == WINDOW and len(sink.link._client._out_messages) <= WINDOW  # paho's
        # Down: the sink disconnects, keeps writing into the same bound.
        broker.stop()
        wait_until(lambda: not sink.connected, "the sink to notice the outage")
        for i in range(3000, 6000):
            sink.write(event(i, name=f"p{i % 50}"))
        assert sink.pending == bound and sink.dropped == 6000 - bound
        assert len(sink.link._out.unsent) <= bound  # the queue that grew to 200,000 in issue 12
        assert len(sink.link._client._out_messages) <= WINDOW
        broker.start()
        newest = set(range(6000 - bound, 6000))
        wait_until(lambda: newest <= sub.seqs("streamrec/cam1/events"), "the newest events")
        assert sink.sync(WAIT) and sink.pending == 0
    finally:
        sink.close(timeout=5)


def test_credentials_work_and_never_reach_the_log(
    tmp_path: Path, subscribers: list[Subscriber], caplog: pytest.LogCaptureFixture
) -> None:
    password = "S3cr/et?#x @%41"
    passwords = tmp_path / "passwords"
    subprocess.run(
        ["mosquitto_passwd", "-b", "-c", str(passwords), "streamrec", password], check=True
    )
    broker = Broker(tmp_path, extra=f"password_file {passwords}\n")
    broker.config.write_text(broker.config.read_text().replace("allow_anonymous true", ""))
    broker.start()
    try:
        wrong = MqttEventSink("127.0.0.1", broker.port, username="streamrec", password="nope")
        right = MqttEventSink("127.0.0.1", broker.port, username="streamrec", password=password)
        try:
            wait_until(lambda: "refused" in wrong.problem, "the wrong password to be refused")
            right.write(event(1))
            assert right.sync(WAIT) and not wrong.connected
        finally:
            wrong.close(timeout=0.5)
            right.close(timeout=5)
        assert caplog.text.count("refused the connection") == 1  # once, not per retry
        assert password not in caplog.text
    finally:
        broker.stop()


# -- TLS -----------------------------------------------------------------------------------------


def make_pki(d: Path) -> None:
    """Two CAs; a server certificate for broker.test (not 127.0.0.1) and a client certificate,
    both signed by ``ca``."""

    def openssl(*args: str | Path) -> None:
        subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)

    key = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    for ca in ("ca", "other-ca"):
        openssl("req", "-x509", *key, "-days", "2", "-subj", f"/CN=streamrec test {ca}",
                "-keyout", d / f"{ca}.key", "-out", d / f"{ca}.pem")  # fmt: skip
    for leaf, ext in (("server", "subjectAltName=DNS:broker.test"),
                      ("client", "extendedKeyUsage=clientAuth")):  # fmt: skip
        (d / f"{leaf}.ext").write_text(ext + "\n")
        openssl("req", *key, "-subj", f"/CN={leaf}", "-keyout", d / f"{leaf}.key",
                "-out", d / f"{leaf}.csr")  # fmt: skip
        openssl("x509", "-req", "-in", d / f"{leaf}.csr", "-CA", d / "ca.pem", "-CAkey",
                d / "ca.key", "-CAcreateserial", "-days", "2", "-extfile", d / f"{leaf}.ext",
                "-out", d / f"{leaf}.pem")  # fmt: skip


@pytest.mark.skipif(shutil.which("openssl") is None, reason="the openssl command is missing")
def test_tls_with_a_ca_and_a_client_certificate(
    tmp_path: Path, subscribers: list[Subscriber]
) -> None:
    make_pki(tmp_path)
    tls_port = free_port()
    broker = Broker(
        tmp_path,
        extra=textwrap.dedent(f"""\
            listener {tls_port} 127.0.0.1
            cafile {tmp_path}/ca.pem
            certfile {tmp_path}/server.pem
            keyfile {tmp_path}/server.key
            require_certificate true
            """),
    )
    broker.start()  # the plain listener is for the test subscriber
    sinks: list[MqttEventSink] = []

    def sink(**tls: Any) -> MqttEventSink:
        made = MqttEventSink("127.0.0.1", tls_port, tls=True, **tls)
        sinks.append(made)
        return made

    ca, client = (
        str(tmp_path / "ca.pem"),
        {
            "certfile": str(tmp_path / "client.pem"),
            "keyfile": str(tmp_path / "client.key"),
        },
    )
    try:
        sub = Subscriber(broker.port, "tls-sub", topic="streamrec/+/events", clean=True)
        subscribers.append(sub)
        # The server's certificate names broker.test: 127.0.0.1 passes only with tls_insecure
        # (no host name check), and the chain is still verified.
        good = sink(ca_certs=ca, tls_insecure=True, **client)
        good.write(event(1))
        wait_until(lambda: sub.seqs("streamrec/cam1/events") == {1}, "an event over TLS")
        refused = [
            sink(ca_certs=ca, **client),  # host name check
            sink(ca_certs=ca, tls_insecure=True),  # no client certificate
            sink(ca_certs=str(tmp_path / "other-ca.pem"), tls_insecure=True, **client),
        ]
        wait_until(lambda: all(s.problem for s in refused), "the connections to be refused")
        assert not any(s.connected for s in refused)
        with pytest.raises(SinkError, match=r"events\.mqtt\.ca_certs: cannot read"):
            MqttEventSink("127.0.0.1", tls_port, tls=True, ca_certs=str(tmp_path / "missing"))
        (tmp_path / "garbage.pem").write_text("not a certificate\n")
        with pytest.raises(SinkError, match="TLS files"):
            MqttEventSink("127.0.0.1", tls_port, tls=True, ca_certs=str(tmp_path / "garbage.pem"))
    finally:
        for s in sinks:
            s.close(timeout=1)
        broker.stop()


# -- configuration -------------------------------------------------------------------------------


def test_config_keys_defaults_and_errors(tmp_path: Path) -> None:
    # default.yaml (generated from the schema) names every events.mqtt key
    text = DEFAULT_CONFIG.read_text()
    mqtt_doc = text[text.index("# MQTT broker") : text.index("  mqtt: null")]
    documented = {w.strip(" #,\n") for w in mqtt_doc.replace("(required)", "").split()}
    assert {f.name for f in dataclasses.fields(MqttConfig)} <= documented

    cfg = load_config(None, {"events.mqtt.host": "broker", "events.mqtt.presence_timeout": 30})
    assert cfg.events.mqtt is not None
    sink = MqttEventSink.from_config(cfg.events.mqtt)  # every key reaches the sink
    sink.close(timeout=0)
    bad = tmp_path / "bad.yaml"
    for mqtt_section, needles in (
        ({"host": "h", "ca_certs": "ca.pem"}, ["bad.yaml", "events.mqtt", "need tls: true"]),
        ({"host": "h", "tls": True, "keyfile": "k"}, ["events.mqtt", "keyfile needs certfile"]),
        ({"host": "h", "topic_prefix": "a/+"}, ["events.mqtt.topic_prefix", "without + or #"]),
        ({"host": "h", "discovery_prefix": ""}, ["events.mqtt.discovery_prefix"]),
        ({"host": "h", "presence_timeout": 0}, ["events.mqtt.presence_timeout"]),
        ({"host": "h", "snapshot_quality": 101}, ["events.mqtt.snapshot_quality"]),
        ({"host": "h", "password": "Sup3r", "port": 0}, ["events.mqtt.port"]),
        (
            {"host": "h", "double_take_timezone": "Mars/Base"},
            ["bad.yaml", "events.mqtt.double_take_timezone", "IANA name"],
        ),
    ):
        bad.write_text(yaml.safe_dump({"events": {"mqtt": mqtt_section}}))
        with pytest.raises(ConfigError) as error:
            load_config(bad)
        message = str(error.value)
        assert all(n in message for n in needles), message
        assert "Sup3r" not in message


# -- end to end ----------------------------------------------------------------------------------


def test_streamrec_run_publishes_presence_of_a_recognised_person(
    broker: Broker, subscribers: list[Subscriber], models_dir: Path, media_dir: Path, tmp_path: Path
) -> None:
    """The CLI on a real clip with the real small models: Lin-Manuel Miranda is recognised,
    his presence topic says the camera, and after the run he is not_home."""
    faces = media_dir / "face_recognition"
    gallery = tmp_path / "people.db"
    streamrec("gallery", "add", LIN, str(faces / "lin-manuel-miranda.png"), "--gallery",
              str(gallery), *SMALL)  # fmt: skip
    sub = Subscriber(broker.port, "e2e", topic="e2e/#", clean=True)
    subscribers.append(sub)
    mqtt_keys = {"host": "127.0.0.1", "port": broker.port, "topic_prefix": "e2e",
                 "ha_discovery": True, "discovery_prefix": "ha-e2e"}  # fmt: skip
    sets = [a for k, v in mqtt_keys.items() for a in ("--set", f"events.mqtt.{k}={v}")]
    clip = faces / "short_hamilton_clip.mp4"
    streamrec("run", "--source", str(clip), "--gallery", str(gallery), *SMALL, *sets)
    person = "e2e/people/lin_manuel_miranda"
    wait_until(lambda: state_of(sub, person) == "not_home", "not_home after the run")
    states = [json.loads(m.payload) for m in sub.on(person)]
    assert states[0]["presence"] == "not_home" and states[0]["camera"] is None  # enrolled
    states = [s for s in states if s["presence"] != "not_home"]
    assert states[0]["name"] == LIN and states[0]["presence"] == states[0]["camera"]
    camera = states[0]["camera"]
    events = [json.loads(m.payload) for m in sub.on(f"e2e/{camera}/events")]
    assert any(e["event"] == "identified" and e["name"] == LIN for e in events)
    views = [json.loads(m.payload)["people"] for m in sub.on(f"e2e/{camera}/people")]
    assert [LIN] in views and views[-1] == []
    published = retained(broker.port)
    assert "ha-e2e/sensor/e2e/person_lin_manuel_miranda/config" in published
    assert published["e2e/bridge/status"] == b"offline"
