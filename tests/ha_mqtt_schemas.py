"""Home Assistant's MQTT discovery, as HA 2026.2.3 validates and reads it, for the tests.

A copy (with voluptuous, the library HA uses) of what Home Assistant core 2026.2.3 does with a
discovery message and with the state, attributes and image messages of the MQTT platforms
streamrec uses: ``sensor``, ``binary_sensor``, ``image``, ``camera`` and ``device_tracker``.
Home Assistant itself cannot be installed beside streamrec (2026.x needs Python 3.13.2; the last
release for Python 3.11, 2024.3.3, pins ``urllib3<2``, ``requests==2.31.0`` and ``PyYAML==6.0.1``).

Source: the ``homeassistant-2026.2.3-py3-none-any.whl`` wheel (``pip download
homeassistant==2026.2.3 --no-deps --python-version 3.14 --only-binary=:all:``), Apache-2.0,
files (under ``homeassistant/``): ``components/mqtt/{abbreviations,config,const,discovery,
entity,schemas,util,sensor,binary_sensor,image,camera,device_tracker}.py``,
``components/sensor/const.py`` (device and state classes), ``components/binary_sensor/__init__.py``
(device classes), ``components/device_tracker/const.py`` (``SourceType``), ``const.py``
(``EntityCategory``) and ``helpers/config_validation.py`` (the ``cv.*`` validators). Copied field
for field; where the copy stops short it refuses rather than passes (``cv.template`` only parses
the Jinja syntax, HA also knows its own filters). Device-based discovery
(``<prefix>/device/...``) is not copied.

``discover(topic, payload)`` is HA's handling of one discovery message: topic match, JSON,
abbreviations, origin, ``~``, then the platform's ``DISCOVERY_SCHEMA``. HA drops unknown keys
silently (``vol.REMOVE_EXTRA``): they come back in ``Discovered.dropped`` so a test can insist on
none. ``state_of``/``attributes_of``/``image_of`` are how the entities read their topics.
"""

from __future__ import annotations

import json
import re
from base64 import b64decode
from dataclasses import dataclass
from numbers import Number
from typing import Any
from urllib.parse import urlparse

import jinja2
import voluptuous as vol

HA_VERSION = "2026.2.3"


class DiscoveryError(ValueError):
    """Home Assistant ignores this discovery message (and logs why)."""


# -- helpers/config_validation.py ------------------------------------------------------------


def string(value: Any) -> str:
    """cv.string: coerce to string, except for None, lists and dicts."""
    if value is None:
        raise vol.Invalid("string value is None")
    if isinstance(value, str):
        return value
    if isinstance(value, (list, dict)):
        raise vol.Invalid("value should be a string")
    return str(value)


_JINJA = jinja2.Environment()


def template(value: Any) -> str:
    """cv.template: a string that parses as a Jinja template (HA also checks its filters)."""
    if value is None:
        raise vol.Invalid("template value is None")
    if isinstance(value, (list, dict)):
        raise vol.Invalid("template value should be a string")
    try:
        _JINJA.parse(str(value))
    except jinja2.TemplateSyntaxError as exc:
        raise vol.Invalid(f"invalid template ({exc})") from exc
    return str(value)


def icon(value: Any) -> str:
    """cv.icon."""
    text = str(value)
    if ":" in text:
        return text
    raise vol.Invalid('Icons should be specified in the form "prefix:name"')


EXTERNAL_URL_PROTOCOL_SCHEMA_LIST = frozenset({"http", "https"})
CONFIGURATION_URL_PROTOCOL_SCHEMA_LIST = frozenset({"homeassistant", "http", "https"})


def url(value: Any, schemes: frozenset[str] = EXTERNAL_URL_PROTOCOL_SCHEMA_LIST) -> str:
    """cv.url."""
    text = str(value)
    if urlparse(text).scheme in schemes:
        return str(vol.Schema(vol.Url())(text))
    raise vol.Invalid("invalid url")


def configuration_url(value: Any) -> str:
    """cv.configuration_url."""
    return url(value, CONFIGURATION_URL_PROTOCOL_SCHEMA_LIST)


positive_int = vol.All(vol.Coerce(int), vol.Range(min=0))


def boolean(value: Any) -> bool:
    """cv.boolean."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        value = value.lower().strip()
        if value in ("1", "true", "yes", "on", "enable"):
            return True
        if value in ("0", "false", "no", "off", "disable"):
            return False
    elif isinstance(value, Number):
        return bool(value != 0)
    raise vol.Invalid(f"invalid boolean value {value}")


def ensure_list(value: Any) -> list[Any]:
    """cv.ensure_list."""
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def renamed(old: str, new: str) -> Any:
    """cv.deprecated(old, new): the old key is read as the new one (HA logs a warning)."""

    def rename(config: Any) -> Any:
        if isinstance(config, dict) and old in config:
            config = dict(config)
            value = config.pop(old)
            config.setdefault(new, value)
        return config

    return rename


# -- components/mqtt/util.py -------------------------------------------------------------------


def valid_topic(topic: Any) -> str:
    """A valid topic name or filter."""
    text = string(topic)
    raw = text.encode("utf-8", errors="strict")
    if not raw:
        raise vol.Invalid("MQTT topic name/filter must not be empty.")
    if len(raw) > 65535:
        raise vol.Invalid("MQTT topic name/filter must not be longer than 65535 encoded bytes.")
    for char in text:
        if char == "\0":
            raise vol.Invalid("MQTT topic name/filter must not contain null character.")
        if char <= "\u001f" or "\u007f" <= char <= "\u009f":
            raise vol.Invalid("MQTT topic name/filter must not contain control characters.")
        if "\ufdd0" <= char <= "\ufdef" or (ord(char) & 0xFFFF) in (0xFFFE, 0xFFFF):
            raise vol.Invalid("MQTT topic name/filter must not contain non-characters.")
    return text


def valid_subscribe_topic(topic: Any) -> str:
    text = valid_topic(topic)
    for i, char in enumerate(text):
        if char == "+" and (
            (i > 0 and text[i - 1] != "/") or (i < len(text) - 1 and text[i + 1] != "/")
        ):
            raise vol.Invalid("Single-level wildcard must occupy an entire level of the filter")
    index = text.find("#")
    if index != -1:
        if index != len(text) - 1:
            raise vol.Invalid(
                "Multi-level wildcard must be the last character in the topic filter."
            )
        if len(text) > 1 and text[index - 1] != "/":
            raise vol.Invalid("Multi-level wildcard must be after a topic level separator.")
    return text


def valid_publish_topic(topic: Any) -> str:
    text = valid_topic(topic)
    if "+" in text or "#" in text:
        raise vol.Invalid("Wildcards cannot be used in topic names")
    return text


valid_qos_schema = vol.All(vol.Coerce(int), vol.In([0, 1, 2]))

# -- enumerations: components/sensor/const.py, binary_sensor, device_tracker, const.py ----------

SENSOR_DEVICE_CLASSES = frozenset(
    {
        "date",
        "enum",
        "timestamp",
        "absolute_humidity",
        "apparent_power",
        "aqi",
        "area",
        "atmospheric_pressure",
        "battery",
        "blood_glucose_concentration",
        "carbon_monoxide",
        "carbon_dioxide",
        "conductivity",
        "current",
        "data_rate",
        "data_size",
        "distance",
        "duration",
        "energy",
        "energy_distance",
        "energy_storage",
        "frequency",
        "gas",
        "humidity",
        "illuminance",
        "irradiance",
        "moisture",
        "monetary",
        "nitrogen_dioxide",
        "nitrogen_monoxide",
        "nitrous_oxide",
        "ozone",
        "ph",
        "pm1",
        "pm10",
        "pm25",
        "pm4",
        "power_factor",
        "power",
        "precipitation",
        "precipitation_intensity",
        "pressure",
        "reactive_energy",
        "reactive_power",
        "signal_strength",
        "sound_pressure",
        "speed",
        "sulphur_dioxide",
        "temperature",
        "temperature_delta",
        "volatile_organic_compounds",
        "volatile_organic_compounds_parts",
        "voltage",
        "volume",
        "volume_storage",
        "volume_flow_rate",
        "water",
        "weight",
        "wind_direction",
        "wind_speed",
    }
)
#: sensor/const.py DEVICE_CLASS_UNITS and AMBIGUOUS_UNITS, the unit constants they name
#: (homeassistant/const.py, sensor/const.py) written out as their values
DEVICE_CLASS_UNITS: dict[str, frozenset[str | None]] = {
    "absolute_humidity": frozenset(["g/m³", "mg/m³"]),
    "apparent_power": frozenset(["VA", "kVA", "mVA"]),
    "aqi": frozenset([None]),
    "area": frozenset(["ac", "cm²", "ft²", "ha", "in²", "km²", "mi²", "mm²", "m²", "yd²"]),
    "atmospheric_pressure": frozenset(
        ["Pa", "bar", "cbar", "hPa", "inHg", "inH₂O", "kPa", "mPa", "mbar", "mmHg", "psi"]
    ),
    "battery": frozenset(["%"]),
    "blood_glucose_concentration": frozenset(["mg/dL", "mmol/L"]),
    "carbon_dioxide": frozenset(["ppm"]),
    "carbon_monoxide": frozenset(["mg/m³", "ppb", "ppm", "μg/m³"]),
    "conductivity": frozenset(["S/cm", "mS/cm", "μS/cm"]),
    "current": frozenset(["A", "mA"]),
    "data_rate": frozenset(
        [
            "B/s",
            "GB/s",
            "Gbit/s",
            "GiB/s",
            "KiB/s",
            "MB/s",
            "Mbit/s",
            "MiB/s",
            "bit/s",
            "kB/s",
            "kbit/s",
        ]
    ),
    "data_size": frozenset(
        [
            "B",
            "EB",
            "EiB",
            "GB",
            "Gbit",
            "GiB",
            "KiB",
            "MB",
            "Mbit",
            "MiB",
            "PB",
            "PiB",
            "TB",
            "TiB",
            "YB",
            "YiB",
            "ZB",
            "ZiB",
            "bit",
            "kB",
            "kbit",
        ]
    ),
    "distance": frozenset(["cm", "ft", "in", "km", "m", "mi", "mm", "nmi", "yd"]),
    "duration": frozenset(["d", "h", "min", "ms", "s", "μs"]),
    "energy": frozenset(
        [
            "GJ",
            "GWh",
            "Gcal",
            "J",
            "MJ",
            "MWh",
            "Mcal",
            "TWh",
            "Wh",
            "cal",
            "kJ",
            "kWh",
            "kcal",
            "mWh",
        ]
    ),
    "energy_distance": frozenset(["Wh/km", "kWh/100km", "km/kWh", "mi/kWh"]),
    "energy_storage": frozenset(
        [
            "GJ",
            "GWh",
            "Gcal",
            "J",
            "MJ",
            "MWh",
            "Mcal",
            "TWh",
            "Wh",
            "cal",
            "kJ",
            "kWh",
            "kcal",
            "mWh",
        ]
    ),
    "frequency": frozenset(["GHz", "Hz", "MHz", "kHz"]),
    "gas": frozenset(["CCF", "L", "MCF", "ft³", "m³"]),
    "humidity": frozenset(["%"]),
    "illuminance": frozenset(["lx"]),
    "irradiance": frozenset(["BTU/(h⋅ft²)", "W/m²"]),
    "moisture": frozenset(["%"]),
    "nitrogen_dioxide": frozenset(["ppb", "μg/m³"]),
    "nitrogen_monoxide": frozenset(["ppb", "μg/m³"]),
    "nitrous_oxide": frozenset(["μg/m³"]),
    "ozone": frozenset(["ppb", "μg/m³"]),
    "ph": frozenset([None]),
    "pm1": frozenset(["μg/m³"]),
    "pm10": frozenset(["μg/m³"]),
    "pm25": frozenset(["μg/m³"]),
    "pm4": frozenset(["μg/m³"]),
    "power": frozenset(["GW", "MW", "TW", "W", "kW", "mW"]),
    "power_factor": frozenset(["%", None]),
    "precipitation": frozenset(["cm", "in", "mm"]),
    "precipitation_intensity": frozenset(["in/d", "in/h", "mm/d", "mm/h"]),
    "pressure": frozenset(
        ["Pa", "bar", "cbar", "hPa", "inHg", "inH₂O", "kPa", "mPa", "mbar", "mmHg", "psi"]
    ),
    "reactive_energy": frozenset(["kvarh", "varh"]),
    "reactive_power": frozenset(["kvar", "mvar", "var"]),
    "signal_strength": frozenset(["dB", "dBm"]),
    "sound_pressure": frozenset(["dB", "dBA"]),
    "speed": frozenset(
        [
            "Beaufort",
            "ft/s",
            "in/d",
            "in/h",
            "in/s",
            "km/h",
            "kn",
            "m/min",
            "m/s",
            "mm/d",
            "mm/h",
            "mm/s",
            "mph",
        ]
    ),
    "sulphur_dioxide": frozenset(["ppb", "μg/m³"]),
    "temperature": frozenset(["K", "°C", "°F"]),
    "temperature_delta": frozenset(["K", "°C", "°F"]),
    "volatile_organic_compounds": frozenset(["mg/m³", "μg/m³"]),
    "volatile_organic_compounds_parts": frozenset(["ppb", "ppm"]),
    "voltage": frozenset(["MV", "V", "kV", "mV", "μV"]),
    "volume": frozenset(["CCF", "L", "MCF", "fl. oz.", "ft³", "gal", "mL", "m³"]),
    "volume_flow_rate": frozenset(
        [
            "L/h",
            "L/min",
            "L/s",
            "ft³/min",
            "gal/d",
            "gal/h",
            "gal/min",
            "mL/s",
            "m³/h",
            "m³/min",
            "m³/s",
        ]
    ),
    "volume_storage": frozenset(["CCF", "L", "MCF", "fl. oz.", "ft³", "gal", "mL", "m³"]),
    "water": frozenset(["CCF", "L", "MCF", "ft³", "gal", "m³"]),
    "weight": frozenset(["g", "kg", "lb", "mg", "oz", "st", "μg"]),
    "wind_direction": frozenset(["°"]),
    "wind_speed": frozenset(
        ["Beaufort", "ft/s", "in/s", "km/h", "kn", "m/min", "m/s", "mm/s", "mph"]
    ),
}
AMBIGUOUS_UNITS: dict[str, str] = {
    "µSv/h": "μSv/h",
    "µS/cm": "μS/cm",
    "µV": "μV",
    "µg/ft³": "μg/ft³",
    "µg/m³": "μg/m³",
    "µmol/s⋅m²": "μmol/s⋅m²",
    "µg": "μg",
    "µs": "μs",
    "mVAr": "mvar",
    "VAr": "var",
    "kVAr": "kvar",
    "VArh": "varh",
    "kVArh": "kvarh",
}
SENSOR_STATE_CLASSES = frozenset({"measurement", "measurement_angle", "total", "total_increasing"})
BINARY_SENSOR_DEVICE_CLASSES = frozenset(
    {
        "battery",
        "battery_charging",
        "carbon_monoxide",
        "cold",
        "connectivity",
        "door",
        "garage_door",
        "gas",
        "heat",
        "light",
        "lock",
        "moisture",
        "motion",
        "moving",
        "occupancy",
        "opening",
        "plug",
        "power",
        "presence",
        "problem",
        "running",
        "safety",
        "smoke",
        "sound",
        "tamper",
        "update",
        "vibration",
        "window",
    }
)
SOURCE_TYPES = frozenset({"gps", "router", "bluetooth", "bluetooth_le"})
ENTITY_CATEGORIES = frozenset({"config", "diagnostic"})

# -- components/mqtt/const.py --------------------------------------------------------------------

AVAILABILITY_MODES = ["all", "any", "latest"]
PAYLOAD_NONE = "None"
STATE_HOME = "home"
STATE_NOT_HOME = "not_home"

# -- components/mqtt/config.py -------------------------------------------------------------------

MQTT_BASE_SCHEMA = vol.Schema(
    {
        vol.Optional("qos", default=0): valid_qos_schema,
        vol.Optional("encoding", default="utf-8"): string,
    }
)
MQTT_RO_SCHEMA = MQTT_BASE_SCHEMA.extend(
    {
        vol.Required("state_topic"): valid_subscribe_topic,
        vol.Optional("value_template"): template,
    }
)

# -- components/mqtt/schemas.py ------------------------------------------------------------------

_MQTT_AVAILABILITY_SINGLE_SCHEMA = vol.Schema(
    {
        vol.Exclusive("availability_topic", "availability"): valid_subscribe_topic,
        vol.Optional("availability_template"): template,
        vol.Optional("payload_available", default="online"): string,
        vol.Optional("payload_not_available", default="offline"): string,
    }
)
_MQTT_AVAILABILITY_LIST_SCHEMA = vol.Schema(
    {
        vol.Optional("availability_mode", default="latest"): vol.All(
            string, vol.In(AVAILABILITY_MODES)
        ),
        vol.Exclusive("availability", "availability"): vol.All(
            ensure_list,
            [
                {
                    vol.Required("topic"): valid_subscribe_topic,
                    vol.Optional("payload_available", default="online"): string,
                    vol.Optional("payload_not_available", default="offline"): string,
                    vol.Optional("value_template"): template,
                }
            ],
        ),
    }
)
_MQTT_AVAILABILITY_SCHEMA = _MQTT_AVAILABILITY_SINGLE_SCHEMA.extend(
    _MQTT_AVAILABILITY_LIST_SCHEMA.schema
)


def validate_device_has_at_least_one_identifier(value: dict[str, Any]) -> dict[str, Any]:
    if value.get("identifiers") or value.get("connections"):
        return value
    raise vol.Invalid(
        "Device must have at least one identifying value in 'identifiers' and/or 'connections'"
    )


MQTT_ENTITY_DEVICE_INFO_SCHEMA = vol.All(
    renamed("via_hub", "via_device"),
    vol.Schema(
        {
            vol.Optional("identifiers", default=list): vol.All(ensure_list, [string]),
            vol.Optional("connections", default=list): vol.All(
                ensure_list, [vol.All(vol.Length(2), [string])]
            ),
            vol.Optional("manufacturer"): string,
            vol.Optional("model"): string,
            vol.Optional("model_id"): string,
            vol.Optional("name"): string,
            vol.Optional("hw_version"): string,
            vol.Optional("serial_number"): string,
            vol.Optional("sw_version"): string,
            vol.Optional("via_device"): string,
            vol.Optional("suggested_area"): string,
            vol.Optional("configuration_url"): configuration_url,
        }
    ),
    validate_device_has_at_least_one_identifier,
)
MQTT_ORIGIN_INFO_SCHEMA = vol.Schema(
    {
        vol.Required("name"): string,
        vol.Optional("sw_version"): string,
        vol.Optional("support_url"): configuration_url,
    }
)
MQTT_ENTITY_COMMON_SCHEMA = _MQTT_AVAILABILITY_SCHEMA.extend(
    {
        vol.Optional("device"): MQTT_ENTITY_DEVICE_INFO_SCHEMA,
        vol.Optional("entity_picture"): url,
        vol.Optional("origin"): MQTT_ORIGIN_INFO_SCHEMA,
        vol.Optional("enabled_by_default", default=True): boolean,
        vol.Optional("entity_category"): vol.In(ENTITY_CATEGORIES),
        vol.Optional("icon"): icon,
        vol.Optional("json_attributes_topic"): valid_subscribe_topic,
        vol.Optional("json_attributes_template"): template,
        vol.Optional("default_entity_id"): string,
        vol.Optional("object_id"): string,
        vol.Optional("unique_id"): string,
    }
)

# -- the platforms: components/mqtt/{sensor,binary_sensor,image,camera,device_tracker}.py --------

_SENSOR_BASE = MQTT_RO_SCHEMA.extend(
    {
        vol.Optional("device_class"): vol.Any(
            vol.All(vol.Lower, vol.In(SENSOR_DEVICE_CLASSES)), None
        ),
        vol.Optional("expire_after"): positive_int,
        vol.Optional("force_update", default=False): boolean,
        vol.Optional("last_reset_value_template"): template,
        vol.Optional("name"): vol.Any(string, None),
        vol.Optional("options"): ensure_list,
        vol.Optional("suggested_display_precision"): positive_int,
        vol.Optional("state_class"): vol.Any(
            vol.All(vol.Lower, vol.In(SENSOR_STATE_CLASSES)), None
        ),
        vol.Optional("unit_of_measurement"): vol.Any(string, None),
    }
).extend(MQTT_ENTITY_COMMON_SCHEMA.schema)


def validate_sensor_state_and_device_class_config(config: dict[str, Any]) -> dict[str, Any]:
    """sensor.py's check of options, state class and units."""
    if "last_reset_value_template" in config and config.get("state_class") != "total":
        raise vol.Invalid(
            "The option `last_reset_value_template` cannot be used together with state class "
            f"`{config.get('state_class')}`"
        )
    unit = config.get("unit_of_measurement")
    if unit is not None and not unit.strip():
        config.pop("unit_of_measurement")
    if (options := config.get("options")) is not None:
        if not options:
            raise vol.Invalid("An empty options list is not allowed")
        if config.get("state_class") or config.get("unit_of_measurement"):
            raise vol.Invalid(
                "Specifying `options` is not allowed together with the `state_class` or "
                "`unit_of_measurement` option"
            )
        if config.get("device_class") != "enum":
            raise vol.Invalid("The option `options` must be used together with device class `enum`")
    if (
        config.get("state_class") == "measurement_angle"
        and config.get("unit_of_measurement") != "°"
    ):
        raise vol.Invalid("The unit of measurement is not valid together with state class")
    if (unit := config.get("unit_of_measurement")) is None:
        return config
    unit = config["unit_of_measurement"] = AMBIGUOUS_UNITS.get(unit, unit)
    if (device_class := config.get("device_class")) is None:
        return config
    if device_class in DEVICE_CLASS_UNITS and unit not in DEVICE_CLASS_UNITS[device_class]:
        raise vol.Invalid(
            f"The unit of measurement `{unit}` is not valid together with device class "
            f"`{device_class}`"
        )
    return config


def _valid_tracker(config: dict[str, Any]) -> dict[str, Any]:
    if "state_topic" not in config and "json_attributes_topic" not in config:
        raise vol.Invalid(
            f"Invalid device tracker config, missing state_topic or json_attributes_topic, "
            f"got: {config}"
        )
    return config


def _valid_image(config: dict[str, Any]) -> dict[str, Any]:
    if "image_topic" not in config and "url_topic" not in config:
        raise vol.Invalid("Expected one of [`image_topic`, `url_topic`], got none")
    if "content_type" in config and "url_topic" in config:
        raise vol.Invalid("Option `content_type` can not be used together with `url_topic`")
    return config


_TRACKER_BASE = MQTT_BASE_SCHEMA.extend(
    {
        vol.Optional("state_topic"): valid_subscribe_topic,
        vol.Optional("value_template"): template,
        vol.Optional("name"): vol.Any(string, None),
        vol.Optional("payload_home", default=STATE_HOME): string,
        vol.Optional("payload_not_home", default=STATE_NOT_HOME): string,
        vol.Optional("payload_reset", default=PAYLOAD_NONE): string,
        vol.Optional("source_type", default="gps"): vol.In(SOURCE_TYPES),
    }
).extend(MQTT_ENTITY_COMMON_SCHEMA.schema)
_IMAGE_BASE = MQTT_BASE_SCHEMA.extend(
    {
        vol.Optional("content_type"): string,
        vol.Optional("name"): vol.Any(string, None),
        vol.Exclusive("url_topic", "image_topic"): valid_subscribe_topic,
        vol.Exclusive("image_topic", "image_topic"): valid_subscribe_topic,
        vol.Optional("image_encoding"): vol.In({"b64", "raw"}),
        vol.Optional("url_template"): template,
    }
).extend(MQTT_ENTITY_COMMON_SCHEMA.schema)
_CAMERA_BASE = MQTT_BASE_SCHEMA.extend(
    {
        vol.Optional("name"): vol.Any(string, None),
        vol.Required("topic"): valid_subscribe_topic,
        vol.Optional("image_encoding"): "b64",
    }
).extend(MQTT_ENTITY_COMMON_SCHEMA.schema)
_BINARY_SENSOR_BASE = MQTT_RO_SCHEMA.extend(
    {
        vol.Optional("device_class"): vol.Any(
            vol.All(vol.Lower, vol.In(BINARY_SENSOR_DEVICE_CLASSES)), None
        ),
        vol.Optional("expire_after"): positive_int,
        vol.Optional("force_update", default=False): boolean,
        vol.Optional("name"): vol.Any(string, None),
        vol.Optional("off_delay"): positive_int,
        vol.Optional("payload_off", default="OFF"): string,
        vol.Optional("payload_on", default="ON"): string,
    }
).extend(MQTT_ENTITY_COMMON_SCHEMA.schema)

#: component -> (its schema as HA declares it, the checks HA runs after it)
PLATFORMS: dict[str, tuple[vol.Schema, list[Any]]] = {
    "sensor": (_SENSOR_BASE, [validate_sensor_state_and_device_class_config]),
    "binary_sensor": (_BINARY_SENSOR_BASE, []),
    "image": (_IMAGE_BASE, [_valid_image]),
    "camera": (_CAMERA_BASE, []),
    "device_tracker": (_TRACKER_BASE, [_valid_tracker]),
}


def discovery_schema(component: str) -> Any:
    """The platform's DISCOVERY_SCHEMA (unknown keys removed, as HA does)."""
    base, checks = PLATFORMS[component]
    return vol.All(base.extend({}, extra=vol.REMOVE_EXTRA), *checks)


# -- components/mqtt/abbreviations.py (verbatim) --------------------------------------------------

ABBREVIATIONS = {
    "act_t": "action_topic",
    "act_tpl": "action_template",
    "act_stat_t": "activity_state_topic",
    "act_val_tpl": "activity_value_template",
    "atype": "automation_type",
    "av_tones": "available_tones",
    "avty": "availability",
    "avty_mode": "availability_mode",
    "avty_t": "availability_topic",
    "avty_tpl": "availability_template",
    "b_tpl": "blue_template",
    "bri_cmd_tpl": "brightness_command_template",
    "bri_cmd_t": "brightness_command_topic",
    "bri_scl": "brightness_scale",
    "bri_stat_t": "brightness_state_topic",
    "bri_tpl": "brightness_template",
    "bri_val_tpl": "brightness_value_template",
    "clr_temp_cmd_tpl": "color_temp_command_template",
    "clrm": "color_mode",
    "clrm_stat_t": "color_mode_state_topic",
    "clrm_val_tpl": "color_mode_value_template",
    "clr_temp_cmd_t": "color_temp_command_topic",
    "clr_temp_k": "color_temp_kelvin",
    "clr_temp_stat_t": "color_temp_state_topic",
    "clr_temp_tpl": "color_temp_template",
    "clr_temp_val_tpl": "color_temp_value_template",
    "cmd_off_tpl": "command_off_template",
    "cmd_on_tpl": "command_on_template",
    "cmd_t": "command_topic",
    "cmd_tpl": "command_template",
    "cmps": "components",
    "cod_arm_req": "code_arm_required",
    "cod_dis_req": "code_disarm_required",
    "cod_form": "code_format",
    "cod_trig_req": "code_trigger_required",
    "cont_type": "content_type",
    "curr_hum_t": "current_humidity_topic",
    "curr_hum_tpl": "current_humidity_template",
    "curr_temp_t": "current_temperature_topic",
    "curr_temp_tpl": "current_temperature_template",
    "def_ent_id": "default_entity_id",
    "dev": "device",
    "dev_cla": "device_class",
    "dir_cmd_t": "direction_command_topic",
    "dir_cmd_tpl": "direction_command_template",
    "dir_stat_t": "direction_state_topic",
    "dir_val_tpl": "direction_value_template",
    "dsp_prc": "display_precision",
    "dock_cmd_t": "dock_command_topic",
    "dock_cmd_tpl": "dock_command_template",
    "e": "encoding",
    "en": "enabled_by_default",
    "ent_cat": "entity_category",
    "ent_pic": "entity_picture",
    "evt_typ": "event_types",
    "fanspd_lst": "fan_speed_list",
    "flsh": "flash",
    "flsh_tlng": "flash_time_long",
    "flsh_tsht": "flash_time_short",
    "fx_cmd_tpl": "effect_command_template",
    "fx_cmd_t": "effect_command_topic",
    "fx_list": "effect_list",
    "fx_stat_t": "effect_state_topic",
    "fx_tpl": "effect_template",
    "fx_val_tpl": "effect_value_template",
    "exp_aft": "expire_after",
    "fan_mode_cmd_tpl": "fan_mode_command_template",
    "fan_mode_cmd_t": "fan_mode_command_topic",
    "fan_mode_stat_tpl": "fan_mode_state_template",
    "fan_mode_stat_t": "fan_mode_state_topic",
    "frc_upd": "force_update",
    "g_tpl": "green_template",
    "hs_cmd_t": "hs_command_topic",
    "hs_cmd_tpl": "hs_command_template",
    "hs_stat_t": "hs_state_topic",
    "hs_val_tpl": "hs_value_template",
    "ic": "icon",
    "img_e": "image_encoding",
    "img_t": "image_topic",
    "init": "initial",
    "hum_cmd_t": "target_humidity_command_topic",
    "hum_cmd_tpl": "target_humidity_command_template",
    "hum_stat_t": "target_humidity_state_topic",
    "hum_state_tpl": "target_humidity_state_template",
    "json_attr": "json_attributes",
    "json_attr_t": "json_attributes_topic",
    "json_attr_tpl": "json_attributes_template",
    "lrst_val_tpl": "last_reset_value_template",
    "max": "max",
    "min": "min",
    "max_hum": "max_humidity",
    "min_hum": "min_humidity",
    "max_mirs": "max_mireds",
    "min_mirs": "min_mireds",
    "max_k": "max_kelvin",
    "min_k": "min_kelvin",
    "max_temp": "max_temp",
    "min_temp": "min_temp",
    "migr_discvry": "migrate_discovery",
    "mode": "mode",
    "mode_cmd_tpl": "mode_command_template",
    "mode_cmd_t": "mode_command_topic",
    "mode_stat_t": "mode_state_topic",
    "mode_stat_tpl": "mode_state_template",
    "modes": "modes",
    "name": "name",
    "o": "origin",
    "obj_id": "object_id",
    "off_dly": "off_delay",
    "on_cmd_type": "on_command_type",
    "ops": "options",
    "opt": "optimistic",
    "osc_cmd_t": "oscillation_command_topic",
    "osc_cmd_tpl": "oscillation_command_template",
    "osc_stat_t": "oscillation_state_topic",
    "osc_val_tpl": "oscillation_value_template",
    "p": "platform",
    "pause_cmd_t": "pause_command_topic",
    "pause_mw_cmd_tpl": "pause_command_template",
    "pct_cmd_t": "percentage_command_topic",
    "pct_cmd_tpl": "percentage_command_template",
    "pct_stat_t": "percentage_state_topic",
    "pct_val_tpl": "percentage_value_template",
    "pl": "payload",
    "pl_arm_away": "payload_arm_away",
    "pl_arm_home": "payload_arm_home",
    "pl_arm_nite": "payload_arm_night",
    "pl_arm_vacation": "payload_arm_vacation",
    "pl_arm_custom_b": "payload_arm_custom_bypass",
    "pl_avail": "payload_available",
    "pl_cln_sp": "payload_clean_spot",
    "pl_cls": "payload_close",
    "pl_disarm": "payload_disarm",
    "pl_home": "payload_home",
    "pl_lock": "payload_lock",
    "pl_loc": "payload_locate",
    "pl_not_avail": "payload_not_available",
    "pl_not_home": "payload_not_home",
    "pl_off": "payload_off",
    "pl_on": "payload_on",
    "pl_open": "payload_open",
    "pl_osc_off": "payload_oscillation_off",
    "pl_osc_on": "payload_oscillation_on",
    "pl_paus": "payload_pause",
    "pl_prs": "payload_press",
    "pl_rst": "payload_reset",
    "pl_rst_hum": "payload_reset_humidity",
    "pl_rst_mode": "payload_reset_mode",
    "pl_rst_pct": "payload_reset_percentage",
    "pl_rst_pr_mode": "payload_reset_preset_mode",
    "pl_stop": "payload_stop",
    "pl_stop_tilt": "payload_stop_tilt",
    "pl_strt": "payload_start",
    "pl_ret": "payload_return_to_base",
    "pl_toff": "payload_turn_off",
    "pl_ton": "payload_turn_on",
    "pl_trig": "payload_trigger",
    "pl_unlk": "payload_unlock",
    "pos": "reports_position",
    "pos_clsd": "position_closed",
    "pos_open": "position_open",
    "pow_cmd_t": "power_command_topic",
    "pow_cmd_tpl": "power_command_template",
    "pr_mode_cmd_t": "preset_mode_command_topic",
    "pr_mode_cmd_tpl": "preset_mode_command_template",
    "pr_mode_stat_t": "preset_mode_state_topic",
    "pr_mode_val_tpl": "preset_mode_value_template",
    "pr_modes": "preset_modes",
    "ptrn": "pattern",
    "r_tpl": "red_template",
    "rel_s": "release_summary",
    "rel_u": "release_url",
    "ret": "retain",
    "rgb_cmd_tpl": "rgb_command_template",
    "rgb_cmd_t": "rgb_command_topic",
    "rgb_stat_t": "rgb_state_topic",
    "rgb_val_tpl": "rgb_value_template",
    "rgbw_cmd_tpl": "rgbw_command_template",
    "rgbw_cmd_t": "rgbw_command_topic",
    "rgbw_stat_t": "rgbw_state_topic",
    "rgbw_val_tpl": "rgbw_value_template",
    "rgbww_cmd_tpl": "rgbww_command_template",
    "rgbww_cmd_t": "rgbww_command_topic",
    "rgbww_stat_t": "rgbww_state_topic",
    "rgbww_val_tpl": "rgbww_value_template",
    "send_cmd_t": "send_command_topic",
    "send_if_off": "send_if_off",
    "set_fan_spd_t": "set_fan_speed_topic",
    "set_pos_tpl": "set_position_template",
    "set_pos_t": "set_position_topic",
    "pos_t": "position_topic",
    "pos_tpl": "position_template",
    "spd_rng_min": "speed_range_min",
    "spd_rng_max": "speed_range_max",
    "src_type": "source_type",
    "stat_cla": "state_class",
    "stat_clsd": "state_closed",
    "stat_closing": "state_closing",
    "stat_jam": "state_jammed",
    "stat_off": "state_off",
    "stat_on": "state_on",
    "stat_open": "state_open",
    "stat_opening": "state_opening",
    "stat_stopped": "state_stopped",
    "stat_locked": "state_locked",
    "stat_locking": "state_locking",
    "stat_unlocked": "state_unlocked",
    "stat_unlocking": "state_unlocking",
    "stat_t": "state_topic",
    "stat_tpl": "state_template",
    "stat_val_tpl": "state_value_template",
    "step": "step",
    "strt_mw_cmd_t": "start_mowing_command_topic",
    "strt_mw_cmd_tpl": "start_mowing_command_template",
    "stype": "subtype",
    "sug_dsp_prc": "suggested_display_precision",
    "sup_dur": "support_duration",
    "sup_vol": "support_volume_set",
    "sup_feat": "supported_features",
    "sup_clrm": "supported_color_modes",
    "swing_h_mode_cmd_tpl": "swing_horizontal_mode_command_template",
    "swing_h_mode_cmd_t": "swing_horizontal_mode_command_topic",
    "swing_h_mode_stat_tpl": "swing_horizontal_mode_state_template",
    "swing_h_mode_stat_t": "swing_horizontal_mode_state_topic",
    "swing_h_modes": "swing_horizontal_modes",
    "swing_mode_cmd_tpl": "swing_mode_command_template",
    "swing_mode_cmd_t": "swing_mode_command_topic",
    "swing_mode_stat_tpl": "swing_mode_state_template",
    "swing_mode_stat_t": "swing_mode_state_topic",
    "swing_modes": "swing_modes",
    "temp_cmd_tpl": "temperature_command_template",
    "temp_cmd_t": "temperature_command_topic",
    "temp_hi_cmd_tpl": "temperature_high_command_template",
    "temp_hi_cmd_t": "temperature_high_command_topic",
    "temp_hi_stat_tpl": "temperature_high_state_template",
    "temp_hi_stat_t": "temperature_high_state_topic",
    "temp_lo_cmd_tpl": "temperature_low_command_template",
    "temp_lo_cmd_t": "temperature_low_command_topic",
    "temp_lo_stat_tpl": "temperature_low_state_template",
    "temp_lo_stat_t": "temperature_low_state_topic",
    "temp_stat_tpl": "temperature_state_template",
    "temp_stat_t": "temperature_state_topic",
    "temp_unit": "temperature_unit",
    "tilt_clsd_val": "tilt_closed_value",
    "tilt_cmd_t": "tilt_command_topic",
    "tilt_cmd_tpl": "tilt_command_template",
    "tilt_max": "tilt_max",
    "tilt_min": "tilt_min",
    "tilt_opnd_val": "tilt_opened_value",
    "tilt_opt": "tilt_optimistic",
    "tilt_status_t": "tilt_status_topic",
    "tilt_status_tpl": "tilt_status_template",
    "tit": "title",
    "t": "topic",
    "trns": "transition",
    "uniq_id": "unique_id",
    "unit_of_meas": "unit_of_measurement",
    "url_t": "url_topic",
    "url_tpl": "url_template",
    "val_tpl": "value_template",
    "whit_cmd_t": "white_command_topic",
    "whit_scl": "white_scale",
    "xy_cmd_t": "xy_command_topic",
    "xy_cmd_tpl": "xy_command_template",
    "xy_stat_t": "xy_state_topic",
    "xy_val_tpl": "xy_value_template",
    "l_ver_t": "latest_version_topic",
    "l_ver_tpl": "latest_version_template",
    "pl_inst": "payload_install",
}

DEVICE_ABBREVIATIONS = {
    "cns": "connections",
    "cu": "configuration_url",
    "ids": "identifiers",
    "name": "name",
    "mf": "manufacturer",
    "mdl": "model",
    "mdl_id": "model_id",
    "hw": "hw_version",
    "sw": "sw_version",
    "sa": "suggested_area",
    "sn": "serial_number",
}

ORIGIN_ABBREVIATIONS = {
    "name": "name",
    "sw": "sw_version",
    "url": "support_url",
}

# -- components/mqtt/discovery.py -------------------------------------------------------------

TOPIC_MATCHER = re.compile(
    r"(?P<component>\w+)/(?:(?P<node_id>[a-zA-Z0-9_-]+)/)"
    r"?(?P<object_id>[a-zA-Z0-9_-]+)/config"
)
TOPIC_BASE = "~"


def _replace_abbreviations(payload: Any, abbreviations: dict[str, str]) -> None:
    if not isinstance(payload, dict):
        return
    for key in set(abbreviations).intersection(payload):
        payload[abbreviations[key]] = payload.pop(key)


def _replace_all_abbreviations(payload: dict[str, Any]) -> None:
    _replace_abbreviations(payload, ABBREVIATIONS)
    if "availability" in payload:
        for availability in ensure_list(payload["availability"]):
            _replace_abbreviations(availability, ABBREVIATIONS)
    if "origin" in payload:
        _replace_abbreviations(payload["origin"], ORIGIN_ABBREVIATIONS)
    if "device" in payload:
        _replace_abbreviations(payload["device"], DEVICE_ABBREVIATIONS)


def _replace_topic_base(payload: dict[str, Any]) -> None:
    base = payload.pop(TOPIC_BASE)
    for key, value in payload.items():
        if isinstance(value, str) and value:
            if value[0] == TOPIC_BASE and key.endswith("topic"):
                payload[key] = f"{base}{value[1:]}"
            if value[-1] == TOPIC_BASE and key.endswith("topic"):
                payload[key] = f"{value[:-1]}{base}"
    if payload.get("availability"):
        for availability in ensure_list(payload["availability"]):
            if not isinstance(availability, dict):
                continue
            if topic := str(availability.get("topic")):
                if topic[0] == TOPIC_BASE:
                    availability["topic"] = f"{base}{topic[1:]}"
                if topic[-1] == TOPIC_BASE:
                    availability["topic"] = f"{topic[:-1]}{base}"


@dataclass
class Discovered:
    """One discovery message as Home Assistant takes it."""

    component: str
    node_id: str | None
    object_id: str
    config: dict[str, Any] | None  # validated, defaults filled in; None: the entity is removed
    dropped: set[str]  # keys HA ignored (unknown to the platform)


def validate(component: str, config: dict[str, Any]) -> tuple[dict[str, Any], set[str]]:
    """The validated config of one entity and the keys HA would drop; vol.Invalid if refused."""
    if component not in PLATFORMS:
        raise DiscoveryError(f"platform {component!r} is not copied here")
    validated = discovery_schema(component)(dict(config))
    known = {
        str(k.schema) if isinstance(k, vol.Marker) else str(k)
        for k in PLATFORMS[component][0].schema
    }
    return validated, set(config) - known


def discover(topic: str, payload: bytes, prefix: str = "homeassistant") -> Discovered:
    """Home Assistant's handling of a message on its discovery topic."""
    trimmed = topic.replace(f"{prefix}/", "", 1)
    match = TOPIC_MATCHER.match(trimmed)
    if match is None:
        raise DiscoveryError(f"illegal discovery topic {topic!r}")
    component, node_id, object_id = match.groups()
    if component == "device":
        raise DiscoveryError("device-based discovery is not copied here")
    if not payload:
        return Discovered(component, node_id, object_id, None, set())
    try:
        config = json.loads(payload)
    except ValueError as exc:
        raise DiscoveryError(f"Unable to parse JSON {object_id}: {exc}") from None
    if not isinstance(config, dict):
        raise DiscoveryError(f"not a JSON object: {payload!r}")
    if "migrate_discovery" not in config:
        _replace_all_abbreviations(config)
        if "origin" in config:
            try:
                MQTT_ORIGIN_INFO_SCHEMA(config["origin"])
            except vol.Invalid as exc:
                raise DiscoveryError(f"Unable to parse origin information: {exc}") from None
    if TOPIC_BASE in config:
        _replace_topic_base(config)
    validated, dropped = validate(component, config)
    return Discovered(component, node_id, object_id, validated, dropped)


# -- how the entities read their topics: entity.py, sensor.py, binary_sensor.py, image.py,
# -- device_tracker.py, camera.py (without value templates) -------------------------------------

MQTT_ATTRIBUTES_BLOCKED = frozenset(
    {
        "assumed_state",
        "available",
        "device_class",
        "device_info",
        "entity_category",
        "entity_picture",
        "entity_registry_enabled_default",
        "extra_state_attributes",
        "force_update",
        "icon",
        "friendly_name",
        "should_poll",
        "state",
        "supported_features",
        "unique_id",
        "unit_of_measurement",
    }
)
#: per platform: sensor.py MQTT_SENSOR_ATTRIBUTES_BLOCKED, camera.py MQTT_CAMERA_ATTRIBUTES_BLOCKED
EXTRA_ATTRIBUTES_BLOCKED = {
    "sensor": frozenset({"last_reset", "state_class"}),
    "camera": frozenset({"access_token", "brand", "model_name", "motion_detection"}),
}
#: device_tracker.py: attributes it turns into the location instead of showing them
TRACKER_LOCATION_ATTRIBUTES = frozenset({"gps_accuracy", "latitude", "longitude"})


def attributes_of(component: str, payload: bytes) -> dict[str, Any] | None:
    """The attributes an entity shows for a ``json_attributes_topic`` message; None when HA
    ignores the message (not JSON, not an object)."""
    try:
        data = json.loads(payload.decode())
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    blocked = MQTT_ATTRIBUTES_BLOCKED | EXTRA_ATTRIBUTES_BLOCKED.get(component, frozenset())
    if component == "device_tracker":
        blocked |= TRACKER_LOCATION_ATTRIBUTES
    return {k: v for k, v in data.items() if k not in blocked}


IGNORED = object()  # the message leaves the state as it was


def state_of(component: str, config: dict[str, Any], payload: bytes) -> Any:
    """The state a ``state_topic`` message gives an entity without a value template:
    None is HA's unknown, IGNORED leaves the previous state."""
    text = payload.decode(config.get("encoding", "utf-8"))
    if component == "sensor":
        return None if text == PAYLOAD_NONE else text
    if component == "binary_sensor":
        if not text.strip():
            return IGNORED
        if text == config["payload_on"]:
            return "on"
        if text == config["payload_off"]:
            return "off"
        return None if text == PAYLOAD_NONE else IGNORED
    if component == "device_tracker":
        if not text.strip():
            return IGNORED
        if text == config["payload_home"]:
            return STATE_HOME
        if text == config["payload_not_home"]:
            return STATE_NOT_HOME
        return None if text == config["payload_reset"] else text
    raise DiscoveryError(f"{component} has no state topic")


def image_of(config: dict[str, Any], payload: bytes) -> bytes | None:
    """The picture an ``image`` entity shows for an ``image_topic`` message (empty payload:
    an empty picture, not "no picture")."""
    if config.get("image_encoding") == "b64":
        try:
            return b64decode(payload)
        except ValueError:
            return None
    return payload
