"""Erase and purge leave nothing (issue 21, items 3-6 and the damaged event file): every label
a person had is erased, purges and evictions delete crop files, buffered events of an erased
person are dropped, a running pipeline forgets them before ``erase`` returns, and the command
line clears only that person's retained MQTT topics."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
import pytest
import yaml
from cli_helpers import read_events, streamrec
from fakes import RED, Face, FakeModels, FakeSource
from paho.mqtt.enums import CallbackAPIVersion
from test_mqtt import MOSQUITTO, Broker, free_port, retained
from test_webhook import Endpoint, wait_until

from streamrec import load_config
from streamrec.errors import StreamrecError
from streamrec.gallery.session import GallerySession
from streamrec.gallery.store import Gallery, GalleryPolicy, Recognizer
from streamrec.gallery.unknowns import Sighting
from streamrec.pipeline import Camera, build_pipeline
from streamrec.privacy import erase
from streamrec.recognition import Recognition
from streamrec.records import Event
from streamrec.sinks import FanoutSink, JsonlEventSink, MqttEventSink, SinkErasure, WebhookEventSink

FAKE = Recognizer("fake.onnx", "f" * 64, 8)
WAIT = 30.0
needs_broker = pytest.mark.skipif(
    not Path(MOSQUITTO).exists(), reason="mosquitto (Debian package) is not installed"
)


def unit(angle: float, dim: int = 8) -> np.ndarray:
    v = np.zeros((1, dim), np.float32)
    v[0, 0], v[0, 1] = np.cos(np.radians(angle)), np.sin(np.radians(angle))
    return v


def crop(shade: int) -> np.ndarray:
    return np.full((112, 112, 3), shade, np.uint8)


def line(**fields: Any) -> str:
    return json.dumps({"event": "identified", "camera": "door", **fields}) + "\n"


def write_config(path: Path, **sections: Any) -> Path:
    path.write_text(yaml.safe_dump(sections))
    return path


# -- item 3: every label the person ever had -------------------------------------------------------


def test_erase_follows_every_label_the_person_had(tmp_path: Path) -> None:
    """Name unknown-3 "Jane Roe", erase "Jane Roe": crops/unknown-3 kept its JPEGs and the
    events carrying "unknown-3" stayed. Now merges, promotions and renames are all followed."""
    crops, events, gallery_path = tmp_path / "crops", tmp_path / "events.jsonl", tmp_path / "g.db"
    policy = GalleryPolicy(max_crops=3, crops_dir=crops)
    with Gallery(gallery_path, FAKE, policy) as gallery:
        gallery.add_unknown("unknown-3", unit(0), [crop(10)], [0.5])
        gallery.add_unknown("unknown-5", unit(5), [crop(20)], [0.6])
        gallery.add_unknown("unknown-8", unit(180), [crop(30)], [0.6])  # somebody else
        gallery.merge("unknown-5", "unknown-3")
        gallery.promote("unknown-3", "Jane Roe")
        gallery.rename("Jane Roe", "Jane R. Roe")
        gallery.add("Janet", unit(3))
        gallery.merge("Janet", "Jane R. Roe")  # one person enrolled twice
        gallery.add("Other", unit(90))
        assert gallery.labels("Jane R. Roe") == [
            "Jane R. Roe", "unknown-5", "unknown-3", "Jane Roe", "Janet"
        ]  # fmt: skip
    assert sorted(p.name for p in crops.iterdir()) == ["3", "8"]
    hers = ["unknown-3", "unknown-5", "Jane Roe", "Janet", "Jane R. Roe"]
    events.write_text(
        "".join(line(label=x) if x.startswith("unknown") else line(name=x) for x in hers)
        + line(name="Other")
        + line(label="unknown-8")
        + json.dumps({"event": "track_end", "name": None, "unknown": "unknown-3"})
        + "\n"
    )
    cfg = write_config(
        tmp_path / "cfg.yaml",
        gallery=str(gallery_path),
        unknowns={"crops_dir": str(crops)},
        events={"jsonl": str(events)},
    )
    out = streamrec("erase", "Jane R. Roe", "--config", str(cfg)).stdout
    assert "removed 6 event(s)" in out and "also as unknown-5, unknown-3, Jane Roe, Janet" in out
    assert [e.get("name") or e.get("label") for e in read_events(events)] == ["Other", "unknown-8"]
    assert sorted(p.name for p in crops.iterdir()) == ["8"]
    with Gallery(gallery_path, FAKE) as gallery:
        assert [p.name for p in gallery.people()] == ["Other"]
        assert gallery.tombstoned("unknown-3") and gallery.tombstoned("unknown-5")


def test_a_name_someone_else_holds_now_is_not_erased_with_them(tmp_path: Path) -> None:
    with Gallery(tmp_path / "g.db", FAKE) as gallery:
        gallery.add("Jon", unit(0))
        gallery.rename("Jon", "John")
        gallery.add("Jon", unit(90))  # another Jon, enrolled later
        removed = gallery.remove("John")
        assert removed.labels == ("John",)
        assert [p.name for p in gallery.people()] == ["Jon"]


# -- item 4: purges and evictions delete the crop files; max_crops holds across restarts ---------


def sighting(label: str, quality: float, angle: float = 0.0) -> Sighting:
    return Sighting(label, unit(angle)[0], crop(int(quality * 200)), quality, "door")


def session(tmp_path: Path, gallery: bool = True, **unknowns: Any) -> GallerySession:
    settings = {"crops_dir": str(tmp_path / "crops"), **unknowns}
    overrides = {f"unknowns.{k}": v for k, v in settings.items()}
    cfg = load_config(None, {"gallery": str(tmp_path / "g.db") if gallery else None, **overrides})
    return GallerySession(cfg, FAKE if gallery else None)


def feed(s: GallerySession, sightings: list[Sighting]) -> None:
    book = s.book if s.book is not None else s.unknown_book(0.5)
    assert book is not None and book.on_sighting is not None
    for item in sightings:
        book.on_sighting(item)


def files(tmp_path: Path) -> dict[str, int]:
    crops = tmp_path / "crops"
    if not crops.exists():
        return {}
    return {p.name: len(list(p.iterdir())) for p in sorted(crops.iterdir())}


@pytest.mark.parametrize("with_gallery", [True, False])
def test_max_crops_holds_across_restarts(
    tmp_path: Path, with_gallery: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """9 files for one identity with max_crops 5 after restarts: the count held per run only."""
    if with_gallery:
        Gallery(tmp_path / "g.db", FAKE).close()
    for run in range(3):
        monkeypatch.setattr(os, "getpid", lambda run=run: 4000 + run)  # a new process each run
        with session(tmp_path, with_gallery, max_crops=3) as s:
            feed(s, [sighting("unknown-1", 0.1 + 0.1 * run + 0.01 * i) for i in range(3)])
    assert files(tmp_path) == {"1": 3}
    best = sorted(p.name for p in (tmp_path / "crops" / "1").iterdir())
    assert [name[:7] for name in best] == ["q0.3000", "q0.3100", "q0.3200"]


def test_purge_retention_and_eviction_delete_the_crop_files(tmp_path: Path) -> None:
    """87 crop files stayed after purging 11 unknowns: every purge and eviction deletes them."""
    gallery_path = tmp_path / "g.db"
    Gallery(gallery_path, FAKE).close()
    with session(tmp_path) as s:
        feed(s, [sighting(f"unknown-{n}", 0.5, 20 * n) for n in range(1, 12)])
    assert len(files(tmp_path)) == 11
    with Gallery(gallery_path, FAKE) as gallery:
        gallery.db.execute(
            "UPDATE people SET last_seen = ? WHERE name IN ('unknown-1', 'unknown-2', "
            "'unknown-3', 'unknown-4')",
            (time.time() - 10 * 86400,),
        )
        gallery.db.commit()
    cfg = write_config(
        tmp_path / "cfg.yaml",
        gallery=str(gallery_path),
        unknowns={"crops_dir": str(tmp_path / "crops")},
    )
    out = streamrec("unknowns", "purge", "--days", "5", "--config", str(cfg)).stdout
    assert "purged 4 unconfirmed people" in out
    assert sorted(files(tmp_path), key=int) == [str(n) for n in range(5, 12)]

    with Gallery(gallery_path, FAKE) as gallery:  # start-up retention
        gallery.db.execute(
            "UPDATE people SET last_seen = ? WHERE name IN ('unknown-5', 'unknown-6')",
            (time.time() - 40 * 86400,),
        )
        gallery.db.commit()
    with session(tmp_path, retention_days=30, max_identities=3) as s:
        s.unknown_book(0.5)  # a run starts: the retention applies
        assert sorted(files(tmp_path), key=int) == [str(n) for n in range(7, 12)]
        feed(s, [sighting("unknown-12", 0.5, 300)])  # eviction beyond max_identities
    assert len(files(tmp_path)) == 3 and "12" in files(tmp_path)
    with Gallery(gallery_path, FAKE) as gallery:
        assert len(gallery.unknowns()) == 3


def test_without_a_gallery_retention_and_eviction_delete_the_crop_files(tmp_path: Path) -> None:
    with session(tmp_path, gallery=False, max_identities=4) as s:
        feed(s, [sighting(f"unknown-{n}", 0.5, 20 * n) for n in range(1, 8)])
    assert len(files(tmp_path)) == 4
    old = time.time() - 40 * 86400
    for folder in list((tmp_path / "crops").iterdir())[:2]:
        os.utime(folder, (old, old))
    with session(tmp_path, gallery=False, retention_days=30) as s:
        assert s.unknown_book(0.5) is not None
        assert len(files(tmp_path)) == 2


# -- item 5: buffers drop the erased person's events; the pipeline forgets at once ----------------


def event(seq: int, **fields: Any) -> Event:
    fields = {"seq": seq, **fields}
    return Event("identified", "cam", seq, seq, seq / 25.0, camera="cam1", fields=fields)


def test_the_webhook_queue_drops_an_erased_persons_events() -> None:
    """44 queued events of an erased person were POSTed once the endpoint came back."""
    server = Endpoint()
    try:
        sink = WebhookEventSink(server.url, backoff=0.01, retries=50)
        server.gate.clear()
        sink.write(event(0, name="Other"))  # in flight, held by the endpoint
        assert server.waiting.wait(WAIT)
        for i in range(1, 45):
            who = {"name": "Test Person"} if i % 2 else {"label": "unknown-3"}
            sink.write(event(i, **who))
        sink.write(event(45, name="Other"))
        fanout = FanoutSink([sink])
        fanout.forget("Test Person")
        fanout.forget("unknown-3")
        server.gate.set()
        wait_until(lambda: sink.pending == 0, "the queue to drain")
        sink.close(timeout=WAIT)
        assert server.seqs() == [0, 45]
    finally:
        server.close()


def test_the_mqtt_buffer_drops_every_event_naming_an_erased_label() -> None:
    sink = MqttEventSink("127.0.0.1", free_port(), presence_timeout=60)  # no broker there
    try:
        sink.write(event(1, label="unknown-3"))
        ended = {"unknown": "unknown-3", "name": None}
        sink.write(Event("track_end", "cam", 2, 2, 0.1, camera="cam1", fields=ended))
        sink.write(event(3, name="Jane Roe"))
        sink.write(event(4, name="Other"))
        sink.forget("unknown-3")
        sink.forget("Jane Roe")
        assert sink.pending == 1
    finally:
        sink.close(timeout=1)


class PacedSource(FakeSource):
    """A camera that never ends on its own: a frame every 40 ms."""

    def _next_item(self):  # type: ignore[no-untyped-def]
        time.sleep(0.04)
        return super()._next_item()


def test_a_running_pipeline_forgets_an_erased_person_before_erase_returns(tmp_path: Path) -> None:
    """After ``streamrec erase "Test Person"`` reported its events removed, a running serve
    wrote 5 more track_end lines naming the person (issue 20, item 2): erase now returns only
    once every running pipeline of the gallery has taken it in, so nothing written after it
    names them, even when the pipeline stops at once (its tracks end)."""
    gallery_path, events = tmp_path / "g.db", tmp_path / "events.jsonl"
    recognizer = Recognizer("fake.onnx", "f" * 64, 3)
    with Gallery(gallery_path, recognizer) as gallery:
        gallery.add("Test Person", np.array([[0.0, 0.0, 1.0]], np.float32))  # red faces
    cfg = load_config(None, {"gallery": str(gallery_path), "events.jsonl": str(events)})
    source = PacedSource("door", [Face(RED, 40, 60)], 10**6, live=True)
    camera = Camera("door", source, interval=2)
    with GallerySession(cfg, recognizer) as gallery, FanoutSink([JsonlEventSink(events)]) as sink:
        recognition = Recognition(FakeModels(), gallery.gallery)
        pipeline = build_pipeline(cfg, [camera], sink, recognition, gallery, [SinkErasure(sink)])
        runner = threading.Thread(target=pipeline.run)
        runner.start()
        try:
            wait_until(lambda: events.exists() and "Test Person" in events.read_text(), "named")
            report = erase(cfg, "Test Person", [])
            assert report.found and any("removed" in line for line in report.lines)
        finally:
            pipeline.stop()  # at once: every open track ends now
            runner.join(WAIT)
    text = events.read_text()
    assert "Test Person" not in text, [x for x in text.splitlines() if "Test Person" in x]
    ends = [e for e in read_events(events) if e["event"] == "track_end"]
    assert ends and all(e["name"] is None for e in ends)
    assert pipeline.summary.cameras["door"].people == {}  # the run's summary forgot them too


def test_erase_waits_for_a_running_pipeline_and_says_so_when_it_does_not_answer(
    tmp_path: Path,
) -> None:
    gallery_path, events = tmp_path / "g.db", tmp_path / "events.jsonl"
    events.write_text(line(name="Test Person"))
    with Gallery(gallery_path, FAKE) as gallery:
        gallery.add("Test Person", unit(0))
        gallery.add("Other", unit(90))
        watcher = gallery.watch(gallery.revision)  # a pipeline of this process, stuck
        cfg = load_config(None, {"gallery": str(gallery_path), "events.jsonl": str(events)})
        with pytest.raises(StreamrecError, match="has not taken the erasure in within 1 s"):
            erase(cfg, "Test Person", [], take_in_timeout=1.0)
        assert "Test Person" in events.read_text()  # nothing claimed done
        gallery.watch(gallery.revision, watcher)  # it took the erasure in: run erase again
        report = erase(cfg, "Test Person", [], take_in_timeout=1.0)
        assert "events" in report.lines[-1] and "removed 1 event(s)" in report.lines[-1]
        gallery.unwatch(watcher if watcher is not None else -1)
    assert events.read_text() == ""


# -- item 6: the command line clears only that person's retained topics --------------------------


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    b = Broker(tmp_path)
    b.start()
    yield b
    b.stop()


def publish_retained(port: int, topics: dict[str, bytes]) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2)
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        for info in [client.publish(t, v, qos=1, retain=True) for t, v in topics.items()]:
            info.wait_for_publish(WAIT)
    finally:
        client.disconnect()
        client.loop_stop()


@needs_broker
def test_cli_erase_clears_only_that_persons_retained_topics(broker: Broker, tmp_path: Path) -> None:
    """``streamrec erase`` of any name published ``bridge/status offline`` (every Home
    Assistant entity unavailable) and cleared the presence of people in view (issue 21,
    item 6): now only that person's topics change (old names included)."""
    now = time.time()

    def person(name: str, camera: str, seen: float) -> bytes:
        return json.dumps(
            {"name": name, "state": camera, "camera": camera, "last_seen_ts": seen, "score": 0.8}
        ).encode()

    before = {
        "rec/bridge/status": b"online",
        "rec/people/alice": person("alice", "hall", now),
        "rec/people/bob": person("bob", "garage", now - 5),
        "rec/people/jane_roe": person("Jane Roe", "garage", now - 500),  # bob's old name
        "rec/hall/last_name": b"alice",
        "rec/garage/last_name": b"bob",
        "rec/hall/snapshot": b"\xff\xd8alice",
        "rec/garage/snapshot": b"\xff\xd8bob",
        "rec/hall/people": json.dumps(
            {"camera": "hall", "people": ["alice", "bob"], "count": 2, "faces": 3}
        ).encode(),
        "rec/hall/status": b"online",
        "homeassistant/sensor/rec/person_alice/config": b'{"name": "alice"}',
        "homeassistant/sensor/rec/person_bob/config": b'{"name": "bob"}',
        "homeassistant/device_tracker/rec/tracker_bob/config": b'{"name": "bob"}',
        "homeassistant/device_tracker/rec/tracker_alice/config": b'{"name": "alice"}',
        "homeassistant/image/rec/garage_snapshot/config": b'{"name": "Snapshot"}',
    }
    publish_retained(broker.port, before)
    with Gallery(tmp_path / "g.db", FAKE) as gallery:
        gallery.add("Jane Roe", unit(0))
        gallery.rename("Jane Roe", "bob")
        gallery.add("alice", unit(90))
    cfg = write_config(
        tmp_path / "cfg.yaml",
        gallery=str(tmp_path / "g.db"),
        events={"mqtt": {"host": "127.0.0.1", "port": broker.port, "topic_prefix": "rec"}},
    )
    seen: list[tuple[str, bytes]] = []
    watcher = mqtt.Client(CallbackAPIVersion.VERSION2)
    ready = threading.Event()
    watcher.on_connect = lambda c, *a: c.subscribe("#", qos=1)
    watcher.on_subscribe = lambda *a: ready.set()

    def live(client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        if not msg.retain:  # published while the erase ran (not the state at subscription)
            seen.append((msg.topic, bytes(msg.payload)))

    watcher.on_message = live
    watcher.connect("127.0.0.1", broker.port)
    watcher.loop_start()
    try:
        assert ready.wait(WAIT)
        out = streamrec("erase", "bob", "--config", str(cfg)).stdout
        assert "retained topics cleared of them (8)" in out, out
        after = retained(broker.port)
    finally:
        watcher.disconnect()
        watcher.loop_stop()
    assert after["rec/bridge/status"] == b"online"
    for topic in ("rec/people/alice", "rec/hall/last_name", "rec/hall/snapshot", "rec/hall/status",
                  "homeassistant/sensor/rec/person_alice/config"):  # fmt: skip
        assert after[topic] == before[topic], topic
    for topic in ("rec/people/bob", "rec/people/jane_roe", "rec/garage/snapshot",
                  "homeassistant/sensor/rec/person_bob/config",
                  "homeassistant/device_tracker/rec/tracker_bob/config",
                  "homeassistant/image/rec/garage_snapshot/config"):  # fmt: skip
        assert topic not in after, topic
    assert after["homeassistant/device_tracker/rec/tracker_alice/config"] == b'{"name": "alice"}'
    assert after["rec/garage/last_name"] == b"None"  # Home Assistant's unknown
    assert json.loads(after["rec/hall/people"]) == {
        "camera": "hall", "people": ["alice"], "count": 1, "faces": 3
    }  # fmt: skip
    touched = {t for t, _ in seen if not t.startswith("rec/bridge/scan")}
    assert "rec/bridge/status" not in touched and "rec/people/alice" not in touched


# -- low: a damaged event file does not block an erasure ------------------------------------------


def test_a_non_utf8_byte_in_an_event_file_does_not_block_erasure(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    damaged = b'{"event": "identified", "name": "Other", "note": "\xff"}\n'
    events.write_bytes(
        line(name="Test Person").encode()
        + damaged
        + b'{"event": "identified", "name": "Test Person" \xfe torn\n'
        + line(name="Kept").encode()
    )
    with Gallery(tmp_path / "g.db", FAKE) as gallery:
        gallery.add("Test Person", unit(0))
    cfg = write_config(tmp_path / "cfg.yaml", gallery=str(tmp_path / "g.db"))
    proc = streamrec("erase", "Test Person", "--config", str(cfg), "--events", str(events))
    assert "removed 2 event(s)" in proc.stdout, proc.stdout
    data = events.read_bytes()
    assert b"Test Person" not in data and damaged in data and b'"Kept"' in data
