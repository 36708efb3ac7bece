"""Boxes that follow faces between detections: sparse optical flow on each face.

On a frame without detections, each present track's face is followed from the previous frame
with OpenCV's pyramidal Lucas-Kanade flow of a few corner points inside its box, checked forward
and backward; the points' mean shift and median change of scale move the box and its landmarks.
A face whose points cannot be followed (a cut, an occlusion, blur) keeps the tracker's
constant-velocity prediction. It works on the frames' grey levels as the decoder coded them (the
luma plane), so a frame without detections is never converted to colour.

A large face is followed at a reduced scale: each frame has one :class:`Pyramid` (the plane
halved by pixel area, level by level, made only as deep as its largest face needs), shared by
all its faces and kept as the previous frame's for the next one; a face is followed on the level
where it is about :data:`FLOW_SIZE` pixels tall, which costs a few hundredths of what its full
size would and moves its box by as much.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from streamrec.records import Track

#: a point followed forward and back must come home within this many pixels (of its level)
MAX_ERROR = 1.0
#: points needed to trust a face's motion
MIN_POINTS = 4
#: a face is followed on the pyramid level where it is at least this tall
FLOW_SIZE = 40.0
#: the deepest level (1/8 of the frame)
MAX_LEVEL = 3


class Pyramid:
    """A frame's grey levels and their halvings, each made once, when first asked for."""

    def __init__(self, grey: np.ndarray) -> None:
        self._levels = [grey]

    def level(self, k: int) -> np.ndarray:
        while len(self._levels) <= k:
            top = self._levels[-1]
            size = (max(1, top.shape[1] // 2), max(1, top.shape[0] // 2))
            self._levels.append(cv2.resize(top, size, interpolation=cv2.INTER_AREA))
        return self._levels[k]

    @property
    def shape(self) -> tuple[int, ...]:
        return self._levels[0].shape


def level_for(size: float) -> int:
    """The pyramid level a face ``size`` pixels tall is followed on."""
    if size < 2 * FLOW_SIZE:
        return 0
    return min(MAX_LEVEL, int(math.log2(size / FLOW_SIZE)))


def follow(
    prev: Pyramid, cur: Pyramid, tracks: list[Track]
) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Where each track's face (its box and landmarks in ``prev``) went in ``cur``, by id."""
    out: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    if prev.shape != cur.shape:
        return out
    for track in tracks:
        size = float(max(track.box[2] - track.box[0], track.box[3] - track.box[1]))
        if size < 8:
            continue
        k = level_for(size)
        moved = _follow_box(prev.level(k), cur.level(k), track.box / (1 << k))
        if moved is None:
            continue
        scale, c0, c1 = moved
        c0, c1 = c0 * (1 << k), c1 * (1 << k)
        # x' = c1 + scale (x - c0), in frame coordinates
        box = ((track.box.reshape(2, 2) - c0) * scale + c1).reshape(4)
        kps = (track.kps - c0) * scale + c1
        out[track.track_id] = (box.astype(np.float32), kps.astype(np.float32))
    return out


def _follow_box(
    prev: np.ndarray, cur: np.ndarray, box: np.ndarray
) -> tuple[float, np.ndarray, np.ndarray] | None:
    """The scale and the centres (before, after) of the points followed inside ``box``, in the
    coordinates of these images; None when too few could be followed."""
    height, width = cur.shape[:2]
    x1, y1, x2, y2 = (float(v) for v in box)
    size = max(x2 - x1, y2 - y1)
    # a region that holds the face's moves of up to half its size (and the flow's window)
    margin = size / 2 + 8
    left, top = max(0, int(x1 - margin)), max(0, int(y1 - margin))
    right, bottom = min(width, int(x2 + margin) + 1), min(height, int(y2 + margin) + 1)
    if right - left < 8 or bottom - top < 8:
        return None
    # corners well inside the face (its edges move over the background)
    inset_x, inset_y = 0.15 * (x2 - x1), 0.15 * (y2 - y1)
    inner_left, inner_top = max(left, int(x1 + inset_x)), max(top, int(y1 + inset_y))
    inner = prev[
        inner_top : max(inner_top, int(y2 - inset_y)),
        inner_left : max(inner_left, int(x2 - inset_x)),
    ]
    if min(inner.shape[:2]) < 3:
        return None
    points = cv2.goodFeaturesToTrack(
        inner, maxCorners=16, qualityLevel=0.01, minDistance=max(2.0, size / 8)
    )
    if points is None or len(points) < MIN_POINTS:
        return None
    points += np.array([inner_left - left, inner_top - top], np.float32)
    window = (int(np.clip(size / 4, 7, 21)) | 1,) * 2
    a, b = prev[top:bottom, left:right], cur[top:bottom, left:right]
    moved, ok, _ = cv2.calcOpticalFlowPyrLK(
        a, b, points, np.empty_like(points), winSize=window, maxLevel=2
    )
    back, ok_back, _ = cv2.calcOpticalFlowPyrLK(
        b, a, moved, np.empty_like(points), winSize=window, maxLevel=2
    )
    error = np.linalg.norm((back - points).reshape(-1, 2), axis=1)
    good = (ok.ravel() == 1) & (ok_back.ravel() == 1) & (error < MAX_ERROR)
    if good.sum() < MIN_POINTS:
        return None
    p0, p1 = points.reshape(-1, 2)[good], moved.reshape(-1, 2)[good]
    c0, c1 = p0.mean(axis=0), p1.mean(axis=0)
    d0 = np.linalg.norm(p0 - c0, axis=1)
    d1 = np.linalg.norm(p1 - c1, axis=1)
    spread = d0 > 1.0
    scale = float(np.median(d1[spread] / d0[spread])) if spread.sum() >= 2 else 1.0
    scale = float(np.clip(scale, 0.8, 1.25))
    offset = np.array([left, top], np.float32)
    return scale, c0 + offset, c1 + offset
