"""Markdown tables, targets (issue 6) and plots of the suite's results."""

from __future__ import annotations

import datetime
import glob
import importlib.metadata
import os
import platform
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .suite import Case

STAGES = ("decode", "detect", "track", "align", "embed", "match", "annotate", "encode")
PACKAGES = (
    "onnxruntime-openvino", "av", "numpy", "opencv-python-headless", "insightface",
    "face_recognition", "dlib-bin",
)  # fmt: skip
LIVE_FPS = 25


def machine_info() -> dict[str, Any]:
    import onnxruntime as ort

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


def _status(case: Case) -> str | None:
    r = case.result
    if "skipped" in r:
        return f"skipped: {r['skipped']}"
    if "error" in r:
        return f"failed: {r['error']}"
    return None


def _common(case: Case) -> list[str]:
    """CPU %, peak RSS MB, 1-minute load start→end."""
    r = case.result
    (l0, *_), (l1, *_) = r["loadavg"]
    return [_fmt(r["cpu_percent"], 0), _fmt(r["peak_rss_mb"], 0), f"{l0:.2f}→{l1:.2f}"]


def _failed_row(case: Case, width: int) -> list[str]:
    return [case.name, str(_status(case))] + ["–"] * (width - 2)


# ------------------------------------------------------------------------------------ tables


def video_table(cases: list[Case]) -> str:
    decode = next((fps(c) for c in cases if c.spec["kind"] == "decode"), None)
    head = ["case", "fps", "× decode", "faces/det. frame", "embeddings"]
    head += [f"{s} ms/f" for s in STAGES] + ["load s", "CPU %", "peak RSS MB", "load 1m"]
    rows = []
    for c in cases:
        if _status(c):
            rows.append(_failed_row(c, len(head)))
            continue
        m, f = c.result["measured"], fps(c)
        per_frame = [m["stage_seconds"].get(s) for s in STAGES]
        rows.append(
            [
                c.name,
                _fmt(f),
                _fmt(f / decode if f and decode else None, 2),
                _fmt(m["faces"] / m["detector_runs"] if m["detector_runs"] else None, 2),
                str(m["embeddings"]) if m["embeddings"] is not None else "–",
                *[_fmt(1000 * s / m["frames"] if s is not None else None, 2) for s in per_frame],
                _fmt(m["load_s"], 2),
                *_common(c),
            ]
        )
    return _table(head, rows)


def live_table(cases: list[Case]) -> str:
    head = ["case", "fps/camera min–max", "dropped %", "events", "latency p50 ms",
            "p95 ms", "p50 first→last third ms", "CPU %", "peak RSS MB", "load 1m"]  # fmt: skip
    rows = []
    for c in cases:
        if _status(c):
            rows.append(_failed_row(c, len(head)))
            continue
        x = c.result["measured"]["extra"]
        cams = x["cameras"].values()
        rates = [cam["fps"] for cam in cams]
        dropped = sum(cam["dropped"] for cam in cams)
        total = dropped + sum(cam["frames"] for cam in cams)
        rows.append(
            [
                c.name,
                f"{min(rates):.1f}–{max(rates):.1f} (of {LIVE_FPS})",
                _fmt(100 * dropped / total if total else None),
                str(x["events"]),
                _fmt(x["latency_p50_ms"], 0),
                _fmt(x["latency_p95_ms"], 0),
                f"{_fmt(x['first_third_p50_ms'], 0)}→{_fmt(x['last_third_p50_ms'], 0)}",
                *_common(c),
            ]
        )
    return _table(head, rows)


def startup_table(cases: list[Case]) -> str:
    head = ["case", "first frame s", "imports s", "models s", "peak RSS MB", "load 1m"]
    rows = []
    for c in cases:
        if _status(c):
            rows.append(_failed_row(c, len(head)))
            continue
        x = c.result["measured"]["extra"]
        common = _common(c)[1:]
        rows.append([c.name, *(_fmt(x[k], 2) for k in ("first_frame_s", "imports_s", "models_s"))])
        rows[-1] += common
    return _table(head, rows)


# ------------------------------------------------------------------------------------ targets


def _find(cases: list[Case], group: str, name: str) -> Case | None:
    return next((c for c in cases if c.group == group and c.name == name and not _status(c)), None)


def _ratio(a: Case | None, b: Case | None) -> float | None:
    fa, fb = (fps(a) if a else None), (fps(b) if b else None)
    return fa / fb if fa and fb else None


def _live_ok(case: Case | None) -> tuple[str, bool | None]:
    """Real time = every camera ≥ 95 % of 25 fps; growing = last-third p50 > first + 100 ms."""
    if case is None:
        return "not measured", None
    x = case.result["measured"]["extra"]
    worst = min(cam["fps"] for cam in x["cameras"].values())
    first, last = x["first_third_p50_ms"], x["last_third_p50_ms"]
    growth = last - first if first is not None and last is not None else None
    ok = worst >= 0.95 * LIVE_FPS and growth is not None and growth <= 100
    return f"slowest camera {worst:.1f} fps, p50 growth {_fmt(growth, 0)} ms", ok


def targets(cases: list[Case]) -> list[tuple[str, str, bool | None]]:
    hd = "1080p"
    small = _find(cases, hd, "streamrec interval 5")
    decode = _find(cases, hd, "decode only (PyAV)")
    insight = _find(cases, hd, "InsightFace FaceAnalysis per frame")
    r50 = next((c for c in cases if c.group == hd and "IResNet-50" in c.name), None)
    warm = _find(cases, "startup", "start-up, warm OpenVINO cache")
    vs_decode, vs_insight = _ratio(small, decode), _ratio(small, insight)
    r50_fps = fps(r50) if r50 and not _status(r50) else None
    warm_s = warm.result["measured"]["extra"]["first_frame_s"] if warm else None
    live_value, live_ok = _live_ok(_find(cases, "live", "4× 720p@25 RTSP"))

    def check(
        value: float | None, ok: Callable[[float], bool], text: str
    ) -> tuple[str, bool | None]:
        return ("not measured", None) if value is None else (text.format(value), ok(value))

    return [
        ("1080p, small models, interval 5, events only ≥ 70 % of decode-only fps",
         *check(vs_decode, lambda v: v >= 0.7, "{:.0%} of decode-only")),
        ("… and ≥ 4× InsightFace FaceAnalysis per frame",
         *check(vs_insight, lambda v: v >= 4, "{:.1f}×")),
        ("IResNet-50 (arch-equivalent, random weights) ≥ 25 fps at interval 5, 1080p",
         *check(r50_fps, lambda v: v >= 25, "{:.1f} fps")),
        ("4× 720p@25 in real time, no growing latency", live_value, live_ok),
        ("start-up to first processed frame < 3 s (warm cache)",
         *check(warm_s, lambda v: v < 3, "{:.2f} s")),
    ]  # fmt: skip


def targets_table(cases: list[Case]) -> str:
    mark = {True: "reached", False: "not reached", None: "–"}
    return _table(
        ["target", "measured", "status"],
        [[name, value, mark[ok]] for name, value, ok in targets(cases)],
    )


def render(cases: list[Case], info: dict[str, Any], inputs: dict[str, str]) -> str:
    v = info["versions"]
    out = [
        f"Machine: {info['cpu_model']}, {info['cores']} cores ({info['usable_cores']} usable), "
        f"load {info['loadavg_at_start'][0]:.2f} at start, {info['date']}; Python "
        f"{info['python']}, onnxruntime-openvino {v['onnxruntime-openvino']} (OpenVINO "
        f"{v['openvino']}), PyAV {v['av']}, insightface {v['insightface']}, face_recognition "
        f"{v['face_recognition']}. Small models: SCRFD-500M + MobileFaceNet-128d, OpenVINO EP "
        "unless noted, events only, no gallery.",
    ]
    for group, title in (("1080p", "1080p, many faces"), ("360p", "640×360")):
        chosen = [c for c in cases if c.group == group]
        if chosen:
            out += [f"## {title}: {inputs[group]}", video_table(chosen)]
    chosen = [c for c in cases if c.group == "live"]
    if chosen:
        out += [f"## Live: {inputs['live']}", live_table(chosen)]
    chosen = [c for c in cases if c.group == "startup"]
    if chosen:
        out += ["## Start-up (fresh process to first processed frame)", startup_table(chosen)]
    out += ["## Targets (issue 6)", targets_table(cases)]
    return "\n\n".join(out) + "\n"


# ------------------------------------------------------------------------------------ plots


def write_plots(cases: list[Case], out: Path) -> None:
    """``suite.png`` (fps and stage time per clip) and ``suite_live.png`` (live cases)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = [g for g in ("1080p", "360p") if any(c.group == g and fps(c) for c in cases)]
    if groups:
        fig, axes = plt.subplots(len(groups), 2, figsize=(15, 4.2 * len(groups)), squeeze=False)
        for (ax_fps, ax_stage), group in zip(axes, groups, strict=True):
            _video_axes(ax_fps, ax_stage, group, [c for c in cases if c.group == group and fps(c)])
        fig.tight_layout()
        fig.savefig(out / "suite.png", dpi=100)
        plt.close(fig)
    live = [c for c in cases if c.group == "live" and not _status(c)]
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
    streams = [c.spec["streams"] for c in live]
    extras = [c.result["measured"]["extra"] for c in live]
    worst = [min(cam["fps"] for cam in x["cameras"].values()) for x in extras]
    ax_fps.plot(streams, worst, "o-", label="slowest camera")
    ax_fps.axhline(LIVE_FPS, color="gray", linestyle="--", label=f"{LIVE_FPS} fps (real time)")
    ax_fps.set(
        xlabel="simultaneous 720p streams", ylabel="processed fps per camera", xticks=streams
    )
    ax_fps.legend(fontsize=8)
    for key, label in (("latency_p50_ms", "p50"), ("latency_p95_ms", "p95")):
        ax_lat.plot(streams, [x[key] or 0.0 for x in extras], "o-", label=label)
    ax_lat.set(
        xlabel="simultaneous 720p streams", ylabel="capture-to-event latency ms", xticks=streams
    )
    ax_lat.legend(fontsize=8)
