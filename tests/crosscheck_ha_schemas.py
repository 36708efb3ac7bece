"""Cross-check tests/ha_mqtt_schemas.py (copied from HA 2026.2.3) against a real Home Assistant
(a tool, not a test: HA cannot be installed beside streamrec).

    python3 -m venv /tmp/havenv
    /tmp/havenv/bin/pip install homeassistant==2024.3.3 paho-mqtt==1.6.1 numpy PyTurboJPEG
    PYTHONPATH=.:tests python tests/crosscheck_ha_schemas.py /tmp/havenv/bin/python

2024.3.3 is the newest release that installs on Python 3.11. A corpus of discovery configs
(HA's documented ones, the refusals of tests/test_ha_schemas.py, random variants of valid
configs with keys added, dropped or given wrong values) is validated by both; every disagreement
is printed, with the keys that only one of the two versions knows left out of the corpus.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import tempfile
from typing import Any

import ha_mqtt_schemas as ha
import voluptuous as vol
from test_ha_schemas import DOCUMENTED, REFUSED

# what HA 2024.3.3 did not check yet, left out of the corpus: keys it did not have
# (entity_picture was not a common key: dropped unchecked), the check of
# last_reset_value_template against the state class, units against device classes
NEWER = {
    "default_entity_id",
    "model_id",
    "image_encoding",
    "options",
    "entity_picture",
    "last_reset_value_template",
}
NEWER_VALUES = {("state_class", "measurement_angle")}


def newer(component: str, config: dict[str, Any]) -> bool:
    """A config whose verdict changed after 2024.3.3 by design."""
    if NEWER & set(config) or any(
        (k, v) in NEWER_VALUES for k, v in config.items() if isinstance(v, str)
    ):
        return True
    return (
        component == "sensor"
        and bool(config.get("device_class"))
        and bool(config.get("unit_of_measurement"))
    )


REAL = r"""
import asyncio, json, sys
import voluptuous as vol
from homeassistant.core import HomeAssistant

async def main():
    HomeAssistant(sys.argv[2])  # cv.template needs a current hass
    from homeassistant.components.mqtt import (
        binary_sensor, camera, device_tracker, image, sensor)
    schemas = {"sensor": sensor.DISCOVERY_SCHEMA, "binary_sensor": binary_sensor.DISCOVERY_SCHEMA,
               "image": image.DISCOVERY_SCHEMA, "camera": camera.DISCOVERY_SCHEMA,
               "device_tracker": device_tracker.DISCOVERY_SCHEMA}
    verdicts = []
    for component, config in json.load(open(sys.argv[1])):
        try:
            schemas[component](dict(config))
            verdicts.append(None)
        except vol.Invalid as exc:
            verdicts.append(str(exc))
    print(json.dumps(verdicts))

asyncio.run(main())
"""

VALUES: dict[str, list[Any]] = {
    "name": ["x", None, 5, ["a"]],
    "state_topic": ["a/b", "a/+/b", "a/#", "a+b", "", "a/#/c"],
    "value_template": ["{{ value_json.x }}", "{{ x ", "{% if %}", 3],
    "json_attributes_topic": ["a/attr", "a/#/b"],
    "json_attributes_template": ["{{ value_json | tojson }}", "{{"],
    "unique_id": ["u1", 7],
    "icon": ["mdi:face", "face", 3],
    "qos": [0, 1, 2, 3, "1"],
    "availability_mode": ["all", "any", "latest", "most"],
    "availability_topic": ["s/status", "s/+x"],
    "availability": [[{"topic": "a"}], {"topic": "b"}, [{"payload_available": "up"}], []],
    "payload_available": ["up"],
    "device": [
        {"identifiers": "d"},
        {"identifiers": ["d"], "name": "n"},
        {"name": "n"},
        {"connections": [["mac", "02:5b"]]},
        {"connections": [["mac"]]},
        {"identifiers": "d", "configuration_url": "homeassistant://x"},
        {"identifiers": "d", "configuration_url": "ftp://x"},
    ],
    "origin": [{"name": "o"}, {"sw_version": "1"}, {"name": "o", "support_url": "https://x"}],
    "enabled_by_default": [True, "off", "maybe"],
    "entity_category": ["diagnostic", "config", "system"],
    "entity_picture": ["https://x/y.png", "x"],
    "object_id": ["o1"],
    "expire_after": [10, -1, "5"],
    "force_update": [True, "yes", "x"],
    "device_class": ["temperature", "TEMPERATURE", "occupancy", "motion", "date", "nope", None],
    "state_class": ["measurement", "total", "total_increasing", "nope", None],
    "unit_of_measurement": ["°C", "%", "", " ", "dBm", None],
    "last_reset_value_template": ["{{ 1 }}"],
    "suggested_display_precision": [1, -1],
    "payload_on": ["on"],
    "payload_off": ["off"],
    "off_delay": [3, -3],
    "image_topic": ["i/img"],
    "url_topic": ["i/url"],
    "content_type": ["image/png"],
    "url_template": ["{{ value }}"],
    "topic": ["c/img", "c/#/x"],
    "payload_home": ["here"],
    "payload_not_home": ["away"],
    "payload_reset": ["reset"],
    "source_type": ["gps", "router", "bluetooth", "bluetooth_le", "wifi"],
    "encoding": ["utf-8", ""],
}
KEYS = {
    component: [str(k.schema) for k in schema.schema if str(k.schema) not in NEWER]
    for component, (schema, _) in ha.PLATFORMS.items()
}


def ours(component: str, config: dict[str, Any]) -> str | None:
    try:
        ha.validate(component, json.loads(json.dumps(config)))
        return None
    except vol.Invalid as exc:
        return str(exc)


def corpus(seed: int = 2024, variants: int = 1500) -> list[tuple[str, dict[str, Any]]]:
    rng = random.Random(seed)
    base = [(c, cfg) for c, _, cfg in DOCUMENTED] + [(c, cfg) for c, cfg, _ in REFUSED]
    items = [(c, cfg) for c, cfg in base if not newer(c, cfg)]
    valid = [(c, cfg) for c, _, cfg in DOCUMENTED if not newer(c, cfg)]
    for _ in range(variants):
        component, config = rng.choice(valid if rng.random() < 0.7 else items)
        config = dict(config)
        for _ in range(rng.randint(1, 4)):
            key = rng.choice(KEYS[component])
            if key in config and rng.random() < 0.3:
                del config[key]
            elif key in VALUES:  # the first value is a valid one: taken half of the time
                values = VALUES[key]
                config[key] = values[0] if rng.random() < 0.5 else rng.choice(values)
        if not newer(component, config):
            items.append((component, config))
    return items


def main() -> int:
    python = sys.argv[1]
    items = corpus()
    with tempfile.TemporaryDirectory() as folder:
        path = f"{folder}/corpus.json"
        with open(path, "w") as f:
            json.dump(items, f)
        done = subprocess.run(
            [python, "-c", REAL, path, folder], capture_output=True, text=True, check=True
        )
    real = json.loads(done.stdout.strip().splitlines()[-1])
    disagree = 0
    for (component, config), theirs in zip(items, real, strict=True):
        mine = ours(component, config)
        if (mine is None) != (theirs is None):
            disagree += 1
            print(f"{component} {json.dumps(config)}\n  copy: {mine}\n  HA:   {theirs}")
    accepted = sum(v is None for v in real)
    print(f"{len(items)} configs, HA 2024.3.3 accepts {accepted}; disagreements: {disagree}")
    return 1 if disagree else 0


if __name__ == "__main__":
    sys.exit(main())
