"""Model registry, resolution, download with sha256 check, runtime and detector layouts."""

from __future__ import annotations

import dataclasses
import functools
import http.server
import json
import logging
import shutil
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from streamrec import load_config, read_image
from streamrec.cli import main
from streamrec.config import ModelsConfig
from streamrec.errors import ModelError
from streamrec.geometry import iou_matrix
from streamrec.models import registry, runtime
from streamrec.models.detector import ScrfdDetector
from streamrec.models.registry import MODELS, PACKS, resolve, resolve_all
from streamrec.models.runtime import open_session


def test_openvino_execution_provider_available() -> None:
    """The suite must run with onnxruntime-openvino, not a shadowing plain onnxruntime."""
    assert "OpenVINOExecutionProvider" in ort.get_available_providers()


def test_session_uses_openvino_by_default(models_dir: Path) -> None:
    cfg = load_config()
    session, info = open_session(models_dir / "det_500m.onnx", cfg.runtime)
    assert session.get_providers()[0] == "OpenVINOExecutionProvider"
    assert info.provider == "OpenVINOExecutionProvider" and info.device == "CPU"
    assert info.precision in ("FP32", "BF16") and info.reason
    cpu, cpu_info = open_session(
        models_dir / "det_500m.onnx", load_config(None, ["runtime.provider=cpu"]).runtime
    )
    assert cpu.get_providers() == ["CPUExecutionProvider"]
    assert cpu_info.provider == "CPUExecutionProvider" and "runtime.provider" in cpu_info.reason
    assert cpu_info in runtime.loaded_models()


def test_provider_and_precision_are_logged_once(
    models_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = load_config(None, ["runtime.provider=cpu"])
    model = models_dir / "mobilefacenet_128d_b1.onnx"
    with caplog.at_level(logging.INFO, logger="streamrec.runtime"):
        open_session(model, cfg.runtime)
        open_session(model, cfg.runtime)
    lines = [r.getMessage() for r in caplog.records if model.name in r.getMessage()]
    assert len(lines) <= 1  # an earlier test in this process may have logged it already
    assert all("CPUExecutionProvider" in line for line in lines)


def test_auto_precision_follows_device_capabilities(models_dir: Path) -> None:
    device = runtime.device_info("CPU")
    assert device is not None and "FP32" in device.capabilities
    cfg = load_config()
    assert cfg.runtime.precision == "auto"
    model = models_dir / "det_500m.onnx"
    choice = runtime.choose_precision(model, cfg.runtime, "0" * 64, measure=False)
    if "BF16" not in device.capabilities:
        assert choice.precision == "FP32" and "has no BF16" in choice.reason
        with pytest.raises(ModelError, match=r"runtime.precision is BF16.*does not support"):
            open_session(model, load_config(None, ["runtime.precision=BF16"]).runtime)
    else:
        assert "BF16" in choice.reason


def test_precision_check_is_measured_once_and_cached(
    models_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Force BF16 as the candidate: the check compares it with FP32 once, then the cache answers."""
    monkeypatch.setattr(
        runtime, "precision_candidate", lambda device: ("BF16", "test candidate")
    )
    cfg = load_config(None, {"runtime.cache_dir": str(tmp_path / "ov")}).runtime
    model = models_dir / "mobilefacenet_128d.onnx"
    sha = registry.sha256_of(model)
    first = runtime.choose_precision(model, cfg, sha)
    verdicts = json.loads((tmp_path / "ov" / "precision.json").read_text())
    (verdict,) = verdicts.values()
    assert verdict["candidate"] == "BF16" and verdict["min_cosine"] > 0.99
    assert first.precision == ("BF16" if verdict["accepted"] else "FP32")
    assert "cosine" in first.reason

    def no_second_measurement(*args: object) -> None:
        raise AssertionError("measured twice")

    monkeypatch.setattr(runtime, "check_precision", no_second_measurement)
    assert runtime.choose_precision(model, cfg, sha) == first


def test_a_candidate_precision_openvino_cannot_build_leaves_the_model_at_fp32(
    models_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """OpenVINO on an AMX CPU refuses BF16 for an INT8 model at compile time: the check records
    the error, the model runs at FP32 (before, the model did not load)."""
    monkeypatch.setattr(
        runtime, "precision_candidate", lambda device: ("BF16", "test candidate")
    )
    build = runtime._openvino_session

    def refuse_bf16(path: object, cfg: object, precision: str, cache: bool = True) -> object:
        if precision == "BF16":
            raise RuntimeError("Check '!implementations.empty()' failed at executor_factory.hpp")
        return build(path, cfg, precision, cache)  # type: ignore[arg-type]

    monkeypatch.setattr(runtime, "_openvino_session", refuse_bf16)
    cfg = load_config(None, {"runtime.cache_dir": str(tmp_path / "ov")}).runtime
    model = models_dir / "mobilefacenet_128d.onnx"
    choice = runtime.choose_precision(model, cfg, registry.sha256_of(model))
    assert choice.precision == "FP32"
    assert "OpenVINO failed at BF16: Check '!implementations.empty()'" in choice.reason
    (verdict,) = json.loads((tmp_path / "ov" / "precision.json").read_text()).values()
    assert verdict["accepted"] is False and "implementations" in verdict["error"]
    _, info = open_session(model, cfg)
    assert info.precision == "FP32"


def test_two_models_checked_at_once_both_keep_their_verdict(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The detector and the recognizer load at the same time: both checks finish after both
    read the (empty) cache, and neither verdict is lost (the next start measures nothing)."""
    import threading

    monkeypatch.setattr(runtime, "precision_candidate", lambda device: ("BF16", "test"))
    both_read = threading.Barrier(2, timeout=30)

    def check(path: object, cfg: object, candidate: str) -> dict[str, object]:
        both_read.wait()  # each has read the cache before either writes
        return {"candidate": candidate, "fp32_ms": 2.0, "candidate_ms": 1.0,
                "min_cosine": 1.0, "accepted": True, "checked": "now"}  # fmt: skip

    monkeypatch.setattr(runtime, "check_precision", check)
    cfg = load_config(None, {"runtime.cache_dir": str(tmp_path / "ov")}).runtime
    threads = [
        threading.Thread(target=runtime.choose_precision, args=(f"m{i}.onnx", cfg, str(i) * 64))
        for i in (1, 2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    verdicts = json.loads((tmp_path / "ov" / "precision.json").read_text())
    assert len(verdicts) == 2


def test_fallback_to_another_provider_is_reported(
    models_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    if runtime.device_info("GPU") is not None:
        pytest.skip("this machine has an OpenVINO GPU: no fall-back to provoke")
    cfg = load_config(None, ["runtime.device=GPU", "runtime.precision=FP32"]).runtime
    with caplog.at_level(logging.WARNING, logger="streamrec.runtime"):
        _, info = open_session(models_dir / "det_2.5g.onnx", cfg)
    assert info.provider == "CPUExecutionProvider"
    assert "fell back" in info.reason
    assert any("fell back" in r.getMessage() for r in caplog.records)


def test_registry_pins_official_facts() -> None:
    assert PACKS["buffalo_l"].detector == "det_10g.onnx"
    assert PACKS["buffalo_l"].recognizer == "w600k_r50.onnx"
    assert set(PACKS) == {"buffalo_l", "buffalo_m", "buffalo_s", "buffalo_sc"}
    assert MODELS["w600k_r50.onnx"].sha256 == (
        "4c06341c33c2ca1f86781dab0e829f88ad5b64be9fba56e56bc9ebdefc619e43"
    )
    assert MODELS["det_10g.onnx"].size == 16_923_827
    assert registry.pack_url(PACKS["buffalo_l"]).endswith("/buffalo_l.zip")


def test_resolution_order(models_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("STREAMREC_MODELS", str(models_dir))
    found = resolve("buffalo_sc", "detector", download=False)
    assert found.path == models_dir / "det_500m.onnx" and found.info is not None
    explicit = resolve(str(models_dir / "det_2.5g.onnx"), "detector")
    assert explicit.path == models_dir / "det_2.5g.onnx"
    with pytest.raises(ModelError, match="not found"):
        resolve(str(tmp_path / "nope.onnx"), "detector")


class _CountingHandler(http.server.SimpleHTTPRequestHandler):
    requests: list[str]

    def do_GET(self) -> None:
        self.requests.append(self.path)
        super().do_GET()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def mirror(tmp_path: Path) -> Iterator[Path]:
    """A local HTTP server for pack zips; the paths it was asked for go to ``requests``."""
    root = tmp_path / "mirror"
    root.mkdir()
    handler_class = type("Handler", (_CountingHandler,), {"requests": []})
    handler = functools.partial(handler_class, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    mirror_requests[root] = handler_class.requests
    threading.Thread(target=server.serve_forever, daemon=True).start()
    root.joinpath("url").write_text(f"http://127.0.0.1:{server.server_address[1]}")
    yield root
    server.shutdown()


mirror_requests: dict[Path, list[str]] = {}


def test_download_verifies_sha256(
    models_dir: Path, mirror: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("STREAMREC_MODELS", raising=False)
    monkeypatch.setenv("STREAMREC_MODEL_MIRROR", mirror.joinpath("url").read_text())
    with zipfile.ZipFile(mirror / "buffalo_sc.zip", "w") as zf:
        zf.write(models_dir / "det_500m.onnx", "buffalo_sc/det_500m.onnx")
        zf.writestr("buffalo_sc/w600k_mbf.onnx", b"not the real model")
    got = resolve("buffalo_sc", "detector")
    assert got.path == registry.cache_dir() / "det_500m.onnx"
    assert got.sha256 == MODELS["det_500m.onnx"].sha256
    with pytest.raises(ModelError, match="sha256 mismatch") as err:
        resolve("buffalo_sc", "recognizer")
    assert "deleted" in str(err.value)
    assert not (registry.cache_dir() / "w600k_mbf.onnx").exists()


def _offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("STREAMREC_MODELS", raising=False)
    monkeypatch.setenv("STREAMREC_MODEL_MIRROR", "http://127.0.0.1:9/none")


def test_offline_error_says_what_is_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    _offline(tmp_path, monkeypatch)
    with pytest.raises(ModelError) as err:
        resolve("buffalo_l", "recognizer")
    msg = str(err.value)
    assert "w600k_r50.onnx" in msg and "STREAMREC_MODELS" in msg and "buffalo_l.zip" in msg


def test_offline_error_lists_every_missing_model_and_the_ways_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _offline(tmp_path, monkeypatch)
    with pytest.raises(ModelError) as err:
        resolve_all(ModelsConfig())  # buffalo_l: det_10g + w600k_r50
    msg = str(err.value)
    assert "\n" not in msg
    assert "det_10g.onnx" in msg and "w600k_r50.onnx" in msg
    assert msg.count("downloading buffalo_l.zip") == 1  # tried once for both files
    assert "streamrec models pull buffalo_l" in msg  # 1: pull on a connected machine
    assert "STREAMREC_MODELS" in msg and "models.dir" in msg  # 2: a model directory
    assert "buffalo_s" in msg  # 3: a smaller pack
    with pytest.raises(ModelError) as err:
        resolve_all(ModelsConfig(detector=str(tmp_path / "nope.onnx"), download=False))
    assert "nope.onnx" in str(err.value) and "w600k_r50.onnx" in str(err.value)
    assert "models.download is false" in str(err.value)


def _pack_zip(mirror: Path, models_dir: Path, pack: str) -> None:
    """A stand-in pack: det_500m as its detector, MobileFaceNet's bytes as w600k_mbf.onnx,
    and a member streamrec does not use."""
    with zipfile.ZipFile(mirror / f"{pack}.zip", "w") as zf:
        zf.write(models_dir / "det_500m.onnx", f"{pack}/det_500m.onnx")
        zf.write(models_dir / "mobilefacenet_128d.onnx", f"{pack}/w600k_mbf.onnx")
        zf.writestr(f"{pack}/2d106det.onnx", b"landmarks, not used")


def test_pull_fetches_a_pack_once_and_verifies_every_member(
    models_dir: Path,
    mirror: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _offline(tmp_path, monkeypatch)
    monkeypatch.setenv("STREAMREC_MODEL_MIRROR", mirror.joinpath("url").read_text())
    mbf = MODELS["w600k_mbf.onnx"]
    stand_in = dataclasses.replace(mbf, sha256=MODELS["mobilefacenet_128d.onnx"].sha256)
    monkeypatch.setitem(MODELS, "w600k_mbf.onnx", stand_in)
    _pack_zip(mirror, models_dir, "buffalo_s")
    det, rec = resolve_all(ModelsConfig(detector="buffalo_s", recognizer="buffalo_s"))
    assert mirror_requests[mirror] == ["/buffalo_s.zip"]  # one download for both files
    assert det.path == registry.cache_dir() / "det_500m.onnx"
    assert rec.path == registry.cache_dir() / "w600k_mbf.onnx"
    assert rec.sha256 == MODELS["mobilefacenet_128d.onnx"].sha256
    assert not (registry.cache_dir() / "2d106det.onnx").exists()
    assert not list(registry.cache_dir().glob("tmp*"))  # the archive is gone
    # resolved locally from now on
    resolve_all(ModelsConfig(detector="buffalo_s", recognizer="buffalo_s"))
    assert len(mirror_requests[mirror]) == 1
    # the CLI (in this process, for the overridden pin): into a chosen folder; then the real
    # pin: the mismatching member is refused and deleted, the good one kept
    pulled = tmp_path / "pulled"
    assert main(["models", "pull", "buffalo_s", "--dir", str(pulled)]) == 0
    assert sorted(p.name for p in pulled.iterdir()) == ["det_500m.onnx", "w600k_mbf.onnx"]
    monkeypatch.setitem(MODELS, "w600k_mbf.onnx", mbf)
    shutil.rmtree(pulled)
    capsys.readouterr()
    assert main(["models", "pull", "buffalo_s", "--dir", str(pulled)]) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.split("\r")[-1].splitlines() if "error" in line]
    assert len(errors) == 1 and "Traceback" not in err  # (after the progress bar)
    assert errors[0].startswith("streamrec: error: sha256 mismatch for w600k_mbf.onnx")
    assert [p.name for p in pulled.iterdir()] == ["det_500m.onnx"]


def test_insightface_cache_is_searched(
    models_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _offline(tmp_path, monkeypatch)
    pack_dir = tmp_path / "home" / ".insightface" / "models" / "buffalo_sc"
    pack_dir.mkdir(parents=True)
    shutil.copy(models_dir / "det_500m.onnx", pack_dir)
    found = resolve("buffalo_sc", "detector", download=False)
    assert found.path == pack_dir / "det_500m.onnx"


def test_local_file_with_wrong_sha256_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    d = tmp_path / "models"
    d.mkdir()
    (d / "det_500m.onnx").write_bytes(b"corrupt")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("STREAMREC_MODELS", str(d))
    with pytest.raises(ModelError, match="sha256"):
        resolve("det_500m.onnx", "detector")


def test_three_detector_exports_find_the_same_faces(models_dir: Path, media_dir: Path) -> None:
    cfg = load_config()
    dets = {
        name: ScrfdDetector(models_dir / name, cfg.detector, cfg.runtime)
        for name in ("det_2.5g.onnx", "scrfd_2.5g_bnkps.onnx", "det_500m.onnx")
    }
    for rel in ("insightface/t1.jpg", "face_recognition/two_people.jpg", "deepface/couple.jpg"):
        image = read_image(media_dir / rel)
        found = {name: d.detect(image) for name, d in dets.items()}
        ref = found["det_2.5g.onnx"]
        assert len(ref) >= 2
        # the two exports of the same weights agree exactly
        np.testing.assert_allclose(found["scrfd_2.5g_bnkps.onnx"].boxes, ref.boxes, atol=0.5)
        # the 500M model finds the same faces
        other = found["det_500m.onnx"]
        assert len(other) == len(ref), rel
        assert iou_matrix(ref.boxes, other.boxes).max(axis=1).min() > 0.7


def test_detector_rejects_non_scrfd_model(models_dir: Path) -> None:
    cfg = load_config()
    with pytest.raises(ModelError, match="not an SCRFD detector"):
        ScrfdDetector(models_dir / "mobilefacenet_128d.onnx", cfg.detector, cfg.runtime)


def test_fixed_and_dynamic_batch_recognizers_agree(analyzer, models_dir: Path, media_dir: Path):
    from streamrec.models.embedder import ArcFaceEmbedder

    # one precision for both (auto may pick BF16 for one of them on a CPU that has it)
    cfg = load_config(None, {"runtime.precision": "FP32"})
    b1 = ArcFaceEmbedder(models_dir / "mobilefacenet_128d_b1.onnx", cfg.embedder, cfg.runtime)
    dyn = ArcFaceEmbedder(models_dir / "mobilefacenet_128d.onnx", cfg.embedder, cfg.runtime)
    assert b1.fixed_batch == 1 and b1.dim == 128 and dyn.fixed_batch is None
    image = read_image(media_dir / "insightface/t1.jpg")
    dets = analyzer.detect(image)
    from streamrec.models.alignment import align

    crops = [align(image, k) for k in dets.kps]
    a, b = dyn.embed(crops), b1.embed(crops)
    assert a.shape == b.shape == (len(dets), 128)
    assert float(np.min(np.sum(a * b, axis=1))) > 0.999
