"""Red team: each promise of the privacy model and of robustness, tried on the real CLI and daemon.

- no configured secret reaches any output (stdout/stderr/log, events, /health, /metrics,
  /api/recent, MQTT payloads, webhook bodies) for passwords with ``/ ? # @ space %``;
- ``streamrec erase`` leaves nothing of a person in the state and event files, the gallery's
  bytes or the broker's retained topics, and a running daemon forgets them too;
- files with faces, names or events are 0600 (folders 0700) under the usual umask 022;
- signals during start-up, a busy port, damaged and read-only galleries, absurd numbers, a
  broken pipe: one line and exit 2 (or quiet success), never a traceback;
- a failing sink shows in /health and the metrics; shutdown is bounded with sinks unreachable.
"""

from __future__ import annotations

import base64
import http.server
import json
import os
import shutil
import signal
import socket
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import paho.mqtt.client as mqtt
import pytest
import rtsp_server
import yaml
from cli_helpers import ROOT, SMALL, assert_one_clear_line, read_events, streamrec
from paho.mqtt.enums import CallbackAPIVersion
from test_daemon import Daemon, dead_rtsp_url, free_port, wait_for
from test_mqtt import MOSQUITTO, Broker

NAME = "Zelda Quintana"  # a name that appears nowhere else: grep finds only what streamrec kept
CAM_PASSWORD = "p/w?x#y@z %25!"
MQTT_PASSWORD = "Mq/tt?#@ %pass"
HOOK_USER, HOOK_PASSWORD = "hook", "W3b/h?o#o@k %x"
HEADER_SECRET = "hdr-Secret-4711"
TOKEN = "tok-9f3b1c7e5a"
needs_broker = pytest.mark.skipif(
    not os.access(MOSQUITTO, os.X_OK), reason="mosquitto (Debian package) is not installed"
)


def forms(secret: str) -> list[str]:
    """The ways a secret could leak: as it is, percent-encoded, its URL-unsafe parts."""
    return [secret, quote(secret, safe=""), quote(secret)]


@pytest.fixture
def clip(media_dir: Path) -> Path:
    return media_dir / "face_recognition/short_hamilton_clip.mp4"


@pytest.fixture
def zelda_gallery(models_dir: Path, media_dir: Path, tmp_path: Path) -> Path:
    """Lin-Manuel Miranda's photo enrolled under a name found nowhere else."""
    state = tmp_path / "state"
    gallery = state / "gallery.db"
    photo = media_dir / "face_recognition/lin-manuel-miranda.png"
    streamrec("gallery", "add", NAME, str(photo), "--gallery", str(gallery), *SMALL)
    return gallery


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Callable[[dict[str, Any]], Daemon]]:
    started: list[Daemon] = []

    def start(config: dict[str, Any]) -> Daemon:
        d = Daemon(tmp_path, config)
        started.append(d)
        return d

    yield start
    for d in started:
        d.close()


class Recorder:
    """A paho client that keeps every message (topic, payload, retained) under ``#``."""

    def __init__(self, port: int) -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self.lock = threading.Lock()
        ready = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"rec-{time.time_ns()}")
        self.client.on_connect = lambda c, *a: c.subscribe("#", qos=1)
        self.client.on_subscribe = lambda *a: ready.set()
        self.client.on_message = self._on
        self.client.connect("127.0.0.1", port, keepalive=10)
        self.client.loop_start()
        assert ready.wait(30), "test subscriber did not subscribe"

    def _on(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain)))

    def text(self) -> str:
        with self.lock:
            return "\n".join(f"{t} {p.decode(errors='replace')}" for t, p, _ in self.messages)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def retained(port: int) -> dict[str, bytes]:
    """The broker's retained topics, as a fresh subscriber receives them."""
    rec = Recorder(port)
    time.sleep(0.5)  # retained messages are sent right after the subscription; no end marker
    rec.close()
    return {t: p for t, p, r in rec.messages if r and p}


class WebhookServer:
    """A local endpoint recording the requests (path, Authorization, body) it gets."""

    def __init__(self, hang: bool = False) -> None:
        self.requests: list[tuple[str, str, bytes]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.requests.append((self.path, self.headers.get("Authorization", ""), body))
                if hang:
                    time.sleep(60)
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def get(port: int, path: str, token: str) -> str:
    import urllib.error
    import urllib.request

    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", headers={"Authorization": f"Bearer {token}"}
    )
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.read().decode()


# -- secrets ------------------------------------------------------------------------------------


@needs_broker
def test_no_secret_reaches_any_output(
    clip: Path, zelda_gallery: Path, tmp_path: Path, daemon: Callable[[dict[str, Any]], Daemon]
) -> None:
    broker = Broker(tmp_path)
    broker.start()
    hook = WebhookServer()
    recorder = Recorder(broker.port)
    try:
        with rtsp_server.RtspStream(clip) as cam:
            port = free_port()
            dead = free_port()
            d = daemon(
                {
                    "gallery": str(zelda_gallery),
                    "cameras": [
                        {"name": "stage", "source": cam.url, "rtsp_transport": "udp"},
                        {
                            "name": "locked",
                            "source": f"rtsp://admin:{CAM_PASSWORD}@127.0.0.1:{dead}/live",
                        },
                    ],
                    "http": {"enabled": True, "port": port, "token": TOKEN},
                    "events": {
                        "jsonl": str(tmp_path / "events.jsonl"),
                        "mqtt": {
                            "host": "127.0.0.1",
                            "port": broker.port,
                            "username": "streamrec",
                            "password": MQTT_PASSWORD,
                        },
                        "webhook": {
                            "url": f"http://{HOOK_USER}:{HOOK_PASSWORD}@127.0.0.1:{hook.port}/ev",
                            "headers": {"X-Token": HEADER_SECRET},
                        },
                    },
                }
            )
            d.port = port
            wait_for(
                "an identification",
                lambda: any(e["event"] == "identified" for e in d.events()),
                120,
                d,
            )
            wait_for("the webhook's first event", lambda: hook.requests, 30, d)
            served = [
                get(port, path, TOKEN) for path in ("/health", "/metrics", "/api/recent?n=100")
            ]
            code, _ = d.terminate()
        assert code == 0, d.log()[-3000:]
    finally:
        recorder.close()
        hook.close()
        broker.stop()
    basic = base64.b64encode(f"{HOOK_USER}:{HOOK_PASSWORD}".encode()).decode()
    assert {auth for _, auth, _ in hook.requests} == {f"Basic {basic}"}, "credentials delivered"
    outputs = {
        "log": d.log(),
        "events": (tmp_path / "events.jsonl").read_text(),
        "http": "\n".join(served),
        "mqtt": recorder.text(),
        "webhook": "\n".join(f"{p} {b.decode()}" for p, _, b in hook.requests),
    }
    assert "locked" in outputs["http"] and NAME in outputs["events"]  # the outputs are real
    for secret in (CAM_PASSWORD, MQTT_PASSWORD, HOOK_PASSWORD, HEADER_SECRET, TOKEN, basic):
        for form in forms(secret):
            for where, text in outputs.items():
                assert form not in text, f"{form!r} leaked into the {where}"


# -- erasure ------------------------------------------------------------------------------------


def grep_tree(root: Path, needle: str) -> list[str]:
    """Files under ``root`` whose bytes hold ``needle`` (as ``grep -r`` and ``strings`` would)."""
    hits = []
    for path in root.rglob("*"):
        if path.is_file() and needle.encode() in path.read_bytes():
            hits.append(str(path))
    return hits


@needs_broker
def test_erase_removes_a_person_everywhere(
    clip: Path, zelda_gallery: Path, tmp_path: Path
) -> None:
    state = zelda_gallery.parent
    broker = Broker(tmp_path)
    broker.start()
    try:
        cfg = tmp_path / "cfg.yaml"
        cfg.write_text(
            yaml.safe_dump(
                {
                    "gallery": str(zelda_gallery),
                    "unknowns": {"crops_dir": str(state / "crops")},
                    "events": {
                        "jsonl": str(state / "events.jsonl"),
                        "mqtt": {"host": "127.0.0.1", "port": broker.port},
                    },
                }
            )
        )
        run = ("run", str(clip), "--config", str(cfg), "--no-progress", *SMALL)
        streamrec(*run)
        assert grep_tree(state, NAME), "the run recorded the person"
        topics = retained(broker.port)
        assert any(NAME.encode() in p for p in topics.values()), "retained presence topics"

        out = streamrec("erase", NAME, "--config", str(cfg), *SMALL).stdout
        assert "removed 1 sample(s)" in out and "event(s)" in out and "retained topics" in out
        assert grep_tree(state, NAME) == [], "nothing of the person in the state folder"
        for t, p in retained(broker.port).items():
            assert NAME.encode() not in p and b"zelda" not in t.encode(), t
        events = read_events(state / "events.jsonl")
        assert events and all(NAME not in json.dumps(e) for e in events)  # the rest is kept

        streamrec(*run)  # a later run: the person never comes back
        assert grep_tree(state, NAME) == []
        again = streamrec("erase", NAME, "--config", str(cfg), *SMALL, check=False)
        assert again.returncode == 1 and "nothing found" in again.stdout
    finally:
        broker.stop()


def test_a_running_daemon_forgets_an_erased_person(
    clip: Path, zelda_gallery: Path, tmp_path: Path, daemon: Callable[[dict[str, Any]], Daemon]
) -> None:
    events_file = tmp_path / "events.jsonl"
    with rtsp_server.RtspStream(clip) as cam:
        d = daemon(
            {
                "gallery": str(zelda_gallery),
                "cameras": [{"name": "stage", "source": cam.url, "rtsp_transport": "udp"}],
                "events": {"jsonl": str(events_file)},
            }
        )
        wait_for(
            "the person in /api/recent",
            lambda: NAME in d.get("/api/recent?n=100")[1].decode(),
            120,
            d,
        )
        assert NAME in d.get("/metrics")[1].decode()
        streamrec(
            "erase", NAME, "--gallery", str(zelda_gallery), "--events", str(events_file), *SMALL
        )

        def forgotten() -> bool:
            return not any(NAME in d.get(p)[1].decode() for p in ("/api/recent?n=100", "/metrics"))

        wait_for("the daemon to forget the person", forgotten, 30, d)
        code, _ = d.terminate()
    assert code == 0, d.log()[-3000:]
    assert NAME not in events_file.read_text(), "nothing written after the erasure names them"
    assert NAME not in d.log()


# -- file modes ---------------------------------------------------------------------------------


def test_files_holding_faces_names_or_events_are_private(
    clip: Path, media_dir: Path, tmp_path: Path
) -> None:
    people = tmp_path / "people"
    (people / "Lin").mkdir(parents=True)
    shutil.copy(media_dir / "face_recognition/lin-manuel-miranda.png", people / "Lin")
    out = tmp_path / "out"  # none of these folders exist yet: streamrec makes them
    gallery, events, video = out / "g" / "gallery.db", out / "ev" / "events.jsonl", out / "v.mp4"
    crops, summary = out / "crops", out / "summary.json"

    def run(*args: str) -> None:
        proc = subprocess.run(
            [sys.executable, str(ROOT / "run.py"), *args, *SMALL],
            capture_output=True,
            text=True,
            preexec_fn=lambda: os.umask(0o022),
            timeout=600,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]

    run("gallery", "import", str(people), "--gallery", str(gallery))
    run(
        "run", str(clip), "--gallery", str(gallery), "--events", str(events), "--output",
        str(video), "--summary-json", str(summary), "--no-progress",
        "--set", f"unknowns.crops_dir={crops}",
    )  # fmt: skip
    files = [gallery, events, video, summary, *crops.rglob("*.jpg")]
    files += [p for p in gallery.parent.iterdir() if p.name.startswith("gallery.db")]
    assert len(list(crops.rglob("*.jpg"))) > 0
    for f in files:
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
    for d in [gallery.parent, events.parent, crops, *[p for p in crops.iterdir() if p.is_dir()]]:
        assert stat.S_IMODE(d.stat().st_mode) == 0o700, d


# -- signals and start-up -----------------------------------------------------------------------


def caught_signals(pid: int) -> int:
    """The signals a process has handlers for (SigCgt of /proc/PID/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return int(line.split()[1], 16)
    return 0


@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGTERM], ids=["SIGHUP", "SIGTERM"])
def test_a_signal_during_start_up(
    sig: signal.Signals, tmp_path: Path, daemon: Callable[[dict[str, Any]], Daemon]
) -> None:
    d = daemon({"cameras": [{"name": "off", "source": dead_rtsp_url()}]})
    deadline = time.monotonic() + 60
    while not caught_signals(d.proc.pid) & (1 << (signal.SIGHUP - 1)):
        assert d.proc.poll() is None and time.monotonic() < deadline, d.log()
        time.sleep(0.01)
    d.proc.send_signal(sig)  # the models are not loaded yet
    if sig == signal.SIGTERM:
        assert d.proc.wait(60) == 0, d.log()
        assert "Traceback" not in d.log()
        return
    wait_for("the daemon to serve despite the SIGHUP", lambda: d.health(), 120, d)
    code, _ = d.terminate()
    assert code == 0 and "Traceback" not in d.log()


def test_bad_input_is_one_line_and_exit_2(
    models_dir: Path, media_dir: Path, zelda_gallery: Path, tmp_path: Path
) -> None:
    # a busy port
    clip = media_dir / "face_recognition/short_hamilton_clip.mp4"
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        cfg = tmp_path / "busy.yaml"
        cfg.write_text(
            yaml.safe_dump(
                {
                    "cameras": [{"name": "file", "source": str(clip)}],
                    "http": {"enabled": True, "port": port},
                }
            )
        )
        proc = streamrec("serve", "--config", str(cfg), *SMALL, check=False)
    assert proc.returncode == 2
    assert_one_clear_line(proc, "http.port")

    # a damaged gallery (its pages overwritten after the header), and a file that is not one
    damaged, garbage = tmp_path / "damaged.db", tmp_path / "garbage.db"
    shutil.copy(zelda_gallery, damaged)
    data = bytearray(damaged.read_bytes())
    data[100:] = os.urandom(len(data) - 100)
    damaged.write_bytes(bytes(data))
    garbage.write_bytes(os.urandom(8192))
    for bad in (damaged, garbage):
        for args in (("gallery", "list"), ("recognize", str(clip.with_name("obama.jpg")))):
            proc = streamrec(*args, "--gallery", str(bad), *SMALL, check=False)
            assert proc.returncode == 2, proc.stderr
            assert_one_clear_line(proc, str(bad))

    # absurd numbers and nesting
    huge = "9" * 5000
    proc = streamrec("config", "show", "--set", f"detector.interval={huge}", check=False)
    assert proc.returncode == 2
    assert_one_clear_line(proc, "--set")
    deep = tmp_path / "deep.yaml"
    deep.write_text("a: " + "[" * 5000 + "]" * 5000 + "\n")
    proc = streamrec("config", "show", "--config", str(deep), check=False)
    assert proc.returncode == 2
    assert_one_clear_line(proc, str(deep))


def test_a_broken_pipe_ends_quietly(zelda_gallery: Path) -> None:
    """``streamrec gallery list --json | head``: the reader is gone before the output comes."""
    proc = subprocess.run(
        f"{sys.executable} {ROOT / 'run.py'} gallery list --json --gallery {zelda_gallery} "
        "| (exec 0<&-; sleep 5)",
        shell=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.stderr == "", proc.stderr


@pytest.fixture
def read_only_folder(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """(a folder to fill, the same folder read-only): a read-only bind mount when root (root
    ignores file modes), else the modes of a plain folder."""
    src, ro = tmp_path / "src", tmp_path / "ro"
    src.mkdir()
    ro.mkdir()
    if os.geteuid() != 0:
        yield src, src
        for p in src.iterdir():
            p.chmod(0o644)
        src.chmod(0o755)
        return
    done = subprocess.run(["mount", "--bind", str(src), str(ro)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot make a read-only bind mount: {done.stderr.decode().strip()}")
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(ro)], check=True)
        yield src, ro
    finally:
        subprocess.run(["umount", str(ro)], check=False)


def test_a_read_only_gallery_can_be_listed_and_used(
    zelda_gallery: Path, media_dir: Path, read_only_folder: tuple[Path, Path]
) -> None:
    src, ro = read_only_folder
    shutil.copy(zelda_gallery, src / "gallery.db")
    shutil.copy(media_dir / "face_recognition/lin-manuel-miranda.png", src / "photo.png")
    if src == ro:  # not root: the modes make it read-only
        for f in src.iterdir():
            f.chmod(0o444)
        src.chmod(0o555)
    gallery = ro / "gallery.db"
    listed = streamrec("gallery", "list", "--gallery", str(gallery), check=False)
    assert listed.returncode == 0 and NAME in listed.stdout, listed.stderr
    named = streamrec(
        "recognize", str(ro / "photo.png"), "--gallery", str(gallery), "--json", *SMALL
    )
    assert [f["name"] for f in json.loads(named.stdout)[0]["faces"]] == [NAME]
    refused = streamrec(
        "gallery", "add", "X", str(ro / "photo.png"), "--gallery", str(gallery), *SMALL,
        check=False,
    )  # fmt: skip
    assert refused.returncode == 2
    assert_one_clear_line(refused, "read-only")
    assert sorted(p.name for p in src.iterdir()) == ["gallery.db", "photo.png"]  # no -shm left


def test_imports_are_idempotent(media_dir: Path, models_dir: Path, tmp_path: Path) -> None:
    gallery = tmp_path / "g.db"
    train = media_dir / "face_recognition/knn_examples/train"
    streamrec("gallery", "import", str(train), "--gallery", str(gallery), *SMALL)
    first = json.loads(streamrec("gallery", "list", "--gallery", str(gallery), "--json").stdout)
    out = streamrec("gallery", "import", str(train), "--gallery", str(gallery), *SMALL).stdout
    second = json.loads(streamrec("gallery", "list", "--gallery", str(gallery), "--json").stdout)
    assert first == second and "already enrolled" in out
    with sqlite3.connect(gallery) as db:
        (samples,) = db.execute("SELECT COUNT(*) FROM embeddings").fetchone()
    assert samples == sum(p["embeddings"] for p in first)


# -- failing sinks, bounded shutdown ------------------------------------------------------------


def test_a_failing_sink_shows_in_health_and_metrics(
    tmp_path: Path, clip: Path, zelda_gallery: Path, daemon: Callable[[dict[str, Any]], Daemon]
) -> None:
    with rtsp_server.RtspStream(clip) as cam:
        d = daemon(
            {
                "gallery": str(zelda_gallery),
                "cameras": [{"name": "stage", "source": cam.url, "rtsp_transport": "udp"}],
                "events": {"jsonl": "/dev/full"},  # every write fails: the disk is full
            }
        )
        d.events_path = tmp_path / "none.jsonl"

        def sink_failing() -> dict[str, Any] | None:
            h = d.health()
            sinks = (h or {}).get("sinks", {})
            return h if sinks.get("jsonl", {}).get("errors", 0) > 1 else None

        health = wait_for("the failing sink in /health", sink_failing, 120, d)
        assert health["ok"] is False and health["sinks"]["jsonl"]["ok"] is False
        assert "No space left" in (health["sinks"]["jsonl"]["error"] or "")
        wait_for(
            "streamrec_sink_errors_total",
            lambda: (d.metric('streamrec_sink_errors_total{sink="jsonl"}') or 0) > 1,
            30,
            d,
        )
        code, _ = d.terminate()
    assert code == 0
    assert d.log().count("event sink jsonl failed") == 1, "one ERROR line per failure burst"


def test_shutdown_is_bounded_when_every_sink_is_unreachable(
    tmp_path: Path, clip: Path, daemon: Callable[[dict[str, Any]], Daemon]
) -> None:
    hook = WebhookServer(hang=True)  # accepts, never answers
    try:
        with rtsp_server.RtspStream(clip) as cam:
            d = daemon(
                {
                    "cameras": [{"name": "stage", "source": cam.url, "rtsp_transport": "udp"}],
                    "events": {
                        "jsonl": str(tmp_path / "events.jsonl"),
                        "mqtt": {"host": "127.0.0.1", "port": free_port()},  # nobody there
                        "webhook": {"url": f"http://127.0.0.1:{hook.port}/x", "timeout": 30},
                    },
                    "pipeline": {"stop_timeout": 6},
                }
            )
            wait_for("events", d.events, 120, d)
            code, seconds = d.terminate()
    finally:
        hook.close()
    assert code == 0, d.log()[-3000:]
    print(f"stopped {seconds:.1f} s after SIGTERM with every sink unreachable")
    # the bound that matters: systemd's TimeoutStopSec of the shipped unit (30 s)
    assert seconds < 30
    events = read_events(tmp_path / "events.jsonl")
    started = {e["track_id"] for e in events if e["event"] == "track_start"}
    assert started == {e["track_id"] for e in events if e["event"] == "track_end"}
