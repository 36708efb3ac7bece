"""The benchmark suite of issue 6: ``python -m benchmarks`` (``--help``; ``--quick`` smoke run).

Every case runs alone in a fresh child process (``benchmarks.child``), one after the other, so
each gets an honest peak RSS and nothing is shared between cases. Writes
``results/suite.{md,json}`` and ``results/suite.png`` (fps and per-stage time per case).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .cases import DETECTOR, RECOGNIZER
from .live import live_clip, rtsp_streams
from .report import machine_info, render, write_plots

RESULTS = Path(__file__).resolve().parent / "results"
CACHE = Path(__file__).resolve().parent / ".cache"
R50 = "w600k_r50_arch_equiv.onnx"
CLIPS = {
    "1080p": Path("facenet_pytorch") / "video.mp4",
    "360p": Path("face_recognition") / "short_hamilton_clip.mp4",
}
LIVE_CLIP = CLIPS["360p"]
LIVE_STREAMS = (1, 2, 4)


@dataclass
class Case:
    group: str  # "1080p", "360p", "live", "startup"
    name: str
    spec: dict[str, Any]
    result: dict[str, Any] = field(default_factory=dict)


def video_cases(group: str, clip: Path, models: Path, r50: Path) -> list[Case]:
    """Every per-clip case: decode only, streamrec variants, the peers."""
    base = {"clip": str(clip), "models": str(models)}

    def sr(name: str, overrides: dict[str, Any]) -> Case:
        return Case(group, f"streamrec {name}", {**base, "kind": "streamrec", "set": overrides})

    interval = "detector.interval"
    cases = [Case(group, "decode only (PyAV)", {**base, "kind": "decode"})]
    cases += [sr(f"interval {n}", {interval: n}) for n in (1, 3, 5, 10)]
    cases += [
        sr("interval 5, CPU EP", {interval: 5, "runtime.provider": "cpu"}),
        sr("interval 1, batch 1", {interval: 1, "recognition.batch_size": 1}),
        sr("interval 5, IResNet-50 (arch-equivalent, random weights)",
           {interval: 5, "models.recognizer": str(r50)}),
        Case(group, "InsightFace FaceAnalysis per frame", {**base, "kind": "insightface"}),
        Case(group, "face_recognition (dlib HOG, 1/4 size, every 2nd frame)",
             {**base, "kind": "face_recognition"}),
    ]  # fmt: skip
    return cases


def live_cases(models: Path, seconds: float) -> list[Case]:
    spec = {"kind": "live", "models": str(models), "seconds": seconds}
    return [Case("live", f"{n}× 720p@25 RTSP", {**spec, "streams": n}) for n in LIVE_STREAMS]


def startup_cases(clip: Path, models: Path, cache: Path) -> list[Case]:
    """Twice with the same fresh OpenVINO cache dir: first cold (cache empty), then warm."""
    spec = {
        "kind": "startup",
        "clip": str(clip),
        "models": str(models),
        "set": {"runtime.cache_dir": str(cache)},
    }
    return [Case("startup", f"start-up, {w} OpenVINO cache", spec) for w in ("empty", "warm")]


# ------------------------------------------------------------------------------------ running


def run_child(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one workload in a fresh process; its result plus process wall time and load."""
    with tempfile.TemporaryDirectory(prefix="bench-case-") as tmp:
        out = Path(tmp) / "result.json"
        load0 = os.getloadavg()
        start = time.perf_counter()
        spec = {**spec, "t0": time.time()}
        proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.child", str(out)],
            stdin=subprocess.PIPE,
            cwd=Path(__file__).resolve().parent.parent,
        )
        assert proc.stdin is not None
        proc.stdin.write(json.dumps(spec).encode())
        proc.stdin.close()
        proc.wait()
        result: dict[str, Any] = (
            json.loads(out.read_text())
            if proc.returncode == 0 and out.is_file()
            else {"error": f"child exited with {proc.returncode}"}
        )
    result["process_s"] = time.perf_counter() - start
    result["loadavg"] = [load0, os.getloadavg()]
    return result


def run_case(case: Case, live_src: Path) -> None:
    if case.group == "live":
        with rtsp_streams(live_src, case.spec["streams"]) as urls:
            case.result = run_child({**case.spec, "urls": urls})
    else:
        case.result = run_child(case.spec)
    r = case.result
    note = r.get("skipped") or r.get("error") or f"{_fps(r):.1f} fps"
    print(f"[{case.group}] {case.name}: {note}", flush=True)


def _fps(result: dict[str, Any]) -> float:
    m = result["measured"]
    return float(m["frames"] / m["wall_s"]) if m["wall_s"] > 0 else 0.0


# ------------------------------------------------------------------------------------ inputs


@contextmanager
def looped(src: Path, loops: int) -> Iterator[Path]:
    """``src`` played ``loops`` times in a row (video only, stream copy) in a temp file."""
    if loops == 1:
        yield src
        return
    with tempfile.TemporaryDirectory(prefix="bench-loop-") as tmp:
        listing = Path(tmp) / "loop.txt"
        listing.write_text(f"file '{src.resolve()}'\n" * loops)
        out = Path(tmp) / f"{src.stem}_x{loops}.mp4"
        cmd = ["ffmpeg", "-v", "error", "-f", "concat", "-safe", "0", "-i", str(listing)]
        subprocess.run([*cmd, "-map", "0:v:0", "-c", "copy", "-y", str(out)], check=True)
        yield out


def r50_model(cache: Path) -> Path:
    """The architecture-equivalent IResNet-50, built once into the (gitignored) cache dir."""
    from .iresnet50 import build_iresnet50

    return build_iresnet50(cache / R50)


def _env_dir(var: str) -> Path | None:
    value = os.environ.get(var)
    return Path(value) if value else None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    p.add_argument(
        "--models",
        type=Path,
        default=_env_dir("STREAMREC_MODELS"),
        help=f"directory with {DETECTOR} and {RECOGNIZER} (default: $STREAMREC_MODELS)",
    )
    p.add_argument(
        "--media",
        type=Path,
        default=_env_dir("STREAMREC_MEDIA"),
        help="directory holding the clips (default: $STREAMREC_MEDIA)",
    )
    p.add_argument(
        "--loops",
        type=int,
        help="play the 1080p clip this many times in a row (default 3, --quick 1)",
    )
    p.add_argument(
        "--live-seconds", type=float, help="duration of each live case (default 60, --quick 20)"
    )
    p.add_argument(
        "--only", metavar="REGEX", help="run only the cases whose '[group] name' matches REGEX"
    )
    p.add_argument("--quick", action="store_true", help="smoke run: shorter defaults")
    p.add_argument(
        "--cache",
        type=Path,
        default=CACHE,
        help="where the IResNet-50 stand-in is built (default benchmarks/.cache)",
    )
    p.add_argument("--out", type=Path, default=RESULTS, help="results directory")
    args = p.parse_args(argv)
    if args.models is None or args.media is None:
        p.error("set STREAMREC_MODELS and STREAMREC_MEDIA, or pass --models and --media")
    needed = [args.models / DETECTOR, args.models / RECOGNIZER]
    missing = [f for f in needed + [args.media / c for c in CLIPS.values()] if not f.is_file()]
    if missing:
        p.error(f"not found: {', '.join(map(str, missing))}")
    if args.loops is None:
        args.loops = 1 if args.quick else 3
    if args.live_seconds is None:
        args.live_seconds = 20.0 if args.quick else 60.0
    if args.loops < 1 or args.live_seconds <= 0:
        p.error("--loops must be >= 1 and --live-seconds > 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    models, media = args.models.resolve(), args.media.resolve()
    args.cache.mkdir(parents=True, exist_ok=True)
    info = machine_info()
    with (
        looped(media / CLIPS["1080p"], args.loops) as hd,
        tempfile.TemporaryDirectory(prefix="bench-") as tmp,
    ):
        r50 = r50_model(args.cache)
        cases = video_cases("1080p", hd, models, r50)
        cases += video_cases("360p", media / CLIPS["360p"], models, r50)
        cases += live_cases(models, args.live_seconds)
        cases += startup_cases(media / CLIPS["360p"], models, Path(tmp) / "ov_cache")
        if args.only:
            cases = [c for c in cases if re.search(args.only, f"[{c.group}] {c.name}")]
        live_src = live_clip(media / LIVE_CLIP, Path(tmp) / "live_720p25.mp4")
        for case in cases:
            run_case(case, live_src)
    inputs = {
        "1080p": f"{CLIPS['1080p']} ×{args.loops}",
        "360p": str(CLIPS["360p"]),
        "live": f"{LIVE_CLIP} scaled to 1280×720, 25 fps, looped, {args.live_seconds:g} s",
    }
    table = render(cases, info, inputs)
    print("\n" + table)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "suite.md").write_text(table)
    write_plots(cases, args.out)
    raw = {"machine": info, "inputs": inputs, "cases": [c.__dict__ for c in cases]}
    (args.out / "suite.json").write_text(json.dumps(raw, indent=2) + "\n")
    return 0
