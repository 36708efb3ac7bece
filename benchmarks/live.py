"""Live cameras: N simultaneous 720p@25 RTSP streams into one pipeline.

The suite process serves the streams (:func:`rtsp_streams`: one rtsp-server-perl + ffmpeg
publisher per camera, reusing ``tests/rtsp_server.py``), so their CPU is not charged to the
measured pipeline, which runs in a child process (:func:`live`).
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from .cases import Measured, Skipped, Spec, percentile, streamrec_config, summary_measured

_THIRDS = ("first_third_", "middle_third_", "last_third_")
_TESTS = Path(__file__).resolve().parent.parent / "tests"


@contextmanager
def rtsp_streams(clip: Path, count: int) -> Iterator[list[str]]:
    """URLs of ``count`` RTSP cameras, each publishing ``clip`` looped in real time (``-re``).

    Skipped when rtsp-server-perl or ffmpeg is missing."""
    sys.path.insert(0, str(_TESTS))
    try:
        from rtsp_server import RtspStream, unavailable
    finally:
        sys.path.remove(str(_TESTS))
    reason = unavailable()
    if reason:
        raise Skipped(reason)
    with ExitStack() as stack:
        yield [stack.enter_context(RtspStream(clip)).url for _ in range(count)]


class LatencyWriter:
    """An event sink recording ``(emit time, capture-to-emit latency)`` per camera."""

    def __init__(self) -> None:
        self.samples: dict[str, list[tuple[float, float]]] = {}
        self._lock = threading.Lock()

    def write(self, event: Any) -> None:
        if event.captured is not None:
            now = time.time()
            with self._lock:
                self.samples.setdefault(event.camera or "", []).append((now, now - event.captured))


def latency_stats(samples: list[tuple[float, float]]) -> dict[str, Any]:
    """p50/p95 in ms overall and in each third of the time the events span (first, middle,
    last): latency that grows, or a p95 that is only met on average, shows there."""
    samples = sorted(samples)
    stats: dict[str, Any] = {"events": len(samples)}
    thirds: list[list[float]] = [[], [], []]
    if samples:
        t0, span = samples[0][0], samples[-1][0] - samples[0][0]
        for t, lat in samples:
            k = min(2, int(3 * (t - t0) / span)) if span > 0 else 0
            thirds[k].append(lat * 1000)
    for label, values in (
        ("", [lat * 1000 for _, lat in samples]),
        *zip(_THIRDS, thirds, strict=True),
    ):
        stats[f"{label}p50_ms"] = percentile(values, 50)
        stats[f"{label}p95_ms"] = percentile(values, 95)
    return stats


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
    out.extra.update(latency_stats([s for cam in writer.samples.values() for s in cam]))
    out.extra["cameras"] = {
        name: {
            "fps": c.frames / summary.wall_time,
            "frames": c.frames,
            "dropped": c.dropped,
            **latency_stats(writer.samples.get(name, [])),
        }
        for name, c in summary.cameras.items()
    }
    return out
