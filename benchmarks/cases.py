"""Workloads measured by the suite, each run in a fresh child process (``benchmarks.child``).

A workload takes its spec (a JSON-able dict made by ``benchmarks.suite``) and returns a
:class:`Measured`: frames and wall time of its measured window (model loading excluded), plus the
counts that apply. ``Skipped`` means the workload cannot run here (a peer is not installed, the
device lacks a precision); the reason is reported in its row.

Every spec names its models: ``models`` (the folder), ``detector`` and ``recognizer`` (file
names in it or paths), and ``set`` (config overrides on top).
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DETECTOR = "det_500m.onnx"
RECOGNIZER = "mobilefacenet_128d.onnx"
DET_SIZE = 640  # streamrec's default detector.input_size; the peers get the same
ROOT = Path(__file__).resolve().parent.parent

Spec = dict[str, Any]


class Skipped(Exception):
    """The workload cannot run on this machine; the message says why."""


@dataclass
class Measured:
    frames: int
    wall_s: float
    load_s: float | None = None
    faces: int | None = None
    detector_runs: int | None = None
    embeddings: int | None = None
    #: busy seconds per pipeline step (streamrec's ``Summary.stage_seconds``; decode-only: decode)
    stage_seconds: dict[str, float] = field(default_factory=dict)
    #: how each model ran (streamrec: ``RuntimeInfo.describe()``; peers: their providers)
    providers: list[str] | None = None
    #: workload-specific numbers (live latency, start-up time, detector timings)
    extra: dict[str, Any] = field(default_factory=dict)


def percentile(values: list[float], q: int) -> float | None:
    """The ``q``-th percentile of ``values`` (None when there are none)."""
    if len(values) < 2:
        return values[0] if values else None
    return statistics.quantiles(values, n=100)[q - 1]


def overrides(spec: Spec) -> dict[str, Any]:
    """streamrec config keys for a spec: its models, events only, ``spec["set"]`` on top."""
    return {
        "models.detector": spec.get("detector", DETECTOR),
        "models.recognizer": spec.get("recognizer", RECOGNIZER),
        "models.dir": spec["models"],
        "models.download": False,
        "gallery": None,
        **spec.get("set", {}),
    }


def streamrec_config(spec: Spec) -> Any:
    """streamrec's config for a spec; Skipped when the device lacks the precision it asks for."""
    from streamrec import load_config
    from streamrec.models.runtime import device_info, openvino_available

    cfg = load_config(None, overrides(spec))
    rt = cfg.runtime
    if rt.precision in ("BF16", "FP16") and rt.provider == "openvino" and openvino_available():
        device = device_info(rt.device)
        if device is not None and not device.supports(rt.precision):
            caps = " ".join(sorted(device.capabilities))
            raise Skipped(f"{device.full_name} has no {rt.precision} (OpenVINO: {caps})")
    return cfg


def runtime_descriptions() -> list[str]:
    """How every model this process loaded runs (provider, device, precision, INT8)."""
    from streamrec.models.runtime import loaded_models

    return [info.describe() for info in loaded_models()]


def precisions() -> str:
    """The precision of every model loaded, in loading order (detector / recognizer)."""
    from streamrec.models.runtime import loaded_models

    infos = loaded_models()
    return " / ".join(("INT8+" if i.quantized else "") + i.precision for i in infos)


def decode_frames(clip: str, threads: int | None = None) -> Iterator[Any]:
    """Every frame of ``clip`` as a BGR ndarray, decoded by raw PyAV with frame threads
    (``thread_type="AUTO"``, one thread per core unless ``threads``): the ceiling of any
    processing of the file, and what the peers are fed."""
    import av

    with av.open(clip) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        stream.codec_context.thread_count = threads or len(os.sched_getaffinity(0))
        for frame in container.decode(stream):
            yield frame.to_ndarray(format="bgr24")


def decode(spec: Spec) -> Measured:
    start = time.perf_counter()
    frames = sum(1 for _ in decode_frames(spec["clip"]))
    wall = time.perf_counter() - start
    return Measured(frames=frames, wall_s=wall, stage_seconds={"decode": wall})


def summary_measured(summary: Any, load_s: float | None = None) -> Measured:
    """A pipeline ``Summary`` as a Measured (counts summed over cameras)."""
    if summary.error:
        raise RuntimeError(f"streamrec run failed: {summary.error}")
    cams = summary.cameras.values()
    return Measured(
        frames=summary.frames,
        wall_s=summary.wall_time,
        load_s=load_s,
        faces=sum(c.faces for c in cams),
        detector_runs=sum(c.detector_runs for c in cams),
        embeddings=sum(c.embeddings for c in cams),
        stage_seconds=dict(summary.stage_seconds),
        providers=runtime_descriptions(),
        extra={"embed_calls": summary.embed_calls, "precision": precisions()},
    )


def streamrec(spec: Spec) -> Measured:
    """``streamrec.runner.run_video``: events only (no video output, no gallery)."""
    from streamrec.runner import run_video

    cfg = streamrec_config(spec)
    start = time.perf_counter()
    summary = run_video(cfg, spec["clip"], progress=False)
    return summary_measured(summary, time.perf_counter() - start - summary.wall_time)


def detector(spec: Spec) -> Measured:
    """The detector alone (``ScrfdDetector.detect``: letterbox, inference, decoding, NMS) on
    every frame of the clip, with the pipeline's runtime settings. Only the ``detect`` calls are
    timed; frames are decoded in between on one thread, so nothing runs beside them."""
    from streamrec.models.detector import ScrfdDetector
    from streamrec.models.registry import resolve

    cfg = streamrec_config(spec)
    path = resolve(cfg.models.detector, "detector", cfg.models.dir, cfg.models.download).path
    start = time.perf_counter()
    model = ScrfdDetector(path, cfg.detector, cfg.runtime)
    load = time.perf_counter() - start
    times: list[float] = []
    faces = 0
    size: tuple[int, int] | None = None
    for image in decode_frames(spec["clip"], threads=1):
        size = size or model.input_for(image.shape[1], image.shape[0])
        t = time.perf_counter()
        faces += len(model.detect(image))
        times.append(time.perf_counter() - t)
    if not times or size is None:
        raise RuntimeError(f"no frame decoded from {spec['clip']}")
    ms = [1000 * t for t in times]
    return Measured(
        frames=len(times),
        wall_s=sum(times),
        load_s=load,
        faces=faces,
        detector_runs=len(times),
        stage_seconds={"detect": sum(times)},
        providers=runtime_descriptions(),
        extra={
            "precision": precisions(),
            "input": f"{size[0]}x{size[1]}",
            "detect_ms_p50": percentile(ms, 50),
            "detect_ms_p95": percentile(ms, 95),
        },
    )


def startup(spec: Spec) -> Measured:
    """Time from process start (``spec["t0"]``, taken by the parent just before spawning this
    process) to the first frame leaving the pipeline: imports, config, model loading (the
    precision checks' verdicts read from the cache when warm), opening the source and one frame
    through every stage."""
    from streamrec.analyzer import FaceAnalyzer
    from streamrec.pipeline import Camera, build_pipeline
    from streamrec.pipeline.build import source_options
    from streamrec.recognition import Recognition
    from streamrec.sources import open_source

    imported = time.time()
    cfg = streamrec_config(spec)
    analyzer = FaceAnalyzer.from_config(cfg)
    loaded = time.time()
    first: list[float] = []
    with open_source(spec["clip"], source_options(cfg)) as source:
        camera = Camera("clip", source, cfg.detector.interval)
        pipeline = build_pipeline(cfg, [camera], _Null(), Recognition(analyzer))
        done = threading.Event()

        def watch() -> None:
            while pipeline.progress == 0:
                if done.wait(0.002):
                    return
            first.append(time.time())
            pipeline.stop()

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        summary = pipeline.run()
        done.set()
        watcher.join(5.0)
    if not first or summary.error or summary.frames == 0:
        raise RuntimeError(f"no frame processed: {summary.error}")
    t0 = spec["t0"]
    return Measured(
        frames=summary.frames,
        wall_s=first[0] - t0,
        providers=runtime_descriptions(),
        extra={
            "first_frame_s": first[0] - t0,
            "imports_s": imported - t0,
            "models_s": loaded - imported,
        },
    )


def whole_run(spec: Spec) -> Measured:
    """``python -m streamrec run CLIP`` as a process, timed from spawn to exit (events to a
    file, no progress bar); the summary it writes gives the frames and its own wall time."""
    with tempfile.TemporaryDirectory(prefix="bench-run-") as tmp:
        summary_file = Path(tmp) / "summary.json"
        sets = [f"{k}={'null' if v is None else v}" for k, v in overrides(spec).items()]
        cmd = [
            sys.executable, "-m", "streamrec", "run", spec["clip"], "--no-progress",
            "--events", str(Path(tmp) / "events.jsonl"), "--summary-json", str(summary_file),
            *[a for s in sets for a in ("--set", s)],
        ]  # fmt: skip
        start = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            lines = proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"]
            raise RuntimeError(f"streamrec run failed: {lines[-1]}")
        summary = json.loads(summary_file.read_text())
    # the streamrec process's peak RSS (this process's own VmHWM does not include it)
    peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return Measured(
        frames=summary["frames"],
        wall_s=wall,
        extra={"process_s": wall, "pipeline_s": summary["wall_time"], "run_rss_mb": peak_mib},
    )


class _Null:
    def write(self, event: Any) -> None:
        pass
