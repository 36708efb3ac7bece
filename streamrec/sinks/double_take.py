"""Double Take's MQTT messages, byte for byte, so that automations written for Double Take work
with streamrec unchanged.

A port of Double Take v1.13.1 (jakowenko/double-take @ 8e2728d): ``api/src/util/mqtt.util.js``
(``recognize``: topics, payloads, retain flags, the 30 s person-count reset, ``available``),
``api/src/util/detectors/compreface.js`` (``normalize``: how a CompreFace result becomes a match,
a miss or an unknown), ``api/src/util/detectors/actions/index.js`` (``checks``) and
``api/src/util/recognize.util.js`` (``normalize``: the counts). ``tests/test_double_take.py``
runs Double Take's own JavaScript on the same inputs and compares the bytes.

Names: Double Take's detectors lower-case the subject (``face.subject.toLowerCase()``), then the
match topic keeps ASCII letters, digits and ``-`` of it with whitespace runs turned into ``-``
(``name.replace(/\\s+/g, '-').replace(/[^a-z0-9-]/gi, '')``: the case of what is left is kept).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import ROUND_FLOOR, Decimal
from typing import Any
from zoneinfo import ZoneInfo

from streamrec.scales import double_take_confidence

#: seconds after the last result of a camera that its person count is reset to 0
PERSON_RESET_SECONDS = 30
AVAILABLE_TOPIC = "double-take/available"

# JavaScript's \s (ECMA-262 WhiteSpace and LineTerminator), not Python's
_JS_SPACE = re.compile(
    "[\t\n\x0b\x0c\r \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff]+"
)
_NOT_TOPIC = re.compile(r"[^A-Za-z0-9-]")


def subject_name(subject: str) -> str:
    """The name Double Take gives a recognised subject (its detectors lower-case it)."""
    return subject.lower()


def topic_level(name: str) -> str:
    """The topic level of a match: ``double-take/matches/<level>``."""
    return _NOT_TOPIC.sub("", _JS_SPACE.sub("-", name))


def _entity_name(name: str) -> str:
    """The Home Assistant entity suffix of a match (``name.replace(/\\s+/g, '_')``)."""
    return _JS_SPACE.sub("_", name)


@dataclass(frozen=True)
class Topics:
    """Double Take's ``mqtt.topics`` (defaults of ``api/src/constants/defaults.js``);
    ``homeassistant`` None: no Home Assistant discovery messages."""

    matches: str = "double-take/matches"
    cameras: str = "double-take/cameras"
    homeassistant: str | None = "homeassistant"


@dataclass(frozen=True)
class Detect:
    """Double Take's ``detect`` thresholds (percent and square pixels; its defaults)."""

    match_confidence: float = 60
    match_min_area: int = 10000
    unknown_confidence: float = 40
    unknown_min_area: int = 0


@dataclass(frozen=True)
class Box:
    top: int
    left: int
    width: int
    height: int

    @classmethod
    def of_corners(cls, x_min: int, y_min: int, x_max: int, y_max: int) -> Box:
        return cls(top=y_min, left=x_min, width=x_max - x_min, height=y_max - y_min)


@dataclass(frozen=True)
class Result:
    """One face of one image, as Double Take's CompreFace detector normalises it."""

    name: str  # subject_name(...) or "unknown"
    confidence: float
    match: bool
    box: Box
    checks: tuple[str, ...] = ()


def checks(name: str, confidence: float, box: Box, detect: Detect) -> list[str] | None:
    """Why a face is not a match (``actions.checks``); None: an unknown face too small to
    keep at all."""
    area = box.width * box.height
    if name == "unknown" and area < detect.unknown_min_area:
        return None
    found = []
    if name == "unknown" and confidence < detect.unknown_confidence:
        found.append(f"confidence too low: {_js(confidence)} < {_js(detect.unknown_confidence)}")
    else:
        if confidence < detect.match_confidence:
            found.append(f"confidence too low: {_js(confidence)} < {_js(detect.match_confidence)}")
        if area < detect.match_min_area:
            found.append(f"box area too low: {area} < {detect.match_min_area}")
    return found


def normalize(subject: str | None, similarity: float, box: Box, detect: Detect) -> Result | None:
    """A CompreFace face (its best ``subject`` and ``similarity``, None when it had none) as
    Double Take's ``compreface.normalize`` keeps it; None when Double Take drops it."""
    confidence = double_take_confidence(similarity) if subject is not None else 0.0
    known = subject is not None and confidence >= detect.unknown_confidence
    name = subject_name(subject) if known and subject is not None else "unknown"
    area = box.width * box.height
    match = confidence >= detect.match_confidence and area >= detect.match_min_area
    found = checks(name, confidence, box, detect)
    if found is None:
        return None
    return Result(name, confidence, match, box, tuple(found))


@dataclass(frozen=True)
class Attempt:
    """One image checked by one detector (an element of ``polling``'s results)."""

    type: str  # where the image came from: "latest", "snapshot", "mqtt" ...
    detector: str
    duration: float  # seconds the detector took
    results: list[Result]
    filename: str | None = None  # the image as saved under matches/
    base64: str | None = None


@dataclass(frozen=True)
class Face:
    """A match, miss or unknown of Double Take's output: a result with its attempt's details."""

    result: Result
    attempt: Attempt

    def json(self) -> dict[str, Any]:
        r, a = self.result, self.attempt
        out: dict[str, Any] = {
            "name": r.name,
            "confidence": r.confidence,
            "match": r.match,
            "box": {
                "top": r.box.top,
                "left": r.box.left,
                "width": r.box.width,
                "height": r.box.height,
            },
        }
        if r.checks:
            out["checks"] = list(r.checks)
        return out | {
            "type": a.type,
            "duration": a.duration,
            "detector": a.detector,
            "filename": a.filename,
            "base64": a.base64,
        }


@dataclass(frozen=True)
class Counts:
    person: int
    match: int
    miss: int
    unknown: int

    def json(self) -> dict[str, int]:
        return {
            "person": self.person,
            "match": self.match,
            "miss": self.miss,
            "unknown": self.unknown,
        }


@dataclass(frozen=True)
class Outcome:
    """The best match per name, the best miss per name, every unknown (most confident first)
    and the counts: ``recognize.util.normalize`` of an event's attempts."""

    matches: list[Face]
    misses: list[Face]
    unknowns: list[Face]
    counts: Counts


def combine(attempts: list[Attempt]) -> Outcome:
    """Double Take's summary of every attempt of one event."""
    best: dict[str, Face] = {}
    missed: dict[str, Face] = {}
    unknowns: list[Face] = []
    per_detector: dict[str, tuple[int, int]] = {}  # detector -> (faces, attempts)
    for attempt in attempts:
        faces, tries = per_detector.get(attempt.detector, (0, 0))
        per_detector[attempt.detector] = (faces + len(attempt.results), tries + 1)
        for r in attempt.results:
            if r.name == "unknown":
                unknowns.append(Face(r, attempt))
                continue
            kept = best if r.match else missed
            if r.name not in kept or kept[r.name].result.confidence < r.confidence:
                kept[r.name] = Face(r, attempt)
    people = sum(_js_round(faces / tries) for faces, tries in per_detector.values())
    person = _js_round(people / len(per_detector)) if people else 0
    counts = Counts(person, len(best), len(missed), person - len(best) - len(missed))
    unknowns.sort(key=lambda f: -f.result.confidence)  # a stable sort, like JavaScript's
    return Outcome(_js_values(best), _js_values(missed), unknowns, counts)


def _js_values(faces: dict[str, Face]) -> list[Face]:
    """``Object.values``: integer-like keys (array indices) first, ascending, then the others
    in insertion order."""
    indices = sorted((k for k in faces if _is_index(k)), key=int)
    return [faces[k] for k in indices] + [f for k, f in faces.items() if not _is_index(k)]


def _is_index(key: str) -> bool:
    return key.isascii() and key.isdigit() and key == str(int(key)) and int(key) < 2**32 - 1


@dataclass(frozen=True)
class Recognition:
    """Double Take's output for one event (``recognize.controller.start``)."""

    id: str
    duration: float  # seconds the whole event took
    timestamp: str  # see timestamp()
    attempts: int  # images fetched
    camera: str
    zones: list[str]
    outcome: Outcome
    token: str | None = None  # only with Double Take's auth on


@dataclass(frozen=True)
class Message:
    topic: str
    payload: bytes
    retain: bool


def _payloads(rec: Recognition) -> tuple[dict[str, Any], dict[str, Any]]:
    """The base of every payload and the camera payload (``payload.base``, ``payload.camera``)."""
    base: dict[str, Any] = {
        "id": rec.id,
        "duration": rec.duration,
        "timestamp": rec.timestamp,
        "attempts": rec.attempts,
        "camera": rec.camera.lower(),
        "zones": rec.zones,
    }
    if rec.token is not None:  # JSON.stringify leaves out an undefined token
        base["token"] = rec.token
    o = rec.outcome
    by_camera = {
        **base,
        "matches": [f.json() for f in o.matches],
        "misses": [f.json() for f in o.misses],
        "unknowns": [f.json() for f in o.unknowns],
        "personCount": o.counts.person,
        "counts": o.counts.json(),
    }
    return base, by_camera


def messages(rec: Recognition, topics: Topics | None = None) -> list[Message]:
    """Every message Double Take publishes for ``rec``, in its order."""
    topics = topics or Topics()
    camera = rec.camera.lower()
    base, by_camera = _payloads(rec)
    o = rec.outcome
    out = [Message(f"{topics.cameras}/{camera}/person", str(o.counts.person).encode(), True)]
    if o.unknowns:
        unknowns = by_camera["unknowns"]
        unknown = {**base, "unknown": unknowns[0], "unknowns": unknowns}
        out.append(Message(f"{topics.matches}/unknown", js_json(unknown), False))
        out += _sensor(
            topics,
            "unknown",
            "double_take_unknown",
            "mdi:account",
            "{{ value_json.camera }}",
            unknown,
        )
    for match in by_camera["matches"]:
        level = topic_level(match["name"])
        payload = {**base, "match": match}
        out.append(Message(f"{topics.matches}/{level}", js_json(payload), False))
        out += _sensor(
            topics,
            level,
            f"double_take_{_entity_name(match['name'])}",
            "mdi:account",
            "{{ value_json.camera }}",
            payload,
        )
    if o.matches or o.misses or o.unknowns:
        out.append(Message(f"{topics.cameras}/{camera}", js_json(by_camera), False))
        out += _sensor(
            topics,
            camera,
            f"double_take_{camera}",
            "mdi:camera",
            "{{ value_json.counts.person }}",
            by_camera,
        )
    return out


def reset_messages(rec: Recognition, topics: Topics | None = None) -> list[Message]:
    """What Double Take publishes ``PERSON_RESET_SECONDS`` after ``rec`` unless another result
    of the camera came first: the person count back to 0 (and the Home Assistant state)."""
    topics = topics or Topics()
    camera = rec.camera.lower()
    out = [Message(f"{topics.cameras}/{camera}/person", b"0", True)]
    if topics.homeassistant:
        _, by_camera = _payloads(rec)
        reset = {**by_camera, "personCount": 0, "counts": Counts(0, 0, 0, 0).json()}
        topic = f"{topics.homeassistant}/sensor/double-take/{camera}/state"
        out.append(Message(topic, js_json(reset), True))
    return out


def available(state: str) -> Message:
    """``double-take/available`` (retained): "online" once connected."""
    return Message(AVAILABLE_TOPIC, state.encode(), True)


def timestamp(epoch: float, zone: str = "UTC") -> str:
    """Double Take's ``time.current()``: luxon's ``toString()`` in ``time.timezone``."""
    utc = zone.upper() in ("UTC", "GMT")  # luxon's fixed UTC zone writes "Z"
    moment = datetime.fromtimestamp(epoch, timezone.utc if utc else ZoneInfo(zone))
    text = moment.isoformat(timespec="milliseconds")
    return text.removesuffix("+00:00") + "Z" if utc else text


def _sensor(
    topics: Topics, level: str, name: str, icon: str, template: str, state: dict[str, Any]
) -> list[Message]:
    """The retained Home Assistant config and state of one of Double Take's sensors."""
    if not topics.homeassistant:
        return []
    base = f"{topics.homeassistant}/sensor/double-take/{level}"
    config = {
        "name": name,
        "icon": icon,
        "value_template": template,
        "state_topic": f"{base}/state",
        "json_attributes_topic": f"{base}/state",
        "availability_topic": AVAILABLE_TOPIC,
        "unique_id": name,
    }
    return [
        Message(f"{base}/config", js_json(config), True),
        Message(f"{base}/state", js_json(state), True),
    ]


def _js_round(value: float) -> int:
    """JavaScript's ``Math.round``: halves go up, also below zero."""
    return int((Decimal(value) + Decimal("0.5")).to_integral_value(rounding=ROUND_FLOOR))


def _js(number: float) -> str:
    """A finite number as JavaScript prints it (``Number::toString``, ``JSON.stringify``): the
    shortest digits that read back the same (as Python's ``repr``), in JavaScript's layout."""
    if number == 0:
        return "0"
    parts = Decimal(repr(abs(float(number)))).normalize().as_tuple()
    digits = "".join(map(str, parts.digits))
    k, n = len(digits), int(parts.exponent) + len(digits)  # number = 0.digits * 10**n
    if k <= n <= 21:
        text = digits + "0" * (n - k)
    elif 0 < n <= 21:
        text = f"{digits[:n]}.{digits[n:]}"
    elif -6 < n <= 0:
        text = "0." + "0" * -n + digits
    else:
        fraction = f".{digits[1:]}" if k > 1 else ""
        text = f"{digits[0]}{fraction}e{'+' if n > 0 else '-'}{abs(n - 1)}"
    return ("-" if number < 0 else "") + text


def js_json(value: Any) -> bytes:
    """``JSON.stringify(value)`` of a JSON-like value, as UTF-8."""
    return _stringify(value).encode()


def _stringify(value: Any) -> str:
    if isinstance(value, float) and not isinstance(value, bool):
        return _js(value) if math.isfinite(value) else "null"
    if isinstance(value, dict):
        items = (f"{_stringify(str(k))}:{_stringify(v)}" for k, v in value.items())
        return "{" + ",".join(items) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_stringify(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False)
