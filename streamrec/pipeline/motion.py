"""Motion: where something moved in a camera's picture, judged on a small grey thumbnail.

The background is a running average of the thumbnail (:func:`cv2.accumulateWeighted`), and each
pixel keeps a running average of its own deviation from it. A pixel moves when it differs from
the background, beyond the change of the whole picture's mean (exposure, light), by more than
``threshold`` grey levels and by more than :data:`NOISE_FACTOR` times its usual deviation, so
sensor noise (averaged away by the thumbnail, whose pixels are the means of many), compression
flicker (learnt per pixel) and changes of light (followed by the background) do not count.
Moving pixels feed the background :data:`STILL_SLOWDOWN` times more slowly, so a person who stops
melts into it only after a while. Moving pixels are dilated and grouped; a group of at least
``contour_area`` thumbnail pixels is a moving region. When more than ``lightning_threshold`` of
the picture moves at once (an IR switch, a cloud, headlights: "lightning", as Frigate calls it)
the background is learnt anew from that frame. Masked pixels (``motion.mask`` and the camera's
``ignore_zones``) never move.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

#: a rectangle of a frame: x1, y1, x2, y2 in pixels
Region = tuple[int, int, int, int]

#: the background follows each judged frame by this fraction (a time constant of 50 judged
#: frames: 4 s on a 25 fps camera, whose motion is judged on every other frame)
LEARN = 0.02
#: ... and a moving pixel by this many times less (a person who stops melts in after ~40 s)
STILL_SLOWDOWN = 10.0
#: a pixel moves only beyond this many times its usual deviation from the background
NOISE_FACTOR = 5.0
_DILATE = np.ones((3, 3), np.uint8)


def overlaps(a: Region, b: Region) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


@dataclass
class MotionSettings:
    #: grey levels (0-255) a thumbnail pixel must differ from the background to move
    threshold: float = 15.0
    #: moving thumbnail pixels (after a 3x3 dilation) that make a region
    contour_area: int = 10
    #: rows of the thumbnail motion is judged on
    frame_height: int = 100
    #: this fraction of the picture moving at once is a change of light, not motion
    lightning_threshold: float = 0.8
    #: polygons (frame pixels) where nothing moves
    masks: list[np.ndarray] = field(default_factory=list)


@dataclass(frozen=True)
class Motion:
    """What moved in one frame."""

    #: boxes around the moving regions, in frame pixels (x1, y1, x2, y2), largest first
    regions: list[Region]
    #: most of the picture changed at once: the background was learnt anew
    lightning: bool = False


class MotionDetector:
    """One camera's background and what moves against it; :meth:`update` once per frame."""

    def __init__(self, settings: MotionSettings) -> None:
        self.settings = settings
        self._background: np.ndarray | None = None  # float32, the thumbnail's shape
        self._deviation: np.ndarray | None = None
        self._mask: np.ndarray | None = None  # uint8 1 where motion counts
        self._size: tuple[int, int] = (0, 0)  # the frame's width and height

    def reset(self) -> None:
        """Forget the background (a new stream, a reconnect): the next frame starts it."""
        self._background = None

    def update(self, thumb: np.ndarray, width: int, height: int) -> Motion:
        """What moved in the frame whose thumbnail (``frame_height`` rows) is ``thumb`` and whose
        size is ``width`` x ``height``; the background learns from it."""
        s = self.settings
        grey = thumb.astype(np.float32)
        background, deviation = self._background, self._deviation
        if background is None or deviation is None or background.shape != grey.shape:
            self._start(grey, width, height)
            return Motion([])
        mask = self._mask
        assert mask is not None
        change = cv2.subtract(grey, background)
        # the whole picture brighter or darker (exposure, light) is no motion
        diff = np.abs(change - np.float32(cv2.mean(change, mask)[0]))
        limit = np.maximum(deviation * NOISE_FACTOR, s.threshold)
        moving = np.asarray((diff > limit), np.uint8) * mask
        count = cv2.countNonZero(moving)
        grown = cv2.dilate(moving, _DILATE) * mask if count else moving
        if count and cv2.countNonZero(grown) > s.lightning_threshold * cv2.countNonZero(mask):
            background[:] = grey
            return Motion([], lightning=True)
        still = cv2.bitwise_not(moving * 255)
        cv2.accumulateWeighted(grey, background, LEARN, mask=still)
        if count:
            cv2.accumulateWeighted(grey, background, LEARN / STILL_SLOWDOWN, mask=moving)
        cv2.accumulateWeighted(np.minimum(diff, 4 * s.threshold), deviation, LEARN / 2)
        return Motion(self._regions(grown) if count else [])

    def _start(self, grey: np.ndarray, width: int, height: int) -> None:
        self._background = grey.copy()
        self._deviation = np.zeros_like(grey)
        if self._mask is None or self._mask.shape != grey.shape or self._size != (width, height):
            self._size = (width, height)
            mask = np.full(grey.shape, 255, np.uint8)
            scale = np.array([grey.shape[1] / width, grey.shape[0] / height], np.float32)
            for polygon in self.settings.masks:
                points = np.round(polygon.reshape(-1, 2) * scale).astype(np.int32)
                cv2.fillPoly(mask, [points], 0)
            self._mask = mask // 255  # 1 where motion counts

    def _regions(self, grown: np.ndarray) -> list[Region]:
        n, _, stats, _ = cv2.connectedComponentsWithStats(grown, connectivity=8)
        width, height = self._size
        th, tw = grown.shape
        sx, sy = width / tw, height / th
        stats = stats[1:n]  # filtered and sorted in numpy: a busy scene has many specks
        stats = stats[stats[:, cv2.CC_STAT_AREA] >= self.settings.contour_area]
        stats = stats[np.argsort(-stats[:, cv2.CC_STAT_AREA], kind="stable")]
        return [
            (int(x * sx), int(y * sy), int((x + w) * sx + 0.999), int((y + h) * sy + 0.999))
            for x, y, w, h, _ in stats.tolist()
        ]
