"""Face quality from cheap cues known to matter for recognition: size, pose, blur, detector score.

The score is the product of factors in [0, 1]; embeddings of a track are weighted by it, and faces
below ``recognition.min_quality`` are not embedded at all.
"""

from __future__ import annotations

import cv2
import numpy as np


def pose_factor(kps: np.ndarray) -> float:
    """1 for a frontal face, falling to 0 towards profile, from the 5 landmarks.

    Yaw proxy: horizontal offset of the nose from the eyes' midpoint, in eye distances (about 0
    frontal, above 0.6 near profile). Pitch proxy: where the nose sits between the eye line and
    the mouth line (about 0.5 frontal).
    """
    eyes = (kps[0] + kps[1]) / 2
    mouth = (kps[3] + kps[4]) / 2
    eye_dist = float(np.linalg.norm(kps[1] - kps[0]))
    face_len = float(mouth[1] - eyes[1])
    if eye_dist < 1 or face_len <= 1:
        return 0.0
    yaw = abs(float(kps[2, 0] - eyes[0])) / eye_dist
    pitch = abs(float(kps[2, 1] - eyes[1]) / face_len - 0.55)
    return float(np.clip(1 - yaw / 0.7, 0, 1) * np.clip(1 - pitch / 0.45, 0, 1))


def size_factor(box: np.ndarray, full: float = 80.0) -> float:
    """1 for faces at least ``full`` px tall, smaller faces proportionally less."""
    return float(np.clip((box[3] - box[1]) / full, 0, 1))


def sharpness_factor(crop: np.ndarray, full: float = 150.0) -> float:
    """Variance of the Laplacian of the aligned crop, scaled to [0, 1]."""
    gray = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)
    return float(min(1.0, cv2.Laplacian(gray, cv2.CV_64F).var() / full))


def geometric_quality(box: np.ndarray, kps: np.ndarray, det_score: float) -> float:
    """Quality known before alignment (decides whether a face is worth embedding)."""
    return float(det_score) * size_factor(box) * pose_factor(kps)
