"""Calibrate ``streamrec.scales.SCRFD`` (detector score -> CompreFace's detection probability) on
the media (a tool, not a test; under a minute; tests/test_scales.py re-checks its claims).

    export STREAMREC_MODELS=../shared/models STREAMREC_MEDIA=../shared/media
    PYTHONPATH=.:tests python tests/calibrate_detection.py   # from the project folder

Clear faces: the largest face of each labelled portrait of the media (one person photographed
for the purpose, groups below). Crowd faces: every face of the crowd photos
(``group_photos/ultralight_imgs``), most of them small or blurred. For each SCRFD model it prints,
per group, the score distribution and the share of faces that Double Take's default
``det_prob_threshold=0.8`` keeps on the raw score (the old behaviour) and on the calibrated
scale, and the share that reaches CompreFace's clear level (0.99).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import cv2
import numpy as np

from streamrec import FaceAnalyzer, load_config
from streamrec.scales import COMPREFACE_ACCEPT, COMPREFACE_CLEAR, SCRFD

DETECTORS = ("det_500m.onnx", "det_2.5g.onnx")


def portrait_groups(media: Path) -> dict[str, list[Path]]:
    """Labelled portraits, by source (each group a different photographer and camera)."""
    return {
        "deepface": sorted(p for p in (media / "deepface").glob("*.jpg") if "selfie" not in p.name),
        "face_recognition knn": sorted((media / "face_recognition/knn_examples/train").glob("*/*")),
        "facenet_pytorch": sorted((media / "facenet_pytorch/test_images").glob("*/*.jpg")),
        "openface": sorted((media / "openface_examples").glob("*.jpg")),
        "insightface": sorted(
            p
            for p in (media / "insightface").iterdir()
            if p.name.startswith(("Rob_Lowe", "Tom_Hanks", "Nathalie_Baye"))
        ),
        "face_recognition": sorted(
            p
            for p in (media / "face_recognition").iterdir()
            if p.suffix in (".jpg", ".png") and p.is_file()
        ),
    }


def crowd_photos(media: Path) -> list[Path]:
    return sorted((media / "group_photos/ultralight_imgs").glob("*.jpg"))


def analyzer(detector: str) -> FaceAnalyzer:
    overrides = {
        "models.detector": detector,
        "models.recognizer": "mobilefacenet_128d.onnx",
        "models.download": False,
        "detector.threshold": 0.3,  # the low end too, to see where the scale puts it
    }
    return FaceAnalyzer.from_config(load_config(None, overrides))


def largest_face_scores(an: FaceAnalyzer, files: list[Path]) -> np.ndarray:
    scores = []
    for path in files:
        image = cv2.imread(str(path))
        if image is None:
            continue
        dets = an.detect(image)
        if len(dets):
            heights = dets.boxes[:, 3] - dets.boxes[:, 1]
            scores.append(float(dets.scores[int(np.argmax(heights))]))
    return np.array(scores)


def all_face_scores(an: FaceAnalyzer, files: list[Path]) -> np.ndarray:
    scores: list[float] = []
    for path in files:
        image = cv2.imread(str(path))
        if image is not None:
            scores += [float(s) for s in an.detect(image).scores]
    return np.array(scores)


def row(name: str, scores: np.ndarray) -> str:
    mapped = np.array([SCRFD.probability(s) for s in scores])
    p5, p10, p50 = np.percentile(scores, [5, 10, 50])
    return (
        f"| {name} | {len(scores)} | {scores.min():.3f} | {p5:.3f} | {p10:.3f} | {p50:.3f} | "
        f"{np.mean(scores >= COMPREFACE_ACCEPT):.0%} | {np.mean(mapped >= COMPREFACE_ACCEPT):.0%} "
        f"| {np.mean(mapped >= COMPREFACE_CLEAR):.0%} |"
    )


def main() -> int:
    media = Path(os.environ.get("STREAMREC_MEDIA", "../shared/media"))
    print(
        f"SCRFD scale: accept {SCRFD.accept} -> {COMPREFACE_ACCEPT}, clear {SCRFD.clear} -> "
        f"{COMPREFACE_CLEAR}"
    )
    for detector in DETECTORS:
        an = analyzer(detector)
        print(f"\n{detector}\n")
        print(
            "| faces | n | min | p5 | p10 | median | raw >= 0.8 | scaled >= 0.8 | scaled >= 0.99 |"
        )
        print("|---|---|---|---|---|---|---|---|---|")
        groups = {n: largest_face_scores(an, f) for n, f in portrait_groups(media).items()}
        for name, scores in groups.items():
            print(row(f"clear: {name}", scores))
        print(row("clear: all", np.concatenate(list(groups.values()))))
        crowd = all_face_scores(an, crowd_photos(media))
        print(row("crowd (score >= 0.3)", crowd))
        print("\nleave one group out, p5 of the clear faces of the others:")
        for name, p5 in leave_one_out_p5(groups).items():
            print(f"- without {name}: {p5:.3f}")
    return 0


def leave_one_out_p5(groups: dict[str, np.ndarray]) -> dict[str, float]:
    """The clear level each group's absence would have given (its stability)."""
    return {
        name: float(np.percentile(np.concatenate([v for k, v in groups.items() if k != name]), 5))
        for name in groups
    }


if __name__ == "__main__":
    sys.exit(main())
