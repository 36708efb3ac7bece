"""A literal Python port of the pieces of Double Take v1.13.1 (jakowenko/double-take @ 8e2728d,
MIT) that streamrec's compatibility tests compare against: no Double Take file is in this
repository (see ``double_take_harness`` for the optional cross-check of this port against the
real JavaScript under node).

Each function names the upstream file and lines it ports (paths under ``api/src``). The port
keeps Double Take's shapes on purpose: JavaScript objects are dicts in insertion order (with
JavaScript's own order for integer-like keys), ``undefined`` is :data:`UNDEFINED`, numbers are
written by :func:`number_to_string` (ECMA-262 ``Number::toString``). It is written apart from
``streamrec.sinks.double_take`` (the product's typed version) so that the tests compare two
readings of the same source.
"""

from __future__ import annotations

import math
import mimetypes
import re
from datetime import datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import requests

VERSION = "v1.13.1"
COMMIT = "8e2728d283b3901d688c2454086fd0b512739b53"


class _Undefined:
    def __repr__(self) -> str:
        return "undefined"


UNDEFINED: Any = _Undefined()

# constants/defaults.js lines 7-23, 36-41, 50-54: the defaults the ported code reads
DEFAULTS: dict[str, Any] = {
    "detect": {
        "match": {"confidence": 60, "min_area": 10000},
        "unknown": {"confidence": 40, "min_area": 0},
    },
    "time": {"timezone": "UTC"},
    "mqtt": {
        "topics": {
            "matches": "double-take/matches",
            "cameras": "double-take/cameras",
            "homeassistant": "homeassistant",
        }
    },
    "detectors": {"compreface": {"det_prob_threshold": 0.8, "timeout": 15}},
}

# ECMA-262 WhiteSpace + LineTerminator: what JavaScript's regular expression \s matches
JS_WHITESPACE = (
    "\t\n\x0b\x0c\r \u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
    "\u2009\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
)
_JS_S_RUN = re.compile("[" + re.escape(JS_WHITESPACE) + "]+")
# /[^a-z0-9-]/gi without the u flag: Canonicalize never maps a non-ASCII character onto ASCII,
# so only ASCII letters match case-insensitively
_NOT_A_Z_0_9 = re.compile("[^a-zA-Z0-9-]")


# --- JavaScript semantics the ported lines rely on -------------------------------------------


def number_to_string(x: float) -> str:
    """ECMA-262 ``Number::toString(x)`` (radix 10), used by template strings and JSON."""
    if isinstance(x, bool):
        raise TypeError("a boolean is not a number")
    if isinstance(x, int):
        x = float(x)
    if math.isnan(x):
        return "NaN"
    if x == 0:
        return "0"
    if x < 0:
        return "-" + number_to_string(-x)
    if math.isinf(x):
        return "Infinity"
    # the shortest digits (k of them) that read back as x, as Python's repr finds them, with
    # x = 0.digits * 10**n
    parts = Decimal(repr(x)).normalize().as_tuple()
    digits = "".join(map(str, parts.digits))
    k = len(digits)
    n = int(parts.exponent) + k
    if k <= n <= 21:
        return digits + "0" * (n - k)
    if 0 < n <= 21:
        return digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return "0." + "0" * (-n) + digits
    sign = "+" if n - 1 >= 0 else "-"
    if k == 1:
        return f"{digits}e{sign}{abs(n - 1)}"
    return f"{digits[0]}.{digits[1:]}e{sign}{abs(n - 1)}"


def to_fixed(x: float, digits: int) -> str:
    """``Number.prototype.toFixed`` (ECMA-262 21.1.3.3): the exact value of the double, the
    nearer n, the larger n on a tie (for |x| < 1e21)."""
    if abs(x) >= 1e21:
        return number_to_string(x)
    return str(Decimal(x).quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP))


def parse_float(text: str) -> float:
    return float(text)


def math_round(x: float) -> int:
    """``Math.round``: the nearest integer, a half towards +Infinity."""
    floor = math.floor(x)
    return floor + 1 if x - floor >= 0.5 else floor


def _is_array_index(key: str) -> bool:
    return key == str(int(key)) if key.isdigit() and key.isascii() else False


def own_keys(obj: dict[str, Any]) -> list[str]:
    """OrdinaryOwnPropertyKeys: array-index keys ascending first, then the others in
    insertion order (what ``Object.values``/``Object.entries``/``JSON.stringify`` follow)."""
    indices = sorted((k for k in obj if _is_array_index(k) and int(k) < 2**32 - 1), key=int)
    return indices + [k for k in obj if k not in indices]


def json_stringify(value: Any) -> str | Any:
    """``JSON.stringify`` of dicts/lists/str/numbers/bool/None; ``undefined`` members are left
    out of objects and written ``null`` in arrays (ECMA-262 25.5.2)."""
    if value is UNDEFINED:
        return UNDEFINED
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, (int, float)):
        return number_to_string(value) if math.isfinite(value) else "null"
    if isinstance(value, str):
        return _quote(value)
    if isinstance(value, (list, tuple)):
        parts = [json_stringify(v) for v in value]
        return "[" + ",".join("null" if p is UNDEFINED else p for p in parts) + "]"
    if isinstance(value, dict):
        members = []
        for key in own_keys(value):
            text = json_stringify(value[key])
            if text is not UNDEFINED:
                members.append(f"{_quote(key)}:{text}")
        return "{" + ",".join(members) + "}"
    raise TypeError(f"not a JSON value: {value!r}")


_ESCAPES = {
    '"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"
}  # fmt: skip


def _quote(text: str) -> str:
    """QuoteJSONString: the escapes above, other code units below 0x20 as \\u00XX, lone
    surrogates as \\uXXXX; everything else (U+2028 too) as is."""
    out = []
    for ch in text:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ord(ch) < 0x20 or 0xD800 <= ord(ch) <= 0xDFFF:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def json_roundtrip(value: Any) -> Any:
    """``JSON.parse(JSON.stringify(value))`` for the shapes above: drops undefined members."""
    if isinstance(value, dict):
        return {k: json_roundtrip(value[k]) for k in own_keys(value) if value[k] is not UNDEFINED}
    if isinstance(value, list):
        return [None if v is UNDEFINED else json_roundtrip(v) for v in value]
    return value


def replace_whitespace(text: str, by: str) -> str:
    """``text.replace(/\\s+/g, by)``."""
    return _JS_S_RUN.sub(by, text)


def to_lower_case(text: str) -> str:
    """``String.prototype.toLowerCase``: Unicode's full lower-case mapping with the
    Final_Sigma context, which is what Python's ``str.lower`` implements."""
    return text.lower()


# --- api/src/util/detectors ------------------------------------------------------------------


def compreface_recognize(
    url: str,
    key: str,
    image: Path,
    det_prob_threshold: float = 0.8,
    face_plugins: str | None = None,
    test: bool = False,
    timeout: float = 15,
) -> requests.Response:
    """``util/detectors/compreface.js`` lines 10-30 (``recognize``): the request Double Take
    sends. ``face_plugins`` is interpolated into the URL (``undefined`` when not configured);
    axios appends ``det_prob_threshold`` (0.8 for the detector test); form-data names the part
    ``file`` with the file's name and the content type of its extension."""
    plugins = "undefined" if face_plugins is None else face_plugins
    threshold = number_to_string(0.8 if test else det_prob_threshold)
    address = f"{url}/api/v1/recognition/recognize?face_plugins={plugins}"
    content_type = mimetypes.guess_type(image.name)[0] or "application/octet-stream"
    with image.open("rb") as handle:
        return requests.post(
            f"{address}&det_prob_threshold={threshold}",
            headers={"x-api-key": key},
            files={"file": (image.name, handle, content_type)},
            timeout=timeout,
        )


def actions_checks(
    match: dict[str, Any],
    unknown: dict[str, Any],
    name: str,
    confidence: float,
    box: dict[str, Any],
) -> list[str] | bool:
    """``util/detectors/actions/index.js`` lines 9-21 (``checks``); False: drop the face."""
    checks = []
    area = box["width"] * box["height"]
    if name == "unknown" and area < unknown["min_area"]:
        return False
    if name == "unknown" and confidence < unknown["confidence"]:
        checks.append(
            f"confidence too low: {number_to_string(confidence)} < "
            f"{number_to_string(unknown['confidence'])}"
        )
    else:
        if confidence < match["confidence"]:
            checks.append(
                f"confidence too low: {number_to_string(confidence)} < "
                f"{number_to_string(match['confidence'])}"
            )
        if area < match["min_area"]:
            checks.append(
                f"box area too low: {number_to_string(area)} < "
                f"{number_to_string(match['min_area'])}"
            )
    return checks


def compreface_normalize(data: dict[str, Any], detect: dict[str, Any] | None = None) -> Any:
    """``util/detectors/compreface.js`` lines 69-112 (``normalize``); ``detect`` is
    ``config.detect(camera)`` (Double Take's defaults when None). Raises ValueError with
    ``data.message`` as Double Take throws it."""
    if not data.get("result"):
        if data.get("code") == 28:
            return []
        raise ValueError(data.get("message", UNDEFINED))
    detect = detect or DEFAULTS["detect"]
    match, unknown = detect["match"], detect["unknown"]
    normalized: list[dict[str, Any]] = []
    for obj in data["result"]:
        face = obj["subjects"][0] if obj["subjects"] else None
        confidence = parse_float(to_fixed(face["similarity"] * 100, 2)) if face else 0
        box = obj["box"]
        output: dict[str, Any] = {
            "name": to_lower_case(face["subject"])
            if face and confidence >= unknown["confidence"]
            else "unknown",
            "confidence": confidence,
            "match": confidence >= match["confidence"]
            and (box["x_max"] - box["x_min"]) * (box["y_max"] - box["y_min"]) >= match["min_area"],
            "box": {
                "top": box["y_min"],
                "left": box["x_min"],
                "width": box["x_max"] - box["x_min"],
                "height": box["y_max"] - box["y_min"],
            },
        }
        for plugin in ("age", "gender", "mask"):  # lines 92-106
            if obj.get(plugin):
                probability = parse_float(to_fixed(obj[plugin]["probability"] * 100, 2))
                output[plugin] = {**obj[plugin], "probability": probability}
        checks = actions_checks(match, unknown, output["name"], confidence, output["box"])
        if checks:
            output["checks"] = checks
        if checks is not False:
            normalized.append(output)
    return normalized


# --- api/src/util/recognize.util.js ----------------------------------------------------------


def recognize_normalize(results: list[dict[str, Any]]) -> dict[str, Any]:
    """``util/recognize.util.js`` lines 40-127 (``normalize``): the best match and miss per
    name, the unknowns (most confident first) and the counts of an event's groups of attempts
    (``{attempts, type, results: [{detector, duration, results, filename, base64?}]}``)."""
    tmp: dict[str, dict[str, Any]] = {"matches": {}, "misses": {}, "counts": {}}
    unknowns: list[dict[str, Any]] = []
    attempts = 0

    def described(obj: dict[str, Any], group: dict[str, Any], attempt: dict[str, Any]) -> Any:
        return {
            **obj,
            "type": group["type"],
            "duration": attempt["duration"],
            "detector": attempt["detector"],
            "filename": attempt.get("filename", UNDEFINED),
            "base64": attempt.get("base64") or None,
        }

    for group in results:
        attempts += group["attempts"]
        for attempt in group["results"]:
            face = tmp["counts"].get(attempt["detector"])
            if face:
                face["attempts"] += 1
                tmp["counts"][attempt["detector"]] = {
                    "count": face["count"] + len(attempt["results"]),
                    "attempts": face["attempts"],
                }
            else:
                tmp["counts"][attempt["detector"]] = {
                    "count": len(attempt["results"]),
                    "attempts": 1,
                }
            for obj in attempt["results"]:
                if obj["name"] == "unknown":
                    unknowns.append(described(obj, group, attempt))
            for kind, keep in (
                ("matches", lambda o: o["match"]),
                ("misses", lambda o: not o["match"] and o["name"] != "unknown"),
            ):
                for obj in (o for o in attempt["results"] if keep(o)):
                    held = tmp[kind].get(obj["name"])
                    if held is None or held["confidence"] < obj["confidence"]:
                        tmp[kind][obj["name"]] = described(obj, group, attempt)

    best = {kind: [tmp[kind][k] for k in own_keys(tmp[kind])] for kind in ("matches", "misses")}
    person_count = 0
    for key in own_keys(tmp["counts"]):
        value = tmp["counts"][key]
        person_count += math_round(value["count"] / value["attempts"])
    counts: dict[str, Any] = {
        "person": math_round(person_count / len(tmp["counts"])) if person_count else 0,
        "match": len(best["matches"]),
        "miss": len(best["misses"]),
    }
    counts["unknown"] = counts["person"] - counts["match"] - counts["miss"]
    # Array.prototype.sort is stable (ES2019); the comparator b.confidence - a.confidence
    unknowns.sort(key=lambda u: -u["confidence"])
    return {
        "best": best["matches"],
        "misses": best["misses"],
        "results": results,
        "attempts": attempts,
        "unknowns": unknowns,
        "counts": counts,
    }


def controller_output(
    event: dict[str, Any], groups: list[dict[str, Any]], duration: float, timestamp: str
) -> dict[str, Any]:
    """The object ``controllers/recognize.controller.js`` (``start``, lines 151-168) hands to
    ``mqtt.recognize``: ``{id, duration, timestamp, attempts, camera, zones, counts, matches,
    misses, unknowns}`` (``token`` with auth on). ``event``: ``{id, camera, zones}``, zones
    being a Frigate event's ``current_zones`` (lines 58-62) or ``[]`` (line 66)."""
    n = recognize_normalize(groups)
    out = {
        "id": event["id"],
        "duration": duration,
        "timestamp": timestamp,
        "attempts": n["attempts"],
        "camera": event["camera"],
        "zones": event.get("zones", UNDEFINED),
        "counts": n["counts"],
        "matches": n["best"],
        "misses": n["misses"],
        "unknowns": n["unknowns"],
    }
    if "token" in event:
        out["token"] = event["token"]
    return out


# --- api/src/util/time.util.js ---------------------------------------------------------------


def time_current(epoch_ms: int, zone: str = "UTC") -> str:
    """``util/time.util.js`` lines 4-8 (``current`` without ``time.format``): luxon's
    ``DateTime.now().setZone(TIMEZONE.toUpperCase()).toString()``, i.e. ``toISO()``: "Z" for
    luxon's fixed UTC zone (the names utc/gmt), the offset for an IANA zone (IANA names are
    matched case-insensitively by Intl; zoneinfo needs them as spelled)."""
    moment = datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(milliseconds=epoch_ms)
    fixed_utc = zone.upper() in ("UTC", "GMT")
    local = moment if fixed_utc else moment.astimezone(ZoneInfo(zone))
    text = local.strftime("%Y-%m-%dT%H:%M:%S") + f".{local.microsecond // 1000:03d}"
    if fixed_utc:
        return text + "Z"
    offset = local.utcoffset() or timedelta(0)
    minutes = int(offset.total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    return text + f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


# --- api/src/util/mqtt.util.js ---------------------------------------------------------------


def mqtt_connect_messages() -> list[tuple[str, Any, bool]]:
    """``util/mqtt.util.js`` lines 102-106 and 118-120: on connect, ``double-take/errors``
    with an undefined message (mqtt.js sends it empty), then ``double-take/available``
    ``online`` retained."""
    return [("double-take/errors", UNDEFINED, False), ("double-take/available", "online", True)]


def mqtt_recognize(
    data: dict[str, Any], topics: dict[str, Any] | None = None
) -> tuple[list[tuple[str, str, bool]], list[tuple[str, str, bool]]]:
    """``util/mqtt.util.js`` lines 155-314 (``recognize``): the messages published for one
    output ``(topic, message, retain)``, and those its timer publishes 30 000 ms later unless
    the camera has another result first (lines 304-314)."""
    t = {**DEFAULTS["mqtt"]["topics"], **(topics or {})}
    base_data = json_roundtrip(data)
    id_, duration, timestamp, attempts, zones = (
        base_data.get(k, UNDEFINED) for k in ("id", "duration", "timestamp", "attempts", "zones")
    )
    matches, misses, unknowns, counts = (
        base_data[k] for k in ("matches", "misses", "unknowns", "counts")
    )
    token = base_data.get("token", UNDEFINED)
    camera = to_lower_case(base_data["camera"])
    payload: dict[str, Any] = {
        "base": {
            "id": id_,
            "duration": duration,
            "timestamp": timestamp,
            "attempts": attempts,
            "camera": camera,
            "zones": zones,
            "token": token,
        }
    }
    payload["unknown"] = {
        **payload["base"],
        "unknown": unknowns[0] if unknowns else UNDEFINED,
        "unknowns": unknowns,
    }
    payload["match"] = {**payload["base"]}
    payload["camera"] = {
        **payload["base"],
        "matches": matches,
        "misses": misses,
        "unknowns": unknowns,
        "personCount": counts["person"],
        "counts": counts,
    }
    payload["cameraReset"] = {
        **payload["camera"],
        "personCount": 0,
        "counts": {"person": 0, "match": 0, "miss": 0, "unknown": 0},
    }
    ha = t["homeassistant"]
    messages: list[tuple[str, str, bool]] = [
        (f"{t['cameras']}/{camera}/person", number_to_string(counts["person"]), True)
    ]

    def sensor(level: str, name: str, icon: str, template: str, state: Any) -> None:
        """Lines 210-230, 246-269, 279-299: a Home Assistant config and state."""
        if not ha:
            return
        config = {
            "name": name,
            "icon": icon,
            "value_template": template,
            "state_topic": f"{ha}/sensor/double-take/{level}/state",
            "json_attributes_topic": f"{ha}/sensor/double-take/{level}/state",
            "availability_topic": "double-take/available",
            "unique_id": name,
        }
        messages.append((f"{ha}/sensor/double-take/{level}/config", json_stringify(config), True))
        messages.append((f"{ha}/sensor/double-take/{level}/state", json_stringify(state), True))

    if unknowns:  # lines 203-231
        messages.append((f"{t['matches']}/unknown", json_stringify(payload["unknown"]), False))
        sensor(
            "unknown",
            "double_take_unknown",
            "mdi:account",
            "{{ value_json.camera }}",
            payload["unknown"],
        )
    for match in matches:  # lines 233-270
        topic = _NOT_A_Z_0_9.sub("", replace_whitespace(match["name"], "-"))
        name = replace_whitespace(match["name"], "_")
        state = {**payload["match"], "match": match}
        messages.append((f"{t['matches']}/{topic}", json_stringify(state), False))
        sensor(topic, f"double_take_{name}", "mdi:account", "{{ value_json.camera }}", state)
    if matches or misses or unknowns:  # lines 272-300
        messages.append((f"{t['cameras']}/{camera}", json_stringify(payload["camera"]), False))
        sensor(
            camera,
            f"double_take_{camera}",
            "mdi:camera",
            "{{ value_json.counts.person }}",
            payload["camera"],
        )
    reset = [(f"{t['cameras']}/{camera}/person", "0", True)]
    if ha:
        state_topic = f"{ha}/sensor/double-take/{camera}/state"
        reset.append((state_topic, json_stringify(payload["cameraReset"]), True))
    return messages, reset


#: mqtt.util.js line 314: the person count's reset timer
PERSON_RESET_TIMEOUT_MS = 30000
