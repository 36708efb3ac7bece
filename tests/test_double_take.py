"""streamrec.sinks.double_take against a literal port of Double Take v1.13.1
(tests/double_take_port.py): names and topics, the CompreFace detector's request and
normalisation, the event summary and every MQTT message byte for byte. The port itself is
cross-checked against Double Take's real JavaScript under node when its source is at hand
(``STREAMREC_DOUBLE_TAKE_SRC``, see tests/double_take_harness.py), else those tests skip."""

from __future__ import annotations

import json
import random
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import double_take_port as port
import ha_mqtt_schemas as ha
import pytest
import test_mqtt
from double_take_harness import missing, run
from recording_server import Request, recording
from test_mqtt import Broker, Subscriber, wait_until

from streamrec.config import MqttConfig
from streamrec.records import Event
from streamrec.scales import compreface_similarity, double_take_confidence, js_to_fixed
from streamrec.sinks import double_take as dt
from streamrec.sinks.mqtt import MqttEventSink
from streamrec.sinks.mqtt.erase import clear_retained

real_double_take = pytest.mark.skipif(missing() is not None, reason=str(missing()))
mosquitto = test_mqtt.pytestmark
broker = test_mqtt.broker

NAMES = [
    "Lin-Manuel Miranda",
    "José Pérez",
    "李小龙",
    "o'brien",
    "Anne  Marie\tSmith",
    "a\u00a0b",
    "x\u2028y",
    "ΟΔΟΣ",
    "İstanbul",
    "under_score",
    "dots.and.more",
    "  lead",
    "trail  ",
    "emoji 😀 face",
    "\ufeffbom",
    "1337",
    "0",
    "MiXeD Case",
    "tab\u3000ideographic",
    "ſ long s",
]
NUMBERS: list[Any] = [
    1.0, 0.1, 1e21, 1e-7, 5e-7, 1.2345678901234567e20, 1e-6, 55.5, -0.0, 100.0, 2.5e-5,
    3e100, -1.5e-9, 'é\u2028\u0001"\\', True, None, 12,
]  # fmt: skip


def output(rec: dt.Recognition) -> dict[str, Any]:
    """``rec`` as the object Double Take's controller hands to ``mqtt.recognize``."""
    o = rec.outcome
    out: dict[str, Any] = {
        "id": rec.id,
        "duration": rec.duration,
        "timestamp": rec.timestamp,
        "attempts": rec.attempts,
        "camera": rec.camera,
        "zones": rec.zones,
        "counts": o.counts.json(),
        "matches": [f.json() for f in o.matches],
        "misses": [f.json() for f in o.misses],
        "unknowns": [f.json() for f in o.unknowns],
    }
    if rec.token is not None:
        out["token"] = rec.token
    return out


def ported(messages: list[tuple[str, Any, bool]]) -> list[dt.Message]:
    """The port's (topic, message, retain) as bytes on the wire (undefined: empty)."""
    return [dt.Message(t, b"" if m is port.UNDEFINED else m.encode(), r) for t, m, r in messages]


def recorded(messages: list[dict[str, Any]]) -> list[dt.Message]:
    """What the harness recorded of Double Take's own publish calls."""
    return [dt.Message(m["topic"], (m["message"] or "").encode(), m["retain"]) for m in messages]


def face(
    name: str,
    confidence: float,
    match: bool,
    box: dt.Box,
    kind: str = "snapshot",
    checks: tuple[str, ...] = (),
) -> dt.Face:
    attempt = dt.Attempt(kind, "compreface", 0.42, [], f"{name}.jpg")
    return dt.Face(dt.Result(name, confidence, match, box, checks), attempt)


BOX = dt.Box(top=40, left=120, width=160, height=200)


def recognition(
    names: list[str],
    camera: str = "Front_Door",
    token: str | None = None,
    misses: bool = True,
    unknowns: bool = True,
) -> dt.Recognition:
    matches = [face(n, 91.5 - i, True, BOX) for i, n in enumerate(names)]
    missed = [face("bob", 55.25, False, BOX, "latest", ("confidence too low: 55.25 < 60",))]
    unknown = [
        face(
            "unknown", 30.0, False, dt.Box(5, 6, 70, 80), "latest", ("confidence too low: 30 < 40",)
        )
    ]
    outcome = dt.Outcome(
        matches,
        missed if misses else [],
        unknown if unknowns else [],
        dt.Counts(len(names) + 2, len(names), 1, 1),
    )
    return dt.Recognition(
        "1700000000.25-abc123",
        1.37,
        dt.timestamp(1_700_000_000.25),
        3,
        camera,
        ["driveway", "yard"],
        outcome,
        token,
    )


def test_names_topics_and_every_message_match_mqtt_util() -> None:
    rec = recognition([dt.subject_name(n) for n in NAMES] + NAMES)
    sent, reset = port.mqtt_recognize(output(rec))
    assert dt.messages(rec) == ported(sent)
    assert dt.reset_messages(rec) == ported(reset)
    assert dt.available("online") == ported(port.mqtt_connect_messages())[1]
    assert dt.PERSON_RESET_SECONDS * 1000 == port.PERSON_RESET_TIMEOUT_MS
    # the rule itself: whitespace runs to "-", other non-ASCII-alphanumerics dropped, case kept
    assert dt.topic_level("Anne  Marie\tSmith") == "Anne-Marie-Smith"
    assert dt.topic_level("José Pérez") == "Jos-Prez"
    assert dt.topic_level(dt.subject_name("MiXeD Case")) == "mixed-case"
    assert dt.topic_level("李小龙") == "" and dt.topic_level("ſ long s") == "-long-s"


def test_without_home_assistant_a_token_and_only_a_miss() -> None:
    rec = recognition([], camera="garage", token="jwt.for.images", unknowns=False)
    sent, reset = port.mqtt_recognize(output(rec), {"homeassistant": False})
    topics = dt.Topics(homeassistant=None)
    assert dt.messages(rec, topics) == ported(sent)
    assert dt.reset_messages(rec, topics) == ported(reset)
    assert [m.topic for m in dt.messages(rec, topics)] == [
        "double-take/cameras/garage/person",
        "double-take/cameras/garage",
    ]


def random_answer(rng: random.Random, n: int) -> dict[str, Any]:
    """A CompreFace recognize answer of ``n`` faces around Double Take's thresholds."""
    result = []
    for _ in range(n):
        x, y = rng.randint(0, 600), rng.randint(0, 400)
        w, h = rng.choice([10, 20, 99, 100, 101, 180]), rng.choice([10, 50, 100, 101, 200])
        sim = rng.choice([rng.random(), 0.6, 0.4, 0.555, 0.70005, 0.39995, 1.0, 0.0])
        subject = rng.choice(["Lin Manuel", "BOB", "José", "1337", None])
        box = {"probability": 0.99, "x_min": x, "y_min": y, "x_max": x + w, "y_max": y + h}
        subjects = [] if subject is None else [{"subject": subject, "similarity": sim}]
        result.append({"box": box, "subjects": subjects})
    return {"result": result}


def detect_config(detect: dt.Detect) -> dict[str, Any]:
    return {
        "match": {"confidence": detect.match_confidence, "min_area": detect.match_min_area},
        "unknown": {"confidence": detect.unknown_confidence, "min_area": detect.unknown_min_area},
    }


def ours_normalized(data: dict[str, Any], detect: dt.Detect) -> list[dt.Result]:
    """The product's reading of a CompreFace answer (what port.compreface_normalize does)."""
    results = []
    for item in data.get("result") or []:
        top = item["subjects"][0] if item["subjects"] else None
        box = dt.Box.of_corners(*(item["box"][k] for k in ("x_min", "y_min", "x_max", "y_max")))
        r = dt.normalize(top and top["subject"], top["similarity"] if top else 0.0, box, detect)
        if r is not None:
            results.append(r)
    return results


def as_port_results(results: list[dt.Result]) -> list[dict[str, Any]]:
    faces = [dt.Face(r, dt.Attempt("t", "d", 0, [])).json() for r in results]
    for item in faces:
        for key in ("type", "detector", "duration", "filename", "base64"):
            del item[key]
    return faces


def test_normalize_is_double_takes_on_random_answers() -> None:
    rng = random.Random(24)
    for detect in (dt.Detect(), dt.Detect(70, 2500, 55.5, 400)):
        data = random_answer(rng, 300)
        expected = port.compreface_normalize(data, detect_config(detect))
        assert as_port_results(ours_normalized(data, detect)) == expected


def compreface_answer(request: Request) -> tuple[int, Any]:
    """A CompreFace recognize answer per uploaded image (its bytes name the case)."""
    case = request.part("file").data.decode()
    box = {"probability": 0.999, "x_min": 100, "y_min": 80, "x_max": 260, "y_max": 300}
    small = {"probability": 0.95, "x_min": 10, "y_min": 10, "x_max": 40, "y_max": 40}
    if case == "none":
        return 400, {"message": "No face is found in the given image", "code": 28}
    results = {
        "lin": [{"box": box, "subjects": [{"subject": "Lin", "similarity": 0.9312}]}],
        "lin-better": [
            {"box": box, "subjects": [{"subject": "Lin", "similarity": 0.97}]},
            {"box": small, "subjects": [{"subject": "Bob", "similarity": 0.2}]},
        ],
        "bob-miss": [
            {"box": box, "subjects": [{"subject": "Bob", "similarity": 0.52}]},
            {"box": small, "subjects": []},
        ],
        "numbers": [
            {"box": box, "subjects": [{"subject": "Zed", "similarity": 0.9}]},
            {"box": box, "subjects": [{"subject": "1337", "similarity": 0.8}]},
            {"box": box, "subjects": [{"subject": "7", "similarity": 0.85}]},
        ],
    }[case]
    return 200, {"result": results}


CASES = ["lin", "none", "bob-miss", "lin-better", "numbers"]


def port_event(answers: list[dict[str, Any]], durations: list[float]) -> dict[str, Any]:
    """Double Take's output for one Frigate event whose snapshots got ``answers``
    (process.util.js ``start`` lines 121-155: one attempt per image and detector)."""
    attempts = [
        {
            "detector": "compreface",
            "duration": durations[i],
            "attempt": i + 1,
            "results": port.compreface_normalize(answer),
            "filename": f"1700000000.25-abc123-{i}.jpg",
        }
        for i, answer in enumerate(answers)
    ]
    group = {"duration": 0, "type": "snapshot", "attempts": len(answers), "results": attempts}
    event = {"id": "1700000000.25-abc123", "camera": "Front", "zones": ["porch"]}
    return port.controller_output(event, [group], 0, port.time_current(1_700_000_000_250))


def ours_event(answers: list[dict[str, Any]], durations: list[float]) -> dt.Recognition:
    attempts = [
        dt.Attempt(
            "snapshot",
            "compreface",
            durations[i],
            ours_normalized(answer, dt.Detect()),
            f"1700000000.25-abc123-{i}.jpg",
        )
        for i, answer in enumerate(answers)
    ]
    return dt.Recognition(
        "1700000000.25-abc123",
        0,
        dt.timestamp(1_700_000_000.25),
        len(answers),
        "Front",
        ["porch"],
        dt.combine(attempts),
    )


def answers_of(cases: list[str]) -> list[dict[str, Any]]:
    class Fake:
        def __init__(self, case: str) -> None:
            self.case = case

        def part(self, name: str) -> Any:
            return type("P", (), {"data": self.case.encode()})

    return [compreface_answer(Fake(c))[1] for c in cases]  # type: ignore[arg-type]


def test_an_event_summary_and_its_messages_are_double_takes() -> None:
    answers = answers_of(CASES)
    durations = [0.42, 0.1, 0.25, 1.5, 0.3]
    got = port_event(answers, durations)
    rec = ours_event(answers, durations)
    assert output(rec) == port.json_roundtrip(got)
    sent, reset = port.mqtt_recognize(got)
    assert dt.messages(rec) == ported(sent)
    assert dt.reset_messages(rec) == ported(reset)
    # 8 faces in 5 images: 2 persons; Double Take's unknown count goes below zero then
    assert rec.outcome.counts == dt.Counts(person=2, match=4, miss=1, unknown=-3)
    # JavaScript lists integer-like names first, in numeric order
    assert [f.result.name for f in rec.outcome.matches] == ["7", "1337", "lin", "zed"]


@pytest.fixture
def compreface() -> Iterator[Any]:
    with recording(compreface_answer) as server:
        yield server


def test_the_detector_request_double_take_sends(compreface: Any, tmp_path: Path) -> None:
    """What the port sends is what Double Take's detector sends (cross-checked below)."""
    image = tmp_path / "snapshot.jpg"
    image.write_bytes(b"lin")
    assert port.compreface_recognize(compreface.url, "secret-key", image).status_code == 200
    (request,) = compreface.requests
    assert request.method == "POST" and request.path == "/api/v1/recognition/recognize"
    # face_plugins is always in the URL: the literal "undefined" unless configured
    assert request.raw_query == "face_plugins=undefined&det_prob_threshold=0.8"
    assert request.headers["x-api-key"] == "secret-key"
    assert request.headers["content-type"].startswith("multipart/form-data; boundary=")
    part = request.part("file")
    assert (part.filename, part.content_type, part.data) == ("snapshot.jpg", "image/jpeg", b"lin")


def test_json_numbers_confidence_and_timestamps_as_javascript_writes_them() -> None:
    assert [dt.js_json(v).decode() for v in NUMBERS] == [port.json_stringify(v) for v in NUMBERS]
    rng = random.Random(7)
    sims = [rng.random() for _ in range(2000)] + [0.605, 0.60005, 0.12345, 0.5, 1.0]
    assert [double_take_confidence(s) for s in sims] == [
        port.parse_float(port.to_fixed(s * 100, 2)) for s in sims
    ]
    assert js_to_fixed(0.125, 2) == 0.13 and round(0.125, 2) == 0.12
    for zone in ("UTC", "GMT", "America/Detroit", "Asia/Kolkata", "Europe/London"):
        for ms in (1_700_000_000_123, 1_690_000_000_000):
            assert dt.timestamp(ms / 1000, zone) == port.time_current(ms, zone), zone


def test_counts_round_as_javascript() -> None:
    box = dt.Box(0, 0, 200, 200)
    one = dt.Result("a", 90, True, box)
    attempts = [dt.Attempt("latest", "compreface", 0.1, [one] * n) for n in (1, 2)]
    assert dt.combine(attempts).counts == dt.Counts(2, 1, 0, 1)  # 1.5 rounds up
    assert dt.combine([]).counts == dt.Counts(0, 0, 0, 0)


def test_topics_names_and_checks() -> None:
    """The rules on their own, with the cases that differ between Python and JavaScript."""
    assert dt.topic_level("a\u00a0b\ufeffc") == "a-b-c"  # JavaScript's \s, not Python's
    assert dt.topic_level("x\x1cy") == "xy"  # Python's \s has \x1c, JavaScript's has not
    assert dt.subject_name("Lin-Manuel MIRANDA") == "lin-manuel miranda"
    box = dt.Box.of_corners(10, 20, 110, 140)
    assert box == dt.Box(top=20, left=10, width=100, height=120)
    match = dt.normalize("Lin", 0.93123, box, dt.Detect())
    assert match == dt.Result("lin", 93.12, True, box)
    miss = dt.normalize("Lin", 0.55, box, dt.Detect())
    assert miss == dt.Result("lin", 55.0, False, box, ("confidence too low: 55 < 60",))
    small = dt.normalize("Lin", 0.93, dt.Box(0, 0, 50, 50), dt.Detect())
    assert small is not None and small.checks == ("box area too low: 2500 < 10000",)
    assert dt.normalize(None, 0.0, box, dt.Detect(unknown_min_area=20000)) is None
    assert dt.js_json({"a": [1.0, 0.5, 1e-7, 1e21, True, None], "é": "\u2028"}) == (
        '{"a":[1,0.5,1e-7,1e+21,true,null],"é":"\u2028"}'.encode()
    )
    assert dt.timestamp(0.5) == "1970-01-01T00:00:00.500Z"
    # what Double Take's detector makes of CompreFace's errors
    assert port.compreface_normalize({"message": "No face", "code": 28}) == []
    with pytest.raises(ValueError, match="Missing header x-api-key"):
        port.compreface_normalize({"message": "Missing header x-api-key", "code": 20})


# --- the port against Double Take's real JavaScript (optional) --------------------------------


@real_double_take
@mosquitto
def test_port_of_mqtt_util_is_double_takes_own(broker: Broker) -> None:
    sub = Subscriber(broker.port, "dt-watch", "#", clean=True)
    try:
        for rec, ha in (
            (recognition([dt.subject_name(n) for n in NAMES] + NAMES), True),
            (recognition([], camera="garage", token="jwt", unknowns=False), False),
        ):
            mqtt: dict[str, Any] = {"host": f"127.0.0.1:{broker.port}"}
            if not ha:
                mqtt["topics"] = {"homeassistant": False}
            answer = run({"op": "publish", "config": {"mqtt": mqtt}, "output": output(rec)})
            sent, reset = port.mqtt_recognize(output(rec), None if ha else {"homeassistant": False})
            assert recorded(answer["recognized"]) == ported(sent)
            assert recorded(answer["reset"]) == ported(reset)
            assert answer["reset_after_ms"] == [port.PERSON_RESET_TIMEOUT_MS]
            assert recorded(answer["connect"]) == ported(port.mqtt_connect_messages())
        # and the broker got them as recorded
        last = ported(sent)[-1]
        wait_until(lambda: bool(sub.on(last.topic)), "Double Take's messages on the broker")
        assert sub.on(last.topic)[0].payload == last.payload
    finally:
        sub.close()


@real_double_take
def test_port_of_normalize_is_double_takes_own() -> None:
    rng = random.Random(25)
    for detect in (dt.Detect(), dt.Detect(70, 2500, 55.5, 400)):
        data = random_answer(rng, 300)
        config = {"detect": detect_config(detect)}
        answer = run({"op": "normalize", "camera": "cam", "data": data, "config": config})
        assert answer["results"] == port.compreface_normalize(data, detect_config(detect))
    for data in (
        {"message": "No face is found in the given image", "code": 28},
        {"message": "Missing header x-api-key", "code": 20},
    ):
        answer = run({"op": "normalize", "camera": "c", "data": data})
        try:
            assert answer == {"results": port.compreface_normalize(data)}
        except ValueError as error:
            assert answer == {"error": str(error)}


@real_double_take
def test_port_of_an_event_is_double_takes_own(compreface: Any, tmp_path: Path) -> None:
    images = []
    for i, case in enumerate(CASES):
        images.append(tmp_path / f"{i}.jpg")
        images[-1].write_bytes(case.encode())
    config = {"detectors": {"compreface": {"url": compreface.url, "key": "k"}}}
    got = run(
        {
            "op": "event",
            "config": config,
            "id": "1700000000.25-abc123",
            "camera": "Front",
            "zones": ["porch"],
            "type": "snapshot",
            "images": [str(p) for p in images],
        }
    )["output"]
    durations = {
        f["filename"]: f["duration"] for k in ("matches", "misses", "unknowns") for f in got[k]
    }
    names = [f"1700000000.25-abc123-{i}.jpg" for i in range(len(CASES))]
    expected = port_event(answers_of(CASES), [durations.get(n, 0) for n in names])
    assert got == port.json_roundtrip(expected | {"timestamp": got["timestamp"]})


@real_double_take
def test_port_of_the_detector_request_is_double_takes_own(compreface: Any, tmp_path: Path) -> None:
    image = tmp_path / "snapshot.jpg"
    image.write_bytes(b"lin")
    url = compreface.url
    base = {"url": url, "key": "secret-key"}
    configured = {"face_plugins": "mask,gender", "det_prob_threshold": 0.6}
    for options, test in (({}, False), (configured, False), (configured, True)):
        config = {"detectors": {"compreface": base | options}}
        assert (
            run({"op": "recognize", "config": config, "image": str(image), "test": test})["status"]
            == 200
        )
        port.compreface_recognize(url, "secret-key", image, test=test, **options)
    requests = compreface.requests
    for theirs, ours in zip(requests[0::2], requests[1::2], strict=True):
        assert (theirs.method, theirs.path, theirs.raw_query) == (
            ours.method,
            ours.path,
            ours.raw_query,
        )
        assert theirs.headers["x-api-key"] == ours.headers["x-api-key"]
        t, o = theirs.part("file"), ours.part("file")
        assert (t.filename, t.content_type, t.data) == (o.filename, o.content_type, o.data)
    assert [r.raw_query for r in requests[0::2]] == [
        "face_plugins=undefined&det_prob_threshold=0.8",
        "face_plugins=mask,gender&det_prob_threshold=0.6",
        "face_plugins=mask,gender&det_prob_threshold=0.8",
    ]


@real_double_take
def test_port_of_javascripts_numbers_and_luxon_is_exact() -> None:
    texts = run({"op": "stringify", "values": NUMBERS})["texts"]
    assert [port.json_stringify(v) for v in NUMBERS] == texts
    rng = random.Random(8)
    sims = [rng.random() for _ in range(2000)] + [0.605, 0.60005, 0.12345, 0.5, 1.0]
    script = "process.stdout.write(JSON.stringify(%s.map((s) => parseFloat((s * 100).toFixed(2)))))"
    node = subprocess.run(
        ["node", "-e", script % json.dumps(sims)], capture_output=True, check=True, text=True
    )
    assert [port.parse_float(port.to_fixed(s * 100, 2)) for s in sims] == json.loads(node.stdout)
    for zone in ("UTC", "GMT", "America/Detroit", "Asia/Kolkata", "Europe/London"):
        for ms in (1_700_000_000_123, 1_690_000_000_000):
            expected = run({"op": "time", "now": ms, "config": {"time": {"timezone": zone}}})
            assert port.time_current(ms, zone) == expected["timestamp"], zone


# --- the MQTT sink's Double Take publisher on a real mosquitto --------------------------------

THRESHOLD = 0.4


def sink_event(kind: str, track: int, t: float, camera: str = "Front Door", **fields: Any) -> Event:
    return Event(
        kind, "rtsp://u:pw@10.0.0.9/live", track, 0, t, 1_700_000_000.25 + t, camera, fields
    )


def expected_messages(
    camera: str,
    event_id: str,
    faces: list[tuple[str | None, float | None, list[float], float]],
    captured: float,
    zones: list[str],
    kind: str,
    ha: str | None,
) -> tuple[list[dt.Message], list[dt.Message]]:
    """What Double Take publishes for an event whose attempts found ``faces`` (subject or None,
    cosine, box x1 y1 x2 y2, seconds since the start), through the port: CompreFace's answer
    (the similarity of the cosine), its normalisation, the summary, ``mqtt.recognize``. A
    cosine None: an attempt whose result was withdrawn (the track was renamed)."""
    attempts = []
    for subject, cosine, (x1, y1, x2, y2), t in faces:
        box = {"probability": 1, "x_min": x1, "y_min": y1, "x_max": x2, "y_max": y2}
        results = []
        if cosine is not None:
            similarity = float(compreface_similarity(cosine, THRESHOLD))
            subjects = [] if subject is None else [{"subject": subject, "similarity": similarity}]
            results = port.compreface_normalize({"result": [{"box": box, "subjects": subjects}]})
        duration = port.parse_float(port.to_fixed(t, 2))
        attempts.append(
            {"detector": "streamrec", "duration": duration, "results": results, "filename": None}
        )
    group = {"type": kind, "attempts": len(attempts), "results": attempts}
    event = {"id": event_id, "camera": camera, "zones": zones}
    duration = attempts[-1]["duration"]
    out = port.controller_output(
        event, [group], duration, port.time_current(round(captured * 1000))
    )
    sent, reset = port.mqtt_recognize(out, {"homeassistant": ha or False})
    return ported(sent), ported(reset)


@mosquitto
def test_the_sink_publishes_double_takes_messages(broker: Broker) -> None:
    sub = Subscriber(broker.port, "dt-sink", "#", clean=True)
    sink = MqttEventSink(
        "127.0.0.1",
        broker.port,
        topic_prefix="rec",
        double_take_topics=True,
        ha_discovery=True,
        threshold=THRESHOLD,
        double_take_reset=2.0,
    )
    try:
        box = [100.0, 50.0, 260.0, 250.0]
        sink.write(sink_event("track_start", 7, 10.0, box=box))
        sink.write(sink_event("identified", 7, 11.5, name="Lin-Manuel Miranda", score=0.55))
        first = expected_messages(
            "front_door",
            "front_door-7",
            [("Lin-Manuel Miranda", 0.55, box, 1.5)],
            1_700_000_011.75,
            [],
            "stream",
            "homeassistant",
        )
        # a second track: an unknown face, then a Frigate object named with its zones
        sink.write(sink_event("track_start", 8, 12.0, box=[0.0, 0.0, 40.0, 40.0]))
        sink.write(sink_event("unknown", 8, 12.25, label="unknown-3"))
        frigate = {"frigate_event": "1700000000.5-ab12cd", "zones": ["porch", "yard"]}
        sink.write(
            sink_event(
                "identified", 2_000_000_001, 3.0, camera="garage", name="Bob", score=0.38,
                box=[10.0, 10.0, 200.0, 220.0], **frigate,
            )
        )  # fmt: skip
        sink.write(
            sink_event(
                "renamed", 2_000_000_001, 4.0, camera="garage", name="Ann", score=0.71,
                box=[12.0, 10.0, 202.0, 220.0], **frigate,
            )
        )  # fmt: skip
        garage = expected_messages(
            "garage",
            "1700000000.5-ab12cd",
            [
                ("Bob", None, [10.0, 10.0, 200.0, 220.0], 3.0),  # renamed: Bob was wrong
                ("Ann", 0.71, [12.0, 10.0, 202.0, 220.0], 4.0),
            ],
            1_700_000_004.25,
            ["porch", "yard"],
            "snapshot",
            "homeassistant",
        )
        unknown = expected_messages(
            "front_door", "front_door-8", [(None, 0.0, [0, 0, 40, 40], 0.25)],
            1_700_000_012.5, [], "stream", "homeassistant",
        )  # fmt: skip
        everything = first[0] + unknown[0] + garage[0]
        # every message; of a retained topic the last value (the link keeps the latest value
        # of a retained topic, not each one: a state, not a stream)
        last = {m.topic: m for m in everything if m.retain}
        wanted = [m for m in everything if not m.retain or last[m.topic] is m]
        wait_until(lambda: all(sub.on(m.topic) for m in wanted), "every Double Take topic")
        got = {(m.topic, bytes(m.payload)) for m in sub.messages}
        missing = [m for m in wanted if (m.topic, m.payload) not in got]
        assert not missing, missing[:3]
        assert json.loads(sub.last("double-take/matches/ann") or "")["zones"] == ["porch", "yard"]
        # the person counts reset after the timeout: the last ones are Double Take's reset
        for reset in (unknown[1], garage[1]):
            for message in reset:
                wait_until(
                    lambda m=message: sub.last(m.topic) == m.payload.decode(), f"{message.topic}"
                )
        # Home Assistant accepts Double Take's sensors
        # Home Assistant accepts every one of Double Take's sensors, no key dropped
        configs = [m for m in sub.messages if m.topic.endswith("/config") and m.payload]
        ours = {m.topic.split("/")[3] for m in configs if "/double-take/" in m.topic}
        assert ours == {"lin-manuel-miranda", "ann", "unknown", "front_door", "garage"}
        for message in configs:  # streamrec's own entities too
            assert ha.discover(message.topic, message.payload).dropped == set(), message.topic
        assert sub.last("double-take/available") == "online"
        # erasing Ann leaves no retained message naming her (her sensor, the camera's state)
        sink.forget("Ann")
        assert sink.sync(30)
        left = test_mqtt.retained(broker.port)
        assert not [t for t, v in left.items() if b'"ann"' in v or "/ann/" in t]
        garage = json.loads(left["homeassistant/sensor/double-take/garage/state"])
        assert garage["matches"] == [] and garage["personCount"] == 0  # the camera stays
    finally:
        sink.close(timeout=5)
    wait_until(lambda: sub.last("double-take/available") == "offline", "offline on close")
    sub.close()
    # `streamrec erase` from another process finds Lin in Double Take's retained sensors too
    assert b"lin-manuel miranda" in b"".join(test_mqtt.retained(broker.port).values())
    cfg = MqttConfig(host="127.0.0.1", port=broker.port, topic_prefix="rec")
    assert clear_retained(cfg, ["Lin-Manuel Miranda"], 30, False) >= 2
    left = test_mqtt.retained(broker.port)
    assert not [t for t, v in left.items() if b"lin-manuel miranda" in v or "miranda" in t]


def test_the_threshold_double_take_confidence_is_centred_on() -> None:
    """Where the models are not loaded (a cluster's head), the recognizer's calibrated
    threshold is taken from the registry by name; the configured one wins."""
    from streamrec.config import load_config
    from streamrec.models.registry import configured_threshold

    assert configured_threshold(load_config(None, {}).models) == 0.30  # buffalo_l's w600k_r50
    small = load_config(None, {"models.recognizer": "mobilefacenet_128d_b1.onnx"})
    assert configured_threshold(small.models) == 0.40
    unknown = load_config(None, {"models.recognizer": "/models/mine.onnx"})
    assert configured_threshold(unknown.models) == 0.35  # the fallback
