"""Helpers for the architecture-equivalent ONNX models (random weights, real compute cost).

:class:`GraphBuilder` accumulates nodes and initializers with weights scaled so activations stay
near unit scale; :func:`build_cached` writes a model once (atomically) and reuses it while its
generator key matches; :func:`parameter_count` and :func:`multiply_adds` give the figures that
are compared with the published ones.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

_KEY_PROP = "streamrec.generator_key"
_BN_EPS = 1e-5


class GraphBuilder:
    """Accumulates nodes and initializers; each method returns its output tensor name."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._count = 0

    def _name(self, prefix: str) -> str:
        self._count += 1
        return f"{prefix}_{self._count}"

    def init(self, prefix: str, array: np.ndarray) -> str:
        """A float32 initializer."""
        return self.const(prefix, np.asarray(array).astype(np.float32))

    def const(self, prefix: str, array: np.ndarray) -> str:
        """An initializer of the array's own dtype (e.g. int64 shapes)."""
        name = self._name(prefix)
        self.initializers.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def node(self, op: str, inputs: list[str], **attrs: Any) -> str:
        out = self._name(op.lower())
        self.nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        return out

    def uniform(self, low: float, high: float, n: int) -> np.ndarray:
        return self.rng.uniform(low, high, n).astype(np.float32)

    def conv(
        self,
        x: str,
        cin: int,
        cout: int,
        k: int,
        stride: int,
        gain: float,
        out_std: float,
        bias: float = 0.0,
    ) -> str:
        """Conv with a folded BatchNorm: an input of second moment ``1 / gain`` gives outputs of
        standard deviation about ``out_std`` around ``bias`` (He scaling: ``gain`` 2 after ReLU)."""
        fan_in = cin * k * k
        std = np.sqrt(gain / fan_in) * out_std * self.uniform(0.8, 1.2, cout)
        w = self.rng.standard_normal((cout, cin, k, k), dtype=np.float32)
        w *= std.reshape(-1, 1, 1, 1).astype(np.float32)
        b = self.rng.normal(0.0, 0.05 * out_std, cout) + bias
        inputs = [x, self.init("conv.weight", w), self.init("conv.bias", b)]
        pad = k // 2
        return self.node(
            "Conv", inputs, kernel_shape=[k, k], strides=[stride, stride], pads=[pad] * 4
        )

    def batchnorm(
        self, x: str, channels: int, variance: float, gamma: np.ndarray | None = None
    ) -> str:
        """Inference BatchNorm whose running stats match an input of the given variance."""
        std = np.sqrt(variance)
        scale = self.uniform(0.8, 1.2, channels) if gamma is None else gamma
        params = [
            scale,
            self.rng.normal(0.0, 0.1, channels),  # beta
            self.rng.normal(0.0, 0.1 * std, channels),  # running mean
            variance * self.uniform(0.6, 1.4, channels),  # running var
        ]
        names = [
            self.init(f"bn.{p}", a) for p, a in zip(("w", "b", "mean", "var"), params, strict=True)
        ]
        return self.node("BatchNormalization", [x, *names], epsilon=_BN_EPS)

    def model(
        self,
        name: str,
        inputs: list[onnx.ValueInfoProto],
        outputs: list[onnx.ValueInfoProto],
        *,
        opset: int,
        ir_version: int,
        producer: str,
        doc: str,
        key: str,
    ) -> onnx.ModelProto:
        """The model of everything built, carrying its generator ``key``."""
        graph = helper.make_graph(self.nodes, name, inputs, outputs, initializer=self.initializers)
        model = helper.make_model(
            graph,
            opset_imports=[helper.make_opsetid("", opset)],
            producer_name=producer,
            doc_string=doc,
        )
        model.ir_version = ir_version
        return with_key(model, key)


def generator_key(spec: dict[str, Any], seed: int) -> str:
    """Identifies a generated model: its architecture spec, generator version and seed."""
    return hashlib.sha256(json.dumps({**spec, "seed": seed}, sort_keys=True).encode()).hexdigest()


def with_key(model: onnx.ModelProto, key: str) -> onnx.ModelProto:
    helper.set_model_props(model, {_KEY_PROP: key})
    return model


def _is_current(path: Path, key: str) -> bool:
    if not path.is_file():
        return False
    try:
        props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    except Exception:  # unreadable or truncated: rebuild
        return False
    return props.get(_KEY_PROP) == key


def build_cached(path: str | Path, key: str, make: Callable[[], onnx.ModelProto]) -> Path:
    """Write ``make()`` to ``path`` (atomically) unless a build with ``key`` is already there."""
    path = Path(path)
    if _is_current(path, key):
        return path
    model = make()
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        onnx.save(model, str(tmp))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def parameter_count(model: onnx.ModelProto) -> int:
    """Float parameters (every float initializer; shape constants are not parameters)."""
    return sum(
        int(np.prod(t.dims))
        for t in model.graph.initializer
        if t.data_type == onnx.TensorProto.FLOAT
    )


def multiply_adds(model: onnx.ModelProto, shape: list[int]) -> int:
    """Multiply-accumulates of every Conv and Gemm for an input of ``shape`` (NCHW).

    This is what "FLOPs" means in the papers of these models (mmcv's and most counters count a
    multiply-add once); normalization, activation and pooling are left out (well under 1 %).
    """
    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    dims = fixed.graph.input[0].type.tensor_type.shape.dim
    for dim, value in zip(dims, shape, strict=True):
        dim.Clear()
        dim.dim_value = value
    inferred = onnx.shape_inference.infer_shapes(fixed, strict_mode=True)
    shapes = {
        v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
        for v in [*inferred.graph.value_info, *inferred.graph.output]
    }
    weights = {t.name: list(t.dims) for t in model.graph.initializer}
    total = 0
    for n in model.graph.node:
        if n.op_type == "Conv":
            _, cin_per_group, kh, kw = weights[n.input[1]]
            total += int(np.prod(shapes[n.output[0]])) * cin_per_group * kh * kw
        elif n.op_type == "Gemm":
            rows, _ = shapes[n.output[0]]
            total += rows * int(np.prod(weights[n.input[1]]))
    return total
