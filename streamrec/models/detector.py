"""SCRFD face detector (any SCRFD ONNX export with 5 keypoints).

The output layout is found from the graph, not the file name: outputs are grouped by their last
dimension (1 = scores, 4 = box distances, 10 = keypoint offsets); within a group, the feature map
with the most anchors has the smallest stride. Exports with or without a batch dimension and with
dynamic or fixed input size are handled alike.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import cv2
import numpy as np

from ..config import DetectorConfig, RuntimeConfig
from ..errors import ModelError
from ..records import Detections
from .blob import nchw
from .runtime import open_session

log = logging.getLogger("streamrec.detector")


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> np.ndarray:
    """Greedy non-maximum suppression (InsightFace's convention, +1 pixel areas)."""
    x1, y1, x2, y2 = boxes.T
    areas = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = scores.argsort()[::-1]
    keep = []
    while order.size > 0:
        i = order[0]
        keep.append(i)
        rest = order[1:]
        w = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]) + 1)
        h = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]) + 1)
        inter = w * h
        iou = inter / (areas[i] + areas[rest] - inter)
        order = rest[iou <= threshold]
    return np.asarray(keep, dtype=np.int64)


def _multiple_of_32(size: float) -> int:
    """``size`` rounded, then up to a multiple of 32 (SCRFD's largest stride)."""
    return -(-round(size) // 32) * 32


class ScrfdDetector:
    """Detects faces and their 5 landmarks; returns them in original image coordinates."""

    def __init__(self, path: str | Path, cfg: DetectorConfig, runtime: RuntimeConfig) -> None:
        self.path = Path(path)
        self.cfg = cfg
        self.session, self.runtime_info = open_session(path, runtime)
        inputs = self.session.get_inputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4:
            raise ModelError(f"{self.path.name}: not an SCRFD detector (expects one NCHW input)")
        self.input_name = inputs[0].name
        h, w = inputs[0].shape[2:]
        if isinstance(h, int) and isinstance(w, int) and h > 0 and w > 0:
            if (w, h) != (cfg.input_size, cfg.input_size):
                log.info("%s has a fixed %dx%d input; using it", self.path.name, w, h)
            self.input_size = (int(w), int(h))
            self.dynamic = False
        else:
            self.input_size = (cfg.input_size, cfg.input_size)
            self.dynamic = True
        groups: dict[int, list[int]] = {1: [], 4: [], 10: []}
        for i, out in enumerate(self.session.get_outputs()):
            last = out.shape[-1] if out.shape else None
            if last in groups:
                groups[last].append(i)
        n = len(groups[1])
        if n == 0 or len(groups[4]) != n or len(groups[10]) != n:
            raise ModelError(
                f"{self.path.name}: not an SCRFD detector with keypoints (needs score, box and "
                f"keypoint outputs per stride; found {len(self.session.get_outputs())} outputs)"
            )
        self._groups = groups
        self._anchor_cache: dict[tuple[int, int, int, int], np.ndarray] = {}

    def input_for(self, width: int, height: int) -> tuple[int, int]:
        """Detector input (w, h) for an image: a dynamic model gets the image's aspect ratio
        (long side ``input_size``, short side rounded up to a multiple of 32), so a 16:9 frame
        costs 640x384 rather than 640x640 of mostly padding; a fixed model gets its size."""
        if not self.dynamic:
            return self.input_size
        size = self.cfg.input_size
        short = min(size, _multiple_of_32(size * min(width, height) / max(width, height)))
        return (size, short) if width >= height else (short, size)

    def _letterbox(self, image: np.ndarray, in_w: int, in_h: int) -> tuple[np.ndarray, float]:
        """Resize keeping the aspect ratio into the top-left of the input; return blob, scale."""
        h, w = image.shape[:2]
        if h / w > in_h / in_w:
            new_h, new_w = in_h, int(in_h * w / h)
        else:
            new_w, new_h = in_w, int(in_w * h / w)
        scale = new_h / h
        canvas = np.zeros((in_h, in_w, 3), dtype=np.uint8)
        canvas[:new_h, :new_w] = cv2.resize(image, (new_w, new_h))
        return nchw([canvas], 127.5, 128.0, rgb=True), scale

    def _anchors(self, fh: int, fw: int, stride: int, per_cell: int) -> np.ndarray:
        key = (fh, fw, stride, per_cell)
        centers = self._anchor_cache.get(key)
        if centers is None:
            ys, xs = np.mgrid[:fh, :fw]
            grid = np.stack([xs, ys], axis=-1).astype(np.float32)
            centers = (grid * stride).reshape(-1, 2)
            if per_cell > 1:
                centers = np.repeat(centers, per_cell, axis=0)
            self._anchor_cache[key] = centers
        return centers

    def frame_scale(self, width: int, height: int) -> float:
        """How much :meth:`detect` shrinks (or grows) an image of this size."""
        in_w, in_h = self.input_for(width, height)
        return min(in_w / width, in_h / height)

    def cost(self, width: int, height: int, scale: float) -> int:
        """The detector input's pixels for a region of this size resized by ``scale`` (a model
        with a fixed input size always costs that size)."""
        if not self.dynamic:
            return self.input_size[0] * self.input_size[1]
        return max(32, _multiple_of_32(width * scale)) * max(32, _multiple_of_32(height * scale))

    def detect(self, image: np.ndarray) -> Detections:
        """Faces in a BGR image, sorted by score (or by size when ``max_faces`` cuts them)."""
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError("expected an HxWx3 BGR image")
        return self._detect(image, *self.input_for(image.shape[1], image.shape[0]))

    def detect_region(
        self, image: np.ndarray, region: tuple[int, int, int, int], scale: float
    ) -> Detections:
        """Faces in ``image[y1:y2, x1:x2]`` of ``region``, the crop resized by ``scale`` (1: the
        image's own pixels, above 1: small faces made larger); in image coordinates. A model
        with a fixed input size letterboxes the crop into it instead."""
        x1, y1, x2, y2 = region
        crop = image[y1:y2, x1:x2]
        if crop.size == 0:
            return Detections.empty()
        in_w, in_h = self.input_size
        if self.dynamic:
            in_w = max(32, _multiple_of_32(crop.shape[1] * scale))
            in_h = max(32, _multiple_of_32(crop.shape[0] * scale))
        dets = self._detect(crop, in_w, in_h)
        offset = np.array([x1, y1], np.float32)
        return Detections(dets.boxes + np.tile(offset, 2), dets.scores, dets.kps + offset)

    def _detect(self, image: np.ndarray, in_w: int, in_h: int) -> Detections:
        blob, scale = self._letterbox(image, in_w, in_h)
        outs = self.session.run(None, {self.input_name: blob})
        outs = [o[0] if o.ndim == 3 else o for o in outs]
        by_size = sorted(self._groups[1], key=lambda i: -outs[i].shape[0])
        first = outs[by_size[0]].shape[0]
        per_cell = max(1, round(first / ((in_h // 8) * (in_w // 8))))
        order = {k: sorted(v, key=lambda i: -outs[i].shape[0]) for k, v in self._groups.items()}
        thr = self.cfg.threshold
        all_scores, all_boxes, all_kps = [], [], []
        for level in range(len(by_size)):
            scores = outs[order[1][level]].reshape(-1)
            count = scores.shape[0]
            stride = round(math.sqrt(in_h * in_w * per_cell / count))
            keep = np.nonzero(scores >= thr)[0]
            if keep.size == 0:
                continue
            centers = self._anchors(in_h // stride, in_w // stride, stride, per_cell)[keep]
            dist = outs[order[4][level]][keep] * stride
            kps = outs[order[10][level]][keep] * stride
            boxes = np.concatenate([centers - dist[:, :2], centers + dist[:, 2:]], axis=1)
            kps = kps.reshape(-1, 5, 2) + centers[:, None, :]
            all_scores.append(scores[keep])
            all_boxes.append(boxes)
            all_kps.append(kps)
        if not all_scores:
            return Detections.empty()
        scores = np.concatenate(all_scores).astype(np.float32)
        boxes = (np.concatenate(all_boxes) / scale).astype(np.float32)
        kps = (np.concatenate(all_kps) / scale).astype(np.float32)
        order_idx = scores.argsort()[::-1]
        scores, boxes, kps = scores[order_idx], boxes[order_idx], kps[order_idx]
        keep = nms(boxes, scores, self.cfg.nms_threshold)
        dets = Detections(boxes[keep], scores[keep], kps[keep])
        if self.cfg.max_faces and len(dets) > self.cfg.max_faces:
            area = (dets.boxes[:, 2] - dets.boxes[:, 0]) * (dets.boxes[:, 3] - dets.boxes[:, 1])
            dets = dets[np.sort(np.argsort(-area)[: self.cfg.max_faces])]
        return dets
