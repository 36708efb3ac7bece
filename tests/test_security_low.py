"""Issue 21, the low items, on the real CLI, daemon and files: absurd numbers, a disk that is
full, a webhook that is down, planted links, file modes, short tokens, cameras' URL secrets,
duplicate YAML keys, the log of a cluster's camera actor. Every wait is a poll with a
deadline."""

from __future__ import annotations

import json
import logging
import os
import pickle
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import rtsp_server
import yaml
from cli_helpers import ROOT, SMALL, assert_one_clear_line, read_events, streamrec
from test_daemon import Daemon, free_port, wait_for

from streamrec.config import load_config
from streamrec.files import write_private
from streamrec.models.runtime import cache_readable
from streamrec.redact import RedactingFilter, redact, register_config


@pytest.fixture
def clip(media_dir: Path) -> Path:
    return media_dir / "face_recognition/short_hamilton_clip.mp4"


# -- numbers -----------------------------------------------------------------------------------


def test_events_purge_refuses_days_that_are_not_a_number_of_days(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    now = time.time()
    lines = [
        {"event": "track_start", "captured": now - 40 * 86400, "name": "A"},
        {"event": "track_start", "captured": now, "name": "B"},
    ]
    events.write_text("".join(json.dumps(e) + "\n" for e in lines))
    before = events.read_bytes()
    for days in ("nan", "inf", "-inf", "-1", "1e999", "NaN"):
        proc = streamrec("events", "purge", "--days", days, "--events", str(events), check=False)
        assert proc.returncode == 2, (days, proc.stdout, proc.stderr)
        assert_one_clear_line(proc, "--days")
        assert events.read_bytes() == before, f"--days {days} changed the event file"
    proc = streamrec("events", "purge", "--days", "30", "--events", str(events))
    assert [e["name"] for e in read_events(events)] == ["B"]


def test_run_refuses_absurd_start_times(clip: Path) -> None:
    for start in ("1e308", "nan", "inf", "-5", "1:1e308"):
        proc = streamrec("run", str(clip), "--start", start, "--no-progress", *SMALL, check=False)
        assert proc.returncode == 2, (start, proc.stderr[-2000:])
        assert_one_clear_line(proc, "--start")


# -- a sink that cannot write ------------------------------------------------------------------


def test_a_sink_that_cannot_write_fails_the_run(clip: Path, tmp_path: Path) -> None:
    """``--events /dev/full``: the video is still processed and written, the summary shown
    and saved, then the run fails with a line saying which events were lost and why."""
    video, summary = tmp_path / "out.mp4", tmp_path / "summary.json"
    proc = streamrec(
        "run", str(clip), "--events", "/dev/full", "--output", str(video),
        "--summary-json", str(summary), "--no-progress", *SMALL, check=False,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    final = [line for line in proc.stderr.splitlines() if line.startswith("streamrec: error:")]
    assert len(final) == 1, proc.stderr
    for needle in ("/dev/full", "No space left on device", "event(s) lost"):
        assert needle in final[0], final
    assert "frames" in proc.stdout  # the summary is shown
    report = json.loads(summary.read_text())
    assert report["frames"] > 0 and "/dev/full" in report["error"]
    assert video.stat().st_size > 0


# -- a webhook that is down --------------------------------------------------------------------


def test_a_down_webhook_logs_once_and_counts_in_health_and_metrics(
    clip: Path, tmp_path: Path
) -> None:
    hook = f"http://127.0.0.1:{free_port()}/hook"  # nobody listens
    with rtsp_server.RtspStream(clip) as cam:
        d = Daemon(
            tmp_path,
            {
                "cameras": [{"name": "stage", "source": cam.url, "rtsp_transport": "udp"}],
                "events": {
                    "jsonl": str(tmp_path / "events.jsonl"),
                    "webhook": {"url": hook, "retries": 0, "timeout": 2},
                },
            },
        )
        try:

            def lost(least: int) -> Callable[[], dict[str, Any] | None]:
                def check() -> dict[str, Any] | None:
                    sink = ((d.health() or {}).get("sinks") or {}).get(hook, {})
                    return sink if sink.get("errors", 0) >= least else None

                return check

            sink = wait_for("the webhook's lost events in /health", lost(5), 180, d)
            assert sink["ok"] is False and "refused" in (sink["error"] or "").lower()
            metric = f'streamrec_sink_errors_total{{sink="{hook}"}}'
            wait_for("streamrec_sink_errors_total", lambda: (d.metric(metric) or 0) >= 5, 30, d)
            code, _ = d.terminate()
        finally:
            d.close()
    assert code == 0
    errors = [line for line in d.log().splitlines() if " ERROR " in line and "webhook" in line]
    gave_up = [line for line in errors if "gave up on an event" in line]
    assert len(gave_up) == 1, "\n".join(errors)


# -- files -------------------------------------------------------------------------------------


def test_write_private_never_follows_a_planted_link(tmp_path: Path) -> None:
    """Another user plants links where the temp file (and the file) will be: nothing is
    written through them."""
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    folder = tmp_path / "state"
    folder.mkdir()
    target = folder / "summary.json"
    for name in (f".{target.name}.{os.getpid()}.tmp", f".{target.name}.tmp"):
        (folder / name).symlink_to(victim)
    (folder / "summary.json").symlink_to(victim)
    write_private(target, "ours")
    assert victim.read_text() == "precious"
    assert not target.is_symlink() and target.read_text() == "ours"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600

    # writers at once never share a temp file
    errors: list[BaseException] = []

    def write(i: int) -> None:
        try:
            for j in range(20):
                write_private(target, f"{i}-{j}")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert target.read_text().endswith("-19")
    assert {p.name for p in folder.iterdir() if not p.is_symlink()} == {"summary.json"}


def test_caches_and_crop_folders_are_private(clip: Path, tmp_path: Path) -> None:
    """Under the usual umask 022: the model cache (sha256.json lists the models' paths), the
    OpenVINO cache, and every folder made for the review crops are the service's only."""
    cache, crops = tmp_path / "cache", tmp_path / "data" / "review" / "crops"
    env = {**os.environ, "XDG_CACHE_HOME": str(cache)}
    gallery = tmp_path / "data" / "gallery.db"
    photo = clip.with_name("obama.jpg")
    old = os.umask(0o022)
    try:
        streamrec("gallery", "add", "Barack Obama", str(photo), "--gallery", str(gallery), *SMALL)
        proc = subprocess.run(
            [sys.executable, str(ROOT / "run.py"), "run", str(clip), "--no-progress",
             "--gallery", str(tmp_path / "data" / "gallery.db"),
             "--set", f"unknowns.crops_dir={crops}", *SMALL],
            capture_output=True, text=True, env=env, timeout=600,
        )  # fmt: skip
    finally:
        os.umask(old)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert any(crops.rglob("*.jpg")), "no review crops were written"
    modes = {}
    for path in [*cache.rglob("*"), cache, *crops.rglob("*"), *crops.parents]:
        if path.is_relative_to(tmp_path) and path != tmp_path:
            modes[path] = stat.S_IMODE(path.stat().st_mode)
    assert cache / "streamrec" / "models" / "sha256.json" in modes
    # OpenVINO's cache is made only where OpenVINO can read it back (not with the pip wheels)
    assert (cache / "streamrec" / "ov_cache" in modes) == cache_readable()[0]
    ov_cache = cache / "streamrec" / "ov_cache"  # OpenVINO makes its blobs 0440 in there

    def private(p: Path, m: int) -> bool:
        return m == 0o700 if p.is_dir() else m == 0o600 or (p.parent == ov_cache and m & 0o007 == 0)

    wide = {str(p.relative_to(tmp_path)): oct(m) for p, m in modes.items() if not private(p, m)}
    assert not wide, wide


# -- secrets -----------------------------------------------------------------------------------


def test_tokens_of_any_length_are_redacted(caplog: pytest.LogCaptureFixture) -> None:
    cfg = load_config(None, {"http.token": "k9"})
    register_config(cfg)
    assert redact("offered token k9, expected another") == "offered token ***, expected another"
    words = "k9x and xk9 stay: parts of other words"
    assert redact(words) == words
    record = logging.LogRecord("t", logging.WARNING, __file__, 1, "bad token %s", ("k9",), None)
    RedactingFilter().filter(record)
    assert record.getMessage() == "bad token ***"


CAMERA_URLS = {
    # vendor: (URL, secrets that must not show, user names masked in the URL)
    "Reolink": (
        "http://cam1/cgi-bin/api.cgi?cmd=Snap&channel=0&rs=x1&user=admin&password=ReoPass1",
        ["ReoPass1"], ["admin"],
    ),
    "Foscam": (
        "http://cam2:88/cgi-bin/CGIStream.cgi?cmd=GetMJStream&usr=fosuser&pwd=FosPass2",
        ["FosPass2"], ["fosuser"],
    ),
    "Dahua/Amcrest (old CGI)": (
        "http://cam3/videostream.cgi?loginuse=dahuser&loginpas=DahPass3",
        ["DahPass3"], ["dahuser"],
    ),
    "Synology Surveillance Station": (
        "http://nas:5000/webapi/entry.cgi?api=SYNO.SurveillanceStation.Stream&_sid=SynSid4",
        ["SynSid4"], [],
    ),
    "session id": ("http://cam5/stream.mjpg?sid=SessSid5&k=KeyK5", ["SessSid5", "KeyK5"], []),
    "Blue Iris": ("http://bi:81/mjpg/cam1/video.mjpg?user=biuser&pw=BiPass6", ["BiPass6"], []),
    "TP-Link Tapo": ("rtsp://tapouser:TapoPass7@cam7:554/stream1", ["TapoPass7"], []),
    "Hikvision": (
        "http://cam8/ISAPI/Streaming/channels/101/picture?auth=HikAuth8", ["HikAuth8"], [],
    ),
    "Axis": (
        "http://cam9/axis-cgi/mjpg/video.cgi?resolution=640x480&pwd=AxisPass9", ["AxisPass9"], [],
    ),
}  # fmt: skip


def test_config_show_masks_cameras_url_secrets(tmp_path: Path) -> None:
    config = tmp_path / "cameras.yaml"
    cameras = [
        {"name": f"cam{i}", "source": url} for i, (url, _, _) in enumerate(CAMERA_URLS.values())
    ]
    config.write_text(yaml.safe_dump({"cameras": cameras}))
    shown = streamrec("config", "show", "--config", str(config)).stdout
    for vendor, (_, secrets, users) in CAMERA_URLS.items():
        for secret in [*secrets, *users]:
            assert secret not in shown, f"{vendor}: {secret} shown"
    sources = [c["source"] for c in yaml.safe_load(shown)["cameras"]]
    assert "rs=x1" in sources[0] and "channel=0" in sources[0]  # the rest is shown
    # the values are remembered: masked wherever they appear, a log line or an error
    register_config(load_config(config))
    assert redact("login failed: pwd FosPass2 rejected") == "login failed: pwd *** rejected"
    assert redact("admin signed in") == "admin signed in"  # a user name is not a secret


def test_duplicate_yaml_keys_are_an_error(tmp_path: Path) -> None:
    config = tmp_path / "dup.yaml"
    config.write_text(
        "http:\n  enabled: true\n  token: first-token-000000000\n"
        "detector:\n  interval: 3\n"
        "http:\n  port: 9000\n"
    )
    proc = streamrec("config", "show", "--config", str(config), check=False)
    assert proc.returncode == 2
    assert_one_clear_line(proc, str(config), "line 6", "'http'", "twice")
    assert "first-token" not in proc.stderr
    nested = tmp_path / "nested.yaml"
    nested.write_text("detector:\n  interval: 3\n  threshold: 0.4\n  interval: 5\n")
    proc = streamrec("config", "show", "--config", str(nested), check=False)
    assert_one_clear_line(proc, str(nested), "line 4", "'interval'")


# -- cluster mode ------------------------------------------------------------------------------

_ACTOR = """
import logging, pickle, sys
from streamrec.cluster.actor import CameraActor

cfg = pickle.loads(sys.stdin.buffer.read())  # as Ray hands it to the worker
actor = CameraActor(cfg, cfg.cameras[0])
logging.getLogger("streamrec.sources").warning("camera refused the password %s", sys.argv[2])
logging.getLogger("some.library").error("401 for %s", sys.argv[1].replace("rtsp://", ""))
"""


def test_a_camera_actor_logs_through_the_redacting_filter() -> None:
    """A camera actor's process (a Ray worker logs on its own, forwarded to the head) masks
    its camera's credentials as the daemon does; a fresh interpreter stands in for the worker,
    whose config arrives pickled (its secrets not yet known to that process)."""
    password = "Actor-Pass-1"
    url = f"rtsp://viewer:{password}@10.0.0.9:554/stream"
    cfg = load_config(None, {"cameras": [{"name": "door", "source": url}]})
    proc = subprocess.run(
        [sys.executable, "-c", _ACTOR, url, password],
        input=pickle.dumps(cfg),
        capture_output=True,
        timeout=300,
        cwd=ROOT,
    )
    out = (proc.stdout + proc.stderr).decode(errors="replace")
    assert proc.returncode == 0, out[-3000:]
    assert "camera refused the password ***" in out, out
    assert "401 for" in out
    assert password not in out
