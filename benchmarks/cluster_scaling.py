"""Throughput of ``streamrec serve`` on a local Ray cluster with 1, 2 and 4 file cameras.

Starts a head and a worker node on loopback addresses (one CPU each: the machine's 2 cores), runs
N cameras of a looped clip with the small models, and measures the steady state: the frames every
camera processes in ``--seconds`` once all of them are running (model loading excluded).

    python -m benchmarks.cluster_scaling [--cameras 1,2,4] [--seconds 30]

Writes benchmarks/results/cluster_scaling.md and .json. Needs STREAMREC_MODELS / STREAMREC_MEDIA.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

HEAD, WORKER = "127.0.0.3", "127.0.0.2"  # Ray maps 127.0.0.1 to the outward address
RAY = str(Path(sys.executable).with_name("ray"))
SMALL = {
    "models.detector": "det_500m.onnx",
    "models.recognizer": "mobilefacenet_128d.onnx",
    "models.download": False,
}
RESULTS = Path(__file__).resolve().parent / "results"


def _ray(*args: str, env: dict[str, str]) -> None:
    proc = subprocess.run([RAY, *args], env=env, capture_output=True, text=True, timeout=240)
    if proc.returncode != 0:
        raise RuntimeError(f"ray {args[0]} failed: {proc.stdout[-2000:]} {proc.stderr[-2000:]}")


@contextmanager
def local_cluster(cpus_per_node: int = 1) -> Iterator[str]:
    """A head and a worker node on this machine; yields the address; ``ray stop`` afterwards."""
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths are limited
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    with socket.socket() as s:
        s.bind((HEAD, 0))
        port = int(s.getsockname()[1])
    address = f"{HEAD}:{port}"
    cpus = f"--num-cpus={cpus_per_node}"
    try:
        _ray(
            "start", "--head", f"--node-ip-address={HEAD}", f"--port={port}", cpus,
            f"--temp-dir={temp}", "--include-dashboard=false", "--disable-usage-stats", env=env,
        )  # fmt: skip
        _ray(
            "start", f"--address={address}", f"--node-ip-address={WORKER}", cpus,
            "--disable-usage-stats", env=env,
        )  # fmt: skip
        yield address
    finally:
        subprocess.run([RAY, "stop", "--force"], env=env, capture_output=True, timeout=120)
        shutil.rmtree(temp, ignore_errors=True)


def measure(address: str, clip: Path, cameras: int, seconds: float, tmp: Path) -> dict[str, Any]:
    """Steady-state fps of ``cameras`` cameras of ``clip`` on the cluster at ``address``."""
    from streamrec import load_config
    from streamrec.cluster.driver import ClusterRunner, connect

    cfg = load_config(
        None,
        {
            **SMALL,
            "cluster.address": address,
            "cluster.cpus_per_camera": 0.5,
            "cameras": [{"name": f"cam-{i + 1}", "source": str(clip)} for i in range(cameras)],
            "events.jsonl": str(tmp / f"events-{cameras}.jsonl"),
        },
    )
    stop = threading.Event()
    result: dict[str, Any] = {}

    def sample(runner: ClusterRunner) -> None:
        while not stop.is_set():
            status = runner.status()
            if len(status) == cameras and all(s.state == "running" for s in status.values()):
                break
            time.sleep(0.2)
        t0, before = time.monotonic(), {n: s.frames for n, s in runner.status().items()}
        stop.wait(seconds)
        elapsed = time.monotonic() - t0
        after = {n: s.frames for n, s in runner.status().items()}
        per_camera = {n: (after[n] - before[n]) / elapsed for n in before}
        result.update(
            cameras=cameras,
            seconds=round(elapsed, 1),
            total_fps=round(sum(per_camera.values()), 2),
            per_camera_fps={n: round(v, 2) for n, v in per_camera.items()},
        )
        stop.set()

    with connect(cfg):
        runner = ClusterRunner(cfg, stop)
        sampler = threading.Thread(target=sample, args=(runner,), daemon=True)
        sampler.start()
        runner.run()
        sampler.join(10)
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cameras", default="1,2,4", help="camera counts to run (default 1,2,4)")
    ap.add_argument("--seconds", type=float, default=30.0, help="measured seconds per run")
    args = ap.parse_args()
    media = os.environ.get("STREAMREC_MEDIA")
    if not media or not os.environ.get("STREAMREC_MODELS"):
        sys.exit("set STREAMREC_MODELS and STREAMREC_MEDIA")
    counts = [int(n) for n in args.cameras.split(",")]
    runs = []
    with tempfile.TemporaryDirectory() as tmpdir, local_cluster() as address:
        tmp = Path(tmpdir)
        clip = tmp / "loop.mp4"
        src = Path(media) / "face_recognition" / "short_hamilton_clip.mp4"
        subprocess.run(
            [
                "ffmpeg",
                "-v",
                "error",
                "-stream_loop",
                "30",
                "-i",
                str(src),
                "-c",
                "copy",
                str(clip),
            ],
            check=True,
        )
        for n in counts:
            runs.append(measure(address, clip, n, args.seconds, tmp))
            print(json.dumps(runs[-1]), flush=True)
    setup = (
        "2 Ray nodes (head + worker) on one 2-core machine, 1 CPU each; "
        "cpus_per_camera 0.5 (1 inference thread per actor); det_500m + MobileFaceNet, "
        "detector.interval 5; short_hamilton_clip.mp4 (640x360) looped"
    )
    load = os.getloadavg()
    report = {"setup": setup, "load_average_after": load, "runs": runs}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "cluster_scaling.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        "# Cluster scaling (local Ray cluster, file cameras)",
        "",
        setup + ".",
        f"Load average at the end (the machine is shared): {', '.join(f'{x:.1f}' for x in load)}.",
        "",
        "| cameras | total fps | per-camera fps |",
        "| ---: | ---: | --- |",
    ]
    for r in runs:
        per = ", ".join(f"{n} {v:.1f}" for n, v in r["per_camera_fps"].items())
        lines.append(f"| {r['cameras']} | {r['total_fps']:.1f} | {per} |")
    (RESULTS / "cluster_scaling.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
