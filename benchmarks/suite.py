"""The benchmark suite of issues 6 and 13: ``python -m benchmarks`` (``--quick``: a smoke run).

Every case runs alone in a fresh child process (``benchmarks.child``), one after the other, so
each gets an honest peak RSS and nothing is shared between cases. The inputs the selected cases
need (looped and transcoded clips, the architecture-equivalent IResNet-50 and SCRFD-10G, INT8
models made by ``streamrec models optimize``) are made first, so that making them loads no
measurement. Each result is written (``suite.json``, ``suite.md``) as soon as it is measured;
the plots (``suite.png``, ``suite_live.png``) at the end. A case that cannot run here (a peer or
tool not installed, no BF16 on the CPU, an INT8 model refused by its accuracy bounds) is a
skipped row with the reason; a failing case is a failed row; neither stops the run.

Only a full run (no --quick, no --only) writes benchmarks/results/; other runs write a new
folder under benchmarks/.scratch/ unless --out says where.

Models: "small" = SCRFD-500M (det_500m.onnx) + MobileFaceNet-128d; "R50-eq" = IResNet-50
(w600k_r50) and "det_10g-eq" = SCRFD-10G-KPS architecture-equivalents with random weights, built
into --cache (timing only). Every streamrec case is events only, no gallery, OpenVINO EP unless
noted; the FP32/BF16 rows pin runtime.precision, the others keep its default (auto).
"""

from __future__ import annotations

import argparse
import compileall
import datetime
import functools
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .cases import DETECTOR, RECOGNIZER, ROOT, Skipped
from .live import rtsp_streams
from .prepare import CLIPS, LIVE_FPS, LIVE_SIZE, SHORT_FRAMES, STATIC_BITRATE, STILL, Inputs
from .report import LIVE_MIXED, machine_info, render, targets, write_plots

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
SCRATCH = HERE / ".scratch"
CACHE = HERE / ".cache"
OUTPUTS = ("suite.md", "suite.json", "suite.png", "suite_live.png")
LIVE_SMALL = (1, 2, 4, 8)
LIVE_R50 = 2
#: seconds from a live case's first processed frame to its measured window
LIVE_WARMUP = 10.0
#: seconds a live case's pipeline may take to load its models and process its first frame
LIVE_START = 600.0
#: a live case's decode-only window: its length and its start after the first decoded frames
DECODE_SECONDS = 20.0
DECODE_WARMUP = 2.0
#: seconds a case may take beyond its own duration before it is killed
CASE_TIMEOUT = 3600.0


@dataclass
class Case:
    group: str  # "1080p", "360p", "detectors", "live", "startup"
    key: str  # stable id within the group (targets find cases by it)
    name: str
    spec: dict[str, Any]
    #: spec key -> name of a prepared input (benchmarks.prepare.Inputs) put there before running
    needs: dict[str, str] = field(default_factory=dict)
    result: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"[{self.group}] {self.name}"


def video_cases(group: str, models: Path, full: bool) -> list[Case]:
    """Per-clip cases: decode only, streamrec variants, the peers; ``full`` adds the precision
    and model variants (1080p only)."""
    base = {"models": str(models)}
    clip = {"clip": f"clip_{group}"}
    interval = "detector.interval"

    def sr(key: str, name: str, sets: dict[str, Any], **needs: str) -> Case:
        spec = {**base, "kind": "streamrec", "set": {interval: 5, **sets}}
        return Case(group, key, f"streamrec interval 5, {name}", spec, {**clip, **needs})

    fp32, bf16 = {"runtime.precision": "FP32"}, {"runtime.precision": "BF16"}
    det25 = {"detector": "det_2.5g.onnx"}
    cases = [Case(group, "decode", "decode only (raw PyAV, frame threads, BGR)",
                  {**base, "kind": "decode"}, clip)]  # fmt: skip
    cases += [
        Case(group, f"small_i{n}", f"streamrec interval {n}",
             {**base, "kind": "streamrec", "set": {interval: n}}, clip)
        for n in (1, 3, 5, 10)
    ]  # fmt: skip
    cases += [
        sr("small_cpu", "CPU EP", {"runtime.provider": "cpu"}),
        Case(group, "small_b1", "streamrec interval 1, batch 1",
             {**base, "kind": "streamrec", "set": {interval: 1, "recognition.batch_size": 1}},
             clip),
    ]  # fmt: skip
    if full:
        cases += [
            sr("mbf_bf16", "MobileFaceNet BF16", bf16),
            sr("mbf_int8", "MobileFaceNet INT8", {}, recognizer="mbf_int8"),
        ]
    cases.append(sr("r50_fp32", "R50-eq FP32", fp32, recognizer="r50"))
    if full:
        cases += [
            sr("r50_bf16", "R50-eq BF16", bf16, recognizer="r50"),
            sr("r50_int8", "R50-eq INT8", {}, recognizer="r50_int8"),
        ]
        for c in (
            sr("d25_r50_fp32", "det_2.5g + R50-eq FP32", fp32, recognizer="r50"),
            sr("d25_r50_int8", "det_2.5g + R50-eq INT8", {}, recognizer="r50_int8"),
        ):
            c.spec.update(det25)
            cases.append(c)
    peer = {**base, "kind": "insightface"}
    cases.append(Case(group, "insightface", "InsightFace FaceAnalysis per frame", peer, clip))
    if full:
        cases.append(
            Case(group, "insightface_r50", "InsightFace FaceAnalysis per frame, R50-eq", peer,
                 {**clip, "recognizer": "r50"})
        )  # fmt: skip
    cases.append(
        Case(group, "face_recognition", "face_recognition (dlib HOG, 1/4 size, every 2nd frame)",
             {**base, "kind": "face_recognition"}, clip)
    )  # fmt: skip
    return cases


def detector_cases(models: Path) -> list[Case]:
    """Each detector alone on the 1080p frames, with the pipeline's runtime settings."""
    spec = {"models": str(models), "kind": "detector"}
    clip = {"clip": "clip_1080p"}
    return [
        Case("detectors", "det_500m", "det_500m (SCRFD-500M)", {**spec, "detector": DETECTOR},
             clip),
        Case("detectors", "det_2.5g", "det_2.5g (SCRFD-2.5G)",
             {**spec, "detector": "det_2.5g.onnx"}, clip),
        Case("detectors", "det_10g", "det_10g-eq (SCRFD-10G-KPS)", spec,
             {**clip, "detector": "det10g"}),
    ]  # fmt: skip


def live_cases(models: Path, seconds: float) -> list[Case]:
    """Live RTSP cameras: with people (the live clip), static scenes, and both mixed."""
    spec = {"kind": "live", "models": str(models), "seconds": seconds, "set": {}}
    clips = {"people": "clip_live", "static": "clip_static"}

    def case(key: str, name: str, cameras: list[str], **extra: Any) -> Case:
        needs = {f"clip_{kind}": clips[kind] for kind in dict.fromkeys(cameras)}
        if "recognizer" in extra:
            needs["recognizer"] = extra.pop("recognizer")
        scene = cameras[0] if len(set(cameras)) == 1 else "mixed"
        full = {**spec, **extra, "streams": len(cameras), "clips": cameras, "scene": scene}
        return Case("live", key, name, full, needs)

    cases = [
        case(f"small_{n}", f"{n}× 720p@25 RTSP, small", ["people"] * n) for n in LIVE_SMALL
    ]
    cases.insert(1, case("static_1", "1× 720p@25 RTSP static scene, small", ["static"]))
    mixed = ["people"] + ["static"] * (LIVE_MIXED - 1)
    name = f"{LIVE_MIXED}× 720p@25 RTSP mixed (1 with people, {LIVE_MIXED - 1} static), small"
    cases.append(case(f"mixed_{LIVE_MIXED}", name, mixed))
    name = f"{LIVE_R50}× 720p@25 RTSP, det_2.5g + R50-eq"
    cases.append(case(f"r50_{LIVE_R50}", name, ["people"] * LIVE_R50,
                      detector="det_2.5g.onnx", recognizer="r50"))  # fmt: skip
    return cases


def startup_cases(models: Path, work: Path) -> list[Case]:
    """Each kind twice with its own fresh ``runtime.cache_dir``: first empty (the precision
    checks run), then warm (their verdicts read; OpenVINO's compiled models too where it can
    read them back, not with the onnxruntime-openvino wheels: docs/models.md)."""
    cases = []
    for kind, what in (
        ("startup", "first frame"),
        ("whole_run", f"whole run, {SHORT_FRAMES} frames"),
    ):
        cache = {"runtime.cache_dir": str(work / f"ov_cache_{kind}")}
        clip = {"clip": "clip_short" if kind == "whole_run" else "clip_360p"}
        for key, cache_state in (("cold", "empty"), ("warm", "warm")):
            spec = {"kind": kind, "models": str(models), "set": cache}
            name = f"{what}, {cache_state} cache"
            cases.append(Case("startup", f"{kind}_{key}", name, spec, clip))
    return cases


# ------------------------------------------------------------------------------------ running


def run_child(spec: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Run one workload in a fresh process; its result plus process wall time and load."""
    return run_children([spec], timeout)[0]


def run_children(
    specs: list[dict[str, Any]], timeout: float, meanwhile: Callable[[], None] | None = None
) -> list[dict[str, Any]]:
    """Run workloads at the same time, each in a fresh process; their results, each with the
    processes' wall time and the load before and after. ``meanwhile`` runs once they are all
    started."""
    with tempfile.TemporaryDirectory(prefix="bench-case-") as tmp:
        load0 = os.getloadavg()
        start = time.perf_counter()
        running = []
        for i, spec in enumerate(specs):
            out, log = Path(tmp) / f"result{i}.json", Path(tmp) / f"stderr{i}.txt"
            with log.open("wb") as err:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "benchmarks.child", str(out)],
                    stdin=subprocess.PIPE,
                    stderr=err,
                    cwd=ROOT,
                )
            assert proc.stdin is not None
            proc.stdin.write(json.dumps({**spec, "t0": time.time()}).encode())
            proc.stdin.close()
            running.append((proc, out, log))
        deadline = time.monotonic() + timeout
        if meanwhile is not None:
            meanwhile()
        for proc, _, _ in running:
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        elapsed = time.perf_counter() - start
        results = [_result(proc, out, log, timeout) for proc, out, log in running]
    load1 = os.getloadavg()
    for result in results:
        result["process_s"] = elapsed
        result["loadavg"] = [load0, load1]
    return results


def _result(proc: subprocess.Popen[bytes], out: Path, log: Path, timeout: float
            ) -> dict[str, Any]:  # fmt: skip
    result: dict[str, Any] = json.loads(out.read_text()) if out.is_file() else {}
    tail = log.read_text(errors="replace").strip().splitlines()[-20:]
    if not result or "error" in result:  # the end of its traceback, for the terminal
        sys.stderr.write("\n".join(tail) + "\n")
    if not result:
        why = f"timed out after {timeout:.0f} s" if proc.returncode == -9 else "crashed"
        result = {"error": f"child {why} (exit {proc.returncode}): {(tail or [''])[-1]}"}
    return result


def run_live(spec: dict[str, Any], warmup: float) -> dict[str, Any]:
    """A live case: its cameras served; PyAV decode-only of the streams over a window of its
    own (:data:`DECODE_SECONDS` after :data:`DECODE_WARMUP` s), then the pipeline alone over
    the measured window, which starts ``warmup`` seconds after its first frame (models loaded,
    background learnt, degradation settled), then decode-only again; the pipeline's result
    with the two decoders' beside it (``decode_runs``, and ``decode``: both together, the
    reference of its ratio). One after the other, so that the decoder's CPU is not taken from
    the pipeline (what it drops and how late it is are its own); before and after, so that the
    VM's speed drifting during the case shows as the two references' spread."""
    clips = [Path(spec[f"clip_{kind}"]) for kind in spec["clips"]]
    with rtsp_streams(clips) as urls, tempfile.TemporaryDirectory(prefix="bench-live-") as tmp:

        def run_alone(kind: str, warm: float, seconds: float) -> dict[str, Any]:
            ready, window = Path(tmp) / f"{kind}.ready", Path(tmp) / f"{kind}.window.json"
            child = {**spec, "kind": kind, "urls": urls, "ready_file": str(ready),
                     "window_file": str(window)}  # fmt: skip

            def open_window() -> None:
                deadline = time.monotonic() + LIVE_START
                while not ready.exists() and time.monotonic() < deadline:
                    time.sleep(0.2)
                t0 = time.time() + warm  # not ready in time: the child says so
                _write(window, json.dumps([t0, t0 + seconds]))

            timeout = LIVE_START + warm + seconds + 180.0
            return run_children([child], timeout, open_window)[0]

        def decode_only() -> dict[str, Any]:
            run = run_alone("live_decode", DECODE_WARMUP, min(DECODE_SECONDS, spec["seconds"]))
            if "measured" not in run:
                raise RuntimeError(f"decode-only: {run.get('error', run)}")
            return dict(run["measured"])

        try:
            before = decode_only()
            result = run_alone(spec["kind"], warmup, spec["seconds"])
            if "error" in result or "skipped" in result:
                return result
            after = decode_only()
        except RuntimeError as exc:
            return {"error": str(exc)}
    result["decode_runs"] = [before, after]
    result["decode"] = {
        "frames": before["frames"] + after["frames"],
        "wall_s": before["wall_s"] + after["wall_s"],
        "extra": {"cpu_s": before["extra"]["cpu_s"] + after["extra"]["cpu_s"]},
    }
    return result


def run_case(case: Case, inputs: Inputs, warmup: float = LIVE_WARMUP) -> None:
    """Measure one case into ``case.result``; never raises (a skip or failure is its result).
    ``warmup``: seconds a live case's children get before its measured window."""
    try:
        prepared = {key: str(inputs.get(name)) for key, name in case.needs.items()}
        case.spec = {**case.spec, **prepared}  # a new dict: cases may share their spec's base
        if case.group == "startup":
            ready_to_start()
        if case.group == "live":
            case.result = run_live(case.spec, warmup)
        else:
            case.result = run_child(case.spec, CASE_TIMEOUT)
    except Skipped as exc:
        case.result = {"skipped": str(exc)}
    except Exception as exc:
        traceback.print_exc()
        case.result = {"error": f"{type(exc).__name__}: {exc}"}
    r = case.result
    note = r.get("skipped") or r.get("error") or _summary(r)
    status = "skipped" if "skipped" in r else "FAILED" if "error" in r else "done"
    print(f"{case.label}: {status}: {note}", flush=True)


@functools.cache
def ready_to_start() -> None:
    """Before the first start-up case: streamrec's bytecode compiled, as ``pip install``
    compiles a package (a checkout run with PYTHONDONTWRITEBYTECODE=1, as many containers and
    the development machine set it, would compile every module at every start: 0.18 s of a
    start-up on 2026-12-07), and a quiet machine (the cases before leave load behind)."""
    compileall.compile_dir(ROOT / "streamrec", quiet=1)
    settle()


def _summary(result: dict[str, Any]) -> str:
    m = result["measured"]
    fps = m["frames"] / m["wall_s"] if m["wall_s"] > 0 else 0.0
    return f"{m['frames']} frames, {fps:.1f} fps, {m['wall_s']:.2f} s"


def settle(per_core: float = 0.25, deadline: float = 120.0) -> None:
    """Wait (at most ``deadline`` s) until the 1-minute load falls below ``per_core`` per core,
    so that the load of making the inputs does not show in the first cases' load column."""
    limit = per_core * len(os.sched_getaffinity(0))
    end = time.monotonic() + deadline
    if os.getloadavg()[0] > limit:
        print(f"waiting up to {deadline:g} s for the 1-minute load to fall below {limit:g}")
    while os.getloadavg()[0] > limit and time.monotonic() < end:
        time.sleep(1.0)


# ------------------------------------------------------------------------------------ output


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(text)
    tmp.replace(path)


def write_results(out: Path, cases: list[Case], meta: dict[str, Any], final: bool) -> None:
    """suite.json and suite.md from every case measured so far; the plots when ``final``."""
    done = [c for c in cases if c.result]
    pending = [c.label for c in cases if not c.result]
    raw = {**meta, "pending": pending, "cases": [c.__dict__ for c in done]}
    _write(out / "suite.json", json.dumps(raw, indent=2, default=str) + "\n")
    _write(out / "suite.md", render(done, meta, pending))
    if final and done:
        write_plots(done, out)


def _env_dir(var: str) -> Path | None:
    value = os.environ.get(var)
    return Path(value) if value else None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=_epilog(),
    )
    p.add_argument(
        "--models",
        type=Path,
        default=_env_dir("STREAMREC_MODELS"),
        help=f"folder with {DETECTOR}, det_2.5g.onnx and {RECOGNIZER} (default: $STREAMREC_MODELS)",
    )
    p.add_argument(
        "--media",
        type=Path,
        default=_env_dir("STREAMREC_MEDIA"),
        help="folder holding the clips and photos (default: $STREAMREC_MEDIA)",
    )
    p.add_argument(
        "--loops", type=int, help="play the 1080p clip this many times in a row (default 3; "
        "--quick 1)",
    )  # fmt: skip
    p.add_argument(
        "--live-warmup", type=float,
        help=f"seconds from a live case's first processed frame to its measured window "
        f"(default {LIVE_WARMUP:g}; --quick 5)",
    )  # fmt: skip
    p.add_argument(
        "--live-seconds", type=float,
        help="duration of each live case (default 60, the targets' window; --quick 15)",
    )  # fmt: skip
    p.add_argument(
        "--only", metavar="REGEX",
        help="run only the cases whose '[group] name' matches REGEX (e.g. 'live', "
        "'1080p.*R50', 'startup'); a partial run never writes benchmarks/results/",
    )  # fmt: skip
    p.add_argument(
        "--quick", action="store_true",
        help="smoke run: 1080p clip once, live cases 15 s, INT8 calibrated on 60 faces; written "
        "to the scratch folder",
    )  # fmt: skip
    p.add_argument(
        "--cache", type=Path, default=CACHE,
        help="where the architecture-equivalent models are built once (default "
        "benchmarks/.cache)",
    )  # fmt: skip
    p.add_argument(
        "--out", type=Path,
        help="results folder (default: benchmarks/results/ for a full run, else a new "
        "benchmarks/.scratch/<time>/)",
    )  # fmt: skip
    p.add_argument("--list", action="store_true", help="list the cases (after --only) and exit")
    args = p.parse_args(argv)
    if args.models is None or args.media is None:
        p.error("set STREAMREC_MODELS and STREAMREC_MEDIA, or pass --models and --media")
    needed = [args.models / m for m in (DETECTOR, "det_2.5g.onnx", RECOGNIZER)]
    needed += [args.media / c for c in (*CLIPS.values(), STILL)]
    missing = [str(f) for f in needed if not f.is_file()]
    if missing:
        p.error(f"not found: {', '.join(missing)}")
    if args.loops is None:
        args.loops = 1 if args.quick else 3
    if args.live_seconds is None:
        args.live_seconds = 15.0 if args.quick else 60.0
    if args.live_warmup is None:
        args.live_warmup = 5.0 if args.quick else LIVE_WARMUP
    if args.loops < 1 or args.live_seconds <= 0 or args.live_warmup < 0:
        p.error("--loops must be >= 1, --live-seconds > 0 and --live-warmup >= 0")
    partial = args.quick or args.only is not None
    if args.out is None:
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        args.out = SCRATCH / stamp if partial else RESULTS
    elif partial and args.out.resolve() == RESULTS:
        p.error("--out benchmarks/results is for full runs only (no --quick, no --only)")
    return args


def all_cases(models: Path, work: Path, live_seconds: float) -> list[Case]:
    cases = video_cases("1080p", models, full=True)
    cases += detector_cases(models)
    cases += video_cases("360p", models, full=False)
    cases += live_cases(models, live_seconds)
    return cases + startup_cases(models, work)


def _epilog() -> str:
    labels = [c.label for c in all_cases(Path("MODELS"), Path("WORK"), 60.0)]
    return "\n".join(
        ["cases, in the order they run ('[group] name', what --only matches):"]
        + [f"  {label}" for label in labels]
        + ["", "targets (issue 13), each reported reached / not reached with its figure:"]
        + [f"  {name}" for name, _, _ in targets([])]
        + ["", "What each case and column measures: benchmarks/README.md. Run the suite on an "
           "otherwise idle machine:", "every row records the 1-minute load average before and "
           "after it."]
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    models, media = args.models.resolve(), args.media.resolve()
    out: Path = args.out
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        work = Path(tmp)
        cases = all_cases(models, work, args.live_seconds)
        if args.only:
            cases = [c for c in cases if re.search(args.only, c.label)]
        if not cases:
            print(f"no case matches --only {args.only!r} (see --list)", file=sys.stderr)
            return 2
        if args.list:
            print("\n".join(c.label for c in cases))
            return 0
        out.mkdir(parents=True, exist_ok=True)
        for name in OUTPUTS:  # no stale plot or table of an earlier run stays beside these
            (out / name).unlink(missing_ok=True)
        print(f"{len(cases)} cases; results go to {out}", flush=True)
        args.cache.mkdir(parents=True, exist_ok=True)
        inputs = Inputs(media, models, args.cache.resolve(), work, args.loops, args.quick)
        started = time.monotonic()
        for name in dict.fromkeys(n for c in cases for n in c.needs.values()):
            try:
                inputs.get(name)
            except Exception as exc:  # reported by every case that needs it
                print(f"input {name}: {exc}", flush=True)
        if not args.quick and time.monotonic() - started > 10:  # making them loaded the CPU
            settle()
        w, h = LIVE_SIZE
        meta: dict[str, Any] = {
            "machine": machine_info(),
            "inputs": {
                "1080p": f"{CLIPS['1080p']} ×{args.loops}",
                "360p": str(CLIPS["360p"]),
                "live": f"{CLIPS['360p']} scaled to {w}×{h}, {LIVE_FPS} fps (people); "
                f"{STILL} with sensor noise, H.264 {STATIC_BITRATE}bit/s (static scene); "
                f"looped, {args.live_warmup:g} s warm-up then {args.live_seconds:g} s measured "
                "per case",
                "startup": f"{CLIPS['360p']} (first frame); its first {SHORT_FRAMES} frames "
                "(whole run)",
            },
            "live_seconds": args.live_seconds,
            "live_warmup": args.live_warmup,
            "quick": args.quick,
            "prepared": inputs.notes,
        }
        try:
            for case in cases:
                run_case(case, inputs, args.live_warmup)
                write_results(out, cases, meta, final=False)
        except KeyboardInterrupt:
            print(f"interrupted: what was measured is in {out}", file=sys.stderr)
            return 130
        finally:
            write_results(out, cases, meta, final=True)
    print("\n" + (out / "suite.md").read_text())
    print(f"results: {out}")
    return 0
