"""Architecture-equivalent stand-in for ``det_10g.onnx`` (SCRFD-10G-KPS, random weights).

``det_10g.onnx``, the detector of the production pack ``buffalo_l``, is not available here; its
compute cost does not depend on its weight values. This module writes an ONNX graph of the
published SCRFD-10G-KPS architecture (``configs/scrfd/scrfd_10g_bnkps.py`` of
deepinsight/insightface), laid out the way that repository's ``scrfd2onnx.py`` exports it
(opset 11, like ``det_500m.onnx`` / ``det_2.5g.onnx``): every BatchNorm folded into its conv.

* backbone ``ResNetV1e`` with BasicBlocks: deep stem (3x3 convs 3->28/s2, 28->28, 28->56), 2x2
  max pool, stages of 3/4/2/3 blocks with 56/88/88/224 channels (strides 1/2/2/2), average-pool
  downsampling (``avg_down``);
* PAFPN neck on the last three stages (88, 88, 224 -> 56 channels): 1x1 laterals, nearest 2x
  top-down, 3x3 output convs, 3x3/s2 bottom-up path and its 3x3 convs;
* SCRFD head for strides 8/16/32, one per stride (``strides_share=False``), classification and
  regression sharing 3 stacked 3x3 convs of 80 channels with BatchNorm (``norm_cfg=BN``; the
  non-KPS SCRFD-10G has shared heads with GroupNorm), 2 anchors per cell, a learnt scale on the
  box distances, 5 keypoints.

Outputs are laid out like ``det_500m.onnx``: 9 tensors without batch dimension, scores [N,1]
(sigmoid), boxes [N,4], keypoints [N,10] for strides 8, 16, 32, N = 2 * H/s * W/s.

Size and cost (checked by ``tests/test_benchmarks.py``):

* parameters: 4,225,945 (BatchNorms folded into the convs); published 4.23 M. The file is
  16,919,882 bytes; the real ``det_10g.onnx`` is 16,923,827;
* multiply-adds at 640x480 (VGA, where the SCRFD paper counts its FLOPs: its ``get_flops.py``
  counts a 640x640 input and multiplies by 0.75): 10.01 G; published 10 G ("SCRFD-10GF"). At
  640x640 it is 13.3 G, at the 640x384 that streamrec feeds a 16:9 frame 8.0 G.

Random weights find no faces: the score bias keeps every sigmoid far below any threshold, so
post-processing costs what it costs on a frame with few faces. Use it for detector timing only
and label the figures "architecture-equivalent, random weights".

``python -m benchmarks.scrfd10g OUT.onnx`` builds the file and prints its size and cost.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from .onnxgraph import (
    GraphBuilder,
    build_cached,
    generator_key,
    multiply_adds,
    parameter_count,
)

INPUT_NAME = "input.1"
OPSET = 11
GENERATOR_VERSION = 1  # bump when the generated graph or weights change
STEM = (28, 28, 56)
#: (blocks, planes, stride) of the backbone's stages
STAGES = ((3, 56, 1), (4, 88, 2), (2, 88, 2), (3, 224, 2))
NECK = 56
HEAD_CONVS, HEAD_CHANNELS = 3, 80
ANCHORS = 2
STRIDES = (8, 16, 32)
_SCORE_BIAS = -4.595  # the head's initial classification bias (prior 0.01)


class _Builder(GraphBuilder):
    def conv_relu(self, x: str, cin: int, cout: int, k: int, stride: int, moment: float) -> str:
        """Conv (folded BN) + ReLU for an input of second moment ``moment``; the output's
        second moment is 0.5 (ReLU of unit variance)."""
        return self.node("Relu", [self.conv(x, cin, cout, k, stride, 1.0 / moment, 1.0)])

    def basic_block(
        self, x: str, moment: float, cin: int, planes: int, stride: int
    ) -> tuple[str, float]:
        """conv3x3/s -> ReLU -> conv3x3, + identity or avgpool -> conv1x1, -> ReLU."""
        g = float(self.rng.uniform(0.3, 0.6))
        out = self.conv_relu(x, cin, planes, 3, stride, moment)
        out = self.conv(out, planes, planes, 3, 1, gain=2.0, out_std=g)
        if stride == 1 and cin == planes:
            # the identity is already >= 0: the ReLU of the sum passes nearly all of it
            moment += g * g
        else:
            if stride != 1:
                x = self.node("AveragePool", [x], kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1)
            x = self.conv(x, cin, planes, 1, 1, gain=1.0 / moment, out_std=1.0)
            moment = 0.5 * (1.0 + g * g)  # a zero-mean sum: the ReLU halves it
        return self.node("Relu", [self.node("Add", [out, x])]), moment

    def up_add(self, low: str, high: str) -> str:
        """``low + nearest-2x(high)``; the input size is a multiple of 32, so levels halve."""
        roi = self.init("roi", np.zeros(0))
        scales = self.init("scales", np.array([1.0, 1.0, 2.0, 2.0]))
        up = self.node(
            "Resize", [high, roi, scales], mode="nearest",
            coordinate_transformation_mode="asymmetric", nearest_mode="floor",
        )  # fmt: skip
        return self.node("Add", [low, up])

    def flat(self, x: str, width: int) -> str:
        """[1, C, H, W] -> [H*W*anchors, C/anchors] as the export does (transpose, reshape)."""
        x = self.node("Transpose", [x], perm=[2, 3, 0, 1])
        return self.node("Reshape", [x, self.const("shape", np.array([-1, width], np.int64))])


def _generator_key(seed: int) -> str:
    spec = {
        "arch": "scrfd_10g_bnkps", "stem": STEM, "stages": STAGES, "neck": NECK,
        "head": [HEAD_CONVS, HEAD_CHANNELS, ANCHORS], "opset": OPSET, "version": GENERATOR_VERSION,
    }  # fmt: skip
    return generator_key(spec, seed)


def make_model(seed: int = 0) -> onnx.ModelProto:
    """Build the SCRFD-10G-KPS model in memory (about 17 MB of weights)."""
    b = _Builder(seed)
    x, cin, moment = INPUT_NAME, 3, 1.0
    for i, cout in enumerate(STEM):
        x, cin, moment = b.conv_relu(x, cin, cout, 3, 2 if i == 0 else 1, moment), cout, 0.5
    x = b.node("MaxPool", [x], kernel_shape=[2, 2], strides=[2, 2])
    features = []
    for blocks, planes, stride in STAGES:
        for i in range(blocks):
            x, moment = b.basic_block(x, moment, cin, planes, stride if i == 0 else 1)
            cin = planes
        features.append((x, cin, moment))
    # PAFPN on the stride 8/16/32 features (start_level=1): no norm, no activation
    laterals = [b.conv(f, c, NECK, 1, 1, 1.0 / m, 1.0) for f, c, m in features[1:]]
    laterals[1] = b.up_add(laterals[1], laterals[2])
    laterals[0] = b.up_add(laterals[0], laterals[1])
    # variances: the sums of 3, 2 and 1 unit-variance maps, then of the bottom-up path
    inner = [
        b.conv(lat, NECK, NECK, 3, 1, 1.0 / n, 1.0)
        for lat, n in zip(laterals, (3, 2, 1), strict=True)
    ]
    for i in (1, 2):
        down = b.conv(inner[i - 1], NECK, NECK, 3, 2, 1.0 / i, 1.0)
        inner[i] = b.node("Add", [inner[i], down])
    levels = [inner[0]] + [b.conv(inner[i], NECK, NECK, 3, 1, 0.5, 1.0) for i in (1, 2)]
    scores, boxes, kps = [], [], []
    for level in levels:
        y, c, m = level, NECK, 1.0
        for _ in range(HEAD_CONVS):
            y, c, m = b.conv_relu(y, c, HEAD_CHANNELS, 3, 1, m), HEAD_CHANNELS, 0.5
        cls = b.conv(y, c, ANCHORS, 3, 1, gain=2.0, out_std=0.3, bias=_SCORE_BIAS)
        scores.append(b.node("Sigmoid", [b.flat(cls, 1)]))
        reg = b.conv(y, c, 4 * ANCHORS, 3, 1, gain=2.0, out_std=0.5, bias=1.0)
        reg = b.node("Mul", [reg, b.init("scale", np.array(b.uniform(0.8, 1.2, 1)[0]))])
        boxes.append(b.flat(reg, 4))
        kps.append(b.flat(b.conv(y, c, 10 * ANCHORS, 3, 1, gain=2.0, out_std=1.0), 10))

    outputs = []
    for name, width in zip(scores + boxes + kps, [1] * 3 + [4] * 3 + [10] * 3, strict=True):
        outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, [None, width]))
    return b.model(
        "scrfd_10g_bnkps_random",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, [1, 3, "?", "?"])],
        outputs,
        opset=OPSET,
        ir_version=6,  # what det_500m.onnx / det_2.5g.onnx carry
        producer="streamrec.benchmarks.scrfd10g",
        doc="SCRFD-10G-KPS (det_10g architecture), architecture-equivalent, random weights",
        key=_generator_key(seed),
    )


def build_scrfd10g(path: str | Path, seed: int = 0) -> Path:
    """Write the model to ``path`` (atomically) unless an identical build is already there."""
    return build_cached(path, _generator_key(seed), lambda: make_model(seed))


def gmacs(model: onnx.ModelProto, width: int, height: int) -> float:
    """Giga multiply-adds of one detection at a ``width`` x ``height`` input."""
    return multiply_adds(model, [1, 3, height, width]) / 1e9


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="where to write the .onnx file")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    path = build_scrfd10g(args.out, args.seed)
    model = onnx.load(str(path))
    sizes = ", ".join(f"{w}x{h} {gmacs(model, w, h):.2f} G" for w, h in ((640, 480), (640, 640)))
    print(
        f"{path}: {path.stat().st_size:,} bytes, {parameter_count(model):,} parameters; "
        f"multiply-adds {sizes}"
    )


if __name__ == "__main__":
    main()
