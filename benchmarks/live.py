"""Live cameras: simultaneous 720p@25 RTSP streams into one pipeline, beside PyAV decoding them.

The suite process serves the streams (:func:`rtsp_streams`: one rtsp-server-perl + ffmpeg
publisher per camera, reusing ``tests/rtsp_server.py``), so their CPU is charged to neither
child. Two children run one after the other on the same streams: PyAV decoding them with
nothing else (:func:`live_decode`, the same decoder settings as the pipeline's sources), then the
pipeline (:func:`live`) alone, so that what it drops and how late it is are its own. Each child
touches ``spec["ready_file"]`` once its first frames are through; the suite then writes its
measured window (wall clock, after a warm-up) to ``spec["window_file"]``, and the child measures
its own CPU time over it (all its threads, ``time.process_time``): the pipeline's CPU per frame
is a ratio to decoding's measured in the same run, a minute apart.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from streamrec.telemetry import Latency, Observer

from .cases import Measured, Skipped, Spec, percentile, streamrec_config, summary_measured

_THIRDS = ("first_third_", "middle_third_", "last_third_")
_TESTS = Path(__file__).resolve().parent.parent / "tests"


@contextmanager
def rtsp_streams(clips: list[Path]) -> Iterator[list[str]]:
    """URLs of RTSP cameras, one per clip, each publishing its clip looped in real time
    (``-re``). Skipped when rtsp-server-perl or ffmpeg is missing."""
    sys.path.insert(0, str(_TESTS))
    try:
        from rtsp_server import RtspStream, unavailable
    finally:
        sys.path.remove(str(_TESTS))
    reason = unavailable()
    if reason:
        raise Skipped(reason)
    with ExitStack() as stack:
        yield [stack.enter_context(RtspStream(clip)).url for clip in clips]


def latency_stats(samples: list[tuple[float, float]], prefix: str = "") -> dict[str, Any]:
    """p50/p95 in ms of ``(time, latency s)`` samples, overall and in each third of the time
    they span (first, middle, last): latency that grows, or a p95 that is only met on average,
    shows there. Keys start with ``prefix``."""
    samples = sorted(samples)
    stats: dict[str, Any] = {f"{prefix}count": len(samples)}
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
        stats[f"{prefix}{label}p50_ms"] = percentile(values, 50)
        stats[f"{prefix}{label}p95_ms"] = percentile(values, 95)
    return stats


class LiveRecorder(Observer):
    """The latencies (with the time they were taken) and degradation levels of each camera."""

    def __init__(self) -> None:
        self.latencies: dict[tuple[str, Latency], list[tuple[float, float]]] = {}
        #: per camera: (time, level) at each change
        self.levels: dict[str, list[tuple[float, int]]] = {}
        self._lock = threading.Lock()

    def latency(self, camera: str, kind: Latency, seconds: float) -> None:
        with self._lock:
            self.latencies.setdefault((camera, kind), []).append((time.time(), seconds))

    def degraded(self, camera: str, level: int, what: str) -> None:
        with self._lock:
            self.levels.setdefault(camera, []).append((time.time(), level))

    def samples(self, kind: Latency, window: tuple[float, float], camera: str | None = None
                ) -> list[tuple[float, float]]:  # fmt: skip
        t0, t1 = window
        with self._lock:
            return [
                s
                for (cam, k), values in self.latencies.items()
                if k is kind and camera in (None, cam)
                for s in values
                if t0 <= s[0] <= t1
            ]

    def degradation(self, camera: str, window: tuple[float, float]) -> dict[str, Any]:
        """The camera's highest level, its level at the end, and the seconds spent above 0."""
        t0, t1 = window
        with self._lock:
            changes = list(self.levels.get(camera, []))
        level = next((lv for t, lv in reversed(changes) if t <= t0), 0)
        highest, degraded, since = level, 0.0, t0
        for t, new in changes:
            if t0 < t <= t1:
                degraded += (t - since) if level else 0.0
                level, since, highest = new, t, max(highest, new)
        degraded += (t1 - since) if level else 0.0
        return {"max_level": highest, "end_level": level, "degraded_s": degraded}


def _wait_until(t: float) -> None:
    while (left := t - time.time()) > 0:
        time.sleep(min(left, 0.5))


def _window(spec: Spec) -> tuple[float, float]:
    """The measured window, once the suite has written it."""
    path = Path(spec["window_file"])
    while not path.exists():
        time.sleep(0.1)
    t0, t1 = json.loads(path.read_text())
    return float(t0), float(t1)


class _NoEvents:
    def write(self, event: Any) -> None:
        pass


def live(spec: Spec) -> Measured:
    """One Pipeline over ``spec["urls"]`` (UDP RTSP), measured over the suite's window."""
    from streamrec.analyzer import FaceAnalyzer
    from streamrec.pipeline import Camera, build_pipeline
    from streamrec.pipeline.build import source_options
    from streamrec.recognition import Recognition
    from streamrec.sources import open_source

    cfg = streamrec_config(spec)
    start = time.perf_counter()
    analyzer = FaceAnalyzer.from_config(cfg)
    options = source_options(cfg, "udp")
    sources = [open_source(url, options) for url in spec["urls"]]
    recorder = LiveRecorder()
    window = (0.0, 0.0)
    marks: dict[str, tuple[float, dict[str, tuple[int, int, int]]]] = {}
    try:
        cams = [Camera(f"cam{i}", src, cfg.detector.interval) for i, src in enumerate(sources)]
        pipeline = build_pipeline(
            cfg, cams, _NoEvents(), Recognition(analyzer), observers=[recorder]
        )
        load = time.perf_counter() - start

        def mark() -> tuple[float, dict[str, tuple[int, int, int]]]:
            cams = pipeline.summary.cameras
            counts = {n: (c.frames, pipeline.dropped(n), c.detector_runs) for n, c in cams.items()}
            return time.process_time(), counts

        def measure() -> None:
            nonlocal window
            while pipeline.progress == 0 and not pipeline.stopping:
                time.sleep(0.05)
            Path(spec["ready_file"]).touch()
            window = _window(spec)
            if time.time() > window[0] + 1.0:  # the suite stopped waiting for the first frame
                pipeline.stop()
                return
            _wait_until(window[0])
            marks["start"] = mark()
            _wait_until(window[1])
            marks["end"] = mark()
            pipeline.stop()

        timer = threading.Thread(target=measure, daemon=True)
        timer.start()
        summary = pipeline.run()
        timer.join(5.0)
    finally:
        for src in sources:
            src.close()
    if "end" not in marks:
        why = summary.error or "its first frame came after the window had started"
        raise RuntimeError(f"the pipeline was not running through the measured window: {why}")
    out = summary_measured(summary, load)
    (cpu0, counts0), (cpu1, counts1) = marks["start"], marks["end"]
    seconds = window[1] - window[0]
    cameras = {}
    for name in counts1:
        (f0, d0, r0), (f1, d1, r1) = counts0[name], counts1[name]
        cameras[name] = {
            "clip": spec["clips"][int(name.removeprefix("cam"))],
            "fps": (f1 - f0) / seconds,
            "frames": f1 - f0,
            "dropped": d1 - d0,
            "detector_runs": r1 - r0,
            **recorder.degradation(name, window),
            **_latencies(recorder, window, name),
        }
    out.frames = sum(c["frames"] for c in cameras.values())
    out.wall_s = seconds
    out.extra.update(
        cpu_s=cpu1 - cpu0,
        received=sum(c["frames"] + c["dropped"] for c in cameras.values()),
        cameras=cameras,
        **_latencies(recorder, window),
    )
    return out


def _latencies(recorder: LiveRecorder, window: tuple[float, float], camera: str | None = None
               ) -> dict[str, Any]:  # fmt: skip
    """p50/p95 (and by thirds) of each latency, keys ``frame_``, ``decision_``, ``event_``,
    ``track_end_``."""
    out: dict[str, Any] = {}
    for kind in Latency:
        out.update(latency_stats(recorder.samples(kind, window, camera), f"{kind.value}_"))
    return out


def live_decode(spec: Spec) -> Measured:
    """PyAV decoding ``spec["urls"]`` (UDP RTSP, each in its own thread) with the pipeline's
    decoder settings and nothing else, measured over the suite's window."""
    from streamrec.pipeline.build import source_options
    from streamrec.sources.pyav import decode_video, open_video

    cfg = streamrec_config(spec)
    options = source_options(cfg, "udp")
    ffmpeg = {"timeout": str(int(options.stall_timeout * 1e6)), "rtsp_transport": "udp",
              "allowed_media_types": "video"}  # fmt: skip
    counts = [0] * len(spec["urls"])
    done = threading.Event()
    errors: list[BaseException] = []

    def decode(i: int, url: str) -> None:
        try:
            opened = open_video(url, ffmpeg, (options.open_timeout, options.stall_timeout + 1),
                                options.decoder_threads)  # fmt: skip
            try:
                for _ in decode_video(opened, lambda reason: None, options.stall_timeout):
                    counts[i] += 1
                    if done.is_set():
                        return
            finally:
                opened[0].close()
        except BaseException as exc:  # reported after the window
            errors.append(exc)

    threads = [threading.Thread(target=decode, args=(i, u), daemon=True)
               for i, u in enumerate(spec["urls"])]  # fmt: skip
    for t in threads:
        t.start()
    while not all(counts) and not errors and not done.wait(0.05):
        pass  # every stream decodes
    Path(spec["ready_file"]).touch()
    t0, t1 = _window(spec)
    _wait_until(t0)
    cpu0, n0 = time.process_time(), sum(counts)
    _wait_until(t1)
    cpu1, n1 = time.process_time(), sum(counts)
    done.set()
    if errors:
        raise RuntimeError(f"decoding failed: {errors[0]!r}")
    return Measured(frames=n1 - n0, wall_s=t1 - t0, extra={"cpu_s": cpu1 - cpu0})
