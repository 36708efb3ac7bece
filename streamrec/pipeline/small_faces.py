"""Small faces: found and followed without running the detector on the whole frame at full size.

The whole-frame pass runs at the detector's input size (a 1080p frame shrinks 3x, so a 16 px
face becomes 5 px and is lost). Two extra passes, at the detector interval, bring the pixels
back where they matter:

- **tiles**: when the frame is larger than the detector's input, at most one tile of the frame
  at its own resolution per detection round, for new small faces. A tile has the size of the
  whole-frame pass's input, so it costs the same (a 1080p frame: 16 tiles of 640x360), and it
  runs only where a small face can be: a tile that found no face the whole-frame pass missed
  waits twice as many rounds for its next turn (up to :data:`MAX_WAIT` rounds), one that found
  one comes back next round; with motion gating, only tiles where something moves are searched,
  a tile where motion starts after :data:`QUIET` still rounds is due at once, and the wait grows
  up to :data:`MAX_WAIT_GATED` rounds;
- **regions**: a track whose face is small in the whole-frame pass (``small`` px there) and was
  not found there is looked for again in a region around its predicted box, enlarged so that the
  face is about ``target`` px; and a small face about to be embedded is detected again the same
  way, for precise landmarks (better embeddings).

The passes are merged with non-maximum suppression; detections cut by an inner tile border are
dropped (the overlapping tile has them whole).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from streamrec.geometry import iou_matrix
from streamrec.models.detector import nms
from streamrec.models.protocols import Detector
from streamrec.pipeline.motion import Region, overlaps
from streamrec.records import Detections

#: the most detection rounds a tile that keeps finding nothing waits for its next turn
MAX_WAIT = 32
#: ... with motion gating, where a tile is also searched as soon as motion starts in it: the
#: wait only bounds how long a small face in constant motion (a crowd) can go unsearched
MAX_WAIT_GATED = 128
#: motion starting in a tile that was still for this many rounds makes it due at once
QUIET = 8


@dataclass
class SmallFaceSettings:
    enabled: bool = True
    #: a tracked face below this height in the whole-frame pass is small
    small: float = 24.0
    #: height the region pass enlarges such a face to
    target: float = 48.0
    #: region passes per detection round at most (the smallest faces first)
    max_regions: int = 8
    #: overlap of neighbouring tiles, as a fraction of the tile
    overlap: float = 0.2


def tiles(width: int, height: int, tile: tuple[int, int], overlap: float) -> list[Region]:
    """Tiles of at most ``tile`` (width, height) covering the frame, neighbours overlapping by
    at least ``overlap`` of a tile, spread evenly."""

    def starts(length: int, side: int) -> list[int]:
        if length <= side:
            return [0]
        n = math.ceil((length - side * overlap) / (side * (1 - overlap)))
        return [round(i * (length - side) / (n - 1)) for i in range(n)]

    tw, th = tile
    return [
        (x, y, min(width, x + tw), min(height, y + th))
        for y in starts(height, th)
        for x in starts(width, tw)
    ]


def _inside(dets: Detections, tile: Region, width: int, height: int) -> Detections:
    """Detections not cut by an inner border of the tile (2 px of slack)."""
    x1, y1, x2, y2 = tile
    b = dets.boxes
    keep = (
        ((b[:, 0] > x1 + 2) | (x1 == 0))
        & ((b[:, 1] > y1 + 2) | (y1 == 0))
        & ((b[:, 2] < x2 - 2) | (x2 == width))
        & ((b[:, 3] < y2 - 2) | (y2 == height))
    )
    return dets[keep]


def merge(parts: list[Detections], nms_threshold: float) -> Detections:
    """One set of detections from several passes (the best-scored of overlapping ones)."""
    parts = [p for p in parts if len(p)]
    if not parts:
        return Detections.empty()
    if len(parts) == 1:
        return parts[0]
    dets = Detections(
        np.concatenate([p.boxes for p in parts]),
        np.concatenate([p.scores for p in parts]),
        np.concatenate([p.kps for p in parts]),
    )
    order = np.argsort(-dets.scores, kind="stable")
    dets = dets[order]
    return dets[nms(dets.boxes, dets.scores, nms_threshold)]


class SmallFaceSearch:
    """The extra passes of one camera (it remembers each tile's schedule)."""

    def __init__(
        self, settings: SmallFaceSettings, nms_threshold: float, max_wait: int = MAX_WAIT
    ) -> None:
        self.settings = settings
        self.nms_threshold = nms_threshold
        self.max_wait = max_wait
        self._round = 0
        #: per tile: the round it is due, the rounds it waits after finding nothing, and the
        #: last round something moved in it
        self._due: list[int] = []
        self._wait: list[int] = []
        self._moved: list[int] = []

    def small(self, detector: Detector, image: np.ndarray, box: np.ndarray) -> bool:
        """Whether a face with this box is small in the whole-frame pass."""
        height, width = image.shape[:2]
        scale = detector.frame_scale(width, height)
        return self.settings.enabled and float(box[3] - box[1]) * scale < self.settings.small

    def detect(
        self,
        detector: Detector,
        image: np.ndarray,
        dets: Detections,
        tracked: list[np.ndarray],
        moving: list[Region] | None = None,
    ) -> Detections:
        """``dets`` (the whole-frame pass) merged with a tile, and with the regions of the small
        faces among the ``tracked`` boxes (predicted for this frame) that nothing was found at.
        ``moving``: the regions where something moved (None: motion is not watched)."""
        s = self.settings
        if not s.enabled:
            return dets
        height, width = image.shape[:2]
        scale = detector.frame_scale(width, height)
        parts = [dets]
        if scale < 0.9:
            grid = tiles(width, height, (round(width * scale), round(height * scale)), s.overlap)
            tile = self._next_tile(grid, moving)
            if tile is not None:
                found = _inside(detector.detect_region(image, grid[tile], 1.0), grid[tile],
                                width, height)  # fmt: skip
                self._searched(tile, any(not _near(b, dets) for b in found.boxes))
                parts.append(found)
            self._round += 1
        found = merge(parts, self.nms_threshold)
        passes = len(parts)
        missed = [b for b in tracked if self.small(detector, image, b) and not _near(b, found)]
        for box in sorted(missed, key=lambda b: float(b[3] - b[1]))[: s.max_regions]:
            parts.append(self._region(detector, image, box))
        return merge(parts, self.nms_threshold) if len(parts) > passes else found

    def _next_tile(self, grid: list[Region], moving: list[Region] | None) -> int | None:
        """The tile to search this round (the longest overdue), or None."""
        if len(self._due) != len(grid):
            self._due, self._wait = [0] * len(grid), [1] * len(grid)
            self._moved = [-QUIET] * len(grid)
        candidates = []
        for i, tile in enumerate(grid):
            if moving is not None:
                if not any(overlaps(tile, m) for m in moving):
                    continue
                if self._round - self._moved[i] >= QUIET:
                    self._due[i] = self._round  # motion starts here: look at once
                self._moved[i] = self._round
            if self._due[i] <= self._round:
                candidates.append(i)
        return min(candidates, key=lambda i: (self._due[i], i)) if candidates else None

    def _searched(self, tile: int, found: bool) -> None:
        self._wait[tile] = 1 if found else min(2 * self._wait[tile], self.max_wait)
        self._due[tile] = self._round + self._wait[tile]

    def refine(self, detector: Detector, image: np.ndarray, box: np.ndarray) -> Detections:
        """The face at ``box`` detected again, enlarged (precise landmarks for an embedding of a
        small face); empty when it is not found there."""
        dets = self._region(detector, image, box)
        if not len(dets):
            return dets
        overlap = iou_matrix(np.asarray(box, np.float32)[None], dets.boxes)[0]
        best = int(overlap.argmax())
        return dets[[best]] if overlap[best] >= 0.3 else Detections.empty()

    def _region(self, detector: Detector, image: np.ndarray, box: np.ndarray) -> Detections:
        height, width = image.shape[:2]
        face = max(float(box[3] - box[1]), 4.0)
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        half = 1.5 * max(face, float(box[2] - box[0]))
        region = (
            max(0, int(cx - half)),
            max(0, int(cy - half)),
            min(width, math.ceil(cx + half)),
            min(height, math.ceil(cy + half)),
        )
        zoom = min(4.0, max(1.0, self.settings.target / face))
        return detector.detect_region(image, region, zoom)


def _near(box: np.ndarray, dets: Detections) -> bool:
    """Whether a detection overlaps ``box`` (the tracker would likely take it)."""
    return bool(len(dets)) and float(iou_matrix(np.asarray(box)[None], dets.boxes).max()) > 0.1
