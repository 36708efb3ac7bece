"""Score scales of the peers: streamrec's raw scores as Frigate, CompreFace and Double Take read
them, so that a threshold a user set for the peer means the same with streamrec behind it.

- **Frigate face score** (0–1, Frigate 0.16+ ``frigate/data_processing/common/face/model.py``
  ``similarity_to_confidence``: a logistic of the cosine similarity with slope
  ``slope_factor / range_width`` = 12 / 0.6 = 20, rounded to 2 decimals). Frigate centres its
  curve on its own models' distributions (``median`` 0.3 for ArcFace, 0.5 for FaceNet); here it is
  centred so that streamrec's recognition threshold lands exactly on Frigate's default
  ``face_recognition.recognition_threshold`` (0.9): a face streamrec names scores at least 0.9,
  as a face Frigate names would, and ``unknown_score`` (0.8) is about 0.04 of cosine below it.
- **CompreFace similarity** (0–1): ``(tanh((d_t - d) * STEEPNESS) + 1) / 2`` of the distance ``d``
  between the normalised embeddings, ``d_t`` the distance at streamrec's threshold, the shape of
  CompreFace's calculators, 0.5 at the threshold.
- **Double Take confidence** (percent): what Double Take's CompreFace detector makes of a
  similarity (``api/src/util/detectors/compreface.js`` v1.13.1:
  ``parseFloat((face.similarity * 100).toFixed(2))``); its ``detect.match.confidence`` default 60
  and ``detect.unknown.confidence`` 40 apply to it.
- **CompreFace detection probability** (``det_prob_threshold``'s scale): CompreFace's detectors
  (RetinaFace in its InsightFace builds, default threshold 0.8; MTCNN in the FaceNet build, 0.85)
  give clear faces 0.99 and more; SCRFD gives them 0.74–0.90 and accepts a face from 0.5
  (InsightFace's default ``det_thresh``). :class:`DetectionScale` maps one onto the other, see
  ``docs/compatibility.md`` for the data it was calibrated on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

import numpy as np

#: Frigate 0.16/0.17 ``similarity_to_confidence``: slope_factor 12 / range_width 0.6
FRIGATE_SLOPE = 20.0
#: Frigate's ``face_recognition.recognition_threshold`` default (0.16, 0.17)
FRIGATE_RECOGNITION_THRESHOLD = 0.9
#: how fast the CompreFace similarity goes from 0 to 1 around the threshold (per unit of distance)
STEEPNESS = 5.0
#: CompreFace's default ``det_prob_threshold`` (InsightFace plugin), also Double Take's default
COMPREFACE_ACCEPT = 0.8
#: the probability CompreFace's detectors give a clear face, at least
COMPREFACE_CLEAR = 0.99


def frigate_face_score(cosine: float, threshold: float) -> float:
    """``cosine`` on Frigate's face score scale: 0.9 (Frigate's recognition threshold) at
    streamrec's ``threshold``, Frigate's slope around it, 2 decimals like Frigate."""
    z = FRIGATE_SLOPE * (cosine - threshold) + math.log(
        FRIGATE_RECOGNITION_THRESHOLD / (1.0 - FRIGATE_RECOGNITION_THRESHOLD)
    )
    score = 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))
    return round(score, 2)


def compreface_similarity(cosine: np.ndarray | float, threshold: float) -> np.ndarray:
    """CompreFace's similarity of cosine similarities (element-wise): 0.5 exactly at
    streamrec's ``threshold``, towards 1 above it and 0 below."""
    distance = np.sqrt(np.clip(2.0 - 2.0 * np.asarray(cosine, np.float64), 0.0, 4.0))
    at_threshold = math.sqrt(2.0 - 2.0 * threshold)
    return np.asarray((np.tanh((at_threshold - distance) * STEEPNESS) + 1.0) / 2.0)


def js_to_fixed(value: float, digits: int) -> float:
    """``parseFloat(value.toFixed(digits))`` as JavaScript computes it: the exact binary value
    rounded half up (away from zero for negatives), unlike Python's ``round`` (half to even)."""
    quantum = Decimal(1).scaleb(-digits)
    return float(Decimal(value).quantize(quantum, rounding=ROUND_HALF_UP))


def double_take_confidence(similarity: float) -> float:
    """Double Take's confidence of a CompreFace similarity (percent, 2 decimals)."""
    return js_to_fixed(similarity * 100, 2)


@dataclass(frozen=True)
class DetectionScale:
    """A detector's face score on CompreFace's detection probability scale: piecewise linear
    through (0, 0), (``accept``, 0.8), (``clear``, 0.99) and (1, 1). ``accept`` is the score the
    detector keeps a face from by default, ``clear`` the low end of its scores of clear faces."""

    accept: float
    clear: float

    def __post_init__(self) -> None:
        if not 0.0 < self.accept < self.clear < 1.0:
            raise ValueError(f"need 0 < accept < clear < 1, got {self.accept}, {self.clear}")

    @property
    def _knots(self) -> tuple[list[float], list[float]]:
        scores = [0.0, self.accept, self.clear, 1.0]
        return scores, [0.0, COMPREFACE_ACCEPT, COMPREFACE_CLEAR, 1.0]

    def probability(self, score: float) -> float:
        """CompreFace's probability of a face the detector scored ``score``."""
        scores, probabilities = self._knots
        return float(np.interp(score, scores, probabilities))

    def score_for(self, probability: float) -> float:
        """The detector score that CompreFace's ``probability`` stands for (the inverse)."""
        scores, probabilities = self._knots
        return float(np.interp(probability, probabilities, scores))


#: SCRFD (det_500m, det_2.5g, det_10g): accepts from 0.5; clear faces from 0.74 (the 5th
#: percentile of the largest face's score on 101 labelled portraits, det_500m 0.744 and
#: det_2.5g 0.736; benchmarks/calibrate_detection.py)
SCRFD = DetectionScale(accept=0.5, clear=0.74)
