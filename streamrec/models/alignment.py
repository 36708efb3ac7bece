"""5-point face alignment onto the 112x112 ArcFace landmark template."""

from __future__ import annotations

import cv2
import numpy as np

#: InsightFace's ArcFace template for a 112x112 crop: eyes, nose tip, mouth corners.
ARCFACE_TEMPLATE = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float64,
)


def umeyama(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity transform (rotation, uniform scale, translation) src -> dst.

    Umeyama (1991), as in scikit-image's ``SimilarityTransform.estimate``; returns 2x3.
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    n, dim = src.shape
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    cov = dst_c.T @ src_c / n
    d = np.ones(dim)
    if np.linalg.det(cov) < 0:
        d[-1] = -1
    u, s, vt = np.linalg.svd(cov)
    rot = u @ np.diag(d) @ vt
    var_src = src_c.var(axis=0).sum()
    scale = (s * d).sum() / var_src if var_src > 0 else 1.0
    t = dst_mean - scale * rot @ src_mean
    return np.hstack([scale * rot, t[:, None]])


def estimate_transform(kps: np.ndarray, size: int = 112) -> np.ndarray:
    """2x3 matrix mapping the 5 landmarks onto the template scaled to ``size``."""
    template = ARCFACE_TEMPLATE * (size / 112.0)
    return umeyama(kps, template)


def align(image: np.ndarray, kps: np.ndarray, size: int = 112) -> np.ndarray:
    """Aligned ``size`` x ``size`` BGR crop of the face whose landmarks are ``kps`` [5, 2]."""
    m = estimate_transform(kps, size)
    return cv2.warpAffine(image, m, (size, size), borderValue=0.0)
