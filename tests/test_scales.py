"""streamrec.scales: Frigate's face score, CompreFace's similarity and detection probability,
Double Take's confidence; the detection scale re-checked on the media with the real SCRFD
models (the data: tests/calibrate_detection.py)."""

from __future__ import annotations

import math
from pathlib import Path

import calibrate_detection as calibration
import numpy as np
import pytest

from streamrec.scales import (
    COMPREFACE_ACCEPT,
    COMPREFACE_CLEAR,
    FRIGATE_RECOGNITION_THRESHOLD,
    SCRFD,
    DetectionScale,
    compreface_similarity,
    double_take_confidence,
    frigate_face_score,
)


def frigate_similarity_to_confidence(
    cosine_similarity: float,
    median: float = 0.3,
    range_width: float = 0.6,
    slope_factor: float = 12,
) -> float:
    """Frigate 0.16.4/0.17.2 ``frigate/data_processing/common/face/model.py``, as written."""
    slope = slope_factor / range_width
    bias = median
    return float(1 / (1 + np.exp(-slope * (cosine_similarity - bias))))


@pytest.mark.parametrize("threshold", [0.2, 0.33, 0.45])
def test_frigate_score_is_frigates_curve_centred_on_our_threshold(threshold: float) -> None:
    # Frigate's curve, moved so that our threshold gives its recognition threshold (0.9)
    median = threshold - math.log(9) / 20
    for cosine in np.linspace(-0.2, 1.0, 121):
        expected = round(frigate_similarity_to_confidence(float(cosine), median=median), 2)
        assert frigate_face_score(float(cosine), threshold) == expected
    assert frigate_face_score(threshold, threshold) == FRIGATE_RECOGNITION_THRESHOLD
    assert frigate_face_score(threshold - 0.045, threshold) < 0.8  # Frigate's unknown_score
    assert frigate_face_score(-1.0, threshold) == 0.0 and frigate_face_score(1.0, threshold) == 1.0


def test_compreface_similarity_and_double_take_reads_it_in_percent() -> None:
    cosines = np.linspace(-1.0, 1.0, 201)
    for threshold in (0.3, 0.45):
        ours = compreface_similarity(cosines, threshold)
        assert compreface_similarity(threshold, threshold) == pytest.approx(0.5)
        assert np.all(np.diff(ours) >= 0)
    assert (
        double_take_confidence(0.60005) == 60.0
    )  # 60.00499.. in binary: as node (test_double_take)
    assert double_take_confidence(0.125) == 12.5 and double_take_confidence(1.0) == 100


def test_the_detection_scale_and_its_inverse() -> None:
    assert SCRFD.probability(SCRFD.accept) == pytest.approx(COMPREFACE_ACCEPT)
    assert SCRFD.probability(SCRFD.clear) == pytest.approx(COMPREFACE_CLEAR)
    assert SCRFD.probability(0.0) == 0.0 and SCRFD.probability(1.0) == 1.0
    for p in np.linspace(0, 1, 101):
        assert SCRFD.probability(SCRFD.score_for(float(p))) == pytest.approx(float(p))
    # Double Take's det_prob_threshold=0.8 asks for what SCRFD accepts by default
    assert SCRFD.score_for(0.8) == pytest.approx(0.5)
    for bad in ((0.5, 0.5), (0.0, 0.7), (0.6, 1.0)):
        with pytest.raises(ValueError, match="accept < clear"):
            DetectionScale(*bad)


@pytest.mark.parametrize("detector", calibration.DETECTORS)
def test_clear_faces_pass_double_takes_default_on_every_source(
    models_dir: Path, media_dir: Path, detector: str
) -> None:
    an = calibration.analyzer(detector)
    groups = {
        n: calibration.largest_face_scores(an, f)
        for n, f in calibration.portrait_groups(media_dir).items()
    }
    every = np.concatenate(list(groups.values()))
    assert len(every) >= 90
    for name, scores in groups.items():
        mapped = np.array([SCRFD.probability(s) for s in scores])
        assert np.all(mapped >= COMPREFACE_ACCEPT), name  # Double Take's 0.8 keeps them all
    mapped = np.array([SCRFD.probability(s) for s in every])
    assert np.mean(mapped >= COMPREFACE_CLEAR) >= 0.9  # CompreFace's scale for clear faces
    assert np.mean(every >= COMPREFACE_ACCEPT) < 0.85  # the raw score lost a quarter of them
    # the clear level does not hang on one source: without any one group it stays near
    for name, p5 in calibration.leave_one_out_p5(groups).items():
        assert abs(p5 - SCRFD.clear) <= 0.04, name
