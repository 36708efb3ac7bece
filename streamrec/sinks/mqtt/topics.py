"""Topic levels and payload helpers shared by the MQTT publishers."""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit

from slugify import slugify

NOT_HOME = "not_home"
HOME = "home"
#: Home Assistant's payload for "unknown" (sensor, binary_sensor; device_tracker's payload_reset)
NONE = "None"
RESERVED_CAMERAS = ("people", "bridge")  # top levels of our own under the prefix


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


def camera_segment(camera: str) -> str:
    """The topic level of a camera; never one of the prefix's own levels (``people`` ...)."""
    segment = topic_segment(camera)
    return f"{segment}_camera" if segment in RESERVED_CAMERAS else segment


def person_slug(name: str) -> str:
    """A person's topic level: lower-case ASCII letters, digits and ``_`` (unicode names are
    transliterated: ``José Pérez`` -> ``jose_perez``, ``李小龙`` -> ``li_xiao_long``)."""
    return slugify(name, separator="_") or "person"


def ha_id(name: str) -> str:
    """Home Assistant discovery ids allow only ``[A-Za-z0-9_-]``."""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", name)


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds")


def to_json(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def load_object(payload: bytes) -> dict[str, Any]:
    """A JSON object payload, or {} when it is not one (not ours, damaged)."""
    try:
        value = json.loads(payload)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
