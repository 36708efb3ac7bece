"""Face quality: how similar a face's embedding is expected to be to the person's template.

Quality is a calibrated prediction, not a hand-set product of factors: a logistic curve of
cheap cues (face height, detector score, frontal pose, and once aligned the sharpness of the
crop) fitted by least squares to the cosine similarity between embeddings of faces and their
person's template on the test media (the webcam, Hamilton and phone clips, at their own size and
scaled down to 15% as far cameras see them, with H.264 compression; 2246 faces of 7 people).
Leave-one-clip-out, the prediction ranks faces by their real similarity with Spearman 0.80
(0.82 with sharpness). ``tests/calibrate_quality.py`` refits it on the media and prints the
constants below.

The norm of the recognizer's un-normalised feature (which tracks face quality in MagFace-style
training) was tried as a further cue: with MobileFaceNet it predicts as well as the face's
height alone and adds nothing once height, score, pose and sharpness are known (the
calibration prints both fits), so it is not used.

No face has quality 0: a small or turned face is embedded too, its evidence just weighs less.
"""

from __future__ import annotations

from dataclasses import dataclass

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


def sharpness(crop: np.ndarray) -> float:
    """Variance of the Laplacian of an aligned crop (blur and compression lower it)."""
    gray = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)
    return float(cv2.Laplacian(gray, cv2.CV_64F).var())


def sharpness_factor(crop: np.ndarray, full: float = 150.0) -> float:
    """Sharpness scaled to [0, 1]."""
    return float(min(1.0, sharpness(crop) / full))


def geometric_quality(box: np.ndarray, kps: np.ndarray, det_score: float) -> float:
    """A hand-set score (detector score x size x pose) that ranks the faces of one clip for
    enrolment (``gallery add --from-video``); the pipeline uses :func:`face_quality`."""
    return float(det_score) * size_factor(box) * pose_factor(kps)


@dataclass(frozen=True)
class QualityModel:
    """``cap / (1 + exp(-(w_height log h + w_score s + w_pose p [+ w_sharp log(1 + var)] + b)))``"""

    cap: float
    w_height: float
    w_score: float
    w_pose: float
    w_sharp: float
    bias: float

    def __call__(
        self, height: float, det_score: float, pose: float, sharp: float | None = None
    ) -> float:
        z = (
            self.w_height * np.log(max(height, 1.0))
            + self.w_score * det_score
            + self.w_pose * pose
            + self.bias
        )
        if sharp is not None:
            z += self.w_sharp * np.log1p(sharp)
        return float(self.cap / (1.0 + np.exp(-z)))


#: before alignment (which face of a track to embed)
BEFORE_ALIGNMENT = QualityModel(0.935, 1.431, 3.431, 1.056, 0.0, -9.161)
#: once aligned (how much the embedding weighs)
ALIGNED = QualityModel(1.06, 0.526, 4.103, 0.965, 0.472, -8.223)
#: qualities stay inside (0, 1): the weight a / (1 - a^2) stays finite
_FLOOR, _CEIL = 0.01, 0.95


def face_quality(
    box: np.ndarray, kps: np.ndarray, det_score: float, crop: np.ndarray | None = None
) -> float:
    """Expected cosine similarity of this face's embedding to its person's template; with the
    aligned ``crop``, its sharpness counts too."""
    height = float(box[3] - box[1])
    if crop is None:
        q = BEFORE_ALIGNMENT(height, det_score, pose_factor(kps))
    else:
        q = ALIGNED(height, det_score, pose_factor(kps), sharpness(crop))
    return min(max(q, _FLOOR), _CEIL)


def evidence_weight(quality: float) -> float:
    """Weight of an embedding of this quality in a track's mean.

    An embedding is ``a`` times the person's direction plus noise of squared length
    ``1 - a^2`` (``a``: its quality); the weights maximising the mean's cosine to the person
    are ``a / (1 - a^2)``.
    """
    a = min(max(quality, _FLOOR), _CEIL)
    return a / (1.0 - a * a)
