"""The Frigate bridge against a stand-in Frigate: an HTTP server on 127.0.0.1 serving event
snapshots made from real media and recording sub label POSTs, plus a real mosquitto broker that
carries Frigate-shaped event messages in and streamrec's results out."""

from __future__ import annotations

import json
import logging
import shutil
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import av
import cv2
import paho.mqtt.client as mqtt
import pytest
import test_daemon
import test_mqtt
import yaml
from cli_helpers import LIN, SMALL, assert_one_clear_line, read_events, streamrec
from paho.mqtt.enums import CallbackAPIVersion
from test_daemon import Daemon, free_port, wait_for
from test_mqtt import Broker, Subscriber, wait_until

from streamrec.analyzer import FaceAnalyzer
from streamrec.config import Config, load_config
from streamrec.gallery.session import GallerySession
from streamrec.recognition import Recognition
from streamrec.scales import frigate_face_score
from streamrec.service.frigate import FIRST_TRACK_ID, FrigateBridge
from streamrec.sinks import FanoutSink, event_sinks

pytestmark = test_mqtt.pytestmark  # skipped without mosquitto

# fixtures shared with the MQTT and daemon tests: a mosquitto process, subscribers that record
# what the broker carries, `streamrec serve` subprocesses and a gallery that knows Lin
broker = test_mqtt.broker
subscribers = test_mqtt.subscribers
daemon = test_daemon.daemon
lin_gallery = test_daemon.lin_gallery

TOKEN = "frigate-api-token-0123"
READING = "Frigate bridge frigate: reading frigate/events"
START = 1_700_000_000.25  # Frigate's event ids start with the object's start time


class StandInFrigate:
    """Frigate's event API: ``GET /api/events/<id>/snapshot.jpg`` and ``POST .../sub_label``.

    Snapshots are served for the ids in ``snapshots`` (404 with Frigate's JSON otherwise);
    every request needs ``Authorization: Bearer TOKEN``. ``stop()``/``start()`` take it away
    and bring it back on the same port.
    """

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.snapshots: dict[str, bytes] = {}
        self.gets: list[tuple[str, dict[str, list[str]]]] = []
        self.sub_labels: list[tuple[str, dict[str, Any]]] = []
        self.lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    def start(self) -> None:
        frigate = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def _answer(self, status: int, body: bytes, kind: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _event(self, leaf: str) -> str | None:
                parts = urlsplit(self.path).path.split("/")
                ok = len(parts) == 5 and parts[:3] == ["", "api", "events"] and parts[4] == leaf
                return parts[3] if ok else None

            def _authorised(self) -> bool:
                if self.headers.get("Authorization") == f"Bearer {TOKEN}":
                    return True
                self._answer(401, b'{"success": false, "message": "Unauthorized"}')
                return False

            def do_GET(self) -> None:
                # the live snapshot, or after the end the clean copy (0.14-0.16)
                event_id = self._event("snapshot.jpg") or self._event("snapshot-clean.png")
                if event_id is None or not self._authorised():
                    if event_id is None:
                        self._answer(404, b'{"detail": "Not Found"}')
                    return
                with frigate.lock:
                    frigate.gets.append((event_id, parse_qs(urlsplit(self.path).query)))
                    jpeg = frigate.snapshots.get(event_id)
                if jpeg is None:
                    self._answer(404, b'{"success": false, "message": "Snapshot not available"}')
                else:
                    self._answer(200, jpeg, "image/jpeg")

            def do_POST(self) -> None:
                event_id = self._event("sub_label")
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                if event_id is None or not self._authorised():
                    if event_id is None:
                        self._answer(404, b'{"detail": "Not Found"}')
                    return
                with frigate.lock:
                    known = event_id in frigate.snapshots
                    if known:
                        frigate.sub_labels.append((event_id, body))
                if known:
                    message = f"Event {event_id} sub label set to {body.get('subLabel')}"
                    self._answer(200, json.dumps({"success": True, "message": message}).encode())
                else:
                    message = f"Event {event_id} not found"
                    self._answer(404, json.dumps({"success": False, "message": message}).encode())

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def snapshot_requests(self, event_id: str) -> int:
        with self.lock:
            return sum(1 for e, _ in self.gets if e == event_id)


@pytest.fixture
def frigate() -> Iterator[StandInFrigate]:
    f = StandInFrigate()
    f.start()
    try:
        yield f
    finally:
        f.stop()


def jpeg(image: Any) -> bytes:
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return bytes(buf.tobytes())


@pytest.fixture(scope="module")
def stills(media_dir: Path) -> dict[str, bytes]:
    """Frigate-like full-frame snapshots from real media: frame 30 of the Hamilton clip (a man
    who is not in the gallery), frame 140 (Lin-Manuel Miranda), and a landscape without a face."""
    frames = {}
    with av.open(str(media_dir / "face_recognition/short_hamilton_clip.mp4")) as clip:
        for i, frame in enumerate(clip.decode(video=0)):
            if i in (30, 140):
                frames[i] = jpeg(frame.to_ndarray(format="bgr24"))
            if i >= 140:
                break
    view = (media_dir / "insightface/view.jpg").read_bytes()
    return {"stranger": frames[30], "lin": frames[140], "no_face": view}


def frigate_event(
    kind: str,
    event_id: str,
    snapshot_time: float | None,
    *,
    camera: str = "front_door",
    label: str = "person",
    false_positive: bool = False,
    sub_label: list[Any] | str | None = None,
) -> bytes:
    """A message of Frigate's ``frigate/events`` topic, shaped as its documentation shows."""
    after = {
        "id": event_id,
        "camera": camera,
        "frame_time": (snapshot_time or START) + 0.5,
        "snapshot": None
        if snapshot_time is None
        else {
            "frame_time": snapshot_time,
            "box": [415, 489, 528, 700],
            "area": 12728,
            "region": [260, 446, 660, 846],
            "score": 0.77546,
            "attributes": [],
        },
        "label": label,
        "sub_label": sub_label,
        "top_score": 0.958984375,
        "false_positive": false_positive,
        "start_time": START,
        "end_time": (snapshot_time or START) + 1 if kind == "end" else None,
        "score": 0.7890625,
        "box": [424, 500, 536, 712],
        "area": 23744,
        "ratio": 2.113207,
        "region": [264, 450, 667, 853],
        "stationary": False,
        "motionless_count": 0,
        "position_changes": 2,
        "current_zones": ["driveway"],
        "entered_zones": ["yard", "driveway"],
        "has_clip": True,
        "has_snapshot": snapshot_time is not None,
        "attributes": {"face": 0.86},
        "current_attributes": [],
    }
    before = {**after, "snapshot": None, "has_snapshot": False}
    return json.dumps({"type": kind, "before": before, "after": after}).encode()


class Frigate:
    """Publishes Frigate's event messages on the broker, as Frigate does."""

    def __init__(self, port: int) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="frigate-stand-in")
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def publish(self, payload: bytes, topic: str = "frigate/events") -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def publisher(broker: Broker) -> Iterator[Frigate]:
    f = Frigate(broker.port)
    try:
        yield f
    finally:
        f.close()


def bridge_config(
    frigate: StandInFrigate, broker: Broker, gallery: Path, events: Path, **frigate_keys: Any
) -> Config:
    camera = {
        "name": "frigate",
        "frigate": {
            "url": frigate.url,
            "headers": {"Authorization": f"Bearer {TOKEN}"},
            "sub_label": True,
            "retries": 1,
            "timeout": 5,
            **frigate_keys,
        },
    }
    return load_config(
        None,
        {
            **dict(item.split("=", 1) for item in SMALL[1::2]),  # the small models
            "models.download": False,
            "gallery": str(gallery),
            "cameras": [camera],
            "events.jsonl": str(events),
            "events.mqtt": {"host": "127.0.0.1", "port": broker.port},
        },
    )


class Running:
    """A started bridge with its event sinks; ``close()`` stops both."""

    def __init__(self, cfg: Config, analyzer: FaceAnalyzer) -> None:
        self.gallery = GallerySession(cfg, analyzer.recognizer)
        self.sinks = event_sinks(cfg)
        self.recognition = Recognition(analyzer, self.gallery.gallery)
        self.bridge = FrigateBridge.from_config(
            cfg, cfg.cameras[0], self.recognition, FanoutSink(self.sinks)
        )
        self.bridge.start()

    def close(self) -> None:
        self.bridge.close()
        for sink in self.sinks:
            sink.close()
        self.gallery.close()


@pytest.fixture
def running(analyzer: FaceAnalyzer) -> Iterator[Callable[[Config], Running]]:
    started: list[Running] = []

    def start(cfg: Config) -> Running:
        started.append(Running(cfg, analyzer))
        return started[-1]

    yield start
    for r in started:
        r.close()


def jsonl(path: Path) -> list[dict[str, Any]]:
    return read_events(path) if path.exists() else []


def of_event(events: list[dict[str, Any]], event_id: str, kind: str) -> list[dict[str, Any]]:
    return [e for e in events if e.get("frigate_event") == event_id and e["event"] == kind]


def test_lin_is_recognised_from_a_frigate_snapshot_and_published(
    frigate: StandInFrigate,
    broker: Broker,
    publisher: Frigate,
    subscribers: list[Subscriber],
    stills: dict[str, bytes],
    lin_gallery: Path,
    running: Callable[[Config], Running],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="streamrec")
    """new (a stranger's face) -> update (a better snapshot: Lin) -> update after our sub label
    (the same snapshot) -> end: unknown, identified, track_end; published on the real broker and
    in the JSONL file; the sub label POSTed with his name and score; MQTT presence follows."""
    events = tmp_path / "events.jsonl"
    sub = Subscriber(broker.port, "results", "streamrec/#", clean=True)
    subscribers.append(sub)
    bridge = running(bridge_config(frigate, broker, lin_gallery, events)).bridge
    wait_until(lambda: READING in caplog.text, "the subscription")
    event_id = f"{START}-mxklsc"
    frigate.snapshots[event_id] = stills["stranger"]

    publisher.publish(frigate_event("new", event_id, START + 1))
    wait_until(lambda: of_event(jsonl(events), event_id, "unknown"), "the unknown event", 120)
    assert frigate.sub_labels == []

    frigate.snapshots[event_id] = stills["lin"]  # Frigate found a better snapshot
    publisher.publish(frigate_event("update", event_id, START + 3))
    wait_until(lambda: of_event(jsonl(events), event_id, "identified"), "identification", 120)
    wait_until(lambda: frigate.sub_labels, "the sub label POST")
    [identified] = of_event(jsonl(events), event_id, "identified")
    assert identified["name"] == LIN and identified["score"] >= bridge._threshold
    assert identified["camera"] == "front_door" and identified["source"] == "frigate"
    assert identified["track_id"] >= FIRST_TRACK_ID and identified["frame"] == 1
    assert identified["captured"] == START + 3 and identified["time"] == 3.0
    assert identified["frigate_label"] == "person" and identified["zones"] == ["driveway"]
    assert len(identified["box"]) == 4
    [(posted_id, body)] = frigate.sub_labels
    assert posted_id == event_id
    score = frigate_face_score(identified["score"], bridge._threshold)  # Frigate's scale
    assert body == {"subLabel": LIN, "subLabelScore": score}

    # Frigate announces the sub label with another update of the same snapshot: not re-checked
    publisher.publish(frigate_event("update", event_id, START + 3, sub_label=[LIN, 0.61]))
    publisher.publish(frigate_event("end", event_id, START + 3, sub_label=[LIN, 0.61]))
    wait_until(lambda: of_event(jsonl(events), event_id, "track_end"), "track_end", 60)
    [end] = of_event(jsonl(events), event_id, "track_end")
    assert end["name"] == LIN and end["snapshots"] == 2 and "reason" not in end
    assert frigate.snapshot_requests(event_id) == 2
    assert all(q == {"bbox": ["0"], "timestamp": ["0"], "crop": ["0"]} for _, q in frigate.gets)
    assert [e["event"] for e in jsonl(events)] == ["unknown", "identified", "track_end"]
    assert bridge.stats.identified == 1 and bridge.stats.sub_labels == 1

    # the same events on the real broker, and the person's presence on that camera
    wait_until(lambda: len(sub.on("streamrec/front_door/events")) == 3, "events on MQTT")
    published = [json.loads(m.payload) for m in sub.on("streamrec/front_door/events")]
    assert published == jsonl(events)
    wait_until(lambda: sub.last("streamrec/people/lin_manuel_miranda") is not None, "presence")
    person = json.loads(sub.last("streamrec/people/lin_manuel_miranda") or "{}")
    assert person["presence"] == "front_door" and person["name"] == LIN
    assert TOKEN not in caplog.text and LIN not in caplog.text


def test_an_erased_person_leaves_the_objects_the_bridge_follows(
    frigate: StandInFrigate,
    broker: Broker,
    publisher: Frigate,
    stills: dict[str, bytes],
    lin_gallery: Path,
    running: Callable[[Config], Running],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A Frigate object named before its person was erased ended with a track_end naming
    them (issue 21, item 5): the daemon's Recognition service tells the bridge at once."""
    caplog.set_level(logging.INFO, logger="streamrec")
    events, gallery = tmp_path / "events.jsonl", tmp_path / "people.db"
    shutil.copy(lin_gallery, gallery)  # the module's gallery stays as it is
    started = running(bridge_config(frigate, broker, gallery, events))
    wait_until(lambda: READING in caplog.text, "the subscription")
    event_id = f"{START}-erased"
    frigate.snapshots[event_id] = stills["lin"]
    publisher.publish(frigate_event("new", event_id, START + 1))
    wait_until(lambda: of_event(jsonl(events), event_id, "identified"), "identification", 120)
    assert started.gallery.gallery is not None
    started.gallery.gallery.remove(LIN)  # erased by another process ...
    started.recognition.refresh()  # ... and the daemon took it in (its pipeline's check)
    publisher.publish(frigate_event("end", event_id, START + 2))
    wait_until(lambda: of_event(jsonl(events), event_id, "track_end"), "track_end", 60)
    [end] = of_event(jsonl(events), event_id, "track_end")
    assert end["name"] is None and end["score"] is None


def test_what_is_not_checked_is_skipped_and_counted(
    frigate: StandInFrigate,
    broker: Broker,
    publisher: Frigate,
    stills: dict[str, bytes],
    lin_gallery: Path,
    running: Callable[[Config], Running],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="streamrec")
    """A false positive, a car, a camera not followed, garbage on the topic, an id that would
    leave the API path, two events without a snapshot (404) and a snapshot without a face: no
    crash, each counted, problems logged once; only the face-less snapshot gives an event."""
    events = tmp_path / "events.jsonl"
    cfg = bridge_config(frigate, broker, lin_gallery, events, cameras=["front_door"])
    bridge = running(cfg).bridge
    wait_until(lambda: READING in caplog.text, "the subscription")
    for event_id in ("1.5-fp", "2.5-car", "3.5-other"):
        frigate.snapshots[event_id] = stills["lin"]
    frigate.snapshots["4.5-noface"] = stills["no_face"]
    publisher.publish(frigate_event("new", "1.5-fp", START + 1, false_positive=True))
    publisher.publish(frigate_event("new", "2.5-car", START + 1, label="car"))
    publisher.publish(frigate_event("new", "3.5-other", START + 1, camera="garage"))
    publisher.publish(b"not json {")
    publisher.publish(frigate_event("new", "../../api/config", START + 1))
    publisher.publish(frigate_event("new", "5.5-gone", START + 1))  # 404
    publisher.publish(frigate_event("new", "8.5-gone", START + 1))  # 404 again
    publisher.publish(frigate_event("new", "4.5-noface", START + 1))
    publisher.publish(frigate_event("end", "4.5-noface", START + 1))
    publisher.publish(frigate_event("end", "5.5-gone", START + 1))  # the same: not fetched again

    wait_until(lambda: of_event(jsonl(events), "4.5-noface", "track_end"), "track_end", 60)
    wait_until(lambda: bridge.stats.messages == 10, "every message")
    wait_until(lambda: bridge.stats.missing == 2, "both missing snapshots")
    [end] = jsonl(events)  # nothing for the skipped ones, nor for the one without a snapshot
    assert end["event"] == "track_end" and end["frigate_event"] == "4.5-noface"
    assert end["name"] is None and end["faces"] == 0 and end["snapshots"] == 1
    stats = bridge.stats
    assert (stats.ignored, stats.invalid, stats.snapshots, stats.failures) == (3, 2, 1, 0)
    assert sorted(e for e, _ in frigate.gets) == ["4.5-noface", "5.5-gone", "8.5-gone"]
    assert frigate.sub_labels == []
    assert caplog.text.count("not a Frigate event") == 1
    assert caplog.text.count("no snapshot") == 1


def test_frigate_down_is_logged_once_and_recovered_from(
    frigate: StandInFrigate,
    broker: Broker,
    publisher: Frigate,
    stills: dict[str, bytes],
    lin_gallery: Path,
    running: Callable[[Config], Running],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="streamrec")
    events = tmp_path / "events.jsonl"
    frigate.stop()
    cfg = bridge_config(frigate, broker, lin_gallery, events)
    bridge = running(cfg).bridge
    wait_until(lambda: READING in caplog.text, "the subscription")
    frigate.snapshots["6.5-aaa"] = frigate.snapshots["7.5-bbb"] = stills["lin"]
    publisher.publish(frigate_event("new", "6.5-aaa", START + 1))
    publisher.publish(frigate_event("new", "7.5-bbb", START + 1))
    wait_until(lambda: bridge.stats.failures == 2, "both requests given up")
    assert caplog.text.count("cannot be reached") == 1
    assert jsonl(events) == []

    frigate.start()  # back: a better snapshot of the second person is checked
    publisher.publish(frigate_event("update", "7.5-bbb", START + 2))
    wait_until(lambda: of_event(jsonl(events), "7.5-bbb", "identified"), "identification", 120)
    assert "answers again" in caplog.text
    assert TOKEN not in caplog.text and "viewer" not in caplog.text


def test_the_queue_is_bounded(
    frigate: StandInFrigate,
    broker: Broker,
    lin_gallery: Path,
    analyzer: FaceAnalyzer,
    tmp_path: Path,
) -> None:
    """Objects wait in a bounded queue (the oldest dropped, counted); a newer message of a
    queued object takes its place instead of queueing twice."""
    cfg = bridge_config(frigate, broker, lin_gallery, tmp_path / "e.jsonl", queue_size=2)
    with GallerySession(cfg, analyzer.recognizer) as gallery:
        recognition = Recognition(analyzer, gallery.gallery)
        bridge = FrigateBridge.from_config(cfg, cfg.cameras[0], recognition, FanoutSink([]))
        for i in range(5):  # not started: nothing takes them
            bridge.offer(frigate_event("new", f"{i}.5-q", START + 1))
        bridge.offer(frigate_event("update", "4.5-q", START + 2))
        assert bridge.stats.dropped == 3 and list(bridge._pending) == ["3.5-q", "4.5-q"]
        assert bridge._pending["4.5-q"].type == "update"
        bridge.close()


def test_serve_with_a_frigate_camera(
    frigate: StandInFrigate,
    broker: Broker,
    publisher: Frigate,
    subscribers: list[Subscriber],
    stills: dict[str, bytes],
    lin_gallery: Path,
    daemon: Callable[[dict[str, Any]], Daemon],
    tmp_path: Path,
) -> None:
    """``streamrec serve`` with only a Frigate camera (its broker: the one of events.mqtt):
    Lin recognised, published, written back to Frigate, in /api/recent; SIGTERM ends the
    object it still follows and exits 0."""
    sub = Subscriber(broker.port, "serve-results", "streamrec/#", clean=True)
    subscribers.append(sub)
    d = daemon(
        {
            "gallery": str(lin_gallery),
            "cameras": [
                {
                    "name": "frigate",
                    "frigate": {
                        "url": frigate.url,
                        "headers": {"Authorization": f"Bearer {TOKEN}"},
                        "sub_label": True,
                    },
                }
            ],
            "events": {
                "jsonl": str(tmp_path / "events.jsonl"),
                "mqtt": {"host": "127.0.0.1", "port": broker.port},
            },
        }
    )
    wait_for("the subscription", lambda: READING in d.log(), 120, d)
    event_id = f"{START}-serve1"
    frigate.snapshots[event_id] = stills["lin"]
    publisher.publish(frigate_event("new", event_id, START + 1))
    wait_for("identified", lambda: of_event(d.events(), event_id, "identified"), 60, d)
    [identified] = of_event(d.events(), event_id, "identified")
    assert identified["name"] == LIN and identified["camera"] == "front_door"
    wait_for("the sub label", lambda: frigate.sub_labels, 30, d)
    assert frigate.sub_labels[0][1]["subLabel"] == LIN
    wait_until(lambda: sub.on("streamrec/front_door/events"), "the event on MQTT")
    assert json.loads(sub.on("streamrec/front_door/events")[0].payload)["name"] == LIN
    _, recent = d.get("/api/recent")
    assert [(r["camera"], r["name"]) for r in json.loads(recent)] == [("front_door", LIN)]

    code, seconds = d.terminate()
    assert code == 0, d.log()[-3000:]
    assert seconds < 5, f"took {seconds:.1f} s to stop"
    [end] = of_event(d.events(), event_id, "track_end")
    assert end["name"] == LIN and end["reason"] == "stopped"
    assert "Traceback" not in d.log() and TOKEN not in d.log()


def test_a_frigate_camera_needs_a_broker(models_dir: Path, tmp_path: Path) -> None:
    config = tmp_path / "frigate.yaml"
    config.write_text(
        yaml.safe_dump({"cameras": [{"name": "nvr", "frigate": {"url": "http://frigate:5000"}}]})
    )
    proc = streamrec("serve", "--config", str(config), *SMALL, check=False)
    assert_one_clear_line(proc, str(config), "nvr", "frigate.mqtt.host")
    assert proc.returncode == 2
