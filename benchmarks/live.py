"""Live cameras: N simultaneous 720p@25 RTSP streams into one pipeline, and start-up time.

The suite process serves the streams (:func:`rtsp_streams`: one rtsp-server-perl + ffmpeg
publisher per camera, reusing ``tests/rtsp_server.py``), so their CPU is not charged to the
measured pipeline, which runs in a child process (:func:`live`).
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from .cases import Measured, Spec, streamrec_config, summary_measured

LIVE_SIZE = (1280, 720)
LIVE_FPS = 25
_TESTS = Path(__file__).resolve().parent.parent / "tests"


def live_clip(src: Path, out: Path) -> Path:
    """``src`` scaled to 720p at 25 fps (H.264, a key frame every second), made once."""
    if not out.is_file():
        w, h = LIVE_SIZE
        subprocess.run(
            [
                "ffmpeg", "-v", "error", "-i", str(src), "-map", "0:v:0",
                "-vf", f"scale={w}:{h}", "-r", str(LIVE_FPS), "-c:v", "libx264",
                "-preset", "veryfast", "-g", str(LIVE_FPS), "-bf", "0", "-y", str(out),
            ],
            check=True,
        )  # fmt: skip
    return out


@contextmanager
def rtsp_streams(clip: Path, count: int) -> Iterator[list[str]]:
    """URLs of ``count`` RTSP cameras, each publishing ``clip`` looped in real time (``-re``)."""
    sys.path.insert(0, str(_TESTS))
    try:
        from rtsp_server import RtspStream, unavailable
    finally:
        sys.path.remove(str(_TESTS))
    reason = unavailable()
    if reason:
        raise RuntimeError(reason)
    with ExitStack() as stack:
        yield [stack.enter_context(RtspStream(clip)).url for _ in range(count)]


class LatencyWriter:
    """An event sink recording capture-to-emit latency: ``(emit time, time.time() - captured)``."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, float]] = []
        self._lock = threading.Lock()

    def write(self, event: Any) -> None:
        if event.captured is not None:
            now = time.time()
            with self._lock:
                self.samples.append((now, now - event.captured))


def _percentile(values: list[float], q: int) -> float | None:
    if len(values) < 2:
        return values[0] if values else None
    return statistics.quantiles(values, n=100)[q - 1]


def latency_stats(samples: list[tuple[float, float]]) -> dict[str, Any]:
    """p50/p95 in ms overall, and p50 of the first and last third of the run (growth check)."""
    ordered = [lat * 1000 for _, lat in sorted(samples)]
    third = len(ordered) // 3
    return {
        "events": len(ordered),
        "latency_p50_ms": _percentile(ordered, 50),
        "latency_p95_ms": _percentile(ordered, 95),
        "first_third_p50_ms": _percentile(ordered[:third], 50) if third else None,
        "last_third_p50_ms": _percentile(ordered[-third:], 50) if third else None,
    }


def live(spec: Spec) -> Measured:
    """One Pipeline over ``spec["urls"]`` (UDP RTSP) for ``spec["seconds"]`` seconds."""
    from streamrec.analyzer import FaceAnalyzer
    from streamrec.pipeline import Camera, build_pipeline
    from streamrec.pipeline.build import source_options
    from streamrec.sources import open_source

    cfg = streamrec_config(spec)
    start = time.perf_counter()
    analyzer = FaceAnalyzer.from_config(cfg)
    options = source_options(cfg, "udp")
    sources = [open_source(url, options) for url in spec["urls"]]
    writer = LatencyWriter()
    try:
        cameras = [Camera(f"cam{i}", src, cfg.detector.interval) for i, src in enumerate(sources)]
        pipeline = build_pipeline(cfg, cameras, writer, analyzer)
        load = time.perf_counter() - start
        timer = threading.Timer(spec["seconds"], pipeline.stop)
        timer.start()
        try:
            summary = pipeline.run()
        finally:
            timer.cancel()
    finally:
        for src in sources:
            src.close()
    out = summary_measured(summary, load)
    out.extra.update(latency_stats(writer.samples))
    out.extra["cameras"] = {
        name: {"fps": c.frames / summary.wall_time, "frames": c.frames, "dropped": c.dropped}
        for name, c in summary.cameras.items()
    }
    return out
