"""Detect and track: the detector when a camera needs it, the tracker on every frame.

A detection round is due every N frames per camera. With motion gating (live cameras by
default, :mod:`.motion`) a due round runs only when something moved, a face is tracked (present
or lost), the light changed, or the whole frame was last detected ``max_skip`` seconds ago; a
camera where nothing moves and nobody is tracked costs no detector call; one whose faces flow
follows on every frame, once they have had their first looks, detects every other interval (a
round would only re-anchor them; on a live 720p camera with people it cut the rounds by a
third). When something moves and nobody is tracked, the moving regions alone are detected at
the frame's own resolution when that costs no more than the whole-frame pass (else the whole
frame is). Motion is judged on frames at least :data:`MOTION_GAP` apart (every other frame
of a 25 fps camera, each of a 15 fps one; Frigate judges it at its 5 fps detect rate): a
round is due only every N frames anyway, and the thumbnail and the background's update were
most of a static camera's cost beyond decoding. A whole-frame round is
the whole-frame pass plus the small-face passes (:mod:`.small_faces`). Between rounds, faces are
followed by optical flow (:mod:`.flow`).

While a new face on a live camera has had fewer looks than its first decision needs, its
camera's rounds come after half the interval (its name is awaited). A live camera that falls
behind degrades (:mod:`.degrade`): the extras off, a longer interval (but not for those first
looks), a smaller detection pass. A detection round also decides which faces to embed (the track's
identity policy, by each face's expected quality; no face is excluded for good) and asks for
them as :class:`~streamrec.records.FaceJob` records, at most ``embeddings_per_frame`` with one
frame: a burst of new faces goes with the next frames, new tracks first (on live cameras no
faster than the recognizer embeds them, :mod:`.budget`).
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import cv2
import numpy as np

from streamrec.models.protocols import Detector
from streamrec.models.quality import face_quality
from streamrec.pipeline.budget import EmbedBudget
from streamrec.pipeline.degrade import Degradation, Level, levels
from streamrec.pipeline.flow import Pyramid, follow
from streamrec.pipeline.identity import CameraIdentities
from streamrec.pipeline.motion import Motion, MotionDetector, MotionSettings, Region, overlaps
from streamrec.pipeline.small_faces import (
    MAX_WAIT,
    MAX_WAIT_GATED,
    SmallFaceSearch,
    SmallFaceSettings,
    merge,
)
from streamrec.pipeline.stage import Stage
from streamrec.pipeline.tracking import IoUTracker, Track
from streamrec.records import Detections, FaceJob, Frame, FrameWork, Work
from streamrec.telemetry import Observer

log = logging.getLogger("streamrec.pipeline")

#: the most moving regions detected one by one (more: the whole frame)
MAX_MOTION_REGIONS = 4
#: deferred embeddings kept per camera (the oldest go first beyond)
MAX_DEFERRED = 64
#: the interval's factor on a gated camera while flow keeps every face (see ``_wait``)
KEPT_FACTOR = 2
#: seconds of media time from one frame whose motion is judged to the next, at least
MOTION_GAP = 0.06
#: what a gated camera's frame between two judged ones brings: nothing new
_UNJUDGED = Motion([])
_NORMAL = Level(0)


def in_zones(points: np.ndarray, zones: list[np.ndarray]) -> np.ndarray:
    """Boolean mask: which points lie inside any of the polygons."""
    mask = np.zeros(len(points), bool)
    for zone in zones:
        for i, (x, y) in enumerate(points):
            if not mask[i] and cv2.pointPolygonTest(zone, (float(x), float(y)), False) >= 0:
                mask[i] = True
    return mask


@dataclass
class TrackerSettings:
    iou_threshold: float = 0.3
    max_missed: int = 2
    #: mean grey-level change between frames that counts as a scene cut (0 = off)
    scene_cut: float = 24.0
    #: follow faces between detections by optical flow (else by their velocity only)
    flow: bool = True


@dataclass
class CameraSettings:
    """What the detect stage needs to know of one camera."""

    interval: int
    #: polygons (frame pixels) whose faces are ignored
    ignore_zones: list[list[list[float]]] = field(default_factory=list)
    #: the thumbnail (scene cuts, motion) and the motion gate's settings
    motion: MotionSettings = field(default_factory=MotionSettings)
    #: detect only when something moved (or a track is live, or max_skip passed)
    gated: bool = False
    #: a live camera: degrades when it falls behind
    live: bool = False


@dataclass
class DegradationSettings:
    enabled: bool = True
    max_interval_factor: int = 4
    min_input_size: int = 320
    #: the detector's input size (the whole-frame pass at level 0)
    input_size: int = 640
    window: float = 1.0
    recover_after: float = 10.0


@dataclass
class _Camera:
    settings: CameraSettings
    identities: CameraIdentities
    tracker: IoUTracker
    small: SmallFaceSearch
    motion: MotionDetector | None
    degradation: Degradation | None
    zones: list[np.ndarray] = field(default_factory=list)
    #: frames processed since the last detection (counted in processed frames, not source
    #: indices: a live camera that drops frames still detects every N); None = detect next
    since_detect: int | None = None
    #: media time of the last whole-frame detection (motion gating's max_skip)
    last_full: float | None = None
    thumb: np.ndarray | None = None  # the last thumbnail made (scene cuts)
    #: media time of the last frame whose motion was judged (``MOTION_GAP``)
    judged: float | None = None
    pyramid: Pyramid | None = None  # the last frame's grey levels (optical flow)
    #: faces asked for but not yet sent to the recognizer, by track, oldest first
    deferred: dict[int, FaceJob] = field(default_factory=dict)
    #: every face present since the last detection was followed by flow on every frame
    followed: bool = False

    def judge(self, t: float) -> bool:
        """Whether the motion of the frame at media time ``t`` is judged (``MOTION_GAP``)."""
        if self.judged is not None and self.judged <= t < self.judged + MOTION_GAP:
            return False
        self.judged = t
        return True

    def restart(self) -> None:
        """The stream ended or dropped: everything learnt about its pictures goes."""
        self.since_detect = self.last_full = self.judged = None
        self.thumb = self.pyramid = None
        self.deferred.clear()
        if self.motion is not None:
            self.motion.reset()
        if self.degradation is not None:
            self.degradation.restart()


class DetectStage(Stage):
    name = "detect"

    def __init__(
        self,
        detector: Detector,
        cameras: dict[str, CameraSettings],
        identities: dict[str, CameraIdentities],
        observer: Observer,
        tracker: TrackerSettings | None = None,
        small_faces: SmallFaceSettings | None = None,
        nms_threshold: float = 0.4,
        max_skip: float = 5.0,
        embeddings_per_frame: int = 2,
        degradation: DegradationSettings | None = None,
        budget: EmbedBudget | None = None,
    ) -> None:
        """``budget``: how fast live cameras may send faces to the recognizer (None: no limit)."""
        self.detector = detector
        self.observer = observer
        self.settings = tracker or TrackerSettings()
        self.max_skip = max_skip
        self.embeddings_per_frame = embeddings_per_frame
        self.budget = budget
        small = small_faces or SmallFaceSettings()
        degrade = degradation or DegradationSettings()
        steps = levels(degrade.input_size, degrade.max_interval_factor, degrade.min_input_size)
        self.cameras = {
            name: _Camera(
                cam,
                identities[name],
                IoUTracker(self.settings.iou_threshold, self.settings.max_missed),
                SmallFaceSearch(small, nms_threshold, MAX_WAIT_GATED if cam.gated else MAX_WAIT),
                MotionDetector(cam.motion) if cam.gated else None,
                Degradation(
                    steps, degrade.window, degrade.recover_after, self._degraded(name)
                ) if cam.live and degrade.enabled else None,
                [np.asarray(z, np.float32).reshape(-1, 1, 2) for z in cam.ignore_zones],
            )
            for name, cam in cameras.items()
        }  # fmt: skip

    def _degraded(self, camera: str) -> Callable[[Level], None]:
        def changed(level: Level) -> None:
            log.log(
                logging.WARNING if level.number else logging.INFO,
                "camera %s: degradation level %d (%s)",
                camera,
                level.number,
                level.describe(),
            )
            self.observer.degraded(camera, level.number, level.describe())

        return changed

    def is_cut(self, cam: _Camera, thumb: np.ndarray) -> bool:
        """A scene cut in edited video: the whole frame changes at once (tracks must not jump)."""
        prev, cam.thumb = cam.thumb, thumb
        return (
            bool(self.settings.scene_cut)
            and prev is not None
            and prev.shape == thumb.shape
            and cv2.norm(thumb, prev, cv2.NORM_L1) > self.settings.scene_cut * thumb.size
        )

    def process(self, work: Work) -> None:
        cam = self.cameras[work.camera]
        if not isinstance(work, FrameWork):  # end of stream, or the camera dropped
            work.ended = cam.tracker.end_all()
            cam.restart()
            return
        frame = work.frame
        self.observer.frame_read(work.camera)
        t0 = time.perf_counter()
        level = _NORMAL
        if cam.degradation is not None:
            level = cam.degradation.frame(frame.index, frame.captured, time.time() - frame.captured)
        cut: list[Track] = []
        motion = None if cam.motion is None else _UNJUDGED
        if motion is None or cam.judge(frame.time):
            thumb = frame.thumbnail(cam.settings.motion.frame_height)
            if self.is_cut(cam, thumb):
                cut = cam.tracker.end_all()
                cam.since_detect = None
            if cam.motion is not None:
                motion = cam.motion.update(thumb, frame.width, frame.height)
        present = cam.tracker.present
        plan = self._plan(cam, frame, level, motion, present, cam.tracker.reported)
        cam.since_detect = 0 if plan is not None else (cam.since_detect or 0) + 1
        dets: Detections | None = None
        took = 0.0
        if plan is not None:
            t1 = time.perf_counter()
            dets = self._detect(cam, frame, level, plan, motion)
            took = time.perf_counter() - t1
            if len(dets) and cam.zones:
                centers = (dets.boxes[:, :2] + dets.boxes[:, 2:]) / 2
                dets = dets[~in_zones(centers, cam.zones)]
            self.observer.detected(work.camera, len(dets), took)
            self.observer.busy("detect", took)
        followed, pyramid = None, None
        if dets is None and level.extras and cam.pyramid is not None and present:
            pyramid = Pyramid(frame.luma(full_range=False))
            followed = follow(cam.pyramid, pyramid, present)
        if dets is not None:
            cam.followed = True
        elif followed is None or len(followed) < len(present):
            cam.followed = False
        update = cam.tracker.update(frame.index, dets, followed)
        # the next frame follows the faces present now from this frame's grey levels
        cam.pyramid = None
        if self.settings.flow and update.active:
            cam.pyramid = pyramid or Pyramid(frame.luma(full_range=False))
        work.tracks = [copy.copy(t) for t in update.active]
        work.started = [copy.copy(t) for t in update.started]
        work.ended = cut + [copy.copy(t) for t in update.ended]
        if dets is not None:
            refining = self._ask_for_faces(cam, work, level)
            self.observer.busy("detect", refining)
            took += refining
        self._send_faces(cam, work)
        self.observer.busy("track", time.perf_counter() - t0 - took)

    def _plan(
        self,
        cam: _Camera,
        frame: Frame,
        level: Level,
        motion: Motion | None,
        present: list[Track],
        tracked: int,
    ) -> list[Region] | None:
        """The regions to detect on this frame (the whole frame is one), or None: no round.
        ``present``: the tracks present on the last frame; ``tracked``: the camera's reported
        tracks, present or lost."""
        whole = [(0, 0, frame.width, frame.height)]
        if cam.since_detect is None:
            return whole
        waited = cam.since_detect + 1
        # the wait (a lock and a look at each track) only once half the interval is up
        due = waited >= (cam.settings.interval + 1) // 2 and waited >= self._wait(
            cam, level, motion is not None, present, tracked
        )
        if motion is None:
            return whole if due else None
        if motion.lightning:
            return whole  # the light changed: look again at once
        stale = cam.last_full is None or frame.time - cam.last_full >= self.max_skip
        if tracked or stale:
            return whole if due or stale else None
        if not due or not motion.regions:
            return None
        return self._regions(motion.regions, frame.width, frame.height, level) or whole

    def _wait(
        self, cam: _Camera, level: Level, gated: bool, present: list[Track], tracked: int
    ) -> int:
        """How many frames the camera's next round waits. While a new face has its first looks
        (its name is awaited), half the interval on a live camera (its name comes that much
        sooner) and the interval on a file (its evidence does not change), degraded or not.
        Else the interval times the degradation's factor; at level 0 on a gated camera,
        :data:`KEPT_FACTOR` times while every tracked face is present and has been followed by
        flow on every frame since the last round (the round would only re-anchor faces that
        flow keeps; a face flow loses, a lost track or a new face bring the interval back)."""
        interval = cam.settings.interval
        if present and cam.identities.first_looks([t.track_id for t in present]):
            return (interval + 1) // 2 if cam.settings.live else interval
        if level.interval_factor > 1:
            return interval * level.interval_factor
        kept = gated and cam.followed and bool(present) and len(present) == tracked
        return interval * (KEPT_FACTOR if kept else 1)

    def _regions(
        self, moving: list[Region], width: int, height: int, level: Level
    ) -> list[Region] | None:
        """The moving regions, enlarged (a face sits above a moving body) and merged, when
        detecting them at the frame's resolution costs no more than the whole-frame pass."""
        grown = []
        for x1, y1, x2, y2 in moving:
            m = 16 + 0.25 * max(x2 - x1, y2 - y1)
            grown.append((max(0, int(x1 - m)), max(0, int(y1 - m)),
                          min(width, int(x2 + m)), min(height, int(y2 + m))))  # fmt: skip
        merged = _merged(grown)
        if len(merged) > MAX_MOTION_REGIONS:
            return None
        cost = sum(self.detector.cost(x2 - x1, y2 - y1, 1.0) for x1, y1, x2, y2 in merged)
        whole = self.detector.cost(width, height, self._whole_scale(width, height, level))
        return merged if cost <= whole else None

    def _whole_scale(self, width: int, height: int, level: Level) -> float:
        scale = self.detector.frame_scale(width, height)
        if level.input_size is not None:
            scale = min(scale, level.input_size / max(width, height))
        return scale

    def _detect(
        self,
        cam: _Camera,
        frame: Frame,
        level: Level,
        plan: list[Region],
        motion: Motion | None,
    ) -> Detections:
        image = frame.image
        height, width = image.shape[:2]
        if plan != [(0, 0, width, height)]:  # moving regions, at the frame's resolution
            parts = [self.detector.detect_region(image, region, 1.0) for region in plan]
            return merge(parts, cam.small.nms_threshold)
        cam.last_full = frame.time
        if level.input_size is not None:
            dets = self.detector.detect_region(
                image, plan[0], self._whole_scale(width, height, level)
            )
        else:
            dets = self.detector.detect(image)
        if not level.extras:
            return dets
        moving = motion.regions if motion is not None else None
        tracked = [box for _, box in cam.tracker.predicted(frame.index)]
        return cam.small.detect(self.detector, image, dets, tracked, moving)

    def _ask_for_faces(self, cam: _Camera, work: FrameWork, level: Level) -> float:
        """Start the new tracks' identities and queue the embeddings their policy wants (a
        small face detected again for precise landmarks); the seconds spent detecting."""
        frame = work.frame
        detecting = 0.0
        for t in work.started:
            cam.identities.start(t.track_id, frame.index, frame.time)
        wanted = []
        for t in work.tracks:
            if t.det_index < 0:
                continue
            quality = face_quality(t.box, t.kps, t.det_score)
            asked = cam.identities.wants_embedding(t.track_id, frame.index, quality)
            if asked is not None:
                wanted.append((t, quality, asked.value))
        # the newest tracks first (their first looks decide them), then the better faces
        for t, quality, request in sorted(wanted, key=lambda w: (w[0].hits, -w[1])):
            box, kps, score = t.box, t.kps, t.det_score
            if level.extras and cam.small.small(self.detector, frame.image, box):
                t0 = time.perf_counter()
                again = cam.small.refine(self.detector, frame.image, box)
                detecting += time.perf_counter() - t0
                if len(again):
                    box, kps, score = again.boxes[0], again.kps[0], float(again.scores[0])
            job = FaceJob(t.track_id, kps, quality, box, score, request, image=frame.image)
            cam.deferred[t.track_id] = job  # a newer request of a waiting track replaces it
            if len(cam.deferred) > MAX_DEFERRED:
                del cam.deferred[next(iter(cam.deferred))]
        return detecting

    def _send_faces(self, cam: _Camera, work: FrameWork) -> None:
        """The oldest queued faces of live tracks go with this frame, ``embeddings_per_frame``
        at most (on a live camera, as far as the recognizer's budget allows)."""
        for t in work.ended:
            cam.deferred.pop(t.track_id, None)
        budget = self.budget if cam.settings.live else None
        while cam.deferred and len(work.jobs) < self.embeddings_per_frame:
            if budget is not None and not budget.take():
                break  # the recognizer is busy: the faces wait for a later frame
            work.jobs.append(cam.deferred.pop(next(iter(cam.deferred))))


def _merged(regions: list[Region]) -> list[Region]:
    """Overlapping regions joined into their bounding boxes, until none overlap."""
    out = list(regions)
    joined = True
    while joined:
        joined = False
        for i in range(len(out)):
            for j in range(i + 1, len(out)):
                a, b = out[i], out[j]
                if overlaps(a, b):
                    out[i] = (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))
                    del out[j]
                    joined = True
                    break
            if joined:
                break
    return out
