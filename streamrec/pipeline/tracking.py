"""IoU face tracker that carries tracks between detector runs by their last motion.

The detector runs only every N frames (or irregularly). On frames without detections every
track coasts along its per-frame velocity; on detection frames the predicted boxes are matched
to the detections by optimal assignment over a pluggable cost. The default cost is ``1 - IoU``
of the predicted box or, when closer, of the last detected one (a face that reversed its motion
is still found where it was); a small face moving fast overlaps its last box little, so a
detection of about the same size whose centre is within ``SHIFT`` face heights costs as much as
the IoU that would be needed at that distance (the gate is reached at ``SHIFT`` heights).

A track that a detection round does not find is *lost*: it is no longer reported as present
(so no box is drawn where no face was found) but is kept, still predicted, for ``max_missed``
rounds; a detection that matches it brings it back under the same id, else it ends. A present
track wins a detection over a lost one that overlaps it about as well (the lost one pays
``LOST_COST``), so two tracks of one face do not take turns.

Velocity is measured between matched detections (so it is exact for constant motion whatever
the detection interval) and smoothed with an EMA. Coasting is damped by a hard horizon: a track
moves for at most ``max_velocity_frames`` frames after its last matched detection and then holds
still, so a face the detector keeps missing (stopped, occluded, turned away) drifts by a bounded
amount instead of sliding off until it ends. A face that stops while detected snaps back to each
detection and its velocity estimate decays through the EMA.

``Track`` records (``streamrec.records``) are live: the tracker updates them in place (arrays
are replaced, never mutated, so a box taken from an earlier frame keeps its value).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from streamrec.assignment import linear_sum_assignment
from streamrec.geometry import iou_matrix
from streamrec.records import Detections, Track

DistanceFn = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""``distance(track_boxes [T, 4], det_boxes [D, 4]) -> cost [T, D]``; lower is closer."""

# Velocity EMA: a measurement spanning `gap` frames gets weight 1 - (1 - w)**gap, i.e. the same
# time constant whatever the detection interval (longer spans are also less noisy).
_VELOCITY_WEIGHT_PER_FRAME = 0.3
_MIN_SIZE = 1.0  # predicted boxes never shrink below this width/height (pixels)
#: added to a lost track's matching cost
LOST_COST = 0.2


def iou_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Matching cost ``1 - IoU`` (the default cost adds the shift of small fast faces)."""
    return 1.0 - iou_matrix(a, b)


#: a detection this many face heights from a track's box can still continue it ...
SHIFT = 1.0
#: ... when their heights differ by at most this factor
SHIFT_SIZE = 1.5


def shift_distance(a: np.ndarray, b: np.ndarray, gate: float) -> np.ndarray:
    """``gate`` times the centre distance of ``a`` [Na, 4] and ``b`` [Nb, 4] in units of
    ``SHIFT`` mean face heights; infinite where the heights differ by more than ``SHIFT_SIZE``."""
    a = np.asarray(a, np.float32).reshape(-1, 4)
    b = np.asarray(b, np.float32).reshape(-1, 4)
    ha = np.maximum(a[:, 3] - a[:, 1], _MIN_SIZE)[:, None]
    hb = np.maximum(b[:, 3] - b[:, 1], _MIN_SIZE)[None, :]
    centre_a = (a[:, None, :2] + a[:, None, 2:]) / 2
    centre_b = (b[None, :, :2] + b[None, :, 2:]) / 2
    shift = np.linalg.norm(centre_a - centre_b, axis=2) / ((ha + hb) / 2)
    similar = np.maximum(ha / hb, hb / ha) <= SHIFT_SIZE
    return np.where(similar, gate * shift / SHIFT, np.inf)


def _smoothed(velocity: np.ndarray, measured: np.ndarray, gap: int) -> np.ndarray:
    """``velocity`` moved towards a ``measured`` one, by as much as ``gap`` frames allow."""
    weight = 1.0 - (1.0 - _VELOCITY_WEIGHT_PER_FRAME) ** gap
    return (weight * measured + (1.0 - weight) * velocity).astype(np.float32)


@dataclass
class TrackUpdate:
    active: list[Track]  # tracks present in this frame (after update), by track_id
    started: list[Track]  # created (confirmed) in this update
    ended: list[Track]  # ended in this update (too many missed detections); not in active


@dataclass
class _Live:
    track: Track
    anchor: np.ndarray  # box of the last matched detection: velocity is measured from it


class IoUTracker:
    """Flat multi-object tracker for faces.

    ``iou_threshold``: pairs with IoU below it never match (default distance). ``max_missed``:
    a track ends on its ``max_missed + 1``-th consecutive detection round without a match; from
    its first missed round on it is lost (not in ``active``).
    ``distance``: custom cost function (see ``DistanceFn``); with it, pairs whose cost exceeds
    ``max_distance`` or is not finite never match (``max_distance`` defaults to
    ``1 - iou_threshold`` for the IoU cost and to no limit for a custom one). ``min_hits``: a
    track is reported (and gets its id) only once it matched this many consecutive detection
    rounds; tentative tracks vanish silently on their first miss. ``max_velocity_frames``: how
    many frames after its last matched detection a track keeps moving by its velocity.
    """

    def __init__(
        self,
        iou_threshold: float = 0.3,
        max_missed: int = 2,
        distance: DistanceFn | None = None,
        min_hits: int = 1,
        max_velocity_frames: int = 10,
        max_distance: float | None = None,
    ) -> None:
        if not 0.0 <= iou_threshold <= 1.0:
            raise ValueError(f"iou_threshold must be in [0, 1], got {iou_threshold}")
        if max_missed < 0 or min_hits < 1 or max_velocity_frames < 0:
            raise ValueError("max_missed and max_velocity_frames must be >= 0, min_hits >= 1")
        self._distance: DistanceFn = distance if distance is not None else iou_distance
        if max_distance is not None:
            self._max_cost = float(max_distance)
        else:
            self._max_cost = 1.0 - iou_threshold if distance is None else float("inf")
        self._max_missed = max_missed
        self._min_hits = min_hits
        self._max_velocity_frames = max_velocity_frames
        self._live: list[_Live] = []  # confirmed and tentative tracks, in creation order
        self._next_id = 1
        self._frame: int | None = None

    def update(
        self,
        frame_index: int,
        detections: Detections | None,
        followed: dict[int, tuple[np.ndarray, np.ndarray]] | None = None,
    ) -> TrackUpdate:
        """Advance to ``frame_index``; ``detections=None`` means the detector did not run.

        ``followed``: on a frame without detections, the box and landmarks where a track's face
        was followed to (optical flow); the others move by their velocity.
        """
        if self._frame is not None and frame_index <= self._frame:
            raise ValueError(f"frame_index must increase: {frame_index} after {self._frame}")
        self._frame = frame_index
        boxes, kps = self._predict(frame_index)
        if detections is None:
            followed = followed or {}
            for live, box, points in zip(self._live, boxes, kps, strict=True):
                track = live.track
                if track.missed:
                    continue
                if track.track_id in followed and track.hits >= self._min_hits:
                    box, points = followed[track.track_id]
                    gap = frame_index - track.last_frame
                    track.velocity = _smoothed(track.velocity, (box - track.box) / gap, gap)
                _present(track, frame_index, box, points)
            return TrackUpdate(self._active(), [], [])

        anchors = np.stack([live.anchor for live in self._live]) if self._live else boxes
        rows, cols = self._match(boxes, anchors, detections.boxes)
        det_for_row = np.full(len(self._live), -1, np.int64)
        det_for_row[rows] = cols
        started: list[Track] = []
        ended: list[Track] = []
        kept: list[_Live] = []
        for live, det in zip(self._live, det_for_row, strict=True):
            track = live.track
            confirmed = track.hits >= self._min_hits
            if det >= 0:
                self._hit(live, frame_index, detections, int(det))
                if not confirmed and track.hits >= self._min_hits:
                    self._confirm(track)
                    started.append(track)
            else:
                track.missed += 1
                if not confirmed:
                    continue  # tentative tracks are dropped unreported
                if track.missed > self._max_missed:
                    ended.append(track)
                    continue
                track.det_index = -1  # lost: keeps its last present box, not reported
            kept.append(live)

        matched = np.zeros(len(detections), bool)
        matched[cols] = True
        for det in np.flatnonzero(~matched):
            live = self._new(frame_index, detections, int(det))
            kept.append(live)
            if self._min_hits <= 1:
                self._confirm(live.track)
                started.append(live.track)
        self._live = kept
        return TrackUpdate(self._active(), started, ended)

    def end_all(self) -> list[Track]:
        """End every reported track (end of video, camera dropped); frame indices may restart."""
        ended = [live.track for live in self._live if live.track.hits >= self._min_hits]
        self._live = []
        self._frame = None
        return ended

    def predicted(self, frame_index: int) -> list[tuple[Track, np.ndarray]]:
        """Every reported track (present or lost) with its box predicted at ``frame_index``
        (the state is not advanced): where to look for a face the detector might miss."""
        boxes, _ = self._predict(frame_index)
        return [
            (live.track, box)
            for live, box in zip(self._live, boxes, strict=True)
            if live.track.hits >= self._min_hits
        ]

    @property
    def reported(self) -> int:
        """How many reported tracks there are, present or lost."""
        return sum(live.track.hits >= self._min_hits for live in self._live)

    @property
    def present(self) -> list[Track]:
        """The tracks present on the last frame."""
        return self._active()

    def _active(self) -> list[Track]:
        active = [
            live.track
            for live in self._live
            if live.track.hits >= self._min_hits and not live.track.missed
        ]
        return sorted(active, key=lambda track: track.track_id)

    def _confirm(self, track: Track) -> None:
        track.track_id = self._next_id
        self._next_id += 1

    def _predict(self, frame_index: int) -> tuple[np.ndarray, np.ndarray]:
        """Boxes [T, 4] and landmarks [T, 5, 2] of all live tracks moved to ``frame_index``."""
        if not self._live:
            return np.zeros((0, 4), np.float32), np.zeros((0, 5, 2), np.float32)
        tracks = [live.track for live in self._live]
        boxes = np.stack([track.box for track in tracks])
        velocity = np.stack([track.velocity for track in tracks])
        last_frame = np.array([track.last_frame for track in tracks])
        coast_end = np.array([track.last_detected for track in tracks]) + self._max_velocity_frames
        steps = np.clip(np.minimum(frame_index, coast_end) - last_frame, 0, None)
        moved = boxes + velocity * steps[:, None].astype(np.float32)
        centre = (moved[:, :2] + moved[:, 2:]) / 2
        half = np.maximum(moved[:, 2:] - moved[:, :2], _MIN_SIZE) / 2
        moved = np.concatenate([centre - half, centre + half], axis=1).astype(np.float32)
        # Landmarks keep their position relative to the box (shift and scale with it).
        old_size = np.maximum(boxes[:, 2:] - boxes[:, :2], _MIN_SIZE)
        scale = (moved[:, 2:] - moved[:, :2]) / old_size
        kps = np.stack([track.kps for track in tracks])
        kps = (kps - boxes[:, None, :2]) * scale[:, None, :] + moved[:, None, :2]
        return moved, kps.astype(np.float32)

    def _match(
        self, track_boxes: np.ndarray, anchors: np.ndarray, det_boxes: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Optimal (track row, detection) pairs whose cost passes the gate. With the default
        cost a track is as close as the nearer of its predicted and last detected boxes."""
        n_tracks, n_dets = len(track_boxes), len(det_boxes)
        none = (np.zeros(0, np.int64), np.zeros(0, np.int64))
        if n_tracks == 0 or n_dets == 0:
            return none
        cost = np.asarray(self._distance(track_boxes, det_boxes), np.float64)
        if cost.shape != (n_tracks, n_dets):
            raise ValueError(f"distance returned shape {cost.shape}, expected {(n_tracks, n_dets)}")
        if self._distance is iou_distance:
            gate = self._max_cost
            cost = np.minimum.reduce(
                [
                    cost,
                    iou_distance(anchors, det_boxes),
                    shift_distance(track_boxes, det_boxes, gate),
                    shift_distance(anchors, det_boxes, gate),
                ]
            )
        allowed = np.isfinite(cost) & (cost <= self._max_cost)
        if not allowed.any():
            return none
        lost = np.array([live.track.missed > 0 for live in self._live])
        cost = cost + np.where(lost, LOST_COST, 0.0)[:, None]
        # Forbidden pairs get a cost larger than any difference of allowed sums, so the solver
        # maximises the number of allowed pairs first; they are filtered out afterwards.
        forbidden = float(np.abs(cost[allowed]).sum()) + 1.0
        rows, cols = linear_sum_assignment(np.where(allowed, cost, forbidden))
        keep = allowed[rows, cols]
        return rows[keep], cols[keep]

    def _hit(self, live: _Live, frame_index: int, detections: Detections, det: int) -> None:
        track = live.track
        box = detections.boxes[det].astype(np.float32)
        gap = frame_index - track.last_detected
        measured = (box - live.anchor) / float(gap)
        # the first measurement replaces the initial zero velocity
        track.velocity = (
            _smoothed(track.velocity, measured, gap)
            if track.hits > 1
            else measured.astype(np.float32)
        )
        track.det_score = float(detections.scores[det])
        track.last_detected = frame_index
        track.hits += 1
        track.missed = 0
        _present(track, frame_index, box, detections.kps[det].astype(np.float32), det)
        live.anchor = box

    def _new(self, frame_index: int, detections: Detections, det: int) -> _Live:
        box = detections.boxes[det].astype(np.float32)
        track = Track(
            track_id=0,  # assigned when the track is confirmed (min_hits)
            box=box,
            kps=detections.kps[det].astype(np.float32),
            det_score=float(detections.scores[det]),
            first_frame=frame_index,
            last_frame=frame_index,
            last_detected=frame_index,
            det_index=det,
        )
        return _Live(track, box)


def _present(
    track: Track, frame_index: int, box: np.ndarray, kps: np.ndarray, det_index: int = -1
) -> None:
    """Record the track as present in ``frame_index`` at ``box``."""
    track.box = box
    track.kps = kps
    track.last_frame = frame_index
    track.frames += 1
    track.det_index = det_index
