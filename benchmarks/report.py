"""Markdown tables, the targets of issue 13 and the plots of the suite's results."""

from __future__ import annotations

import datetime
import glob
import importlib.metadata
import os
import platform
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .prepare import LIVE_FPS

#: cameras of the mixed live case (one with people)
LIVE_MIXED = 8

if TYPE_CHECKING:
    from .suite import Case

STAGES = ("decode", "read", "detect", "track", "align", "embed", "match", "annotate", "encode")
PACKAGES = (
    "onnxruntime-openvino", "av", "numpy", "opencv-python-headless", "nncf", "insightface",
    "face_recognition", "dlib-bin",
)  # fmt: skip
#: CPU features that decide what BF16 and INT8 can do
CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8")
LIVE_WINDOW = 60.0  # seconds the live targets ask for
MODELS = (
    'Models: "small" = SCRFD-500M (`det_500m.onnx`) + MobileFaceNet-128d; "R50-eq" = IResNet-50 '
    '(`w600k_r50`) and "det_10g-eq" = SCRFD-10G-KPS (`det_10g`): architecture-equivalent, '
    "random weights (`benchmarks/iresnet50.py`, `benchmarks/scrfd10g.py`), for timing only. "
    "streamrec cases: events only, no gallery, OpenVINO EP unless noted; FP32/BF16 rows pin "
    "`runtime.precision`, the others keep its default (auto); INT8 models are made in the run by "
    "`streamrec models optimize`. precision column: detector / recognizer as they ran."
)


def machine_info() -> dict[str, Any]:
    import onnxruntime as ort

    from streamrec.models.runtime import device_info

    cpu, flags = "unknown", set()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name") and cpu == "unknown":
            cpu = line.split(":", 1)[1].strip()
        elif line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    # onnxruntime-openvino bundles OpenVINO as libopenvino.so.<version>
    libs = glob.glob(str(Path(ort.__file__).parent / "capi" / "libopenvino.so.*.*.*"))
    versions["openvino"] = libs[0].rsplit(".so.", 1)[1] if libs else None
    device = device_info("CPU")
    return {
        "cpu_model": cpu,
        "cpu_flags": [f for f in CPU_FLAGS if f in flags],
        "openvino_cpu": sorted(device.capabilities) if device else None,
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "loadavg_at_start": os.getloadavg(),
        "versions": versions,
    }


# ------------------------------------------------------------------------------------ helpers


def _fmt(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _table(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def fps(case: Case) -> float | None:
    m = case.result.get("measured")
    return m["frames"] / m["wall_s"] if m and m["wall_s"] > 0 else None


def status(case: Case) -> str | None:
    """Why a case has no figures ("skipped: ...", "failed: ..."), None when it has them."""
    r = case.result
    if "skipped" in r:
        return f"skipped: {r['skipped']}"
    if "error" in r:
        return f"failed: {r['error']}"
    return None


def _extra(case: Case) -> dict[str, Any]:
    return dict(case.result["measured"]["extra"])


def _common(case: Case) -> list[str]:
    """CPU %, peak RSS MB, 1-minute load start→end."""
    r = case.result
    (l0, *_), (l1, *_) = r["loadavg"]
    return [_fmt(r["cpu_percent"], 0), _fmt(r["peak_rss_mb"], 0), f"{l0:.2f}→{l1:.2f}"]


COMMON = ["CPU %", "peak RSS MB", "load 1m"]


def _rows(cases: list[Case], width: int, row: Callable[[Case], list[str]]) -> list[list[str]]:
    """A row per case; a case without figures gets its reason instead."""
    return [[c.name, str(status(c))] + ["–"] * (width - 2) if status(c) else row(c) for c in cases]


def _dropped(cameras: dict[str, Any]) -> float | None:
    """Frames dropped of all frames received, in percent."""
    dropped = sum(c["dropped"] for c in cameras.values())
    total = dropped + sum(c["frames"] for c in cameras.values())
    return 100 * dropped / total if total else None


# ------------------------------------------------------------------------------------ tables


def video_table(cases: list[Case]) -> str:
    decode = next((fps(c) for c in cases if c.key == "decode" and not status(c)), None)
    measured = [c.result["measured"] for c in cases if not status(c)]
    stages = [s for s in STAGES if any(s in m["stage_seconds"] for m in measured)]
    head = ["case", "fps", "× decode", "faces/det. frame", "embeddings"]
    head += [f"{s} ms/f" for s in stages] + ["precision", "load s", *COMMON]

    def row(c: Case) -> list[str]:
        m, f = c.result["measured"], fps(c)
        return [
            c.name,
            _fmt(f),
            _fmt(f / decode if f and decode else None, 2),
            _fmt(m["faces"] / m["detector_runs"] if m["detector_runs"] else None, 2),
            str(m["embeddings"]) if m["embeddings"] is not None else "–",
            *[
                _fmt(1000 * m["stage_seconds"][s] / m["frames"], 2)
                if s in m["stage_seconds"] and m["frames"]
                else "–"
                for s in stages
            ],
            m["extra"].get("precision", "–"),
            _fmt(m["load_s"], 2),
            *_common(c),
        ]

    return _table(head, _rows(cases, len(head), row))


def detector_table(cases: list[Case]) -> str:
    head = ["detector", "input", "ms/detection p50", "p95", "mean", "detections/s",
            "faces/frame", "precision", "load s", *COMMON]  # fmt: skip

    def row(c: Case) -> list[str]:
        m, x = c.result["measured"], _extra(c)
        return [
            c.name,
            x["input"],
            _fmt(x["detect_ms_p50"]),
            _fmt(x["detect_ms_p95"]),
            _fmt(1000 * m["wall_s"] / m["frames"]),
            _fmt(fps(c)),
            _fmt(m["faces"] / m["frames"], 2),
            x["precision"],
            _fmt(m["load_s"], 2),
            *_common(c),
        ]

    return _table(head, _rows(cases, len(head), row))


def cpu_ratio(case: Case) -> float | None:
    """The pipeline's CPU per frame received over PyAV decode-only's (same streams, same run)."""
    x, decode = _extra(case), case.result.get("decode")
    if not decode or not x.get("received") or not decode["frames"]:
        return None
    dec = decode["extra"]["cpu_s"] / decode["frames"]
    return (x["cpu_s"] / x["received"]) / dec if dec > 0 else None


def decode_spread(case: Case) -> str:
    """Decode-only CPU ms a frame before and after the pipeline: "2.71 / 2.93" (the VM's drift
    during the case; the ratio's reference is the two together)."""
    runs = case.result.get("decode_runs") or []
    per_frame = [1000 * r["extra"]["cpu_s"] / r["frames"] for r in runs if r["frames"]]
    return " / ".join(f"{v:.2f}" for v in per_frame) if per_frame else "–"


def _ms(x: dict[str, Any], kind: str) -> str:
    """p95 of a latency, with its count: "120 (34)"."""
    n = x.get(f"{kind}_count", 0)
    return f"{_fmt(x.get(f'{kind}_p95_ms'), 0)} ({n})" if n else "–"


def live_table(cases: list[Case]) -> str:
    head = ["case", f"fps per camera (of {LIVE_FPS})", "dropped %", "CPU ms/frame",
            "× decode-only CPU", "decode-only ms/frame before / after", "CPU % (window)",
            "detector runs/s", "degradation level max", "p95 ms (count): frame", "decision",
            "event", "event by third", "track_end", "precision", "load 1m"]  # fmt: skip

    def row(c: Case) -> list[str]:
        x = _extra(c)
        cams = x["cameras"]
        seconds = c.result["measured"]["wall_s"]
        thirds = [_fmt(x[f"event_{t}_third_p95_ms"], 0) for t in ("first", "middle", "last")]
        return [
            c.name,
            " ".join(f"{cam['fps']:.1f}" for cam in cams.values()),
            _fmt(_dropped(cams)),
            _fmt(1000 * x["cpu_s"] / x["received"] if x["received"] else None, 2),
            _fmt(cpu_ratio(c), 2),
            decode_spread(c),
            _fmt(100 * x["cpu_s"] / seconds if seconds else None, 0),
            _fmt(sum(cam["detector_runs"] for cam in cams.values()) / seconds, 1),
            " ".join(str(cam["max_level"]) for cam in cams.values()),
            _ms(x, "frame"),
            _ms(x, "decision"),
            _ms(x, "event"),
            " / ".join(thirds),
            _ms(x, "track_end"),
            x["precision"],
            _common(c)[2],
        ]

    return _table(head, _rows(cases, len(head), row))


def camera_table(cases: list[Case]) -> str:
    """Every camera of every live case: its fps, drops, detector runs, degradation, latencies."""
    head = ["case", "camera", "clip", "fps", "dropped %", "detector runs", "degradation max / end",
            "s degraded", "p95 ms: frame", "decision", "event", "track_end"]  # fmt: skip
    rows = []
    for c in cases:
        if status(c):
            continue
        for name, cam in _extra(c)["cameras"].items():
            rows.append([
                c.name, name, cam["clip"], _fmt(cam["fps"]), _fmt(_dropped({name: cam})),
                str(cam["detector_runs"]), f"{cam['max_level']} / {cam['end_level']}",
                _fmt(cam["degraded_s"]), _ms(cam, "frame"), _ms(cam, "decision"),
                _ms(cam, "event"), _ms(cam, "track_end"),
            ])  # fmt: skip
    return _table(head, rows)


def startup_table(cases: list[Case]) -> str:
    head = ["case", "s to first frame / whole process", "imports s", "models s",
            "pipeline s", "frames", "peak RSS MB", "load 1m"]  # fmt: skip

    def row(c: Case) -> list[str]:
        x, m = _extra(c), c.result["measured"]
        rss = x.get("run_rss_mb", c.result["peak_rss_mb"])
        return [
            c.name,
            _fmt(m["wall_s"], 2),
            _fmt(x.get("imports_s"), 2),
            _fmt(x.get("models_s"), 2),
            _fmt(x.get("pipeline_s"), 2),
            str(m["frames"]),
            _fmt(rss, 0),
            _common(c)[2],
        ]

    return _table(head, _rows(cases, len(head), row))


# ------------------------------------------------------------------------------------ targets

Target = tuple[str, str, bool | None]


def _find(cases: list[Case], group: str, key: str) -> Case | None:
    return next((c for c in cases if c.group == group and c.key == key), None)


def _unmeasured(target: str, cases: list[Case], needed: list[tuple[str, str]]) -> Target | None:
    """The target as "not measured", naming the case that is missing, skipped or failed."""
    for group, key in needed:
        c = _find(cases, group, key)
        if c is None:
            return target, f"not measured ([{group}] {key} not run)", None
        if status(c):
            return target, f"not measured ({c.name}: {status(c)})", None
    return None


def _measure(
    target: str,
    cases: list[Case],
    needed: list[tuple[str, str]],
    value: Callable[..., float | None],
    ok: Callable[[float], bool],
    text: str,
) -> Target:
    """One target: ``value(*cases)`` of the ``needed`` cases, judged by ``ok``."""
    missing = _unmeasured(target, cases, needed)
    if missing:
        return missing
    v = value(*[_find(cases, g, k) for g, k in needed])
    return (target, "not measured", None) if v is None else (target, text.format(v), ok(v))


def _ratio(a: Case, b: Case) -> float | None:
    fa, fb = fps(a), fps(b)
    return fa / fb if fa and fb else None


def _live_8(cases: list[Case]) -> Target:
    name = "live small, 8 streams: ≥ 20 fps each, p95 event latency < 300 ms flat over 60 s"
    missing = _unmeasured(name, cases, [("live", "small_8")])
    case = _find(cases, "live", "small_8")
    if missing or case is None:
        return missing or (name, "not measured", None)
    x = _extra(case)
    worst = min(cam["fps"] for cam in x["cameras"].values())
    thirds = [x[f"event_{t}_third_p95_ms"] for t in ("first", "middle", "last")]
    text = f"slowest camera {worst:.1f} fps; p95 by third {'/'.join(_fmt(t, 0) for t in thirds)} ms"
    if case.spec["seconds"] < LIVE_WINDOW:
        return name, f"{text} (a {case.spec['seconds']:g} s run: needs {LIVE_WINDOW:g} s)", None
    return name, text, worst >= 20 and all(t is not None and t < 300 for t in thirds)


def _dropped_of(case: Case) -> float | None:
    return _dropped(_extra(case)["cameras"])


def _p95(kind: str) -> Callable[[Case], float | None]:
    return lambda case: _extra(case).get(f"{kind}_p95_ms")


def targets(cases: list[Case]) -> list[Target]:
    hd = "1080p"
    out = [
        _measure("R50-eq FP32 (det_500m, interval 5, 1080p) ≥ 8× InsightFace per frame, same "
                 "models", cases, [(hd, "r50_fp32"), (hd, "insightface_r50")], _ratio,
                 lambda v: v >= 8, "{:.1f}×"),
        _measure("R50-eq INT8 (`models optimize`) with det_500m ≥ 25 fps", cases,
                 [(hd, "r50_int8")], fps, lambda v: v >= 25, "{:.1f} fps"),
        _measure("R50-eq INT8 with det_2.5g ≥ 20 fps", cases, [(hd, "d25_r50_int8")], fps,
                 lambda v: v >= 20, "{:.1f} fps"),
        _measure("small models, interval 5 ≥ 0.8× raw PyAV decode", cases,
                 [(hd, "small_i5"), (hd, "decode")], _ratio, lambda v: v >= 0.8, "{:.2f}×"),
        _measure("small models, interval 5 ≥ 10× InsightFace per frame", cases,
                 [(hd, "small_i5"), (hd, "insightface")], _ratio, lambda v: v >= 10, "{:.1f}×"),
        _measure("live 1× with people: CPU ≤ 4× PyAV decode-only CPU of the same stream",
                 cases, [("live", "small_1")], cpu_ratio, lambda v: v <= 4, "{:.2f}×"),
        _measure("live 1× static scene: CPU ≤ 1.5× PyAV decode-only CPU of the same stream",
                 cases, [("live", "static_1")], cpu_ratio, lambda v: v <= 1.5, "{:.2f}×"),
        _measure("live small, 4 streams: < 1 % dropped", cases, [("live", "small_4")],
                 _dropped_of, lambda v: v < 1, "{:.1f} % dropped"),
        _measure("live small, 8 mixed streams (1 with people, 7 static): < 1 % dropped", cases,
                 [("live", f"mixed_{LIVE_MIXED}")], _dropped_of, lambda v: v < 1,
                 "{:.1f} % dropped"),
        _measure("live small, 4 streams: event latency p95 (track_start, identified, unknown) "
                 "< 150 ms", cases, [("live", "small_4")], _p95("event"), lambda v: v < 150,
                 "{:.0f} ms"),
        _measure("live small, 4 streams: frame latency p95 < 150 ms", cases,
                 [("live", "small_4")], _p95("frame"), lambda v: v < 150, "{:.0f} ms"),
        _measure("live small, 4 streams: decision latency p95 < 400 ms", cases,
                 [("live", "small_4")], _p95("decision"), lambda v: v < 400, "{:.0f} ms"),
    ]  # fmt: skip
    out += [
        _live_8(cases),
        _measure("live det_2.5g + R50-eq, 2 streams: < 5 % dropped", cases, [("live", "r50_2")],
                 _dropped_of, lambda v: v < 5, "{:.1f} % dropped"),
        _measure("start-up to the first processed frame < 1 s (warm cache, whole process)",
                 cases, [("startup", "startup_warm")], lambda c: c.result["measured"]["wall_s"],
                 lambda v: v < 1, "{:.2f} s"),
        _measure("a whole `streamrec run` of 5 frames < 1.2 s (warm cache)", cases,
                 [("startup", "whole_run_warm")], lambda c: c.result["measured"]["wall_s"],
                 lambda v: v < 1.2, "{:.2f} s"),
    ]  # fmt: skip
    return out


def targets_table(cases: list[Case]) -> str:
    mark = {True: "reached", False: "not reached", None: "–"}
    return _table(
        ["target", "measured", "status"],
        [[name, value, mark[ok]] for name, value, ok in targets(cases)],
    )


# ------------------------------------------------------------------------------------ render


def render(cases: list[Case], meta: dict[str, Any], pending: list[str]) -> str:
    """The whole suite.md: header, a table per group, the targets, what optimize reported."""
    info, inputs = meta["machine"], meta["inputs"]
    v = info["versions"]
    out = [
        f"Machine: {info['cpu_model']}, {info['cores']} cores ({info['usable_cores']} usable; "
        f"{' '.join(info['cpu_flags']) or 'no AVX2'}; OpenVINO CPU: "
        f"{' '.join(info['openvino_cpu'] or ['?'])}), load {info['loadavg_at_start'][0]:.2f} at "
        f"start, {info['date']}; Python {info['python']}, onnxruntime-openvino "
        f"{v['onnxruntime-openvino']} (OpenVINO {v['openvino']}), PyAV {v['av']}, NNCF "
        f"{v['nncf']}, insightface {v['insightface'] or 'not installed'}, face_recognition "
        f"{v['face_recognition'] or 'not installed'}.",
        MODELS,
    ]
    if meta.get("quick"):
        out.append("**Quick run** (`--quick`): a smoke test, not figures to quote.")
    if pending:
        out.append(f"**Partial**: {len(pending)} case(s) not run yet: {', '.join(pending)}.")
    sections: list[tuple[str, str, Callable[[list[Case]], str]]] = [
        ("1080p", f"1080p, many faces: {inputs['1080p']}", video_table),
        ("detectors", f"Detector alone, 1080p frames of {inputs['1080p']}", detector_table),
        ("360p", f"640×360: {inputs['360p']}", video_table),
        ("live", f"Live: {inputs['live']}", live_table),
        ("startup", f"Start-up, from spawning the process: {inputs['startup']}", startup_table),
    ]
    for group, title, table in sections:
        chosen = [c for c in cases if c.group == group]
        if chosen:
            out += [f"## {title}", table(chosen)]
            if group == "live" and any(not status(c) for c in chosen):
                out += ["Per camera:", camera_table(chosen)]
    out += ["## Targets (issues 13 and 22)", targets_table(cases)]
    for name, report in meta.get("prepared", {}).items():
        if report:
            out += [f"## `streamrec models optimize` → {name}", f"```text\n{report}\n```"]
    return "\n\n".join(out) + "\n"


# ------------------------------------------------------------------------------------ plots


def write_plots(cases: list[Case], out: Path) -> None:
    """``suite.png`` (fps and stage time per clip) and ``suite_live.png`` (live cases)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = [g for g in ("1080p", "360p") if any(c.group == g and fps(c) for c in cases)]
    if groups:
        fig, axes = plt.subplots(len(groups), 2, figsize=(15, 5 * len(groups)), squeeze=False)
        for (ax_fps, ax_stage), group in zip(axes, groups, strict=True):
            _video_axes(ax_fps, ax_stage, group, [c for c in cases if c.group == group and fps(c)])
        fig.tight_layout()
        fig.savefig(out / "suite.png", dpi=100)
        plt.close(fig)
    live = [c for c in cases if c.group == "live" and not status(c)]
    if live:
        fig, (ax_fps, ax_lat) = plt.subplots(1, 2, figsize=(11, 3.8))
        _live_axes(ax_fps, ax_lat, live)
        fig.tight_layout()
        fig.savefig(out / "suite_live.png", dpi=100)
        plt.close(fig)


def _video_axes(ax_fps: Any, ax_stage: Any, group: str, done: list[Case]) -> None:
    done = done[::-1]
    names = [c.name for c in done]
    bars = ax_fps.barh(names, [fps(c) or 0.0 for c in done], color="tab:blue")
    ax_fps.bar_label(bars, fmt="%.1f", padding=3)
    ax_fps.set_title(f"{group}: frames per second (higher is better)", fontsize=10)
    ax_fps.margins(x=0.15)
    left = [0.0] * len(done)
    for stage in STAGES:
        ms = [
            1000
            * c.result["measured"]["stage_seconds"].get(stage, 0.0)
            / c.result["measured"]["frames"]
            for c in done
        ]
        if any(ms):
            ax_stage.barh(names, ms, left=left, label=stage)
            left = [a + b for a, b in zip(left, ms, strict=True)]
    ax_stage.set_title(
        f"{group}: busy ms per frame by stage (stages overlap in threads)", fontsize=10
    )
    ax_stage.set_yticklabels([])
    ax_stage.legend(fontsize=8)


def _live_axes(ax_fps: Any, ax_lat: Any, live: list[Case]) -> None:
    """Slowest camera's fps and latencies against the number of streams with people, one line
    per model set (the static and mixed cases are in the tables)."""
    sets: dict[str, list[Case]] = {}
    for c in live:
        if c.spec.get("scene", "people") == "people":
            sets.setdefault(c.name.split(", ", 1)[-1], []).append(c)
    for label, chosen in sets.items():
        streams = [c.spec["streams"] for c in chosen]
        extras = [_extra(c) for c in chosen]
        worst = [min(cam["fps"] for cam in x["cameras"].values()) for x in extras]
        ax_fps.plot(streams, worst, "o-", label=f"{label}: slowest camera")
        for kind in ("frame", "event", "decision"):
            values = [x.get(f"{kind}_p95_ms") or 0.0 for x in extras]
            ax_lat.plot(streams, values, "o-", label=f"{label} {kind} p95")
    ticks = sorted({c.spec["streams"] for cs in sets.values() for c in cs})
    ax_fps.axhline(LIVE_FPS, color="gray", linestyle="--", label=f"{LIVE_FPS} fps (real time)")
    ax_fps.set(xlabel="simultaneous 720p streams", ylabel="processed fps per camera", xticks=ticks)
    ax_fps.legend(fontsize=8)
    ax_lat.set(xlabel="simultaneous 720p streams", ylabel="latency p95 ms", xticks=ticks)
    ax_lat.legend(fontsize=8)
