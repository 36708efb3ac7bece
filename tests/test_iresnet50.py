"""The random-weight IResNet-50 stand-in for w600k_r50.onnx: layout, size, and real inference."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from benchmarks.iresnet50 import build_iresnet50, parameter_count

# Published size of InsightFace buffalo_l/w600k_r50.onnx: ~43.59M float32 parameters.
REAL_BYTES = 174_383_860
REAL_PARAMS = 43.59e6


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_iresnet50(tmp_path_factory.mktemp("iresnet50") / "r50.onnx", seed=0)


@pytest.fixture(scope="module")
def model(model_path: Path) -> onnx.ModelProto:
    return onnx.load(str(model_path))


def _dims(value_info: onnx.ValueInfoProto) -> list[int | str]:
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


def test_layout_matches_w600k_r50(model: onnx.ModelProto) -> None:
    onnx.checker.check_model(model)
    assert 11 <= model.opset_import[0].version <= 17
    (inp,) = model.graph.input
    (out,) = model.graph.output
    assert inp.name == "input.1"
    assert inp.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    batch, *chw = _dims(inp)
    assert isinstance(batch, str) and batch  # dynamic batch
    assert chw == [3, 112, 112]
    assert _dims(out) == [batch, 512]


def test_size_and_architecture(model: onnx.ModelProto, model_path: Path) -> None:
    assert parameter_count(model) == pytest.approx(REAL_PARAMS, rel=0.01)
    assert model_path.stat().st_size == pytest.approx(REAL_BYTES, rel=0.01)
    ops = Counter(n.op_type for n in model.graph.node)
    # Conv: stem + 2 per block (24) + 4 downsamples; PRelu: stem + 24;
    # BatchNormalization: bn1 of each block + bn2 + features.
    assert ops == {
        "Conv": 53,
        "PRelu": 25,
        "BatchNormalization": 26,
        "Add": 24,
        "Flatten": 1,
        "Gemm": 1,
    }


def test_inference_openvino_and_cpu(model_path: Path) -> None:
    x = np.random.default_rng(1).uniform(-1, 1, (4, 3, 112, 112)).astype(np.float32)
    ov = ort.InferenceSession(
        str(model_path), providers=["OpenVINOExecutionProvider", "CPUExecutionProvider"]
    )
    assert ov.get_providers()[0] == "OpenVINOExecutionProvider"
    cpu = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    (y_ov,) = ov.run(None, {"input.1": x})
    (y_cpu,) = cpu.run(None, {"input.1": x})
    for y in (y_ov, y_cpu):
        assert y.shape == (4, 512)
        assert np.isfinite(y).all()
        assert 0.05 < float(y.std()) < 20  # neither collapsed nor exploded
    # Both providers compute the same embeddings (OpenVINO may run in reduced precision).
    cos = (
        np.sum(y_ov * y_cpu, axis=1) / np.linalg.norm(y_ov, axis=1) / np.linalg.norm(y_cpu, axis=1)
    )
    assert (cos > 0.99).all(), cos


def test_existing_build_is_reused(model_path: Path) -> None:
    before = model_path.stat().st_mtime_ns
    assert build_iresnet50(model_path, seed=0) == model_path
    assert model_path.stat().st_mtime_ns == before
