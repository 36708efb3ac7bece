"""The stand-in Frigate itself (tests/frigate_standin.py): its answers per version, as Frigate's
source gives them, so that the integration tests built on it test against Frigate."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import test_mqtt
import urllib3
from frigate_models import EventResponse
from frigate_standin import COOKIE, FrigateStandIn, decode_jwt, running
from test_mqtt import Broker, Subscriber, wait_until

broker = test_mqtt.broker
VERSIONS = ["0.14", "0.15", "0.16", "0.17"]
PASSWORD = "frigate-admin-pw"
PERSON = (150, 40, 470, 470)
FACE = (250, 80, 370, 230)

# the keys of TrackedObject.to_dict() (frigate/track/tracked_object.py; 0.14.1:
# frigate/object_processing.py), in Frigate's order
COMMON = [
    "id",
    "camera",
    "frame_time",
    "snapshot",
    "label",
    "sub_label",
    "top_score",
    "false_positive",
    "start_time",
    "end_time",
    "score",
    "box",
    "area",
    "ratio",
    "region",
]
KEYS = {
    "0.14": [
        *COMMON,
        "stationary",
        "motionless_count",
        "position_changes",
        "current_zones",
        "entered_zones",
        "has_clip",
        "has_snapshot",
        "attributes",
        "current_attributes",
    ],
    "0.15": [
        *COMMON,
        "active",
        "stationary",
        "motionless_count",
        "position_changes",
        "current_zones",
        "entered_zones",
        "has_clip",
        "has_snapshot",
        "attributes",
        "current_attributes",
        "pending_loitering",
        "max_severity",
    ],
}
KEYS["0.16"] = KEYS["0.17"] = [
    *KEYS["0.15"],
    "current_estimated_speed",
    "average_estimated_speed",
    "velocity_angle",
    "path_data",
    "recognized_license_plate",
]


@pytest.fixture(scope="module")
def photo(media_dir: Path) -> np.ndarray:
    image = cv2.imread(str(media_dir / "face_recognition/lin-manuel-miranda.png"))
    assert image is not None
    return cv2.resize(image, (640, 480))


@pytest.fixture
def standin() -> Iterator[Callable[..., FrigateStandIn]]:
    with running() as start:
        yield start


HTTP = urllib3.PoolManager()


def call(
    frigate: FrigateStandIn,
    method: str,
    path: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> urllib3.BaseHTTPResponse:
    data = None if body is None else json.dumps(body).encode()
    return HTTP.request(method, frigate.url + path, body=data, headers=headers or {}, retries=False)


def login(frigate: FrigateStandIn, user: str = "admin", password: str = PASSWORD) -> str:
    answer = call(frigate, "POST", "/api/login", {"user": user, "password": password})
    assert answer.status == 200
    cookie = answer.headers["Set-Cookie"]
    assert cookie.startswith(f"{COOKIE}=") and "HttpOnly" in cookie
    return cookie.split(";")[0].split("=", 1)[1]


@pytest.mark.parametrize("version", VERSIONS)
def test_login_jwt_and_port_8971(standin: Callable[..., FrigateStandIn], version: str) -> None:
    frigate = standin(version)
    token = login(frigate)
    claims = decode_jwt(token, frigate.secret)
    assert claims is not None and claims["sub"] == "admin"
    assert ("role" in claims) == (version != "0.14")
    assert claims["exp"] - claims["iat"] == 86400
    assert call(frigate, "GET", "/api/version").status == 401
    assert (
        call(frigate, "GET", "/api/version", headers={"Cookie": f"{COOKIE}={token}"}).status == 200
    )
    assert (
        call(frigate, "GET", "/api/version", headers={"Authorization": f"Bearer {token}"}).status
        == 200
    )
    basic = urllib3.make_headers(basic_auth=f"admin:{PASSWORD}")
    assert call(frigate, "GET", "/api/version", headers=basic).status == 401
    wrong = call(frigate, "POST", "/api/login", {"user": "admin", "password": "nope"})
    assert (wrong.status, json.loads(wrong.data)) == (
        400 if version == "0.14" else 401,
        {"message": "Login failed"},
    )
    missing = call(frigate, "POST", "/api/login", {"user": "admin"})
    if version == "0.14":
        assert missing.status == 500
    else:
        assert missing.status == 422
        assert json.loads(missing.data)["detail"][0]["loc"] == ["body", "password"]
    frigate.now = lambda: claims["exp"] + 1.0
    assert (
        call(frigate, "GET", "/api/version", headers={"Authorization": f"Bearer {token}"}).status
        == 401
    )


def test_port_5000_needs_no_login(standin: Callable[..., FrigateStandIn]) -> None:
    frigate = standin("0.17", auth=False)
    assert call(frigate, "GET", "/api/version").data == b"0.17.2-standin"


SUB_LABELS: list[tuple[str, Any, int]] = [
    # version, body, status
    ("0.14", {"subLabel": "Lin", "subLabelScore": 0.93}, 200),
    ("0.14", {"subLabelScore": 0.93}, 400),
    ("0.14", {"subLabel": "x" * 101}, 400),
    ("0.14", {"subLabel": "Lin", "subLabelScore": 1.5}, 500),
    ("0.15", {"subLabel": "Lin", "subLabelScore": 0.93}, 200),
    ("0.15", {"subLabel": "Lin", "subLabelScore": 0}, 422),
    ("0.15", {"subLabel": "x" * 101}, 422),
    ("0.15", {"subLabel": "Lin", "camera": "front"}, 200),  # unknown keys are ignored
    ("0.16", {"subLabel": "Lin", "subLabelScore": 0.93, "camera": "front"}, 200),
    ("0.16", {"subLabel": "Lin", "subLabelScore": 1.01}, 422),
    ("0.17", {"subLabel": "", "subLabelScore": 0.5}, 200),
    ("0.17", {"subLabel": 5}, 422),
]


@pytest.mark.parametrize(("version", "body", "status"), SUB_LABELS)
def test_sub_label_posts(
    standin: Callable[..., FrigateStandIn], photo: np.ndarray, version: str, body: Any, status: int
) -> None:
    frigate = standin(version, auth=False)
    oid = frigate.track("front", photo, PERSON, face=FACE)
    answer = call(frigate, "POST", f"/api/events/{oid}/sub_label", body)
    assert answer.status == status, answer.data
    if status == 200:
        shown = body["subLabel"] or "None"
        assert json.loads(answer.data) == {
            "success": True,
            "message": f"Event {oid} sub label set to {shown}",
        }
        row = json.loads(call(frigate, "GET", f"/api/events/{oid}").data)
        assert row["sub_label"] == (body["subLabel"] or None)
    missing = call(frigate, "POST", "/api/events/1.0-nothere/sub_label", {"subLabel": "Lin"})
    assert missing.status == 404


def test_sub_labels_overwrite_and_need_the_admin_role(
    standin: Callable[..., FrigateStandIn], photo: np.ndarray
) -> None:
    frigate = standin("0.16", users={"admin": (PASSWORD, "admin"), "view": ("view-pw", "viewer")})
    oid = frigate.track("front", photo, PERSON, face=FACE)
    admin = {"Cookie": f"{COOKIE}={login(frigate)}"}
    viewer = {"Cookie": f"{COOKIE}={login(frigate, 'view', 'view-pw')}"}
    path = f"/api/events/{oid}/sub_label"
    assert call(frigate, "POST", path, {"subLabel": "Alice"}, admin).status == 200
    assert call(frigate, "POST", path, {"subLabel": "Bob"}, admin).status == 200  # overwritten
    refused = call(frigate, "POST", path, {"subLabel": "Eve"}, viewer)
    assert refused.status == 403 and "not authorized" in json.loads(refused.data)["detail"]
    row = EventResponse.model_validate_json(
        call(frigate, "GET", f"/api/events/{oid}", None, admin).data
    )
    assert row.sub_label == "Bob"


def decode(data: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None
    return image


def differs(a: np.ndarray, b: np.ndarray, box: tuple[int, int, int, int]) -> float:
    x1, y1, x2, y2 = box
    return float(np.abs(a[y1:y2, x1:x2].astype(int) - b[y1:y2, x1:x2].astype(int)).mean())


@pytest.mark.parametrize("version", VERSIONS)
def test_snapshots_drawn_after_the_end_and_clean_copies(
    standin: Callable[..., FrigateStandIn], photo: np.ndarray, version: str
) -> None:
    frigate = standin(version, auth=False)
    oid = frigate.track("front", photo, PERSON, face=FACE)
    snap = f"/api/events/{oid}/snapshot.jpg"
    clean_leaf = "snapshot-clean.webp" if version == "0.17" else "snapshot-clean.png"
    undrawn = decode(call(frigate, "GET", snap + "?bbox=0").data)
    drawn = decode(call(frigate, "GET", snap + "?bbox=1").data)
    assert (
        differs(undrawn, photo, FACE) < 4 < differs(drawn, photo, (*FACE[:2], FACE[2], FACE[1] + 3))
    )
    assert decode(call(frigate, "GET", snap + "?crop=1").data).shape[:2] == (
        472,
        472,
    )  # 430 * 1.1 // 4 * 4
    assert decode(call(frigate, "GET", snap + "?height=120").data).shape[:2] == (120, 160)
    assert call(frigate, "GET", snap + "?bbox=yes").status == 422
    frigate.end(oid)
    after = {call(frigate, "GET", snap + q).data for q in ("", "?bbox=0", "?bbox=0&crop=1")}
    assert len(after) == 1  # the saved snapshot, whatever the query
    saved = decode(after.pop())
    assert differs(saved, photo, (*FACE[:2], FACE[2], FACE[1] + 3)) > 4  # the face's box is on it
    clean = call(frigate, "GET", f"/api/events/{oid}/{clean_leaf}")
    assert clean.status == 200
    assert clean.headers["Content-Type"] == ("image/webp" if version == "0.17" else "image/png")
    assert differs(decode(clean.data), photo, FACE) < (4 if version == "0.17" else 0.01)
    other = "snapshot-clean.png" if version == "0.17" else "snapshot-clean.webp"
    assert call(frigate, "GET", f"/api/events/{oid}/{other}").status == 404


def test_without_snapshots_only_the_live_frame(
    standin: Callable[..., FrigateStandIn], photo: np.ndarray
) -> None:
    frigate = standin("0.16", auth=False, snapshots=False)
    oid = frigate.track("front", photo, PERSON, face=FACE)
    assert call(frigate, "GET", f"/api/events/{oid}/snapshot.jpg?bbox=0").status == 200
    clean = call(frigate, "GET", f"/api/events/{oid}/snapshot-clean.png")
    assert clean.status == 404 and b"clean_copy must be enabled" in clean.data
    assert json.loads(call(frigate, "GET", f"/api/events/{oid}").data)["has_snapshot"] is False
    frigate.end(oid)
    gone = call(frigate, "GET", f"/api/events/{oid}/snapshot.jpg")
    assert (gone.status, json.loads(gone.data)["message"]) == (404, "Snapshot not available")


@pytest.mark.parametrize("version", VERSIONS)
def test_latest_frame(
    standin: Callable[..., FrigateStandIn], photo: np.ndarray, version: str
) -> None:
    frigate = standin(version, auth=False)
    frigate.track("front", photo, PERSON)
    assert decode(call(frigate, "GET", "/api/front/latest.jpg?height=240").data).shape == (
        240,
        320,
        3,
    )
    assert call(frigate, "GET", "/api/back/latest.jpg").status == 404
    png = call(frigate, "GET", "/api/front/latest.png")
    assert png.status == (404 if version == "0.14" else 200)


@pytest.mark.parametrize("version", VERSIONS)
def test_mqtt_messages_of_each_version(
    broker: Broker, standin: Callable[..., FrigateStandIn], photo: np.ndarray, version: str
) -> None:
    sub = Subscriber(broker.port, "frigate-watch", "frigate/#", clean=True)
    try:
        frigate = standin(version, auth=False, broker_port=broker.port)
        oid = frigate.track("front", photo, PERSON, face=FACE, zones=["porch"])
        frigate.update(oid, photo, zones=["porch", "yard"])
        if version in ("0.16", "0.17"):
            frigate.recognize_face(oid, "Lin", 0.93)
        else:
            with pytest.raises(ValueError, match="no face recognition"):
                frigate.recognize_face(oid, "Lin", 0.93)
        frigate.end(oid)
        wait_until(
            lambda: any(json.loads(m.payload)["type"] == "end" for m in sub.on("frigate/events")),
            "the end message",
        )
        events = [json.loads(m.payload) for m in sub.on("frigate/events")]
        assert [e["type"] for e in events][:2] == ["new", "update"]
        for e in events:
            assert list(e["after"]) == KEYS[version] and list(e["before"]) == KEYS[version]
        last = events[-1]["after"]
        assert last["current_zones"] == ["porch", "yard"] and last["end_time"] is not None
        assert last["current_attributes"] == [{"label": "face", "box": list(FACE), "score": 0.86}]
        updates = [json.loads(m.payload) for m in sub.on("frigate/tracked_object_update")]
        if version in ("0.16", "0.17"):
            (face,) = updates
            assert list(face) == ["type", "name", "score", "id", "camera", "timestamp"]
            assert (face["type"], face["name"], face["id"]) == ("face", "Lin", oid)
            assert last["sub_label"] == ["Lin", 0.93]
        else:
            assert updates == [] and last["sub_label"] is None
    finally:
        sub.close()
