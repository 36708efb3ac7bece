"""Home Assistant MQTT discovery of the sink's topics.

Under ``<discovery_prefix>/<component>/<node>/<object id>/config`` (retained; ``<node>`` is the
topic prefix as a discovery id): per person a sensor (their camera or ``not_home``, the JSON as
attributes) and a ``device_tracker`` (``source_type: router``; ``home`` while seen on any camera,
or the zone name configured for that camera, else ``not_home``: what Home Assistant's ``person``
accepts), announced for every enrolled person at start and at a first sighting; per camera the
last-name sensor, an occupancy ``binary_sensor``, a people-count sensor and an ``image`` of the
snapshot (removed while the camera has no snapshot: an empty image payload would show an empty
picture); with ``device`` and ``origin`` blocks and availability (the bridge status, and the
camera status: ``availability_mode: all``). Erasing a person removes their entities, also when
discovery is off (entities of an earlier run). Every config validates against Home Assistant
2026.2.3's discovery schemas with no key dropped (``tests/ha_mqtt_schemas.py``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from streamrec.sinks.mqtt.link import MqttLink
from streamrec.sinks.mqtt.publisher import Person, Publisher
from streamrec.sinks.mqtt.topics import HOME, NONE, NOT_HOME, ha_id, to_json
from streamrec.version import __version__

DEFAULT_PREFIX = "homeassistant"


class HomeAssistantDiscovery(Publisher):
    """The discovery configs of one sink; ``discovery`` None: none are announced."""

    def __init__(
        self,
        link: MqttLink,
        prefix: str,
        discovery: str | None,
        bridge_topic: str,
        snapshots: bool,
    ) -> None:
        self.link = link
        self.prefix = prefix
        self.discovery = discovery
        self.node = ha_id(prefix)
        self.bridge_topic = bridge_topic
        self.snapshots = snapshots

    def camera_added(self, camera: str) -> None:
        for component, object_id, config in self._camera_entities(camera):
            if component != "image":  # announced with the camera's first snapshot
                self._announce(component, object_id, config)

    def person_added(self, person: Person) -> None:
        topic = f"{self.prefix}/people/{person.slug}"
        device = {"identifiers": [f"{self.node}_people"], "name": "streamrec people"}
        config = {
            **self._entity(f"person_{person.slug}", person.name, device, self.bridge_topic),
            "state_topic": topic,
            "value_template": "{{ value_json.presence }}",
            "json_attributes_topic": topic,
            "icon": "mdi:account",
        }
        self._announce("sensor", f"person_{person.slug}", config)
        tracker = {
            **self._entity(f"tracker_{person.slug}", person.name, device, self.bridge_topic),
            "state_topic": topic,
            "value_template": "{{ value_json.location }}",
            "json_attributes_topic": topic,
            "source_type": "router",
            "payload_home": HOME,
            "payload_not_home": NOT_HOME,
            "payload_reset": NONE,
            "icon": "mdi:account",
        }
        self._announce("device_tracker", f"tracker_{person.slug}", tracker)

    def forgotten(self, name: str, slug: str | None) -> None:
        if slug is not None:
            discovery = self.discovery or DEFAULT_PREFIX  # also entities of an earlier run
            for component, object_id in (("sensor", "person"), ("device_tracker", "tracker")):
                topic = f"{discovery}/{component}/{self.node}/{object_id}_{slug}/config"
                self.link.set_retained(topic, b"")

    def snapshot(self, camera: str, shown: bool) -> None:
        """``camera``'s snapshot was published (``shown``) or cleared: its image entity is
        announced, or removed (Home Assistant has no "no picture" payload)."""
        for component, object_id, config in self._camera_entities(camera):
            if component == "image":
                self._announce(component, object_id, config if shown else None)

    def _announce(self, component: str, object_id: str, config: dict[str, Any] | None) -> None:
        """Announce an entity; None: remove it (an empty config)."""
        if self.discovery is not None:
            topic = f"{self.discovery}/{component}/{self.node}/{object_id}/config"
            self.link.set_retained(topic, to_json(config) if config is not None else b"")

    def _entity(
        self, unique: str, name: str, device: dict[str, Any], *availability: str
    ) -> dict[str, Any]:
        return {
            "name": name,
            "unique_id": f"{self.node}_{unique}",
            "availability": [
                {"topic": t, "payload_available": "online", "payload_not_available": "offline"}
                for t in availability
            ],
            "availability_mode": "all",
            "device": {"manufacturer": "streamrec", "sw_version": __version__, **device},
            "origin": {"name": "streamrec", "sw_version": __version__},
        }

    def _camera_entities(self, camera: str) -> Iterator[tuple[str, str, dict[str, Any]]]:
        """(component, object id, config) of each entity of a camera."""
        base, cam = f"{self.prefix}/{camera}", ha_id(camera)
        device = {
            "identifiers": [f"{self.node}_{cam}"],
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
        if self.snapshots:
            yield (
                "image",
                f"{cam}_snapshot",
                {
                    **entity("snapshot", "Snapshot"),
                    "image_topic": f"{base}/snapshot",
                    "content_type": "image/jpeg",
                },
            )
