"""Detect and track: the detector every N frames per camera, the tracker on every frame.

A detection round is the whole-frame pass plus the small-face passes (:mod:`.small_faces`). It
also decides which faces to embed now (the track's identity policy, by each face's expected
quality; no face is excluded for good) and asks for them as :class:`~streamrec.records.FaceJob`
records.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field

import cv2
import numpy as np

from streamrec.models.protocols import Detector
from streamrec.models.quality import face_quality
from streamrec.pipeline.flow import follow
from streamrec.pipeline.identity import CameraIdentities
from streamrec.pipeline.small_faces import SmallFaceSearch, SmallFaceSettings
from streamrec.pipeline.stage import Stage
from streamrec.pipeline.tracking import IoUTracker, Track
from streamrec.records import Detections, FaceJob, FrameWork, Work
from streamrec.telemetry import Observer


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
class _Camera:
    interval: int
    identities: CameraIdentities
    tracker: IoUTracker
    small: SmallFaceSearch
    zones: list[np.ndarray] = field(default_factory=list)
    #: frames processed since the last detection (counted in processed frames, not source
    #: indices: a live camera that drops frames still detects every N); None = detect next
    since_detect: int | None = None
    thumb: np.ndarray | None = None  # small grey copy of the last frame (scene cuts)
    previous: np.ndarray | None = None  # the last frame's grey levels (optical flow)


class DetectStage(Stage):
    name = "detect"

    def __init__(
        self,
        detector: Detector,
        cameras: dict[str, tuple[int, list[list[list[float]]]]],
        identities: dict[str, CameraIdentities],
        observer: Observer,
        tracker: TrackerSettings | None = None,
        small_faces: SmallFaceSettings | None = None,
        nms_threshold: float = 0.4,
    ) -> None:
        """``cameras``: per camera name, its detection interval and ignore zones (polygons)."""
        self.detector = detector
        self.observer = observer
        self.settings = tracker or TrackerSettings()
        small = small_faces or SmallFaceSettings()
        self.cameras = {
            name: _Camera(
                interval,
                identities[name],
                IoUTracker(self.settings.iou_threshold, self.settings.max_missed),
                SmallFaceSearch(small, nms_threshold),
                [np.asarray(z, np.float32).reshape(-1, 1, 2) for z in zones],
            )
            for name, (interval, zones) in cameras.items()
        }

    def is_cut(self, cam: _Camera, grey: np.ndarray) -> bool:
        """A scene cut in edited video: the whole frame changes at once (tracks must not jump)."""
        if not self.settings.scene_cut:
            return False
        step = max(1, grey.shape[1] // 80)
        thumb = grey[::step, ::step].astype(np.int16)
        prev, cam.thumb = cam.thumb, thumb
        return (
            prev is not None
            and prev.shape == thumb.shape
            and float(np.abs(thumb - prev).mean()) > self.settings.scene_cut
        )

    def process(self, work: Work) -> None:
        cam = self.cameras[work.camera]
        if not isinstance(work, FrameWork):  # end of stream, or the camera dropped
            work.ended = cam.tracker.end_all()
            cam.since_detect = cam.previous = None
            return
        frame = work.frame
        self.observer.frame_read(work.camera)
        t0 = time.perf_counter()
        cut: list[Track] = []
        if self.is_cut(cam, frame.luma()):
            cut = cam.tracker.end_all()
            cam.since_detect = None
        detect = cam.since_detect is None or cam.since_detect + 1 >= cam.interval
        cam.since_detect = 0 if detect else (cam.since_detect or 0) + 1
        dets: Detections | None = None
        took = 0.0
        if detect:
            t1 = time.perf_counter()
            dets = self.detector.detect(frame.image)
            tracked = [box for _, box in cam.tracker.predicted(frame.index)]
            dets = cam.small.detect(self.detector, frame.image, dets, tracked)
            took = time.perf_counter() - t1
            if len(dets) and cam.zones:
                centers = (dets.boxes[:, :2] + dets.boxes[:, 2:]) / 2
                dets = dets[~in_zones(centers, cam.zones)]
            self.observer.detected(work.camera, len(dets), took)
            self.observer.busy("detect", took)
        followed = None
        if dets is None and self.settings.flow and cam.previous is not None:
            followed = follow(cam.previous, frame.luma(), cam.tracker.present)
        cam.previous = frame.luma() if self.settings.flow else None
        update = cam.tracker.update(frame.index, dets, followed)
        work.tracks = [copy.copy(t) for t in update.active]
        work.started = [copy.copy(t) for t in update.started]
        work.ended = cut + [copy.copy(t) for t in update.ended]
        if detect:
            refining = self._ask_for_faces(cam, work)
            self.observer.busy("detect", refining)
            took += refining
        self.observer.busy("track", time.perf_counter() - t0 - took)

    def _ask_for_faces(self, cam: _Camera, work: FrameWork) -> float:
        """Start the new tracks' identities and ask for the embeddings their policy wants (a
        small face detected again for precise landmarks); the seconds spent detecting."""
        frame = work.frame
        detecting = 0.0
        for t in work.started:
            cam.identities.start(t.track_id, frame.index, frame.time)
        for t in work.tracks:
            if t.det_index < 0:
                continue
            quality = face_quality(t.box, t.kps, t.det_score)
            request = cam.identities.wants_embedding(t.track_id, frame.index, quality)
            if request is None:
                continue
            box, kps, score = t.box, t.kps, t.det_score
            if cam.small.small(self.detector, frame.image, box):
                t0 = time.perf_counter()
                again = cam.small.refine(self.detector, frame.image, box)
                detecting += time.perf_counter() - t0
                if len(again):
                    box, kps, score = again.boxes[0], again.kps[0], float(again.scores[0])
            work.jobs.append(FaceJob(t.track_id, kps, quality, box, score, request.value))
        return detecting
