"""A stand-in Frigate (0.14-0.17) on 127.0.0.1 for the integration tests: its HTTP API as the
versions answer it, and its MQTT messages on a real broker.

HTTP (``version`` picks the answers of blakeblackshear/frigate at v0.14.1, v0.15.2, v0.16.4 or
v0.17.2; request bodies and query parameters are validated with Frigate's own pydantic models,
copied in tests/frigate_models.py):

- ``POST /api/login`` (``frigate/api/auth.py login``): ``{"user", "password"}``; a JWT (HS256,
  claims ``sub``, ``role`` from 0.15, ``exp``, ``iat``) in the ``frigate_token`` cookie, valid
  ``session_length`` s; wrong credentials 401 ``{"message": "Login failed"}`` (0.14: 400).
- ``auth=True`` is the port 8971 of Frigate's nginx (``auth_request /auth``): every other
  ``/api/`` path needs that JWT, as ``Authorization: Bearer`` or the cookie, else nginx's 401
  page; Basic credentials are never accepted; a cookie within ``refresh_time`` of its expiry is
  renewed on the answer (``Set-Cookie``). ``auth=False`` is port 5000: no authentication, admin.
- ``GET /api/version``, ``GET /api/events`` (``camera``, ``label``, ``limit``, ``in_progress``),
  ``GET /api/events/<id>`` (``EventResponse``).
- ``GET /api/events/<id>/snapshot.jpg`` (``frigate/api/media.py event_snapshot``): while the
  object is tracked, its best frame drawn as the query asks (``bbox``, ``crop``, ``height``,
  ``quality``); once it ended, the saved snapshot, drawn as the camera's ``snapshots`` config
  says (``bounding_box`` true by default: the person's and the face's boxes on the picture),
  whatever the query. 404 without a snapshot.
- ``GET /api/events/<id>/snapshot-clean.png`` (0.14-0.16) or ``.webp`` (0.17): the best frame
  undrawn; 404 unless ``snapshots`` are enabled and the object has one.
- ``GET /api/<camera>/latest.jpg`` (``.webp``; 0.15+: also ``.png``, ``.jpeg``): the camera's
  current frame (``height``, ``quality``).
- ``POST /api/events/<id>/sub_label`` (``frigate/api/event.py set_sub_label``): 0.14 Flask
  checks (400/500), 0.15+ the pydantic body (422), 0.16+ ``""`` clears it and only the admin
  role may (403); it always overwrites.

MQTT (``broker_port``): ``<prefix>/events`` ``{"type": "new"|"update"|"end", "before", "after"}``
with the tracked object as each version's ``to_dict`` writes it (``frigate/track/
tracked_object.py``; 0.14: ``frigate/object_processing.py``), and from 0.16
``<prefix>/tracked_object_update`` ``{"type": "face", "name", "score", "id", "camera",
"timestamp"}`` (``frigate/data_processing/real_time/face.py``), the sub label following when the
score reaches ``recognition_threshold`` (0.9).

Time comes from ``now`` (replace it to age the tokens without waiting).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import random
import string
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.utils import formatdate
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import cv2
import numpy as np
import paho.mqtt.client as mqtt
from frigate_models import (
    AppPostLoginBody,
    EventResponse,
    MediaEventsSnapshotQueryParams,
    check_sub_label_0_14,
    latest_params,
    sub_label_body,
)
from paho.mqtt.enums import CallbackAPIVersion
from pydantic import BaseModel, ValidationError

VERSIONS = {"0.14": "0.14.1", "0.15": "0.15.2", "0.16": "0.16.4", "0.17": "0.17.2"}
COOKIE = "frigate_token"
#: auth.refresh_time defaults (frigate/config/auth.py): 43200 s to 0.16, 1800 s from 0.17
REFRESH_TIME = {"0.14": 43200, "0.15": 43200, "0.16": 43200, "0.17": 1800}
RECOGNITION_THRESHOLD = 0.9  # face_recognition.recognition_threshold default
NGINX_401 = (
    b"<html>\r\n<head><title>401 Authorization Required</title></head>\r\n<body>\r\n"
    b"<center><h1>401 Authorization Required</h1></center>\r\n<hr><center>nginx</center>\r\n"
    b"</body>\r\n</html>\r\n"
)
Box = tuple[int, int, int, int]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def encode_jwt(claims: dict[str, Any], secret: bytes) -> str:
    """An HS256 JWT as Frigate's ``create_encoded_jwt`` makes it (joserfc)."""
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    body = _b64(json.dumps(claims, separators=(",", ":")).encode())
    signature = hmac.new(secret, f"{header}.{body}".encode(), hashlib.sha256).digest()
    return f"{header}.{body}.{_b64(signature)}"


def decode_jwt(token: str, secret: bytes) -> dict[str, Any] | None:
    """The claims of a token signed with ``secret``; None otherwise."""
    try:
        header, body, signature = token.split(".")
        expected = hmac.new(secret, f"{header}.{body}".encode(), hashlib.sha256).digest()
        if not hmac.compare_digest(_b64(expected), signature):
            return None
        claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        return claims
    except (ValueError, json.JSONDecodeError):
        return None


@dataclass
class TrackedObject:
    """A tracked object of the stand-in (and its event row once it exists)."""

    id: str
    camera: str
    label: str
    start_time: float
    frame: np.ndarray  # the best frame (BGR): the snapshot
    frame_time: float
    box: Box
    score: float = 0.88
    face: Box | None = None
    face_score: float = 0.86
    zones: list[str] = field(default_factory=list)
    entered: list[str] = field(default_factory=list)
    has_snapshot: bool = True  # a best frame exists (Frigate's thumbnail_data)
    end_time: float | None = None
    sub_label: tuple[str | None, float | None] | None = None
    snapshot_jpg: bytes | None = None  # saved when it ended
    clean: bytes | None = None  # saved when it ended

    @property
    def area(self) -> int:
        x1, y1, x2, y2 = self.box
        return (x2 - x1) * (y2 - y1)


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    status: int = 0


class FrigateStandIn:
    """See the module docstring. ``start()``/``stop()``; objects with ``track``, ``update``,
    ``end``, ``recognize_face``; what clients did in ``requests`` and ``sub_labels``."""

    def __init__(
        self,
        version: str = "0.16",
        *,
        auth: bool = True,
        users: dict[str, tuple[str, str]] | None = None,
        session_length: int = 86400,
        refresh_time: int | None = None,
        snapshots: bool = True,
        broker_port: int | None = None,
        topic_prefix: str = "frigate",
    ) -> None:
        if version not in VERSIONS:
            raise ValueError(f"version must be one of {sorted(VERSIONS)}")
        self.version = version
        self.auth = auth
        self.users = users if users is not None else {"admin": ("frigate-admin-pw", "admin")}
        self.session_length = session_length
        self.refresh_time = REFRESH_TIME[version] if refresh_time is None else refresh_time
        self.snapshots = snapshots
        self.topic_prefix = topic_prefix
        self.secret = random.randbytes(32)
        self.now: Callable[[], float] = time.time
        self.frames: dict[str, np.ndarray] = {}
        self.objects: dict[str, TrackedObject] = {}
        self.requests: list[Recorded] = []
        self.sub_labels: list[tuple[str, dict[str, Any]]] = []
        self.lock = threading.RLock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self._mqtt: mqtt.Client | None = None
        if broker_port is not None:
            self._mqtt = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"frigate-{self.port}")
            self._mqtt.connect("127.0.0.1", broker_port)
            self._mqtt.loop_start()

    # -- life cycle ----------------------------------------------------------------------------

    def start(self) -> None:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._mqtt is not None:
            self._mqtt.disconnect()
            self._mqtt.loop_stop()

    # -- what happens in front of the cameras ---------------------------------------------------

    def track(
        self,
        camera: str,
        frame: np.ndarray,
        box: Box,
        *,
        face: Box | None = None,
        zones: list[str] | None = None,
        label: str = "person",
        has_snapshot: bool = True,
    ) -> str:
        """A new tracked object (``new`` on MQTT); the frame is also the camera's latest."""
        start = round(self.now(), 6)
        suffix = "".join(random.choices(string.ascii_lowercase + string.digits, k=6))
        obj = TrackedObject(
            f"{start}-{suffix}",
            camera,
            label,
            start,
            frame,
            start,
            box,
            face=face,
            zones=list(zones or []),
            entered=list(zones or []),
            has_snapshot=has_snapshot,
        )
        with self.lock:
            self.frames[camera] = frame
            self.objects[obj.id] = obj
        self._publish_event("new", None, obj)
        return obj.id

    def update(
        self,
        object_id: str,
        frame: np.ndarray | None = None,
        *,
        box: Box | None = None,
        face: Box | None = None,
        zones: list[str] | None = None,
        has_snapshot: bool | None = None,
    ) -> None:
        """A better snapshot or other zones (``update`` on MQTT)."""
        with self.lock:
            obj = self.objects[object_id]
            before = self._object_dict(obj)
            if frame is not None:
                obj.frame, obj.frame_time = frame, round(self.now(), 6)
                self.frames[obj.camera] = frame
            obj.box = box or obj.box
            obj.face = face if face is not None else obj.face
            if zones is not None:
                obj.zones = list(zones)
                obj.entered += [z for z in zones if z not in obj.entered]
            if has_snapshot is not None:
                obj.has_snapshot = has_snapshot
        self._publish_event("update", before, obj)

    def end(self, object_id: str) -> None:
        """The object left: its snapshot is saved as configured (``end`` on MQTT)."""
        with self.lock:
            obj = self.objects[object_id]
            before = self._object_dict(obj)
            obj.end_time = round(self.now(), 6)
            if obj.has_snapshot and self.snapshots:
                obj.snapshot_jpg = _encode(self._drawn(obj, bbox=True), ".jpg", 70)
                obj.clean = self._clean_bytes(obj)
        self._publish_event("end", before, obj)

    def recognize_face(self, object_id: str, name: str, score: float) -> None:
        """Frigate 0.16+'s own face recognition: ``tracked_object_update`` and, from the
        recognition threshold on, the sub label."""
        if self.version in ("0.14", "0.15"):
            raise ValueError(f"Frigate {self.version} has no face recognition")
        with self.lock:
            obj = self.objects[object_id]
        payload = {
            "type": "face",
            "name": name,
            "score": score,
            "id": obj.id,
            "camera": obj.camera,
            "timestamp": self.now(),
        }
        self._publish("tracked_object_update", payload)
        if score >= RECOGNITION_THRESHOLD:
            with self.lock:
                before = self._object_dict(obj)
                obj.sub_label = (name, score)
            self._publish_event("update", before, obj)

    # -- the MQTT side --------------------------------------------------------------------------

    def _publish(self, leaf: str, payload: dict[str, Any]) -> None:
        if self._mqtt is not None:
            info = self._mqtt.publish(f"{self.topic_prefix}/{leaf}", json.dumps(payload), qos=1)
            info.wait_for_publish(10)

    def _publish_event(self, kind: str, before: dict[str, Any] | None, obj: TrackedObject) -> None:
        with self.lock:
            after = self._object_dict(obj)
        self._publish("events", {"type": kind, "before": before or after, "after": after})

    def _object_dict(self, obj: TrackedObject) -> dict[str, Any]:
        """``TrackedObject.to_dict()`` of the version."""
        attributes = []
        if obj.face is not None:
            attributes = [{"label": "face", "box": list(obj.face), "score": obj.face_score}]
        snapshot: dict[str, Any] | None = None
        if obj.has_snapshot:
            snapshot = {
                "frame_time": obj.frame_time,
                "box": list(obj.box),
                "area": obj.area,
                "region": list(_region(obj.frame.shape, obj.box)),
                "score": obj.score,
                "attributes": attributes,
            }
            if self.version in ("0.16", "0.17"):
                snapshot |= {
                    "current_estimated_speed": 0,
                    "velocity_angle": 0,
                    "path_data": [],
                    "recognized_license_plate": None,
                    "recognized_license_plate_score": None,
                }
        x1, y1, x2, y2 = obj.box
        event: dict[str, Any] = {
            "id": obj.id,
            "camera": obj.camera,
            "frame_time": obj.frame_time,
            "snapshot": snapshot,
            "label": obj.label,
            "sub_label": list(obj.sub_label) if obj.sub_label else None,
            "top_score": obj.score,
            "false_positive": False,
            "start_time": obj.start_time,
            "end_time": obj.end_time,
            "score": obj.score,
            "box": list(obj.box),
            "area": obj.area,
            "ratio": round((x2 - x1) / max(y2 - y1, 1), 6),
            "region": list(_region(obj.frame.shape, obj.box)),
        }
        if self.version != "0.14":
            event["active"] = True
        event |= {
            "stationary": False,
            "motionless_count": 0,
            "position_changes": 1,
            "current_zones": list(obj.zones),
            "entered_zones": list(obj.entered),
            "has_clip": True,
            "has_snapshot": obj.has_snapshot and self.snapshots,
            "attributes": {"face": obj.face_score} if obj.face is not None else {},
            "current_attributes": attributes,
        }
        if self.version != "0.14":
            event |= {"pending_loitering": False, "max_severity": "alert"}
        if self.version in ("0.16", "0.17"):
            event |= {
                "current_estimated_speed": 0,
                "average_estimated_speed": 0,
                "velocity_angle": 0,
                "path_data": [],
                "recognized_license_plate": None,
            }
        return event

    # -- pictures -------------------------------------------------------------------------------

    def _drawn(
        self, obj: TrackedObject, *, bbox: bool, crop: bool = False, height: int | None = None
    ) -> np.ndarray:
        """``TrackedObject.get_img_bytes``' picture: boxes with labels, crop, height."""
        frame = obj.frame.copy()
        if bbox:
            _draw_box(frame, obj.box, obj.label, f"{int(obj.score * 100)}% {obj.area}")
            if obj.face is not None:
                x1, y1, x2, y2 = obj.face
                _draw_box(frame, obj.face, "face", f"{obj.face_score:.0%} {(x2 - x1) * (y2 - y1)}")
        if crop:
            x1, y1, x2, y2 = _region(frame.shape, obj.box, 300, 1.1)
            frame = frame[y1:y2, x1:x2]
        if height:
            width = int(height * frame.shape[1] / frame.shape[0])
            frame = cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA)
        return frame

    def _clean_bytes(self, obj: TrackedObject) -> bytes:
        if self.version == "0.17":
            return _encode(obj.frame, ".webp", 60)
        return _encode(obj.frame, ".png", None)

    # -- HTTP -------------------------------------------------------------------------------------

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        frigate = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                frigate._serve(self, "GET", b"")

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                frigate._serve(self, "POST", self.rfile.read(length) if length else b"")

        return Handler

    def _serve(self, handler: BaseHTTPRequestHandler, method: str, body: bytes) -> None:
        url = urlsplit(handler.path)
        query = parse_qs(url.query)
        record = Recorded(
            method, url.path, query, {k.lower(): v for k, v in handler.headers.items()}
        )
        with self.lock:
            self.requests.append(record)
        headers: list[tuple[str, str]] = []
        if url.path == "/api/login" and method == "POST":
            status, kind, data = self._login(body, headers)
        else:
            role = self._authorised(handler, headers)
            if role is None:
                status, kind, data = 401, "text/html", NGINX_401
            else:
                status, kind, data = self._route(method, url.path, query, body, role)
        record.status = status
        handler.send_response(status)
        handler.send_header("Content-Type", kind)
        handler.send_header("Content-Length", str(len(data)))
        for name, value in headers:
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(data)

    def _authorised(
        self, handler: BaseHTTPRequestHandler, headers: list[tuple[str, str]]
    ) -> str | None:
        """nginx's ``auth_request /auth``: the caller's role, None when refused."""
        if not self.auth:
            return "admin"
        token, source = None, None
        authorization = handler.headers.get("Authorization", "")
        if authorization.startswith("Bearer "):
            token, source = authorization.replace("Bearer ", ""), "authorization"
        elif (cookie := SimpleCookie(handler.headers.get("Cookie", ""))).get(COOKIE):
            token, source = cookie[COOKIE].value, "cookie"
        claims = decode_jwt(token, self.secret) if token else None
        if not claims or "sub" not in claims or "exp" not in claims:
            return None
        if self.version != "0.14" and "role" not in claims:
            return None
        now = int(self.now())
        if int(claims["exp"]) <= now:
            return None
        role = str(claims.get("role", "admin"))
        if source == "cookie" and int(claims["exp"]) - self.refresh_time <= now:
            headers.append(("Set-Cookie", self._cookie(claims["sub"], role)))
        return role

    def _cookie(self, user: str, role: str) -> str:
        now = int(self.now())
        expiration = now + self.session_length
        claims: dict[str, Any] = {"sub": user, "exp": expiration, "iat": now}
        if self.version != "0.14":
            claims["role"] = role
        token = encode_jwt(claims, self.secret)
        expires = formatdate(expiration, usegmt=True)
        return f"{COOKIE}={token}; expires={expires}; HttpOnly; Path=/; SameSite=lax"

    def _login(self, body: bytes, headers: list[tuple[str, str]]) -> tuple[int, str, bytes]:
        try:
            data = json.loads(body or b"null")
        except ValueError:
            data = None
        if self.version == "0.14":
            if not isinstance(data, dict) or "user" not in data or "password" not in data:
                return 500, "text/html", b"Internal Server Error"
            user, password = str(data["user"]), str(data["password"])
            failed = 400
        else:
            parsed = _validate(AppPostLoginBody, data)
            if isinstance(parsed, tuple):
                return parsed
            assert isinstance(parsed, AppPostLoginBody)
            user, password, failed = parsed.user, parsed.password, 401
        known = self.users.get(user)
        if known is None or not hmac.compare_digest(known[0], password):
            return _json(failed, {"message": "Login failed"})
        headers.append(("Set-Cookie", self._cookie(user, known[1])))
        return (
            200,
            "application/json" if self.version == "0.14" else "text/plain",
            (b"{}" if self.version == "0.14" else b""),
        )

    def _route(
        self, method: str, path: str, query: dict[str, list[str]], body: bytes, role: str
    ) -> tuple[int, str, bytes]:
        parts = path.split("/")[1:]
        if parts[:1] != ["api"]:
            return _json(404, {"detail": "Not Found"})
        rest = parts[1:]
        if method == "GET" and rest == ["version"]:
            return 200, "text/plain", f"{VERSIONS[self.version]}-standin".encode()
        if method == "GET" and rest == ["events"]:
            return self._events(query)
        if len(rest) == 2 and rest[0] == "events" and method == "GET":
            return self._event(rest[1])
        if len(rest) == 3 and rest[0] == "events":
            leaf = rest[2]
            if method == "GET" and leaf == "snapshot.jpg":
                return self._snapshot(rest[1], query)
            clean = "snapshot-clean.webp" if self.version == "0.17" else "snapshot-clean.png"
            if method == "GET" and leaf == clean:
                return self._snapshot_clean(rest[1])
            if method == "POST" and leaf == "sub_label":
                return self._set_sub_label(rest[1], body, role)
        if len(rest) == 2 and method == "GET" and rest[1].startswith("latest."):
            return self._latest(rest[0], rest[1].removeprefix("latest."), query)
        return _json(404, {"detail": "Not Found"})

    def _events(self, query: dict[str, list[str]]) -> tuple[int, str, bytes]:
        camera, label = query.get("camera", ["all"])[0], query.get("label", ["all"])[0]
        limit = int(query.get("limit", ["100"])[0])
        in_progress = query.get("in_progress", ["0"])[0] == "1"
        with self.lock:
            rows = [
                self._event_row(o)
                for o in sorted(self.objects.values(), key=lambda o: -o.start_time)
                if camera in ("all", o.camera)
                and label in ("all", o.label)
                and (not in_progress or o.end_time is None)
            ]
        return _json(200, rows[:limit])

    def _event_row(self, obj: TrackedObject) -> dict[str, Any]:
        data = {
            "type": "object",
            "box": [0.1, 0.1, 0.2, 0.4],
            "region": [0, 0, 0.5, 0.5],
            "score": obj.score,
            "top_score": obj.score,
            "attributes": [],
        }
        if obj.sub_label and obj.sub_label[1] is not None:
            data["sub_label_score"] = obj.sub_label[1]
        row = EventResponse(
            id=obj.id,
            label=obj.label,
            sub_label=obj.sub_label[0] if obj.sub_label else None,
            camera=obj.camera,
            start_time=obj.start_time,
            end_time=obj.end_time,
            false_positive=False,
            zones=obj.entered,
            thumbnail=None,
            has_clip=True,
            has_snapshot=obj.has_snapshot and self.snapshots,
            retain_indefinitely=False,
            plus_id=None,
            model_hash=None,
            detector_type="cpu",
            model_type="ssd",
            data=data,
        )
        return row.model_dump()

    def _event(self, object_id: str) -> tuple[int, str, bytes]:
        with self.lock:
            obj = self.objects.get(object_id)
            if obj is None:
                return _json(404, "Event not found")
            return _json(200, self._event_row(obj))

    def _snapshot(self, object_id: str, query: dict[str, list[str]]) -> tuple[int, str, bytes]:
        params = _validate(MediaEventsSnapshotQueryParams, {k: v[0] for k, v in query.items()})
        if isinstance(params, tuple):
            return params
        assert isinstance(params, MediaEventsSnapshotQueryParams)
        with self.lock:
            obj = self.objects.get(object_id)
            if obj is not None and obj.end_time is not None:
                if obj.snapshot_jpg is None:
                    return _json(404, {"success": False, "message": "Snapshot not available"})
                return 200, "image/jpeg", obj.snapshot_jpg
            if obj is None or not obj.has_snapshot:
                return _json(404, {"success": False, "message": "Live frame not available"})
            picture = self._drawn(
                obj, bbox=bool(params.bbox), crop=bool(params.crop), height=params.height
            )
        return 200, "image/jpeg", _encode(picture, ".jpg", params.quality)

    def _snapshot_clean(self, object_id: str) -> tuple[int, str, bytes]:
        kind = "image/webp" if self.version == "0.17" else "image/png"
        with self.lock:
            obj = self.objects.get(object_id)
            if obj is None:
                return _json(404, {"success": False, "message": "Event not found"})
            if not (self.snapshots and obj.has_snapshot):
                return _json(
                    404,
                    {
                        "success": False,
                        "message": "Snapshots and clean_copy must be enabled in the config",
                    },
                )
            data = obj.clean if obj.end_time is not None else self._clean_bytes(obj)
        if data is None:
            return _json(404, {"success": False, "message": "Clean snapshot not available"})
        return 200, kind, data

    def _latest(
        self, camera: str, extension: str, query: dict[str, list[str]]
    ) -> tuple[int, str, bytes]:
        allowed = ("jpg", "webp") if self.version == "0.14" else ("jpg", "jpeg", "png", "webp")
        if extension not in allowed:
            return _json(404 if self.version == "0.14" else 422, {"detail": "Not Found"})
        params = _validate(latest_params(self.version), {k: v[0] for k, v in query.items()})
        if isinstance(params, tuple):
            return params
        with self.lock:
            frame = self.frames.get(camera)
        if frame is None:
            return _json(404, {"success": False, "message": "Camera not found"})
        height = getattr(params, "height", None) or frame.shape[0]
        width = int(height * frame.shape[1] / frame.shape[0])
        frame = cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA)
        quality = getattr(params, "quality", 70)
        suffix = {"jpeg": ".jpg"}.get(extension, f".{extension}")
        kind = {"jpg": "image/jpeg", "jpeg": "image/jpeg"}.get(extension, f"image/{extension}")
        return 200, kind, _encode(frame, suffix, None if extension == "png" else quality)

    def _set_sub_label(self, object_id: str, body: bytes, role: str) -> tuple[int, str, bytes]:
        try:
            data = json.loads(body or b"null")
        except ValueError:
            data = None
        if self.version in ("0.16", "0.17") and role != "admin":
            detail = f"Role {role} not authorized. Required: admin"
            return _json(403, {"detail": detail})
        if self.version == "0.14":
            refused = check_sub_label_0_14(data)
            if refused is not None:
                return _json(*refused)
            label, score = data["subLabel"], data.get("subLabelScore")
        else:
            parsed = _validate(sub_label_body(self.version), data)
            if isinstance(parsed, tuple):
                return parsed
            label, score = parsed.subLabel, parsed.subLabelScore  # type: ignore[attr-defined]
        with self.lock:
            obj = self.objects.get(object_id)
            if obj is None:
                dot = "." if self.version in ("0.16", "0.17") else ""
                return _json(
                    404, {"success": False, "message": f"Event {object_id} not found{dot}"}
                )
            self.sub_labels.append((object_id, data))
            if label == "" and self.version in ("0.16", "0.17"):
                label, score = None, None
            before = self._object_dict(obj)
            previous = obj.sub_label[1] if obj.sub_label else None
            obj.sub_label = (
                label,
                score if score or self.version in ("0.16", "0.17") else previous,
            )
        if obj.end_time is None:
            self._publish_event("update", before, obj)
        shown = label if label is not None else "None"
        return _json(
            200, {"success": True, "message": f"Event {object_id} sub label set to {shown}"}
        )


@contextmanager
def running(now: Callable[[], float] | None = None) -> Iterator[Callable[..., FrigateStandIn]]:
    """A factory of started stand-ins (their clock ``now`` when given), all stopped at the end."""
    started: list[FrigateStandIn] = []

    def start(version: str = "0.16", **kwargs: Any) -> FrigateStandIn:
        frigate = FrigateStandIn(version, **kwargs)
        if now is not None:
            frigate.now = now
        frigate.start()
        started.append(frigate)
        return frigate

    try:
        yield start
    finally:
        for frigate in started:
            frigate.stop()


def _validate(model: type[BaseModel], data: Any) -> BaseModel | tuple[int, str, bytes]:
    """The model of ``data``, or FastAPI's 422 answer (``{"detail": [...]}``)."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = [
            {
                "type": e["type"],
                "loc": ["body", *e["loc"]],
                "msg": e["msg"],
                "input": e.get("input"),
            }
            for e in exc.errors(include_url=False)
        ]
        return _json(422, {"detail": errors})


def _json(status: int, value: Any) -> tuple[int, str, bytes]:
    return status, "application/json", json.dumps(value, default=str).encode()


def _encode(image: np.ndarray, suffix: str, quality: int | None) -> bytes:
    params: list[int] = []
    if quality is not None and suffix == ".jpg":
        params = [cv2.IMWRITE_JPEG_QUALITY, quality]
    elif quality is not None and suffix == ".webp":
        params = [cv2.IMWRITE_WEBP_QUALITY, quality]
    ok, data = cv2.imencode(suffix, image, params)
    assert ok
    return bytes(data.tobytes())


def _region(shape: tuple[int, ...], box: Box, model_size: int = 320, multiplier: float = 2) -> Box:
    """``frigate/util/image.py calculate_region``."""
    xmin, ymin, xmax, ymax = box
    size = int((max(xmax - xmin, ymax - ymin) * multiplier) // 4 * 4)
    size = max(size, model_size)
    x = int((xmax - xmin) / 2.0 + xmin - size / 2.0)
    x = 0 if x < 0 else min(x, max(0, shape[1] - size))
    y = int((ymax - ymin) / 2.0 + ymin - size / 2.0)
    y = 0 if y < 0 else min(y, max(0, shape[0] - size))
    return (x, y, x + size, y + size)


def _draw_box(frame: np.ndarray, box: Box, label: str, info: str) -> None:
    """``frigate/util/image.py draw_box_with_label``: the box, and a filled label above it."""
    x1, y1, x2, y2 = box
    color = (255, 0, 0)
    cv2.rectangle(frame, (x1, y1), (x2, y2), color, 2)
    text = f"{label}: {info}"
    (width, height), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.6, 2)
    top = max(y1 - height - 8, 0)
    cv2.rectangle(frame, (x1, top), (x1 + width + 4, top + height + 8), color, cv2.FILLED)
    cv2.putText(
        frame, text, (x1 + 2, top + height + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 2
    )
