"""streamrec on a real local Ray cluster: a head and a worker node on loopback addresses.

Ray turns 127.0.0.1 into the machine's outward address, so the two nodes use 127.0.0.3 (head)
and 127.0.0.2 (worker): every connection stays on the loopback interface. The first tests need
no cluster: the gallery the head feeds to the actors, their labels, their configs.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import pickle
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

pytest.importorskip("ray", reason="ray is not installed (pip install 'streamrec[cluster]')")

import ray
from cli_helpers import assert_one_clear_line
from test_daemon import Daemon, wait_for
from test_hardening import caught_signals
from test_mqtt import MOSQUITTO, Broker, Subscriber

from benchmarks.cluster_scaling import WORKER, local_cluster
from streamrec import load_config
from streamrec.cluster.driver import ClusterRunner, actor_config, cluster_config, connect, ray_get
from streamrec.cluster.snapshot import FedGallery, GalleryFeed, SlotBook
from streamrec.gallery.store import Gallery, Recognizer, open_existing
from streamrec.service.http import _placeholder_jpeg
from streamrec.telemetry import Observer

SMALL = {"models.detector": "det_500m.onnx", "models.recognizer": "mobilefacenet_128d.onnx"}
#: the clips' faces are large: a smaller detector input keeps the suite fast on 2 cores
FAST = {**SMALL, "models.download": False, "detector.input_size": 320}
LMM = "Lin-Manuel Miranda"
needs_broker = pytest.mark.skipif(
    not os.access(MOSQUITTO, os.X_OK), reason="mosquitto (Debian package) is not installed"
)


def test_an_actor_gets_its_camera_and_nothing_else(tmp_path: Path) -> None:
    secrets = ["cam1-Pass", "cam2-Pass", "mqtt-Pass", "hook-Token", "http-Token"]
    cfg = load_config(
        None,
        {
            "cameras": [
                {"name": "a", "source": f"rtsp://u:{secrets[0]}@10.0.0.1/s"},
                {"name": "b", "source": f"rtsp://u:{secrets[1]}@10.0.0.2/s"},
            ],
            "gallery": str(tmp_path / "gallery.db"),
            "unknowns.crops_dir": str(tmp_path / "crops"),
            "events": {
                "jsonl": str(tmp_path / "events.jsonl"),
                "mqtt": {"host": "broker", "password": secrets[2]},
                "webhook": {"url": "https://hook.invalid/x", "headers": {"X-Token": secrets[3]}},
            },
            "http": {"enabled": True, "token": secrets[4]},
            "cluster.address": "auto",
        },
    )
    wcfg = cluster_config(cfg)
    mine = actor_config(wcfg, wcfg.cameras[0])
    assert mine.cameras == [wcfg.cameras[0]]
    assert mine.gallery is None and mine.unknowns.crops_dir is None
    shipped = pickle.dumps(mine)  # what Ray sends to the node
    assert [s for s in secrets if s.encode() in shipped] == [secrets[0]]
    assert str(tmp_path).encode() not in shipped


def test_actors_never_give_out_the_same_unknown_label() -> None:
    rng = np.random.default_rng(0)
    books = [SlotBook(0.99, 1000, slot, 3) for slot in range(3)]
    labels: list[set[str]] = [set(), set(), set()]
    for step in range(60):
        for i, book in enumerate(books):
            if step == 30:
                book.next_index = max(book.next_index, 77)  # a sync: the store's next number
            mean = rng.normal(size=8).astype(np.float32)
            labels[i].add(book.assign(mean / np.linalg.norm(mean)))
    assert all(len(got) == 60 for got in labels)
    assert labels[0] & labels[1] == labels[0] & labels[2] == labels[1] & labels[2] == set()
    numbers = [{int(label.split("-")[1]) % 3 for label in got} for got in labels]
    assert numbers == [{0}, {1}, {2}]


class _Heard(Observer):
    def __init__(self) -> None:
        self.erased_names: list[str] = []
        self.people: list[int] = []

    def erased(self, name: str) -> None:
        self.erased_names.append(name)

    def gallery_loaded(self, people: int) -> None:
        self.people.append(people)


def test_the_head_feeds_the_gallery_to_actors_and_writes_their_sightings(tmp_path: Path) -> None:
    dim = 8
    rng = np.random.default_rng(1)

    def unit() -> np.ndarray:
        v = rng.normal(size=dim).astype(np.float32)
        return v / np.linalg.norm(v)

    path = tmp_path / "gallery.db"
    recognizer = Recognizer("fake.onnx", "f" * 64, dim)
    with Gallery(path, recognizer) as g:
        g.add("Alice", np.stack([unit(), unit()]))
    cfg = load_config(None, {"gallery": str(path), "cluster.gallery_poll": 3600})
    heard = _Heard()
    feed = GalleryFeed(cfg, heard)  # opened with the recognizer the file records: no model
    try:
        first = feed.snapshot
        assert first.names == ["Alice"] and first.people == 1 and first.recognizer == recognizer
        actor = FedGallery(cfg, slot=1, slots=2)
        actor.load(first)
        actor.check(recognizer)
        assert actor.matcher().names == ["Alice"] and actor.revision == first.version
        book = actor.unknown_book(0.5)
        assert book is not None

        # an actor's sightings are written on the head; the next snapshot has the label
        bob = unit()
        label = book.assign(bob, crop=np.zeros((112, 112, 3), np.uint8), quality=1.0, camera="c")
        assert int(label.split("-")[1]) % 2 == 1
        feed.write(actor.take_sightings())
        deadline = time.monotonic() + 30
        while label not in feed.snapshot.unknowns:
            assert time.monotonic() < deadline, "the sighting was not written on the head"
            feed.refresh()
            time.sleep(0.05)
        assert feed.snapshot.people_version == first.people_version  # Alice did not change

        # an erasure on the head: the label dies on the actor, Alice leaves its matcher
        with Gallery(path, recognizer) as g:
            g.remove(label)
            g.remove("Alice")
        assert feed.refresh()
        actor.load(feed.snapshot)
        assert actor.sync(book) == {label} and label not in book
        assert actor.matcher().names == []
        assert sorted(heard.erased_names) == sorted(["Alice", label])

        # SIGHUP: a new snapshot although nothing changed
        version = feed.snapshot.version
        assert not feed.refresh()
        feed.reload()
        assert feed.refresh() and feed.snapshot.version == version + 1
        assert heard.people[-1] == 0
    finally:
        feed.close()


def test_an_actor_with_another_recognizer_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "gallery.db"
    with Gallery(path, Recognizer("a.onnx", "a" * 64, 8)):
        pass
    cfg = load_config(None, {"gallery": str(path)})
    feed = GalleryFeed(cfg, Observer())
    try:
        actor = FedGallery(cfg, 0, 1)
        actor.load(feed.snapshot)
        with pytest.raises(Exception, match=r"same models\.recognizer on every node"):
            actor.check(Recognizer("b.onnx", "b" * 64, 8))
        actor.check(Recognizer("b-int8.onnx", "c" * 64, 8, compatible=("a" * 64,)))
    finally:
        feed.close()


def test_a_cluster_address_nothing_listens_on_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{s.getsockname()[1]}"  # closed again: nothing listens
    config = tmp_path / "cluster.yaml"
    config.write_text(json.dumps({"cameras": [{"name": "a", "source": "x.mp4"}]}))
    proc = subprocess.run(
        [sys.executable, "-m", "streamrec", "serve", f"--config={config}",
         f"--set=cluster.address={address}"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert_one_clear_line(proc, address, "cluster.address")
    assert proc.returncode == 2


def test_sigterm_while_the_cluster_does_not_answer_stops_at_once(tmp_path: Path) -> None:
    with socket.socket() as silent:  # accepts connections (the kernel does) but never answers
        silent.bind(("127.0.0.3", 0))
        silent.listen()
        address = f"127.0.0.3:{silent.getsockname()[1]}"
        d = Daemon(
            tmp_path,
            {"cameras": [{"name": "a", "source": "x.mp4"}], "cluster": {"address": address}},
        )
        try:
            wait_for("the connection attempt", lambda: "connecting to the Ray" in d.log(), 60, d)
            code, _ = d.terminate()  # Ray would have taken over SIGTERM (sys.exit)
        finally:
            d.close()
    assert code == 0, d.log()
    assert "stopped while connecting" in d.log() and "Traceback" not in d.log()


@pytest.fixture(scope="module")
def cluster(models_dir: Path) -> Iterator[str]:
    """Address of a running two-node cluster (one CPU each); stopped and removed afterwards."""
    with local_cluster() as address:
        yield address


def _config(address: str, tmp: Path, cameras: list[dict[str, Any]], **extra: Any) -> Any:
    return load_config(
        None,
        {
            **FAST,
            "cluster.address": address,
            "cluster.cpus_per_camera": 0.5,
            "cameras": cameras,
            "events.jsonl": str(tmp / "events.jsonl"),
            **extra,
        },
    )


def _events(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _check_exactly_once(events: list[dict[str, Any]]) -> None:
    """No (camera, event, track_id) twice; every track started once and ended once, in order."""
    keys = collections.Counter(
        (e["camera"], e["event"], e["track_id"]) for e in events if e["event"] != "renamed"
    )
    assert [k for k, n in keys.items() if n > 1] == []
    open_tracks: set[tuple[str, int]] = set()
    for e in events:
        key = (e["camera"], e["track_id"])
        if e["event"] == "track_start":
            assert key not in open_tracks
            open_tracks.add(key)
        elif e["event"] == "track_end":
            assert key in open_tracks, f"track_end without track_start: {e}"
            open_tracks.remove(key)
        else:
            assert key in open_tracks, f"event of a track that is not open: {e}"
    assert open_tracks == set()


def test_file_cameras_exactly_once_across_an_actor_kill(
    cluster: str, media_dir: Path, tmp_path: Path
) -> None:
    clip = media_dir / "face_recognition" / "short_hamilton_clip.mp4"
    walk = media_dir / "facenet_pytorch" / "video.mp4"
    cameras = [
        {"name": "ham-a", "source": str(clip)},
        {"name": "ham-b", "source": str(clip)},
        {"name": "walk", "source": str(walk)},
    ]
    gallery = tmp_path / "state" / "gallery.db"
    _cli("gallery", "add", "Alex Lacamoire", str(media_dir / "face_recognition/alex-lacamoire.png"),
         f"--gallery={gallery}", *_sets())  # fmt: skip
    crops = tmp_path / "crops"
    cfg = _config(
        cluster, tmp_path, cameras, gallery=str(gallery), **{"unknowns.crops_dir": str(crops)}
    )
    stop = threading.Event()
    killed: list[int] = []

    def kill_ham_b(runner: ClusterRunner) -> None:
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline and not stop.is_set():
            s = runner.status().get("ham-b")
            if s is not None and s.state == "running" and s.frames >= 60:
                actor = ray.get_actor("streamrec:ham-b", namespace="streamrec")
                pid = ray_get(actor.pid.remote())
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                return
            time.sleep(0.1)

    with connect(cfg):
        runner = ClusterRunner(cfg, stop)
        killer = threading.Thread(target=kill_ham_b, args=(runner,), daemon=True)
        killer.start()
        timer = threading.Timer(200, stop.set)  # a hung cluster fails the test, not the suite
        timer.start()
        try:
            code = runner.run()
        finally:
            timer.cancel()
            stop.set()
            killer.join(5)
        new_pid = ray_get(ray.get_actor("streamrec:ham-b", namespace="streamrec").pid.remote())

    status = runner.status()
    assert code == 0
    assert killed and new_pid != killed[0]
    assert {n: s.state for n, s in status.items()} == dict.fromkeys(status, "finished")
    assert {n: s.frames for n, s in status.items()} == {"ham-a": 275, "ham-b": 275, "walk": 105}
    assert status["ham-b"].restarts == 1 and status["ham-a"].restarts == 0
    events = _events(tmp_path / "events.jsonl")
    _check_exactly_once(events)
    by_camera = collections.Counter(e["camera"] for e in events if e["event"] == "track_start")
    assert set(by_camera) == {"ham-a", "ham-b", "walk"}
    # the tracks the dead actor left open were ended by the driver, nothing else was
    restarted = [e for e in events if e.get("reason") == "actor restarted"]
    assert all(e["camera"] == "ham-b" for e in restarted)

    # unknown people seen by the actors were written by the head: in its gallery and crops
    seen = {e["label"] for e in events if e["event"] == "unknown"}
    assert {e["camera"] for e in events if e["event"] == "unknown"} >= {"ham-a", "ham-b"}
    with open_existing(gallery) as g:
        assert seen <= {u.label for u in g.unknowns()}
    numbers = {label.removeprefix("unknown-") for label in seen}  # crop folders are numbered
    assert {p.name for p in crops.iterdir()} <= numbers and any(crops.iterdir())


def _sets() -> list[str]:
    return [f"--set={k}={v}" for k, v in FAST.items()]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "streamrec", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=True)


def _mjpeg_frame(d: Daemon, camera: str, timeout: float) -> np.ndarray:
    """The first frame of the camera's live view that is not the placeholder."""
    url = f"http://127.0.0.1:{d.port}/stream/{camera}.mjpg"
    deadline = time.monotonic() + timeout
    with urllib.request.urlopen(url, timeout=10) as r:
        while time.monotonic() < deadline:
            length = 0
            while not length:
                line = r.readline()
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            r.readline()
            jpeg = r.read(length)
            r.readline()
            if jpeg != _placeholder_jpeg():
                image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
                assert image is not None
                return image
    raise AssertionError(f"no frame of {camera} in its live view after {timeout} s")


def _open_files(pid: int) -> list[str]:
    found = []
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):  # closed meanwhile
            found.append(os.readlink(fd))
    return found


@needs_broker
def test_serve_on_the_cluster_as_the_daemon_serves(
    cluster: str, media_dir: Path, tmp_path: Path
) -> None:
    """The head owns the gallery and serves /health, /metrics, the live view and MQTT status;
    a person enrolled on the head is recognised on the worker node; SIGHUP reloads."""
    faces = media_dir / "face_recognition"
    loop = tmp_path / "loop.mp4"
    clip = faces / "short_hamilton_clip.mp4"
    ffmpeg = ["ffmpeg", "-v", "error", "-stream_loop", "20", "-i", str(clip), "-c", "copy"]
    subprocess.run([*ffmpeg, str(loop)], check=True, timeout=120)
    gallery = tmp_path / "state" / "gallery.db"
    _cli("gallery", "add", "Alex Lacamoire", str(faces / "alex-lacamoire.png"),
         f"--gallery={gallery}", *_sets())  # fmt: skip
    broker = Broker(tmp_path)
    broker.start()
    mqtt_status = Subscriber(broker.port, "cluster-test", "streamrec/+/status", clean=True)
    cams = ["cam-1", "cam-2"]
    config = {
        "models": {
            "detector": SMALL["models.detector"],
            "recognizer": SMALL["models.recognizer"],
            "download": False,
        },
        "detector": {"input_size": FAST["detector.input_size"]},
        "gallery": str(gallery),
        # no unknown people: only enrolments move the gallery's revision, so that the change
        # below, which does not move it, is taken in by the SIGHUP alone
        "unknowns": {"enabled": False},
        "cameras": [{"name": name, "source": str(loop)} for name in cams],
        "events": {
            "jsonl": str(tmp_path / "events.jsonl"),
            "mqtt": {"host": "127.0.0.1", "port": broker.port},
        },
        "cluster": {"address": cluster, "cpus_per_camera": 0.5, "gallery_poll": 1.0},
    }
    d = Daemon(tmp_path, config)

    def seen(name: str) -> set[str]:
        return {
            e["camera"]
            for e in d.events()
            if e["event"] in ("identified", "renamed") and e.get("name") == name
        }

    def frames(camera: str) -> float:
        return d.metric(f'streamrec_frames_total{{camera="{camera}"}}') or 0

    def running() -> bool:
        health = d.health()
        return health is not None and all(
            health["cameras"].get(name, {}).get("state") == "running" for name in cams
        )

    try:
        # SIGHUPs all through the start-up (Ray connection, actors loading their models)
        deadline = time.monotonic() + 60
        while not caught_signals(d.proc.pid) & (1 << (signal.SIGHUP - 1)):
            assert d.proc.poll() is None and time.monotonic() < deadline, d.log()
            time.sleep(0.01)
        deadline = time.monotonic() + 150
        while not running():
            assert d.proc.poll() is None, f"serve died of a SIGHUP during start-up: {d.log()}"
            assert time.monotonic() < deadline, f"cameras not running: {d.log()[-3000:]}"
            d.proc.send_signal(signal.SIGHUP)
            time.sleep(0.3)

        # /health, /metrics, MQTT status: every camera, from the head
        health = d.health()
        assert health is not None and set(health["cameras"]) == set(cams)
        wait_for("frames of both cameras in /metrics", lambda: min(map(frames, cams)) > 0, 60, d)
        assert d.metric("streamrec_gallery_people") == 1
        wait_for(
            "both cameras online on MQTT",
            lambda: all(mqtt_status.last(f"streamrec/{c}/status") == "online" for c in cams),
            30,
            d,
        )
        # the live view shows the actors' annotated frames
        for name in cams:
            assert _mjpeg_frame(d, name, 30).shape == (360, 640, 3)

        # the actors never opened the gallery (the driver has it open), one runs on the worker
        with connect(load_config(None, {"cluster.address": cluster})):
            actors = [ray.get_actor(f"streamrec:{c}", namespace="streamrec") for c in cams]
            pids = [ray_get(a.pid.remote()) for a in actors]
            nodes = {c: ray_get(a.node.remote()) for c, a in zip(cams, actors, strict=True)}
        assert any(str(gallery) in f for f in _open_files(d.proc.pid))
        for pid in pids:
            assert not [f for f in _open_files(pid) if "gallery.db" in f]
        on_worker = [c for c, node in nodes.items() if node == WORKER]
        assert on_worker, f"no camera actor on the worker node: {nodes}"

        # a person enrolled on the head is recognised on every camera, the worker's included
        assert seen(LMM) == set()
        _cli("gallery", "add", LMM, str(faces / "lin-manuel-miranda.png"), f"--gallery={gallery}",
             *_sets())  # fmt: skip
        wait_for("LMM on both cameras", lambda: seen(LMM) == set(cams), 120, d)
        assert any(r["name"] == LMM for r in json.loads(d.get("/api/recent?n=100")[1]))

        # a change that does not move the revision: only a SIGHUP brings it to the actors
        db = sqlite3.connect(gallery)
        with db:
            db.execute("UPDATE people SET name = ? WHERE name = ?", ("Lin-Manuel M.", LMM))
        db.close()
        d.proc.send_signal(signal.SIGHUP)
        wait_for("the new name on both cameras", lambda: seen("Lin-Manuel M.") == set(cams), 60, d)
        assert "gallery reloaded: 2 people" in d.log()

        code, _ = d.terminate()
        assert code == 0, d.log()
        wait_for(
            "both cameras offline on MQTT",
            lambda: all(mqtt_status.last(f"streamrec/{c}/status") == "offline" for c in cams),
            30,
            d,
        )
    finally:
        d.close()
        mqtt_status.close()
        broker.stop()
    assert "Traceback" not in d.log()
    _check_exactly_once(d.events())
