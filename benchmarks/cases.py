"""Workloads measured by the suite, each run in a fresh child process (``benchmarks.child``).

A workload takes its spec (a JSON-able dict made by ``benchmarks.suite``) and returns a
:class:`Measured`: frames and wall time of its measured window (model loading excluded), plus the
counts that apply. ``Skipped`` means the workload cannot run here (e.g. a peer is not installed).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

DETECTOR = "det_500m.onnx"
RECOGNIZER = "mobilefacenet_128d.onnx"
DET_SIZE = 640  # streamrec's default detector.input_size; the peers get the same

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
    providers: list[str] | None = None
    #: workload-specific numbers (live latency, start-up time)
    extra: dict[str, Any] = field(default_factory=dict)


def streamrec_config(spec: Spec) -> Any:
    """streamrec's config for a spec: the small models by default, ``spec["set"]`` on top."""
    from streamrec import load_config

    overrides: dict[str, Any] = {
        "models.detector": DETECTOR,
        "models.recognizer": RECOGNIZER,
        "models.dir": spec["models"],
        "models.download": False,
        "gallery": None,
    }
    overrides.update(spec.get("set", {}))
    return load_config(None, overrides)


def decode_frames(clip: str) -> Iterator[Any]:
    """Every frame of ``clip`` as a BGR ndarray, read by streamrec's own file source (its reader
    thread and decoder settings): the ceiling of file processing."""
    from streamrec import load_config
    from streamrec.pipeline.build import source_options
    from streamrec.records import Frame
    from streamrec.sources import open_source

    with open_source(clip, source_options(load_config(None))) as source:
        for item in source:
            if isinstance(item, Frame):
                yield item.image


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
        extra={"embed_calls": summary.embed_calls},
    )


def streamrec(spec: Spec) -> Measured:
    """``streamrec.runner.run_video``: events only (no video output, no gallery)."""
    from streamrec.runner import run_video

    cfg = streamrec_config(spec)
    start = time.perf_counter()
    summary = run_video(cfg, spec["clip"], progress=False)
    return summary_measured(summary, time.perf_counter() - start - summary.wall_time)


def startup(spec: Spec) -> Measured:
    """Time from process start (``spec["t0"]``, taken by the parent just before spawning this
    process) to the first frame leaving the pipeline: imports, config, model loading (from the
    OpenVINO cache when warm), opening the source and one frame through every stage."""
    from streamrec.analyzer import FaceAnalyzer
    from streamrec.pipeline import Camera, build_pipeline
    from streamrec.pipeline.build import source_options
    from streamrec.sources import open_source

    imported = time.time()
    cfg = streamrec_config(spec)
    analyzer = FaceAnalyzer.from_config(cfg)
    loaded = time.time()
    source = open_source(spec["clip"], source_options(cfg))
    first: list[float] = []
    try:
        camera = Camera("clip", source, cfg.detector.interval)
        pipeline = build_pipeline(cfg, [camera], _Null(), analyzer)

        def watch() -> None:
            while pipeline.progress == 0 and not pipeline.stopping:
                time.sleep(0.002)
            first.append(time.time())
            pipeline.stop()

        threading.Thread(target=watch, daemon=True).start()
        summary = pipeline.run()
    finally:
        source.close()
    if not first or summary.error:
        raise RuntimeError(f"no frame processed: {summary.error}")
    t0 = spec["t0"]
    return Measured(
        frames=summary.frames,
        wall_s=first[0] - t0,
        extra={
            "first_frame_s": first[0] - t0,
            "imports_s": imported - t0,
            "models_s": loaded - imported,
        },
    )


class _Null:
    def write(self, event: Any) -> None:
        pass
