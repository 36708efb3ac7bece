"""streamrec on a real local Ray cluster: a head and a worker node on loopback addresses.

Ray turns 127.0.0.1 into the machine's outward address, so the two nodes use 127.0.0.3 (head)
and 127.0.0.2 (worker): every connection stays on the loopback interface.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("ray", reason="ray is not installed (pip install 'streamrec[cluster]')")

import ray

from benchmarks.cluster_scaling import local_cluster
from streamrec import load_config
from streamrec.cluster.driver import ClusterRunner, connect, ray_get

SMALL = {"models.detector": "det_500m.onnx", "models.recognizer": "mobilefacenet_128d.onnx"}
#: the clips' faces are large: a smaller detector input keeps the suite fast on 2 cores
FAST = {**SMALL, "models.download": False, "detector.input_size": 320}
LMM = "Lin-Manuel Miranda"


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
    cfg = _config(cluster, tmp_path, cameras)
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


def _wait_for(predicate: Any, timeout: float, what: str, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc.poll() is not None:
            raise AssertionError(f"serve exited ({proc.returncode}) while waiting for {what}")
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "streamrec", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=True)


def test_person_enrolled_while_serving_is_recognised_on_every_actor(
    cluster: str, media_dir: Path, tmp_path: Path
) -> None:
    faces = media_dir / "face_recognition"
    loop = tmp_path / "loop.mp4"
    clip = faces / "short_hamilton_clip.mp4"
    ffmpeg = ["ffmpeg", "-v", "error", "-stream_loop", "20", "-i", str(clip), "-c", "copy"]
    subprocess.run([*ffmpeg, str(loop)], check=True, timeout=120)
    gallery = tmp_path / "gallery.db"
    sets = [f"--set={k}={v}" for k, v in FAST.items()]
    _cli("gallery", "add", "Alex Lacamoire", str(faces / "alex-lacamoire.png"),
         f"--gallery={gallery}", *sets)  # fmt: skip
    cameras = [{"name": "cam-1", "source": str(loop)}, {"name": "cam-2", "source": str(loop)}]
    config = tmp_path / "cluster.yaml"
    config.write_text(
        json.dumps(
            {
                "models": {
                    "detector": SMALL["models.detector"],
                    "recognizer": SMALL["models.recognizer"],
                    "download": False,
                },
                "detector": {"input_size": FAST["detector.input_size"]},
                "gallery": str(gallery),
                "cameras": cameras,
                "events": {"jsonl": str(tmp_path / "events.jsonl")},
                "cluster": {"address": cluster, "cpus_per_camera": 0.5, "gallery_poll": 1.0},
            }
        )
    )
    jsonl = tmp_path / "events.jsonl"
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamrec", "serve", "--config", str(config)],
        stdout=log, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip

    def seen(kind: str, name: str | None = None) -> set[str]:
        if not jsonl.exists():
            return set()
        return {
            e["camera"]
            for e in _events(jsonl)
            if e["event"] == kind and (name is None or e.get("name") == name)
        }

    try:
        _wait_for(lambda: seen("track_start") == {"cam-1", "cam-2"}, 150, "both cameras", proc)
        assert seen("identified", LMM) == set()
        _cli("gallery", "add", LMM, str(faces / "lin-manuel-miranda.png"),
             f"--gallery={gallery}", *sets)  # fmt: skip
        _wait_for(lambda: seen("identified", LMM) == {"cam-1", "cam-2"}, 120, "LMM on both", proc)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=120) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    _check_exactly_once(_events(jsonl))
