"""The copy of Home Assistant's MQTT discovery (tests/ha_mqtt_schemas.py) against HA's own
documentation, the refusals its source defines, and what streamrec publishes today."""

from __future__ import annotations

import json
import time
from typing import Any

import ha_mqtt_schemas as ha
import jinja2
import numpy as np
import pytest
import test_mqtt
import voluptuous as vol
from test_mqtt import Broker, Subscriber, wait_until

from streamrec.records import Event
from streamrec.sinks import MqttEventSink

broker = test_mqtt.broker

# home-assistant/home-assistant.io, source/_integrations/<file> @ commit: the documented configs
DOCS = "home-assistant/home-assistant.io source/_integrations"
DOCUMENTED: list[tuple[str, str, dict[str, Any]]] = [
    (
        "binary_sensor",
        "mqtt.markdown @ 00db44a (Motion detection)",
        {
            "name": "garden",
            "device_class": "motion",
            "state_topic": "homeassistant/binary_sensor/garden/state",
        },
    ),
    (
        "sensor",
        "mqtt.markdown @ 00db44a (Sensors, no1)",
        {
            "device_class": "temperature",
            "name": "Temperature",
            "state_topic": "homeassistant/sensor/sensorBedroom/state",
            "unit_of_measurement": "°C",
            "value_template": "{{ value_json.temperature}}",
        },
    ),
    (
        "sensor",
        "mqtt.markdown @ 00db44a (Sensors, no2)",
        {
            "device_class": "humidity",
            "name": "Humidity",
            "state_topic": "homeassistant/sensor/sensorBedroom/state",
            "unit_of_measurement": "%",
            "value_template": "{{ value_json.humidity}}",
        },
    ),
    (
        "sensor",
        "mqtt.markdown @ 00db44a (object_id)",
        {
            "name": "My Super Device",
            "object_id": "my_super_device",
            "state_topic": "homeassistant/sensor/device1/state",
        },
    ),
    (
        "sensor",
        "sensor.mqtt.markdown @ 035b814 (JSON attributes template)",
        {
            "name": "Timer 1",
            "state_topic": "tele/sonoff/sensor",
            "value_template": "{{ value_json.Timer1.Arm }}",
            "json_attributes_topic": "tele/sonoff/sensor",
            "json_attributes_template": "{{ value_json.Timer1 | tojson }}",
        },
    ),
    (
        "sensor",
        "sensor.mqtt.markdown @ 035b814 (availability list beside payload_available)",
        {
            "name": "RSSI",
            "state_topic": "home/sensor1/infojson",
            "unit_of_measurement": "dBm",
            "value_template": "{{ value_json.RSSI }}",
            "availability": [{"topic": "home/sensor1/status"}],
            "payload_available": "online",
            "payload_not_available": "offline",
            "json_attributes_topic": "home/sensor1/attributes",
        },
    ),
    (
        "sensor",
        "sensor.mqtt.markdown @ 035b814 (Owntracks battery level)",
        {
            "name": "Battery Tablet",
            "state_topic": "owntracks/tablet/tablet",
            "unit_of_measurement": "%",
            "value_template": "{{ value_json.batt }}",
        },
    ),
    (
        "sensor",
        "sensor.mqtt.markdown @ 035b814 (ESPEasy)",
        {"name": "Brightness", "state_topic": "home/bathroom/analog/brightness"},
    ),
    ("image", "image.mqtt.markdown @ 045f4e6 (from a URL)", {"url_topic": "mynas/status/url"}),
    (
        "image",
        "image.mqtt.markdown @ 045f4e6 (from a file)",
        {"image_topic": "mynas/status/file", "content_type": "image/png"},
    ),
    (
        "device_tracker",
        "device_tracker.mqtt.markdown @ 0b7e08a (discovery)",
        {
            "state_topic": "a4567d663eaf/state",
            "name": "My Tracker",
            "payload_home": "home",
            "payload_not_home": "not_home",
        },
    ),
    (
        "device_tracker",
        "device_tracker.mqtt.markdown @ 0b7e08a (GPS attributes)",
        {"json_attributes_topic": "a4567d663eaf/attributes", "name": "My Tracker"},
    ),
    (
        "camera",
        "camera.mqtt.markdown (configuration)",
        {"topic": "zanzito/shared_locations/my-device"},
    ),
]


@pytest.mark.parametrize(("component", "source", "config"), DOCUMENTED, ids=lambda v: str(v)[:40])
def test_home_assistants_documented_configs_are_accepted_whole(
    component: str, source: str, config: dict[str, Any]
) -> None:
    found = ha.discover(f"homeassistant/{component}/example/config", json.dumps(config).encode())
    assert found.config is not None and not found.dropped, f"{DOCS}/{source}"
    assert found.config["qos"] == 0 and found.config["enabled_by_default"] is True


def test_abbreviations_base_topic_and_defaults() -> None:
    payload = {
        "~": "rec/people/alice",
        "name": None,
        "stat_t": "~/state",
        "json_attr_t": "~",
        "uniq_id": "rec_alice",
        "src_type": "router",
        "pl_home": "home",
        "avty": [{"t": "rec/bridge/status"}, {"topic": "~/status", "pl_avail": "up"}],
        "avty_mode": "all",
        "dev": {
            "ids": "rec_people",
            "mf": "streamrec",
            "mdl": "face",
            "sw": "0.1",
            "cu": "http://x",
        },
        "o": {"name": "streamrec", "sw": "0.1", "url": "https://example.org/streamrec"},
    }
    found = ha.discover(
        "homeassistant/device_tracker/rec/alice/config", json.dumps(payload).encode()
    )
    assert (found.component, found.node_id, found.object_id) == ("device_tracker", "rec", "alice")
    config = found.config
    assert config is not None and not found.dropped
    assert config["state_topic"] == "rec/people/alice/state"
    assert config["json_attributes_topic"] == "rec/people/alice"
    assert config["availability"] == [
        {
            "topic": "rec/bridge/status",
            "payload_available": "online",
            "payload_not_available": "offline",
        },
        {
            "topic": "rec/people/alice/status",
            "payload_available": "up",
            "payload_not_available": "offline",
        },
    ]
    assert config["device"]["identifiers"] == ["rec_people"]
    assert config["device"]["configuration_url"] == "http://x"
    assert config["origin"]["support_url"] == "https://example.org/streamrec"
    assert (config["payload_not_home"], config["payload_reset"]) == ("not_home", "None")


REFUSED: list[tuple[str, dict[str, Any], str]] = [
    ("sensor", {"name": "x"}, "required key not provided"),  # MQTT_RO_SCHEMA: state_topic
    ("sensor", {"state_topic": "a/+b"}, "Single-level wildcard"),  # util.valid_subscribe_topic
    ("sensor", {"state_topic": "a/#/b"}, "Multi-level wildcard"),
    ("sensor", {"state_topic": ""}, "must not be empty"),
    ("sensor", {"state_topic": "a", "qos": 3}, "value must be one of"),
    ("sensor", {"state_topic": "a", "icon": "account"}, "prefix:name"),
    ("sensor", {"state_topic": "a", "value_template": "{{ value_json.x "}, "invalid template"),
    (
        "sensor",
        {"state_topic": "a", "device_class": "temperature", "unit_of_measurement": "%"},
        "is not valid together with device class",
    ),
    ("sensor", {"state_topic": "a", "options": ["x"]}, "device class `enum`"),
    ("sensor", {"state_topic": "a", "state_class": "measure"}, "value must be one of"),
    ("sensor", {"state_topic": "a", "last_reset_value_template": "{{ 1 }}"}, "state class"),
    ("sensor", {"state_topic": "a", "device": {"name": "no ids"}}, "at least one identifying"),
    ("sensor", {"state_topic": "a", "availability_mode": "most"}, "value must be one of"),
    (
        "sensor",
        {"state_topic": "a", "availability_topic": "b", "availability": [{"topic": "c"}]},
        "two or more values in the same group of exclusion",
    ),
    ("sensor", {"state_topic": "a", "entity_category": "system"}, "value must be one of"),
    ("sensor", {"state_topic": "a", "entity_picture": "ftp://x/y.png"}, "invalid url"),
    (
        "sensor",
        {"state_topic": "a", "device": {"ids": "x", "configuration_url": "ftp://x"}},
        "invalid url",
    ),  # "ids" is expanded first: the URL is what is refused
    ("binary_sensor", {"state_topic": "a", "device_class": "person"}, "value must be one of"),
    ("image", {"name": "x"}, "Expected one of"),
    ("image", {"url_topic": "a", "image_topic": "b"}, "two or more values in the same group"),
    ("image", {"url_topic": "a", "content_type": "image/png"}, "can not be used together"),
    ("image", {"image_topic": "a", "image_encoding": "hex"}, "value must be one of"),
    ("camera", {"name": "x"}, "required key not provided"),
    ("device_tracker", {"name": "x"}, "missing state_topic or json_attributes_topic"),
    ("device_tracker", {"state_topic": "a", "source_type": "wifi"}, "value must be one of"),
]


@pytest.mark.parametrize(("component", "config", "reason"), REFUSED, ids=lambda v: str(v)[:40])
def test_what_home_assistants_source_refuses_is_refused(
    component: str, config: dict[str, Any], reason: str
) -> None:
    with pytest.raises(vol.Invalid, match=reason.replace("(", r"\(")):
        ha.discover(f"homeassistant/{component}/n/o/config", json.dumps(config).encode())


def test_topics_origin_json_and_removal() -> None:
    with pytest.raises(ha.DiscoveryError, match="illegal discovery topic"):
        ha.discover("homeassistant/sensor/my.node/x/config", b"{}")
    with pytest.raises(ha.DiscoveryError, match="Unable to parse JSON"):
        ha.discover("homeassistant/sensor/x/config", b"{not json")
    with pytest.raises(ha.DiscoveryError, match="origin"):
        ha.discover("homeassistant/sensor/x/config", b'{"state_topic": "a", "o": {"sw": "1"}}')
    removed = ha.discover("homeassistant/sensor/node/x/config", b"")
    assert removed.config is None and removed.object_id == "x"
    found = ha.discover("homeassistant/sensor/x/config", b'{"state_topic": "a", "bogus": 1}')
    assert found.dropped == {"bogus"}  # HA ignores it silently


def test_how_entities_read_their_topics() -> None:
    sensor = ha.discover("homeassistant/sensor/x/config", b'{"state_topic": "a"}').config
    assert sensor is not None
    assert ha.state_of("sensor", sensor, b"None") is None  # unknown
    assert ha.state_of("sensor", sensor, b"") == ""  # an empty state, not unknown
    assert ha.attributes_of("sensor", b'{"state": "x", "camera": "door", "icon": "i"}') == {
        "camera": "door"
    }
    assert ha.attributes_of("sensor", b"[1]") is None
    tracker = ha.discover(
        "homeassistant/device_tracker/x/config", b'{"state_topic": "a", "source_type": "router"}'
    ).config
    assert tracker is not None
    assert ha.state_of("device_tracker", tracker, b"home") == "home"
    assert ha.state_of("device_tracker", tracker, b"not_home") == "not_home"
    assert ha.state_of("device_tracker", tracker, b"None") is None
    assert ha.state_of("device_tracker", tracker, b"") is ha.IGNORED
    assert ha.state_of("device_tracker", tracker, b"front_door") == "front_door"
    assert ha.attributes_of("device_tracker", b'{"latitude": 1, "camera": "c"}') == {"camera": "c"}
    occupancy = ha.discover("homeassistant/binary_sensor/x/config", b'{"state_topic": "a"}').config
    assert occupancy is not None
    assert ha.state_of("binary_sensor", occupancy, b"ON") == "on"
    assert ha.state_of("binary_sensor", occupancy, b"None") is None
    assert ha.state_of("binary_sensor", occupancy, b"") is ha.IGNORED
    image = ha.discover("homeassistant/image/x/config", b'{"image_topic": "a"}').config
    assert image is not None and ha.image_of(image, b"") == b""  # an empty picture


def test_what_streamrec_announces_today_is_accepted(broker: Broker) -> None:
    """Every discovery message of today's MQTT sink, as Home Assistant takes it (none dropped
    keys); what HA then shows for the topics they point at is in docs/compatibility.md."""
    sub = Subscriber(broker.port, "ha-watch", "homeassistant/#", clean=True)
    sink = MqttEventSink("127.0.0.1", broker.port, ha_discovery=True, topic_prefix="rec")
    try:
        wait_until(lambda: sink.connected, "the sink to connect")
        now = time.time()
        sink.write(Event("track_start", "cam", 1, 0, 0.0, now, "door", {"box": [1, 2, 3, 4]}))
        sink.write(
            Event("identified", "cam", 1, 1, 0.1, now, "door", {"name": "Alice Ö", "score": 0.8})
        )
        assert sink.sync(30)
        wait_until(lambda: len(sub.messages) >= 5, "the discovery messages")
        components = set()
        for message in sub.messages:
            found = ha.discover(message.topic, message.payload)
            assert found.config is not None and not found.dropped, message.topic
            components.add(found.component)
        assert components == {"sensor", "binary_sensor", "device_tracker"}
    finally:
        sink.close()
        sub.close()


def shown(config: dict[str, Any], payload: bytes) -> Any:
    """The state HA shows for a state topic message: the value template rendered as HA does
    (``value_json`` the parsed payload), then the platform's reading of the result."""
    rendered = payload
    if "value_template" in config:
        template = jinja2.Environment().from_string(config["value_template"])
        rendered = template.render(value=payload.decode(), value_json=json.loads(payload)).encode()
    return ha.state_of(config["component"], config, rendered)


def test_person_trackers_sensors_and_cleared_states_as_home_assistant_reads_them(
    broker: Broker, tmp_path: Any
) -> None:
    """Issue 24 HA-1..4: a device_tracker per enrolled person from the start, home while seen
    (the zone of a camera configured with one), not_home after the timeout; no ``state``
    attribute; "None" where a state is cleared; the image entity removed while there is no
    picture; every config accepted by HA's schemas, on a real mosquitto."""
    sub = Subscriber(broker.port, "ha-people", "#", clean=True)
    sink = MqttEventSink(
        "127.0.0.1",
        broker.port,
        ha_discovery=True,
        topic_prefix="rec",
        presence_timeout=0.5,
        tracker_zones={"porch cam": "Porch"},
    )
    configs: dict[str, dict[str, Any]] = {}

    def config(topic: str) -> dict[str, Any]:
        found = ha.discover(topic, sub.on(topic)[-1].payload)
        assert found.config is not None and found.dropped == set(), topic
        return {**found.config, "component": found.component}

    def state(component: str, object_id: str) -> Any:
        cfg = configs.setdefault(
            object_id, config(f"homeassistant/{component}/rec/{object_id}/config")
        )
        return shown(cfg, sub.on(cfg["state_topic"])[-1].payload)

    try:
        sink.announce(["Alice Ö", "Bob"])
        tracker = "homeassistant/device_tracker/rec/tracker_bob/config"
        wait_until(
            lambda: bool(sub.on(tracker)) and bool(sub.on("rec/people/bob")), "Bob's tracker"
        )
        bob = config(tracker)
        assert bob["source_type"] == "router" and bob["name"] == "Bob"
        assert (bob["payload_home"], bob["payload_not_home"], bob["payload_reset"]) == (
            "home", "not_home", "None",
        )  # fmt: skip
        assert state("device_tracker", "tracker_bob") == "not_home"  # enrolled, never seen
        assert state("sensor", "person_bob") == "not_home"
        attributes = ha.attributes_of("device_tracker", sub.on("rec/people/bob")[-1].payload)
        assert attributes is not None and attributes["presence"] == "not_home"
        assert attributes["in_zones"] == [] and attributes["last_seen"] is None

        now = time.time()
        sink.write(Event("track_start", "cam", 1, 0, 0.0, now, "door", {"box": [1, 2, 3, 4]}))
        sink.write(
            Event("identified", "cam", 1, 1, 0.1, now, "door", {"name": "Alice Ö", "score": 0.8})
        )
        people = "rec/people/alice_o"
        wait_until(
            lambda: b'"location":"home"' in (sub.on(people) or [b""])[-1].payload, "Alice home"
        )
        assert state("device_tracker", "tracker_alice_o") == "home"
        assert state("sensor", "person_alice_o") == "door"
        assert ha.attributes_of("device_tracker", sub.on(people)[-1].payload)["in_zones"] == [
            "home"
        ]
        assert state("sensor", "door_last_name") == "Alice Ö"

        sink.write(Event("track_start", "cam", 2, 0, 0.0, now, "porch cam", {"box": [1, 2, 3, 4]}))
        sink.write(
            Event(
                "identified", "cam", 2, 1, 0.1, now, "porch cam", {"name": "Alice Ö", "score": 0.8}
            )
        )
        wait_until(
            lambda: b'"location":"Porch"' in sub.on(people)[-1].payload, "Alice on the porch"
        )
        assert state("device_tracker", "tracker_alice_o") == "Porch"  # a zone name

        for track, camera in ((1, "door"), (2, "porch cam")):
            sink.write(Event("track_end", "cam", track, 5, 0.2, now, camera, {"name": "Alice Ö"}))
        wait_until(lambda: b'"location":"not_home"' in sub.on(people)[-1].payload, "Alice away")
        assert state("device_tracker", "tracker_alice_o") == "not_home"
        wait_until(lambda: sub.last("rec/door/last_name") == "None", "last name cleared")
        assert state("sensor", "door_last_name") is None  # unknown, not ""

        # the image entity exists only while there is a picture
        assert not sub.on("homeassistant/image/rec/door_snapshot/config")
        picture = Event("identified", "cam", 3, 1, 0.1, now, "door", {"name": "Bob", "score": 0.8})
        picture.snapshot = np.full((64, 64, 3), 128, np.uint8)
        sink.write(Event("track_start", "cam", 3, 0, 0.0, now, "door", {"box": [1, 2, 3, 4]}))
        sink.write(picture)
        image = "homeassistant/image/rec/door_snapshot/config"
        wait_until(lambda: bool(sub.on(image)), "the image entity with the first snapshot")
        assert config(image)["image_topic"] == "rec/door/snapshot"
        sink.forget("Bob")
        wait_until(lambda: sub.on(image)[-1].payload == b"", "the image entity removed")
        assert ha.discover(image, b"").config is None  # HA removes it
        wait_until(lambda: sub.on(tracker)[-1].payload == b"", "Bob's tracker removed")
        assert sub.on("homeassistant/sensor/rec/person_bob/config")[-1].payload == b""
        # no config was ever refused or lost a key
        for message in sub.messages:
            if message.topic.startswith("homeassistant/") and message.payload:
                assert ha.discover(message.topic, message.payload).dropped == set()
    finally:
        sink.close()
        sub.close()
