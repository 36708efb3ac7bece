"""The benchmark suite's own logic (no timing is asserted): the SCRFD-10G stand-in, skipped and
failed rows, results written case by case, the scratch folder, the targets."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from benchmarks import suite
from benchmarks.cases import Skipped, decode_frames, streamrec_config
from benchmarks.live import LiveRecorder, latency_stats, rtsp_streams
from benchmarks.prepare import CLIPS, STILL, Inputs
from benchmarks.report import render, targets
from benchmarks.scrfd10g import build_scrfd10g, gmacs, parameter_count
from benchmarks.suite import Case, parse_args, run_case, run_child

# Published SCRFD-10G-KPS (det_10g.onnx of buffalo_l): 4.23 M parameters, 10 GFLOPs at VGA
# (multiply-adds, the SCRFD paper's convention), 16,923,827 bytes.
REAL_PARAMS = 4.23e6
REAL_GMACS_VGA = 10.0
REAL_BYTES = 16_923_827


# ------------------------------------------------------------------------------ SCRFD-10G


@pytest.fixture(scope="module")
def det10g(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_scrfd10g(tmp_path_factory.mktemp("scrfd10g") / "det_10g_arch_equiv.onnx")


def test_scrfd10g_size_and_cost_match_the_published_model(det10g: Path) -> None:
    model = onnx.load(str(det10g))
    onnx.checker.check_model(model)
    assert parameter_count(model) == pytest.approx(REAL_PARAMS, rel=0.02)
    assert gmacs(model, 640, 480) == pytest.approx(REAL_GMACS_VGA, rel=0.02)
    assert det10g.stat().st_size == pytest.approx(REAL_BYTES, rel=0.01)


def test_scrfd10g_has_det_10g_layout(det10g: Path) -> None:
    session = ort.InferenceSession(str(det10g), providers=["CPUExecutionProvider"])
    (inp,) = session.get_inputs()
    assert inp.name == "input.1"
    assert inp.shape[:2] == [1, 3] and not all(isinstance(d, int) for d in inp.shape[2:])
    x = np.random.default_rng(0).uniform(-1, 1, (1, 3, 384, 640)).astype(np.float32)
    outs = session.run(None, {"input.1": x})
    cells = [384 * 640 // s**2 * 2 for s in (8, 16, 32)]  # 2 anchors per cell
    assert [o.shape for o in outs] == [(n, w) for w in (1, 4, 10) for n in cells]
    assert all(np.isfinite(o).all() for o in outs)
    assert max(float(o.max()) for o in outs[:3]) < 0.5  # random weights find no face


def test_scrfd10g_runs_in_streamrecs_detector(det10g: Path) -> None:
    from streamrec import load_config
    from streamrec.models.detector import ScrfdDetector

    cfg = load_config(None, {"models.download": False})
    detector = ScrfdDetector(det10g, cfg.detector, cfg.runtime)
    assert detector.dynamic
    frame = np.random.default_rng(1).integers(0, 256, (1080, 1920, 3), dtype=np.uint8)
    assert detector.input_for(1920, 1080) == (640, 384)
    assert len(detector.detect(frame)) == 0


def test_scrfd10g_build_is_reused(det10g: Path) -> None:
    before = det10g.stat().st_mtime_ns
    assert build_scrfd10g(det10g) == det10g
    assert det10g.stat().st_mtime_ns == before


# ------------------------------------------------------------------------------ workloads


def test_decode_frames_gives_every_frame_as_bgr(media_dir: Path) -> None:
    frames = list(decode_frames(str(media_dir / CLIPS["360p"])))
    assert len(frames) == 275
    assert {f.shape for f in frames} == {(360, 640, 3)} and frames[0].dtype == np.uint8


def test_latency_stats_by_thirds_of_the_time() -> None:
    # 60 s of events: 100 ms latency, growing to 400 ms in the last 20 s
    samples = [(t, 0.1 if t < 40 else 0.4) for t in np.arange(0.0, 60.0, 0.5)]
    stats = latency_stats(samples, "event_")
    assert stats["event_count"] == len(samples)
    assert stats["event_first_third_p95_ms"] == pytest.approx(100)
    assert stats["event_last_third_p95_ms"] == pytest.approx(400)
    assert latency_stats([])["p95_ms"] is None


def test_degradation_over_the_window() -> None:
    recorder = LiveRecorder()
    recorder.levels["cam0"] = [(5.0, 1), (12.0, 3), (20.0, 0), (40.0, 1)]
    assert recorder.degradation("cam0", (10.0, 30.0)) == {
        "max_level": 3, "end_level": 0, "degraded_s": 10.0,
    }  # fmt: skip
    assert recorder.degradation("cam1", (10.0, 30.0))["max_level"] == 0


def test_no_bf16_device_is_a_skip(models_dir: Path) -> None:
    from streamrec.models.runtime import device_info

    device = device_info("CPU")
    spec = {"models": str(models_dir), "set": {"runtime.precision": "BF16"}}
    if device is None or device.supports("BF16"):
        streamrec_config(spec)  # no skip where BF16 exists (or cannot be asked)
    else:
        with pytest.raises(Skipped, match="has no BF16"):
            streamrec_config(spec)


def test_missing_peer_is_a_skip(monkeypatch: pytest.MonkeyPatch) -> None:
    from benchmarks import peers

    monkeypatch.setattr(peers, "_FACE_RECOGNITION", ("dlib", "no_such_module_for_bench"))
    with pytest.raises(Skipped, match=r"not installed: .*no_such_module_for_bench"):
        peers.face_recognition({"clip": "unused.mp4"})


# ------------------------------------------------------------------------------ skipped rows


@pytest.fixture
def no_tools(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A PATH without ffmpeg (or anything else)."""
    empty = tmp_path / "empty-path"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    assert shutil.which("ffmpeg") is None


def test_missing_ffmpeg_skips_the_cases_that_need_it(no_tools: None, tmp_path: Path) -> None:
    inputs = Inputs(tmp_path, tmp_path, tmp_path, tmp_path, loops=3, quick=True)
    with pytest.raises(Skipped, match="ffmpeg is not installed") as first:
        inputs.get("clip_short")
    with pytest.raises(Skipped) as again:  # remembered, not tried again
        inputs.get("clip_short")
    assert again.value is first.value
    case = Case("startup", "whole_run_warm", "whole run", {"kind": "whole_run"},
                {"clip": "clip_short"})  # fmt: skip
    run_case(case, inputs)
    assert case.result == {"skipped": "ffmpeg is not installed (apt-get install ffmpeg)"}
    meta = _meta()
    text = render([case], meta, [])
    assert "| whole run | skipped: ffmpeg is not installed" in text
    assert "not measured (whole run: skipped: ffmpeg is not installed" in text


def test_missing_rtsp_server_or_ffmpeg_is_a_skip(no_tools: None, tmp_path: Path) -> None:
    with pytest.raises(Skipped, match="not installed"), rtsp_streams([tmp_path / "x.mp4"] * 2):
        pass


def test_a_failing_case_is_a_failed_row(tmp_path: Path) -> None:
    result = run_child({"kind": "decode", "clip": str(tmp_path / "missing.mp4")}, timeout=120)
    assert "missing.mp4" in result["error"]
    assert len(result["loadavg"]) == 2 and result["process_s"] > 0


# ------------------------------------------------------------------------------ writing


def test_each_result_is_written_when_measured(
    models_dir: Path, media_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two cases; the run is interrupted while the second runs: the first is in the files."""
    out = tmp_path / "out"
    seen: list[dict[str, Any]] = []
    real = suite.run_child

    def interrupted_second(spec: dict[str, Any], timeout: float) -> dict[str, Any]:
        if not seen:
            seen.append({})
            return real(spec, timeout)
        seen.append(json.loads((out / "suite.json").read_text()))
        raise KeyboardInterrupt

    monkeypatch.setattr(suite, "run_child", interrupted_second)
    argv = ["--models", str(models_dir), "--media", str(media_dir), "--loops", "1", "--only",
            r"(1080p|360p)\] decode", "--out", str(out)]  # fmt: skip
    assert suite.main(argv) == 130
    written = seen[1]  # as the second case started
    assert [c["group"] for c in written["cases"]] == ["1080p"]
    assert written["cases"][0]["result"]["measured"]["frames"] == 105
    assert written["pending"] == ["[360p] decode only (raw PyAV, frame threads, BGR)"]
    final = json.loads((out / "suite.json").read_text())
    assert [c["group"] for c in final["cases"]] == ["1080p"]
    table = (out / "suite.md").read_text()
    assert "| decode only (raw PyAV, frame threads, BGR) | " in table
    assert "**Partial**: 1 case(s) not run yet" in table


@pytest.fixture
def fake_shared(tmp_path: Path) -> tuple[Path, Path]:
    """Folders with the files parse_args checks for (empty: nothing is run)."""
    models, media = tmp_path / "models", tmp_path / "media"
    for f in [models / m for m in ("det_500m.onnx", "det_2.5g.onnx", "mobilefacenet_128d.onnx")]:
        f.parent.mkdir(parents=True, exist_ok=True)
        f.touch()
    for clip in (*CLIPS.values(), STILL):
        (media / clip).parent.mkdir(parents=True, exist_ok=True)
        (media / clip).touch()
    return models, media


@pytest.mark.parametrize(
    ("extra", "where"),
    [
        ([], "results"),
        (["--quick"], "scratch"),
        (["--only", "live"], "scratch"),
        (["--quick", "--out", "{tmp}/elsewhere"], "elsewhere"),
    ],
)
def test_only_a_full_run_writes_results(
    fake_shared: tuple[Path, Path], tmp_path: Path, extra: list[str], where: str
) -> None:
    models, media = fake_shared
    argv = ["--models", str(models), "--media", str(media)]
    out = parse_args(argv + [a.format(tmp=tmp_path) for a in extra]).out
    if where == "scratch":
        assert out.parent == suite.SCRATCH  # a new folder per run
    else:
        assert out == {"results": suite.RESULTS, "elsewhere": tmp_path / "elsewhere"}[where]


@pytest.mark.parametrize("partial", [["--quick"], ["--only", "live"]])
def test_a_partial_run_refuses_the_results_folder(
    fake_shared: tuple[Path, Path], partial: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    models, media = fake_shared
    argv = ["--models", str(models), "--media", str(media), "--out", str(suite.RESULTS)]
    with pytest.raises(SystemExit) as exit_:
        parse_args(argv + partial)
    assert exit_.value.code == 2
    assert "for full runs only" in capsys.readouterr().err


def test_a_live_case_measures_decode_only_then_the_pipeline(
    models_dir: Path, media_dir: Path, tmp_path: Path
) -> None:
    """A short live case on a real RTSP camera (the static scene): PyAV decoding the stream,
    then the pipeline alone, then decoding again, each measured over its own window (no figure
    is judged)."""
    inputs = Inputs(media_dir, models_dir, tmp_path, tmp_path, loops=1, quick=True)
    case = next(c for c in suite.live_cases(models_dir, 4.0) if c.key == "static_1")
    suite.run_case(case, inputs, warmup=2.0)
    if "skipped" in case.result:
        pytest.skip(case.result["skipped"])
    assert "error" not in case.result, case.result
    x = case.result["measured"]["extra"]
    decode, (before, after) = case.result["decode"], case.result["decode_runs"]
    assert x["received"] > 0 and before["frames"] > 0 and after["frames"] > 0 and x["cpu_s"] > 0
    assert decode["frames"] == before["frames"] + after["frames"]
    assert set(x["cameras"]["cam0"]) >= {"fps", "dropped", "detector_runs", "max_level",
                                          "frame_p95_ms", "track_end_count"}  # fmt: skip
    assert x["frame_count"] > 0
    text = render([case], _meta(), [])
    assert "| 1× 720p@25 RTSP static scene, small | " in text and "× decode-only CPU" in text
    spread = f"{1000 * before['extra']['cpu_s'] / before['frames']:.2f} / "
    assert spread in text


def test_help_lists_every_case_and_target() -> None:
    import subprocess

    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--help"], capture_output=True, text=True, check=True,
        cwd=Path(suite.__file__).parent.parent,
    )  # fmt: skip
    assert "[live] 8× 720p@25 RTSP, small" in proc.stdout
    assert "[detectors] det_10g-eq (SCRFD-10G-KPS)" in proc.stdout
    assert "a whole `streamrec run` of 5 frames < 1.2 s" in proc.stdout


# ------------------------------------------------------------------------------ targets


def _meta() -> dict[str, Any]:
    from benchmarks.report import machine_info

    inputs = {k: k for k in ("1080p", "360p", "live", "startup")}
    return {"machine": machine_info(), "inputs": inputs, "prepared": {}}


def _measured(group: str, key: str, fps: float, **extra: Any) -> Case:
    case = Case(group, key, key, {"seconds": extra.pop("seconds", 60.0)})
    frames = 100
    case.result = {
        "measured": {"frames": frames, "wall_s": frames / fps, "extra": extra},
        "cpu_percent": 100.0, "peak_rss_mb": 1.0, "loadavg": [[0.0] * 3, [0.0] * 3],
    }  # fmt: skip
    return case


def _live(key: str, fps: float, dropped: int, p95: float, seconds: float,
          cpu_s: float = 10.0, decode_cpu_s: float = 5.0) -> Case:  # fmt: skip
    cams = {"cam0": {"fps": fps, "frames": 1000, "dropped": dropped}}
    thirds = {f"event_{t}_third_p95_ms": p95 for t in ("first", "middle", "last")}
    latencies = {f"{k}_p95_ms": p95 for k in ("event", "frame", "decision")}
    case = _measured("live", key, fps, cameras=cams, seconds=seconds, cpu_s=cpu_s,
                     received=1000 + dropped, **thirds, **latencies)  # fmt: skip
    case.result["decode"] = {"frames": 1000 + dropped, "extra": {"cpu_s": decode_cpu_s}}
    return case


def test_targets_are_judged_from_the_cases() -> None:
    skipped = Case("1080p", "insightface_r50", "InsightFace, R50-eq", {})
    skipped.result = {"skipped": "insightface is not installed"}
    cases = [
        _measured("1080p", "decode", 100.0),
        _measured("1080p", "small_i5", 80.0),
        _measured("1080p", "insightface", 9.0),
        _measured("1080p", "r50_int8", 24.0),
        _measured("1080p", "r50_fp32", 12.0),
        skipped,
        _live("small_4", 25.0, dropped=5, p95=100.0, seconds=60.0),  # 0.5 %
        _live("small_1", 25.0, dropped=0, p95=50.0, seconds=60.0, cpu_s=15.0),  # 3×
        _live("static_1", 25.0, dropped=0, p95=50.0, seconds=60.0, cpu_s=8.0),  # 1.6×
        _live("mixed_8", 24.0, dropped=300, p95=200.0, seconds=60.0),  # 23 %
        _live("small_8", 24.0, dropped=0, p95=200.0, seconds=15.0),  # too short to judge
        _live("r50_2", 20.0, dropped=100, p95=900.0, seconds=60.0),  # 9.1 %
    ]
    verdicts = {name: (value, ok) for name, value, ok in targets(cases)}

    def verdict(start: str) -> tuple[str, bool | None]:
        return next(v for name, v in verdicts.items() if name.startswith(start))

    assert verdict("small models, interval 5 ≥ 0.8×") == ("0.80×", True)
    assert verdict("small models, interval 5 ≥ 10×") == ("8.9×", False)
    assert verdict("R50-eq INT8 (`models optimize`) with det_500m") == ("24.0 fps", False)
    assert verdict("R50-eq FP32")[1] is None
    assert "insightface is not installed" in verdict("R50-eq FP32")[0]
    assert verdict("R50-eq INT8 with det_2.5g")[1] is None
    assert verdict("live small, 4 streams: <") == ("0.5 % dropped", True)
    assert verdict("live small, 4 streams: event latency") == ("100 ms", True)
    assert verdict("live small, 4 streams: decision") == ("100 ms", True)
    assert verdict("live 1× with people") == ("3.00×", True)
    assert verdict("live 1× static scene") == ("1.60×", False)
    assert verdict("live small, 8 mixed") == ("23.1 % dropped", False)
    assert verdict("live small, 8 streams")[1] is None
    assert "needs 60 s" in verdict("live small, 8 streams")[0]
    assert verdict("live det_2.5g") == ("9.1 % dropped", False)
    assert verdict("start-up")[1] is None
