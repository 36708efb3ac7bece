"""``streamrec serve`` as a subprocess: real RTSP camera, real models, signals, HTTP, errors."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import rtsp_server
import yaml
from cli_helpers import ALEX, LIN, ROOT, SMALL, assert_one_clear_line, streamrec

from streamrec.analyzer import FaceAnalyzer

# a live source is retried quickly so that the test sees reconnects within seconds
FAST_LIVE = {
    "rtsp_transport": "udp",
    "open_timeout": 3.0,
    "stall_timeout": 2.0,
    "reconnect_initial": 0.2,
    "reconnect_max": 1.0,
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def dead_rtsp_url() -> str:
    """An RTSP URL on a port nothing listens on (a camera that is switched off)."""
    return f"rtsp://127.0.0.1:{free_port()}/nothing"


def wait_for(
    what: str, check: Callable[[], Any], timeout: float, proc: Daemon, every: float = 0.25
) -> Any:
    """``check()``'s first true value, asked every ``every`` s for at most ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if proc.proc.poll() is not None:
            pytest.fail(
                f"streamrec serve exited ({proc.proc.returncode}) before {what}: {proc.log()}"
            )
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} after {timeout:g} s; log: {proc.log()[-3000:]}")
        time.sleep(every)


class Daemon:
    """``streamrec serve`` with a config written to ``tmp``; stderr goes to a file."""

    def __init__(self, tmp: Path, config: dict[str, Any]) -> None:
        self.port = free_port()
        config.setdefault("http", {"enabled": True, "port": self.port})
        config.setdefault("events", {"jsonl": str(tmp / "events.jsonl")})
        config.setdefault("live", FAST_LIVE)
        self.events_path = Path(config["events"]["jsonl"])
        self.config = tmp / "serve.yaml"
        self.config.write_text(yaml.safe_dump(config))
        self.log_path = tmp / "serve.log"
        self._log = self.log_path.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "run.py"), "serve", "--config", str(self.config), *SMALL],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def events(self) -> list[dict[str, Any]]:
        if not self.events_path.exists():
            return []
        lines = self.events_path.read_text().splitlines()
        return [json.loads(line) for line in lines if line.endswith("}")]

    def event_lags(self, seconds: float) -> list[float]:
        """For ``seconds``: each new event's lag (first seen in the file - its capture time)."""
        lags: list[float] = []
        seen = 0
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            events = self.events()
            now = time.time()
            lags += [now - e["captured"] for e in events[seen:] if "captured" in e]
            seen = len(events)
            time.sleep(0.2)
        return lags
    def get(self, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()
        except OSError:
            return 0, b""

    def health(self) -> dict[str, Any] | None:
        code, body = self.get("/health")
        return json.loads(body) if code in (200, 503) else None

    def metric(self, name: str) -> float | None:
        _, body = self.get("/metrics")
        for line in body.decode().splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
        return None

    def terminate(self) -> tuple[int, float]:
        """SIGTERM; returns (exit code, seconds until exit)."""
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(30)
        return code, time.monotonic() - t0

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._log.close()


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Callable[[dict[str, Any]], Daemon]]:
    started: list[Daemon] = []

    def start(config: dict[str, Any]) -> Daemon:
        started.append(Daemon(tmp_path, config))
        return started[-1]

    yield start
    for d in started:
        d.close()


@pytest.fixture(scope="module")
def lin_gallery(
    models_dir: Path, media_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    gallery = tmp_path_factory.mktemp("gallery") / "people.db"
    photo = media_dir / "face_recognition/lin-manuel-miranda.png"
    streamrec("gallery", "add", LIN, str(photo), "--gallery", str(gallery), *SMALL)
    return gallery


@pytest.fixture(scope="module")
def clip(media_dir: Path) -> Path:
    reason = rtsp_server.unavailable()
    if reason:
        pytest.skip(reason)
    return media_dir / "face_recognition/short_hamilton_clip.mp4"


def identified(events: list[dict[str, Any]], after: int = 0) -> list[dict[str, Any]]:
    return [
        e
        for e in events[after:]
        if e["event"] == "identified"
        and e["name"] == LIN
        and e["camera"] == "stage"
        and not e.get("retroactive")
    ]


def open_tracks(events: list[dict[str, Any]], camera: str) -> set[int]:
    started = {
        e["track_id"] for e in events if e["camera"] == camera and e["event"] == "track_start"
    }
    ended = {e["track_id"] for e in events if e["camera"] == camera and e["event"] == "track_end"}
    return started - ended


def test_serve_rtsp_reconnect_and_sigterm(
    clip: Path, lin_gallery: Path, daemon: Callable[[dict[str, Any]], Daemon]
) -> None:
    """Identify over RTSP, survive the camera going away and coming back, stop cleanly; a
    second camera that is switched off does not hold up the working one."""
    with rtsp_server.RtspStream(clip) as cam:
        d = daemon(
            {
                "gallery": str(lin_gallery),
                "cameras": [
                    {"name": "stage", "source": cam.url, "rtsp_transport": "udp"},
                    {"name": "ghost", "source": dead_rtsp_url()},
                ],
            }
        )
        wait_for("identified event", lambda: identified(d.events()), 120, d)

        def stage_running() -> dict[str, Any] | None:
            # the stream may still be settling (a publisher's first seconds can end and be
            # reopened), so wait for the state rather than read it once
            h = d.health()
            return h if h is not None and h["cameras"]["stage"]["state"] == "running" else None

        health = wait_for("camera stage running", stage_running, 60, d)
        assert health["ok"] is False
        assert health["cameras"]["stage"]["ok"] is True
        assert health["cameras"]["ghost"]["ok"] is False
        assert health["cameras"]["ghost"]["state"] == "connecting"

        cam.stop()
        wait_for(
            "reconnecting state",
            lambda: (
                (d.health() or {}).get("cameras", {}).get("stage", {}).get("state")
                == "reconnecting"
            ),
            30,
            d,
        )
        wait_for("track_end of every track", lambda: not open_tracks(d.events(), "stage"), 30, d)
        assert d.metric("streamrec_camera_up") is not None
        before = len(d.events())

        cam.start()
        wait_for(
            "identified event after the restart", lambda: identified(d.events(), before), 120, d
        )
        assert d.proc.poll() is None
        # the daemon copies source counters into the metrics on its own poll: wait for it
        wait_for(
            "reconnect counted in /metrics",
            lambda: (d.metric('streamrec_reconnects_total{camera="stage"}') or 0) >= 1,
            30,
            d,
        )

        code, seconds = d.terminate()
        print(f"serve stopped {seconds:.2f} s after SIGTERM")
    assert code == 0, d.log()[-3000:]
    # the requirement: stop within 5 s of SIGTERM (a bound on shutdown, not a speed figure)
    assert seconds < 5, f"took {seconds:.1f} s to stop"
    assert "Traceback" not in d.log()
    events = d.events()
    assert not open_tracks(events, "stage")
    assert all(e["camera"] in ("stage", "ghost") for e in events)


def test_gallery_changes_are_taken_in_without_and_with_sighup(
    lin_gallery: Path, media_dir: Path, tmp_path: Path, daemon: Callable[[dict[str, Any]], Daemon]
) -> None:
    gallery = tmp_path / "people.db"
    shutil.copy(lin_gallery, gallery)
    d = daemon({"gallery": str(gallery), "cameras": [{"name": "off", "source": dead_rtsp_url()}]})
    wait_for("/metrics", lambda: d.metric("streamrec_gallery_people") == 1, 120, d)

    photo = media_dir / "face_recognition/alex-lacamoire.png"
    streamrec("gallery", "add", ALEX, str(photo), "--gallery", str(gallery), *SMALL)
    # no signal needed: the daemon follows the gallery's revision (issue: within 2 s)
    wait_for("the new person", lambda: d.metric("streamrec_gallery_people") == 2, 30, d)
    streamrec("gallery", "remove", ALEX, "--gallery", str(gallery), *SMALL)
    wait_for("the removal", lambda: d.metric("streamrec_gallery_people") == 1, 30, d)

    d.proc.send_signal(signal.SIGHUP)  # still works: an immediate reload
    wait_for("gallery reload", lambda: "gallery reloaded: 1 people" in d.log(), 30, d)
    code, _ = d.terminate()
    assert code == 0, d.log()[-3000:]


@pytest.mark.parametrize(
    ("config", "needles"),
    [
        ({"cameras": [{"name": "door", "source": "ftp://cam/stream"}]}, ["door", "ftp://"]),
        ({"cameras": []}, ["no cameras"]),
        (
            {
                "cameras": [{"name": "off", "source": "rtsp://x/"}],
                "http": {"enabled": True, "host": "0.0.0.0"},
            },
            ["http.token"],
        ),
    ],
    ids=["unknown-scheme", "no-cameras", "open-http-without-token"],
)
def test_bad_config_is_one_clear_line(
    models_dir: Path, tmp_path: Path, config: dict[str, Any], needles: list[str]
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config))
    proc = streamrec("serve", "--config", str(path), *SMALL, check=False)
    assert_one_clear_line(proc, *needles)


def test_live_latency_stays_bounded_when_the_pipeline_is_slower(
    clip: Path, tmp_path: Path, daemon: Callable[[dict[str, Any]], Daemon]
) -> None:
    """A 30 fps camera and a detector on every frame at 1280 px (slower than real time on a small
    machine): frames are dropped and counted instead of queueing, so the time from capture to
    event does not grow with the run."""
    with rtsp_server.RtspStream(clip) as cam:
        d = daemon(
            {
                "cameras": [{"name": "stage", "source": cam.url, "rtsp_transport": "udp"}],
                "detector": {"interval": 1},
            }
        )
        wait_for("first event", d.events, 120, d)
        lags = d.event_lags(20)
        dropped = d.metric('streamrec_dropped_frames_total{camera="stage"}')
        frames = d.metric('streamrec_frames_total{camera="stage"}')
        code, _ = d.terminate()
    assert code == 0, d.log()[-3000:]
    print(
        f"lags: n={len(lags)} max={max(lags, default=0):.2f} s; frames {frames} dropped {dropped}"
    )
    assert len(lags) >= 5
    assert dropped is not None and dropped > 0
    # queueing every frame at a fraction of 30 fps would lag by tens of seconds after 20 s
    assert max(lags) < 12.0


# -- the face library's API on a running daemon --------------------------------------------


def api_post(d: Daemon, path: str, **kwargs: Any) -> requests.Response:
    return requests.post(f"http://127.0.0.1:{d.port}{path}", timeout=60, **kwargs)


def stage_config(gallery: Path, cam: rtsp_server.RtspStream) -> dict[str, Any]:
    """A fresh config (each start writes its own http port into it)."""
    return {
        "gallery": str(gallery),
        "cameras": [{"name": "stage", "source": cam.url, "rtsp_transport": "udp"}],
    }


def named(events: list[dict[str, Any]], name: str, after: float = 0.0) -> list[dict[str, Any]]:
    """``identified`` events for ``name`` on the stage camera, of frames captured after
    ``after``."""
    return [
        e
        for e in events
        if e["event"] == "identified"
        and e["name"] == name
        and e["camera"] == "stage"
        and e["captured"] > after
        and not e.get("retroactive")  # the face history naming the past is not a sighting
    ]


def unknown_events(events: list[dict[str, Any]], after: float = 0.0) -> list[dict[str, Any]]:
    return [e for e in events if e["event"] == "unknown" and e["captured"] > after]


def listed(d: Daemon, path: str) -> list[dict[str, Any]] | None:
    code, body = d.get(path)
    return json.loads(body) if code == 200 else None


def gallery_names(gallery: Path) -> list[str]:
    out = streamrec("gallery", "list", "--gallery", str(gallery), "--json", *SMALL).stdout
    return [p["name"] for p in json.loads(out)]


def unknown_labels(gallery: Path) -> list[str]:
    out = streamrec("unknowns", "list", "--gallery", str(gallery), "--json", *SMALL).stdout
    return [u["label"] for u in json.loads(out)]


def enrol_through_api(d: Daemon, photo: Path) -> tuple[float, float]:
    """Enrol LIN with a photo through the API; seconds from the answer to his first
    ``identified`` event as the events file shows it, and to the capture of its frame."""
    before = len(d.events())
    with photo.open("rb") as f:
        r = api_post(d, "/api/people", data={"name": LIN}, files={"files": f})
    answered = time.time()
    assert r.status_code == 201, r.text
    first = wait_for(f"{LIN} identified", lambda: named(d.events()[before:], LIN), 60, d)[0]
    return time.time() - answered, first["captured"] - answered


def assert_no_longer_named(d: Daemon, since: float) -> None:
    """After an erasure answered at ``since``: once a face seen 2 s later was labelled unknown
    (he is back on camera, so the pipeline decided), no frame captured 2 s after it named LIN."""
    wait_for(
        "an unknown face after the erasure", lambda: unknown_events(d.events(), since + 2), 90, d
    )
    late = named(d.events(), LIN, since + 2)
    assert not late, f"{LIN} still named {late[0]['captured'] - since:.1f} s after the erasure"


def test_people_enrolled_and_erased_through_the_api_count_at_once(
    clip: Path,
    analyzer: FaceAnalyzer,
    media_dir: Path,
    tmp_path: Path,
    daemon: Callable[[dict[str, Any]], Daemon],
) -> None:
    """While serve processes the Hamilton clip: enrolled through the API, he is identified
    without SIGHUP; erased through the API or the CLI, he is no longer named, not after a
    restart either."""
    gallery = tmp_path / "people.db"
    analyzer.open_gallery(gallery).close()  # an empty gallery of the small recognizer
    photo = media_dir / "face_recognition/lin-manuel-miranda.png"
    with rtsp_server.RtspStream(clip) as cam:
        d = daemon(stage_config(gallery, cam))
        wait_for("a face on the stage", lambda: unknown_events(d.events()), 120, d)

        delay, frame = enrol_through_api(d, photo)
        print(
            f"{LIN} identified {delay:.2f} s after the API answered (issue: within 2 s), "
            f"on a frame captured {frame:+.2f} s from the answer"
        )
        # a generous bound on the 2 s: the change must not wait for a poll or a signal
        assert delay < 12, f"identified only {delay:.1f} s after the enrolment"

        (lin,) = requests.get(
            f"http://127.0.0.1:{d.port}/api/people", params={"name": LIN}, timeout=60
        ).json()
        r = requests.delete(f"http://127.0.0.1:{d.port}/api/people/{lin['id']}", timeout=60)
        assert r.status_code == 200, r.text
        assert_no_longer_named(d, time.time())

        enrol_through_api(d, photo)
        streamrec("gallery", "remove", LIN, "--gallery", str(gallery), *SMALL)
        assert_no_longer_named(d, time.time())

        code, _ = d.terminate()
        assert code == 0, d.log()[-3000:]
        assert LIN not in gallery_names(gallery)

        restarted = time.time()
        d = daemon(stage_config(gallery, cam))
        wait_for("a face after the restart", lambda: unknown_events(d.events(), restarted), 120, d)
        assert not named(d.events(), LIN, restarted)
        code, _ = d.terminate()
    assert code == 0, d.log()[-3000:]
    assert LIN not in gallery_names(gallery)


def test_unknowns_survive_kill_9_and_keep_the_name_given_through_the_api(
    clip: Path,
    analyzer: FaceAnalyzer,
    tmp_path: Path,
    daemon: Callable[[dict[str, Any]], Daemon],
) -> None:
    gallery = tmp_path / "people.db"
    analyzer.open_gallery(gallery).close()
    with rtsp_server.RtspStream(clip) as cam:
        d = daemon(stage_config(gallery, cam))

        def with_faces() -> list[dict[str, Any]]:
            return [u for u in listed(d, "/api/unknowns") or [] if u["crops"]]

        seen = wait_for("unknown people with faces in the gallery", with_faces, 120, d)
        d.proc.kill()  # kill -9: nothing is flushed on the way out
        d.proc.wait(30)

        d = daemon(stage_config(gallery, cam))
        after = wait_for("the API after the restart", lambda: listed(d, "/api/unknowns"), 120, d)
        kept = {u["label"]: u for u in after}
        for u in seen:
            assert u["label"] in kept, f"{u['label']} lost by kill -9"
            assert kept[u["label"]]["crops"], f"{u['label']} lost its faces"
            crop = requests.get(f"http://127.0.0.1:{d.port}/{kept[u['label']]['crops'][0]}")
            assert crop.status_code == 200 and crop.content.startswith(b"\xff\xd8")

        # the main subject's unknown (the most sightings) gets a name through the API
        lead = max(after, key=lambda u: u["samples"])
        label = lead["label"]
        r = api_post(d, f"/api/unknowns/{lead['id']}/name", json={"name": "Stage Lead"})
        assert r.status_code == 200, r.text
        named_at = time.time()
        wait_for("the new name on camera", lambda: named(d.events(), "Stage Lead"), 90, d)
        code, _ = d.terminate()
        assert code == 0, d.log()[-3000:]
        assert "Stage Lead" in gallery_names(gallery)
        assert label not in unknown_labels(gallery)

        restarted = time.time()
        d = daemon(stage_config(gallery, cam))
        wait_for(
            "the name after the restart", lambda: named(d.events(), "Stage Lead", restarted), 120, d
        )
        wait_for("a new unknown label", lambda: unknown_events(d.events(), restarted), 120, d)
        code, _ = d.terminate()
    assert code == 0, d.log()[-3000:]
    reused = [e for e in unknown_events(d.events(), named_at) if e["label"] == label]
    assert not reused, f"{label} was handed out again"
    assert label not in unknown_labels(gallery)
    assert "Stage Lead" in gallery_names(gallery)
