"""Architecture-equivalent stand-in for InsightFace ``w600k_r50.onnx`` (random weights).

The production recognizer (ArcFace IResNet-50, ``buffalo_l``) is too large to ship with the
project, but its compute cost does not depend on its weight values. This module writes an ONNX
graph of exactly the same architecture, laid out the way ``torch.onnx.export`` (opset 11) lays out
arcface_torch's ``iresnet50``: every BatchNorm that follows a convolution is folded into that
convolution's weight and bias, while the pre-activation BatchNorms (``bn1`` of each block, ``bn2``
before the FC layer, and ``features`` after it) stay ``BatchNormalization`` nodes. That gives
43,590,976 float32 parameters, the size of the real file. Timings measured with it must be
labelled "architecture-equivalent, random weights".

Weights are He-scaled and the BatchNorm running statistics follow the expected activation variance
(tracked analytically through the residual stream), so outputs stay finite and near unit scale.

Run ``python -m benchmarks.iresnet50 OUT.onnx`` to build the file and time it on the OpenVINO and
CPU execution providers.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from .onnxgraph import GraphBuilder, build_cached, generator_key, parameter_count

INPUT_NAME = "input.1"
OUTPUT_NAME = "683"
INPUT_SIZE = 112
EMBEDDING_DIM = 512
# (planes, blocks) of iresnet50 = IResNet(IBasicBlock, [3, 4, 14, 3]); stages start at stride 2.
STAGES = ((64, 3), (128, 4), (256, 14), (512, 3))
OPSET = 11  # what arcface_torch's torch2onnx.py exports with
GENERATOR_VERSION = 1  # bump when the generated graph or weights change
_FC_SCALE = 7 * 7  # 112 / 2**4 = 7


class _Builder(GraphBuilder):
    def prelu(self, x: str, channels: int) -> str:
        slope = self.uniform(0.05, 0.3, channels).reshape(channels, 1, 1)
        return self.node("PRelu", [x, self.init("prelu.weight", slope)])

    def block(
        self, x: str, variance: float, cin: int, planes: int, stride: int
    ) -> tuple[str, float]:
        """IBasicBlock: BN -> conv3x3 -> (BN) -> PReLU -> conv3x3/s -> (BN), + identity/downsample.

        Returns the output and its expected variance: the residual branch adds ``g**2``.
        """
        g = float(self.rng.uniform(0.2, 0.4))
        out = self.batchnorm(x, cin, variance)
        out = self.conv(out, cin, planes, 3, 1, gain=1.0, out_std=1.0)
        out = self.prelu(out, planes)
        out = self.conv(out, planes, planes, 3, stride, gain=2.0, out_std=g)
        if stride != 1 or cin != planes:
            x = self.conv(x, cin, planes, 1, stride, gain=1.0 / variance, out_std=1.0)
            variance = 1.0
        return self.node("Add", [out, x]), variance + g * g


def _generator_key(seed: int) -> str:
    spec = {"arch": "iresnet50", "stages": STAGES, "opset": OPSET, "version": GENERATOR_VERSION}
    return generator_key(spec, seed)


def make_model(seed: int = 0) -> onnx.ModelProto:
    """Build the IResNet-50 model in memory (about 175 MB of weights)."""
    b = _Builder(seed)
    x = b.conv(INPUT_NAME, 3, 64, 3, 1, gain=1.0, out_std=1.0)
    x = b.prelu(x, 64)
    variance, cin = 1.0, 64
    for planes, blocks in STAGES:
        for i in range(blocks):
            x, variance = b.block(x, variance, cin, planes, stride=2 if i == 0 else 1)
            cin = planes
    x = b.batchnorm(x, cin, variance)
    x = b.node("Flatten", [x], axis=1)
    fc_in = cin * _FC_SCALE
    fc_w = b.rng.standard_normal((EMBEDDING_DIM, fc_in), dtype=np.float32) / np.sqrt(fc_in)
    fc_b = b.rng.normal(0.0, 0.01, EMBEDDING_DIM)
    x = b.node("Gemm", [x, b.init("fc.weight", fc_w), b.init("fc.bias", fc_b)], transB=1)
    # arcface_torch freezes features.weight at 1.0.
    x = b.batchnorm(x, EMBEDDING_DIM, 1.0, gamma=np.ones(EMBEDDING_DIM, np.float32))
    b.nodes[-1].output[0] = OUTPUT_NAME

    return b.model(
        "iresnet50_random",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["None", 3, 112, 112])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["None", EMBEDDING_DIM])],
        opset=OPSET,
        ir_version=7,  # opset 11 era; loadable by any onnxruntime >= 1.6
        producer="streamrec.benchmarks.iresnet50",
        doc="IResNet-50 (w600k_r50 architecture), architecture-equivalent, random weights",
        key=_generator_key(seed),
    )


def build_iresnet50(path: str | Path, seed: int = 0) -> Path:
    """Write the model to ``path`` (atomically) unless an identical build is already there."""
    return build_cached(path, _generator_key(seed), lambda: make_model(seed))


def _time_provider(path: Path, provider: str, batch: int, runs: int) -> float:
    """Median seconds per inference of one batch (after a warm-up run)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=[provider])
    x = np.random.default_rng(0).standard_normal((batch, 3, INPUT_SIZE, INPUT_SIZE), np.float32)
    session.run(None, {INPUT_NAME: x})
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        session.run(None, {INPUT_NAME: x})
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="where to write the .onnx file")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--runs", type=int, default=10, help="timed runs per configuration")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    path = build_iresnet50(args.out, args.seed)
    params = parameter_count(onnx.load(str(path)))
    print(
        f"{path}: {path.stat().st_size:,} bytes, {params:,} parameters "
        f"(ready in {time.perf_counter() - start:.1f} s)"
    )
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(
        f"IResNet-50 timings, architecture-equivalent, random weights (median per batch; "
        f"{os.cpu_count()} CPUs, load average {load}):"
    )
    for provider in ("OpenVINOExecutionProvider", "CPUExecutionProvider"):
        for batch in (1, 8):
            seconds = _time_provider(path, provider, batch, args.runs)
            print(
                f"  {provider:26s} batch {batch}: {seconds * 1e3:8.1f} ms "
                f"({seconds * 1e3 / batch:6.1f} ms/face)"
            )


if __name__ == "__main__":
    main()
