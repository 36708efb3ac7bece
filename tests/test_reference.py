"""Detection and embeddings agree with the InsightFace package (test-only oracle)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from streamrec import load_config, read_image
from streamrec.analyzer import FaceAnalyzer
from streamrec.geometry import iou_matrix

insightface = pytest.importorskip("insightface", reason="insightface oracle not installed")
from insightface.model_zoo.arcface_onnx import ArcFaceONNX  # noqa: E402
from insightface.model_zoo.scrfd import SCRFD  # noqa: E402
from insightface.utils.face_align import norm_crop  # noqa: E402

IMAGES = [
    "insightface/t1.jpg",
    "face_recognition/two_people.jpg",
    "openface_examples/longoria-cooper.jpg",
    "facenet_pytorch/multiface.jpg",
    "deepface/couple.jpg",
    "group_photos/ultralight_imgs/1.jpg",
]


def _oracle_detector(path: Path) -> SCRFD:
    import onnxruntime as ort

    det = SCRFD(str(path), ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]))
    det.prepare(-1, input_size=(640, 640), det_thresh=0.5)
    return det


@pytest.mark.parametrize("detector", ["det_500m.onnx", "det_2.5g.onnx", "scrfd_2.5g_bnkps.onnx"])
def test_boxes_match_insightface(models_dir: Path, media_dir: Path, detector: str) -> None:
    cfg = load_config(
        None,
        {"models.detector": detector, "models.recognizer": "mobilefacenet_128d.onnx"},
    )
    ours = FaceAnalyzer.from_config(cfg)
    oracle = _oracle_detector(models_dir / detector)
    ious = []
    for rel in IMAGES:
        img = read_image(media_dir / rel)
        dets = ours.detect(img)
        ref_boxes, _ = oracle.detect(img, max_num=0)
        ref = ref_boxes[:, :4]
        iou = iou_matrix(dets.boxes, ref) if len(dets) and len(ref) else np.zeros((len(dets), 0))
        for boxes, other_axis, who in ((ref, 0, "ours"), (dets.boxes, 1, "insightface")):
            tall = (boxes[:, 3] - boxes[:, 1]) > 32
            best = iou.max(axis=other_axis) if iou.size else np.zeros(len(boxes))
            missed = np.nonzero(tall & (best < 0.5))[0]
            assert missed.size == 0, f"{rel}: {who} missed faces taller than 32 px: {missed}"
        if iou.size:
            best = iou.max(axis=1)
            ious.extend(best[best >= 0.5].tolist())
    assert len(ious) >= 15
    assert float(np.mean(ious)) >= 0.95, f"mean IoU {np.mean(ious):.4f}"


def test_embeddings_match_insightface(analyzer: FaceAnalyzer, models_dir: Path, media_dir: Path):
    import onnxruntime as ort

    path = models_dir / "mobilefacenet_128d.onnx"
    rec = ArcFaceONNX(
        str(path), ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    )
    rec.input_mean, rec.input_std = 127.5, 127.5  # the model card's preprocessing
    sims = []
    for rel in IMAGES:
        img = read_image(media_dir / rel)
        dets = analyzer.detect(img)
        ours = analyzer.embed(img, dets)
        for kps, emb in zip(dets.kps, ours, strict=True):
            ref = rec.get_feat(norm_crop(img, landmark=kps)).reshape(-1)
            ref = ref / np.linalg.norm(ref)
            sims.append(float(emb @ ref))
    assert len(sims) >= 15
    assert min(sims) >= 0.995, f"min cosine {min(sims):.5f}"
    # outputs are L2-normalised float32
    assert ours.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
