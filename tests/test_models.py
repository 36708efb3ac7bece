"""Model registry, resolution, download with sha256 check, runtime and detector layouts."""

from __future__ import annotations

import functools
import http.server
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from streamrec import load_config, read_image
from streamrec.errors import ModelError
from streamrec.models import registry
from streamrec.models.detector import ScrfdDetector
from streamrec.models.registry import MODELS, PACKS, resolve
from streamrec.pipeline.tracking import iou_matrix


def test_openvino_execution_provider_available() -> None:
    """The suite must run with onnxruntime-openvino, not a shadowing plain onnxruntime."""
    assert "OpenVINOExecutionProvider" in ort.get_available_providers()


def test_session_uses_openvino_by_default(models_dir: Path) -> None:
    from streamrec.models.runtime import create_session

    cfg = load_config()
    session = create_session(models_dir / "det_500m.onnx", cfg.runtime)
    assert session.get_providers()[0] == "OpenVINOExecutionProvider"
    cpu = create_session(
        models_dir / "det_500m.onnx", load_config(None, ["runtime.provider=cpu"]).runtime
    )
    assert cpu.get_providers() == ["CPUExecutionProvider"]


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


@pytest.fixture
def mirror(tmp_path: Path) -> Iterator[Path]:
    root = tmp_path / "mirror"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None  # type: ignore[method-assign]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    root.joinpath("url").write_text(f"http://127.0.0.1:{server.server_address[1]}")
    yield root
    server.shutdown()


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


def test_offline_error_says_what_is_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("STREAMREC_MODELS", raising=False)
    monkeypatch.setenv("STREAMREC_MODEL_MIRROR", "http://127.0.0.1:9/none")
    with pytest.raises(ModelError) as err:
        resolve("buffalo_l", "recognizer")
    msg = str(err.value)
    assert "w600k_r50.onnx" in msg and "STREAMREC_MODELS" in msg and "buffalo_l.zip" in msg


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

    cfg = load_config()
    b1 = ArcFaceEmbedder(models_dir / "mobilefacenet_128d_b1.onnx", cfg.embedder, cfg.runtime)
    assert b1.fixed_batch == 1 and b1.dim == 128 and analyzer.embedder.fixed_batch is None
    image = read_image(media_dir / "insightface/t1.jpg")
    dets = analyzer.detect(image)
    from streamrec.models.alignment import align

    crops = [align(image, k) for k in dets.kps]
    a, b = analyzer.embedder.embed(crops), b1.embed(crops)
    assert a.shape == b.shape == (len(dets), 128)
    assert float(np.min(np.sum(a * b, axis=1))) > 0.999
