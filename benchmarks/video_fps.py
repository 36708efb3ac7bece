"""End-to-end video throughput: decoding alone, streamrec, and InsightFace's ``FaceAnalysis``.

All cases run sequentially in one process on the same clip (a real 1080p video, optionally looped
into a longer temp file) with the same small real models (SCRFD-500M + MobileFaceNet-128d), so
their frame rates are directly comparable. Writes a markdown table (also printed), a bar chart and
the raw numbers with machine info to ``benchmarks/results/``.

Run ``python -m benchmarks`` (``--help`` for options, ``--quick`` for a smoke run).
"""

from __future__ import annotations

import argparse
import datetime
import glob
import importlib.metadata
import json
import os
import platform
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import onnxruntime as ort

from streamrec import load_config
from streamrec.app import run_video, source_options
from streamrec.sources.pyav import open_video

DETECTOR = "det_500m.onnx"
RECOGNIZER = "mobilefacenet_128d.onnx"
CLIP = Path("facenet_pytorch") / "video.mp4"
RESULTS = Path(__file__).resolve().parent / "results"
OPENVINO = "OpenVINOExecutionProvider"
CPU = "CPUExecutionProvider"
DET_SIZE = 640  # streamrec's default detector.input_size; InsightFace gets the same
PACKAGES = ("onnxruntime-openvino", "av", "insightface", "numpy", "opencv-python-headless")


@dataclass
class Counts:
    """What one case measured; ``None`` where a column does not apply."""

    frames: int
    wall_s: float
    model_load_s: float | None = None
    faces: int | None = None
    detector_runs: int | None = None
    embeddings: int | None = None
    providers: list[str] | None = None


@dataclass
class CaseResult:
    run: int
    case: str
    counts: Counts
    loadavg_start: tuple[float, float, float]
    loadavg_end: tuple[float, float, float]
    fps: float = field(init=False)

    def __post_init__(self) -> None:
        self.fps = self.counts.frames / self.counts.wall_s if self.counts.wall_s > 0 else 0.0

    @property
    def faces_per_frame(self) -> float | None:
        """Faces per detector run (= per frame the detector looked at)."""
        c = self.counts
        if c.faces is None or not c.detector_runs:
            return None
        return c.faces / c.detector_runs


Case = tuple[str, Callable[[Path], Counts]]


# ---------------------------------------------------------------------------------------- cases


def decode_frames(clip: Path) -> Iterator[Any]:
    """Every frame of ``clip`` as a BGR ndarray, decoded the way streamrec's file source does."""
    threads = source_options(load_config(None)).decoder_threads
    container, stream = open_video(str(clip), {}, None, threads)
    with container:
        for frame in container.decode(stream):
            yield frame.to_ndarray(format="bgr24")


def decode_only(clip: Path) -> Counts:
    start = time.perf_counter()
    frames = sum(1 for _ in decode_frames(clip))
    return Counts(frames=frames, wall_s=time.perf_counter() - start)


def streamrec_case(models: Path, interval: int, provider: str) -> Callable[[Path], Counts]:
    def run(clip: Path) -> Counts:
        cfg = load_config(
            None,
            {
                "models.detector": DETECTOR,
                "models.recognizer": RECOGNIZER,
                "models.dir": str(models),
                "models.download": False,
                "detector.interval": interval,
                "runtime.provider": provider,
                "gallery": None,
            },
        )
        start = time.perf_counter()
        summary = run_video(cfg, str(clip), progress=False)
        total = time.perf_counter() - start
        if summary.error or summary.interrupted:
            raise RuntimeError(f"streamrec run failed: {summary.error or 'interrupted'}")
        cams = summary.cameras.values()
        return Counts(
            frames=summary.frames,
            wall_s=summary.wall_time,
            model_load_s=total - summary.wall_time,
            faces=sum(c.faces for c in cams),
            detector_runs=sum(c.detector_runs for c in cams),
            embeddings=sum(c.embeddings for c in cams),
        )

    return run


def insightface_case(models: Path, provider: str) -> Callable[[Path], Counts]:
    """``FaceAnalysis.get`` on every frame: detection + per-face alignment and embedding."""

    def run(clip: Path) -> Counts:
        from insightface.app import FaceAnalysis

        providers = [OPENVINO, CPU] if provider == OPENVINO else [CPU]
        with tempfile.TemporaryDirectory(prefix="bench-insightface-") as root:
            pack = Path(root) / "models" / "bench"
            pack.mkdir(parents=True)
            for name in (DETECTOR, RECOGNIZER):
                (pack / name).symlink_to(models / name)
            start = time.perf_counter()
            app = FaceAnalysis(
                name="bench",
                root=root,
                allowed_modules=["detection", "recognition"],
                providers=providers,
            )
            # ctx_id=-1 would switch every session to the CPU EP; 0 keeps the providers given.
            app.prepare(ctx_id=0, det_size=(DET_SIZE, DET_SIZE))
            load = time.perf_counter() - start
            if set(app.models) != {"detection", "recognition"}:
                raise RuntimeError(f"InsightFace loaded {sorted(app.models)} from {pack}")
            used = sorted({p for m in app.models.values() for p in m.session.get_providers()})
            frames = faces = 0
            start = time.perf_counter()
            for image in decode_frames(clip):
                faces += len(app.get(image))
                frames += 1
            wall = time.perf_counter() - start
        return Counts(
            frames=frames,
            wall_s=wall,
            model_load_s=load,
            faces=faces,
            detector_runs=frames,
            embeddings=faces,
            providers=used,
        )

    return run


def cases(models: Path, cpu: bool) -> list[Case]:
    providers = [(OPENVINO, "openvino", "OpenVINO EP")]
    if cpu:
        providers.append((CPU, "cpu", "CPU EP"))
    out: list[Case] = [("PyAV decode only", decode_only)]
    for ort_name, streamrec_name, label in providers:
        out += [
            (f"streamrec, interval {n} ({label})", streamrec_case(models, n, streamrec_name))
            for n in (1, 5)
        ]
        out.append((f"InsightFace FaceAnalysis ({label})", insightface_case(models, ort_name)))
    return out


# ------------------------------------------------------------------------------------ utilities


def looped_clip(src: Path, loops: int, tmp: Path) -> Path:
    """``src`` played ``loops`` times in a row (video only, stream copy, no re-encode)."""
    if loops == 1:
        return src
    listing = tmp / "loop.txt"
    listing.write_text(f"file '{src.resolve()}'\n" * loops)
    out = tmp / f"{src.stem}_x{loops}.mp4"
    cmd = ["ffmpeg", "-v", "error", "-f", "concat", "-safe", "0", "-i", str(listing)]
    subprocess.run([*cmd, "-map", "0:v:0", "-c", "copy", "-y", str(out)], check=True)
    return out


def machine_info() -> dict[str, Any]:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    # onnxruntime-openvino bundles OpenVINO as libopenvino.so.<version>
    libs = glob.glob(str(Path(ort.__file__).parent / "capi" / "libopenvino.so.*.*.*"))
    versions["openvino"] = libs[0].rsplit(".so.", 1)[1] if libs else None
    return {
        "cpu_model": cpu,
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "onnxruntime_providers": ort.get_available_providers(),
        "versions": versions,
    }


def run_cases(clip: Path, all_cases: list[Case], runs: int) -> list[CaseResult]:
    """Every case, one after the other (never in parallel), ``runs`` times."""
    results = []
    for run in range(1, runs + 1):
        for name, fn in all_cases:
            before = os.getloadavg()
            counts = fn(clip)
            result = CaseResult(run, name, counts, before, os.getloadavg())
            print(f"run {run}: {name}: {result.fps:.1f} fps", flush=True)
            results.append(result)
    return results


def _fmt(value: float | int | None, digits: int = 1) -> str:
    if value is None:
        return "–"
    return str(value) if isinstance(value, int) else f"{value:.{digits}f}"


def markdown(results: list[CaseResult], info: dict[str, Any], clip_note: str) -> str:
    decode = {r.run: r.fps for r in results if r.case == results[0].case}
    head = [
        "run",
        "case",
        "frames",
        "wall s",
        "fps",
        "x decode-only",
        "faces/frame",
        "detector runs",
        "embeddings",
        "model load s",
        "load 1m start→end",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        c = r.counts
        row = [
            str(r.run),
            r.case,
            str(c.frames),
            _fmt(c.wall_s, 2),
            _fmt(r.fps),
            _fmt(r.fps / decode[r.run], 2),
            _fmt(r.faces_per_frame, 2),
            _fmt(c.detector_runs),
            _fmt(c.embeddings),
            _fmt(c.model_load_s, 2),
            f"{r.loadavg_start[0]:.2f}→{r.loadavg_end[0]:.2f}",
        ]
        lines.append("| " + " | ".join(row) + " |")
    v = info["versions"]
    return (
        f"Clip: {clip_note}. Machine: {info['cpu_model']}, {info['cores']} cores, "
        f"{info['date']}; onnxruntime-openvino {v['onnxruntime-openvino']} "
        f"(OpenVINO {v['openvino']}), PyAV {v['av']}, insightface {v['insightface']}.\n\n"
        + "\n".join(lines)
        + "\n"
    )


def bar_chart(results: list[CaseResult], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = max(r.run for r in results)
    labels = [r.case if runs == 1 else f"{r.case} [run {r.run}]" for r in results]
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(results) + 1.5))
    bars = ax.barh(labels[::-1], [r.fps for r in results][::-1], color="tab:blue")
    ax.bar_label(bars, fmt="%.1f", padding=3)
    ax.set_xlabel("frames per second (higher is better)")
    ax.set_title(title, fontsize=10)
    ax.margins(x=0.15)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _env_dir(var: str) -> Path | None:
    value = os.environ.get(var)
    return Path(value) if value else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument(
        "--models",
        type=Path,
        default=_env_dir("STREAMREC_MODELS"),
        help="directory with det_500m.onnx and mobilefacenet_128d.onnx "
        "(default: $STREAMREC_MODELS)",
    )
    parser.add_argument(
        "--media",
        type=Path,
        default=_env_dir("STREAMREC_MEDIA"),
        help=f"directory holding {CLIP} (default: $STREAMREC_MEDIA)",
    )
    parser.add_argument(
        "--loops", type=int, default=2, help="play the clip this many times in a row (default 2)"
    )
    parser.add_argument(
        "--runs", type=int, default=1, help="repeat all cases this many times (default 1)"
    )
    parser.add_argument(
        "--cpu", action="store_true", help="also run streamrec and InsightFace on the CPU EP"
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: --loops 1")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results directory")
    args = parser.parse_args(argv)
    if args.models is None or args.media is None:
        parser.error("set STREAMREC_MODELS and STREAMREC_MEDIA, or pass --models and --media")
    src = args.media / CLIP
    missing = [
        p for p in (src, args.models / DETECTOR, args.models / RECOGNIZER) if not p.is_file()
    ]
    if missing:
        parser.error(f"not found: {', '.join(map(str, missing))}")
    if args.loops < 1 or args.runs < 1:
        parser.error("--loops and --runs must be >= 1")
    loops = 1 if args.quick else args.loops
    models = args.models.resolve()

    info = machine_info()
    with tempfile.TemporaryDirectory(prefix="bench-video-") as tmp:
        clip = looped_clip(src, loops, Path(tmp))
        results = run_cases(clip, cases(models, args.cpu), args.runs)
    clip_note = f"{CLIP} ×{loops} ({results[0].counts.frames} frames)"
    table = markdown(results, info, clip_note)
    print("\n" + table)

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "video_fps.md").write_text(table)
    bar_chart(results, args.out / "video_fps.png", f"{clip_note}, {info['cpu_model']}")
    raw = {
        "machine": info,
        "clip": {"file": str(CLIP), "loops": loops, "frames": results[0].counts.frames},
        "models": {"detector": DETECTOR, "recognizer": RECOGNIZER, "det_size": DET_SIZE},
        "results": [
            {**asdict(r), "faces_per_frame": r.faces_per_frame, "fps": r.fps} for r in results
        ],
    }
    (args.out / "video_fps.json").write_text(json.dumps(raw, indent=2) + "\n")
    return 0
