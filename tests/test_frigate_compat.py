"""The Frigate bridge against the stand-in of Frigate 0.14, 0.15, 0.16 and 0.17
(tests/frigate_standin.py: Frigate's own request models, login with an expiring JWT, each
version's pictures and sub label semantics) on a real mosquitto, with the real small models:
issue 24 FR-1..7 (no overwrite, tracked_object_update, Frigate's score scale, clean snapshots
after the end, latest frames without snapshots, attempts, login)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import test_daemon
import test_frigate
import test_mqtt
from cli_helpers import LIN, SMALL
from frigate_standin import FrigateStandIn, running
from test_frigate import Running, jsonl, of_event
from test_mqtt import Broker, Subscriber, wait_until

from streamrec.config import Config, load_config
from streamrec.scales import frigate_face_score
from streamrec.service.frigate_session import Credentials, FrigateSession

pytestmark = test_mqtt.pytestmark
broker = test_mqtt.broker
lin_gallery = test_daemon.lin_gallery
stills = test_frigate.stills
bridges = test_frigate.running

VERSIONS = ["0.14", "0.15", "0.16", "0.17"]
PASSWORD = "frigate-admin-pw"
BOX = (0, 0, 1200, 700)  # the person: the whole frame of the clip
WAIT = 120.0


@pytest.fixture
def standins() -> Iterator[Callable[..., FrigateStandIn]]:
    with running() as start:
        yield start


def frame(jpeg: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None
    return image


def config(
    frigate: FrigateStandIn, broker: Broker, gallery: Path, events: Path, **keys: Any
) -> Config:
    camera = {
        "name": "frigate",
        "frigate": {
            "url": frigate.url,
            "user": "admin",
            "sub_label": True,
            "retries": 1,
            "timeout": 5,
            "attempts": 3,
            "delay": 0.05,
            "mqtt": {"host": "127.0.0.1", "port": broker.port},
            **keys,
        },
    }
    return load_config(
        None,
        {
            **dict(item.split("=", 1) for item in SMALL[1::2]),
            "models.download": False,
            "gallery": str(gallery),
            "cameras": [camera],
            "events.jsonl": str(events),
            "events.mqtt": {"host": "127.0.0.1", "port": broker.port, "double_take_topics": True},
        },
    )


def requests_to(frigate: FrigateStandIn, event_or_camera: str) -> list[str]:
    with frigate.lock:
        return [r.path for r in frigate.requests if event_or_camera in r.path]


@pytest.mark.parametrize("version", VERSIONS)
def test_the_bridge_on_each_frigate_version(
    version: str,
    standins: Callable[..., FrigateStandIn],
    broker: Broker,
    bridges: Callable[[Config], Running],
    stills: dict[str, bytes],
    lin_gallery: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="streamrec")
    monkeypatch.setenv("STREAMREC_FRIGATE_PASSWORD", PASSWORD)  # the password from the env
    frigate = standins(version, broker_port=broker.port)
    events = tmp_path / "events.jsonl"
    watcher = Subscriber(broker.port, f"dt-{version}", "double-take/#", clean=True)
    run = bridges(config(frigate, broker, lin_gallery, events))
    bridge = run.bridge
    wait_until(lambda: "reading frigate/events" in caplog.text, "the bridge's subscription")
    lin, stranger = frame(stills["lin"]), frame(stills["stranger"])

    # FR-6: in progress with a snapshot: snapshot.jpg without drawings, after a login (JWT)
    first = frigate.track("front_door", lin, BOX, zones=["porch"])
    wait_until(lambda: of_event(jsonl(events), first, "identified"), "Lin named", WAIT)
    [named] = of_event(jsonl(events), first, "identified")
    assert named["name"] == LIN and named["zones"] == ["porch"]
    assert named["frigate_source"] == "snapshot"
    with frigate.lock:
        login = [r for r in frigate.requests if r.path == "/api/login"]
        shots = [r for r in frigate.requests if r.path == f"/api/events/{first}/snapshot.jpg"]
    assert login and login[0].status == 200
    assert shots[0].query == {"bbox": ["0"], "timestamp": ["0"], "crop": ["0"]}
    assert "cookie" in shots[0].headers and shots[0].status == 200
    # FR-2: the sub label on Frigate's scale (validated by the version's own body model)
    wait_until(lambda: frigate.sub_labels, "the sub label")
    [(posted, body)] = frigate.sub_labels
    expected = max(frigate_face_score(named["score"], bridge._threshold), 0.01)
    assert posted == first and body == {"subLabel": LIN, "subLabelScore": expected}
    assert expected >= 0.9  # Frigate's recognition threshold at ours
    # Double Take's topics carry Frigate's event id and zones (DT-2); his face is smaller than
    # Double Take's match.min_area (10000 px²): a miss, as Double Take would have it
    topic = "double-take/cameras/front_door"
    wait_until(lambda: bool(watcher.on(topic)), "Double Take's camera topic")
    seen = json.loads(watcher.on(topic)[0].payload)
    assert (seen["id"], seen["camera"], seen["zones"]) == (first, "front_door", ["porch"])
    [face] = seen["matches"] + seen["misses"]
    assert face["name"] == "lin-manuel miranda" and face["type"] == "snapshot"
    watcher.close()

    # FR-3: an object whose better snapshot comes with its end: the clean copy, not the drawn one
    second = frigate.track("front_door", stranger, BOX)
    wait_until(lambda: of_event(jsonl(events), second, "unknown"), "the stranger", WAIT)
    if version in ("0.16", "0.17"):  # FR-1: Frigate's own face recognition named the person
        frigate.recognize_face(second, "Frigate Knows", 0.95)
    else:  # another client (Double Take) set a sub label
        other = FrigateSession(frigate.url, Credentials("admin", PASSWORD))
        answer = other.request(
            "POST", f"/api/events/{second}/sub_label", body=b'{"subLabel": "DT Knows"}',
            headers={"Content-Type": "application/json"},
        )  # fmt: skip
        assert answer.status == 200
    with frigate.lock:
        obj = frigate.objects[second]
        obj.frame, obj.frame_time = lin, frigate.now()
    frigate.end(second)
    wait_until(lambda: of_event(jsonl(events), second, "track_end"), "the end", WAIT)
    clean = "snapshot-clean.webp" if version == "0.17" else "snapshot-clean.png"
    assert f"/api/events/{second}/{clean}" in requests_to(frigate, second)
    assert of_event(jsonl(events), second, "identified")[0]["name"] == LIN  # from the clean copy
    # FR-1: overwrite false: the sub label someone else set stays
    assert [e for e, _ in frigate.sub_labels if e == second] == (
        [] if version in ("0.16", "0.17") else [second]
    )
    assert frigate.objects[second].sub_label[0] in ("Frigate Knows", "DT Knows")  # type: ignore[index]
    assert bridge.stats.kept == 1

    # FR-4/5: no snapshot: the camera's latest frame while active, stop on the match
    third = frigate.track("garage", lin, BOX, has_snapshot=False)
    wait_until(lambda: of_event(jsonl(events), third, "identified"), "Lin on latest.jpg", WAIT)
    assert of_event(jsonl(events), third, "identified")[0]["frigate_source"] == "latest"
    [on_latest] = of_event(jsonl(events), third, "identified")
    confident = on_latest["score"] >= bridge._confident
    # attempts: 3; stop_on_match: none after a confident match, else on for a better frame
    wanted = 1 if confident else 3
    wait_until(lambda: bridge.stats.snapshots >= 4 + wanted - 1, "the frames of the object")
    latest = [p for p in requests_to(frigate, "/api/garage/") if p.endswith("latest.jpg")]
    assert len(latest) == wanted, (on_latest["score"], bridge._confident)
    frigate.end(third)
    wait_until(lambda: of_event(jsonl(events), third, "track_end"), "its end", WAIT)
    assert len(
        [p for p in requests_to(frigate, "/api/garage/") if p.endswith("latest.jpg")]
    ) == len(latest)
    assert PASSWORD not in caplog.text and LIN not in caplog.text


def test_a_refused_login_is_one_clear_line(
    standins: Callable[..., FrigateStandIn],
    broker: Broker,
    bridges: Callable[[Config], Running],
    stills: dict[str, bytes],
    lin_gallery: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="streamrec")
    frigate = standins("0.16", broker_port=broker.port)
    cfg = config(frigate, broker, lin_gallery, tmp_path / "e.jsonl", password="wrong-pw-123")
    run = bridges(cfg)
    wait_until(lambda: "reading frigate/events" in caplog.text, "the subscription")
    for _ in range(2):
        frigate.track("front_door", frame(stills["lin"]), BOX)
    wait_until(lambda: run.bridge.stats.failures >= 2, "both refused")
    refused = [r for r in caplog.records if "refused the login" in r.getMessage()]
    assert len(refused) == 1 and "check the Frigate user and password" in refused[0].getMessage()
    assert "wrong-pw-123" not in caplog.text
    assert json.dumps(run.bridge.stats.__dict__)  # counters stay readable
