"""The stages of the graph: plain classes whose ``process`` handles one work item.

``run()`` is each stage's thread loop: take from the upstream queue, ``process``, pass on.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from streamrec.models.alignment import align
from streamrec.models.quality import geometric_quality, sharpness_factor
from streamrec.pipeline.tracking import IoUTracker, Track
from streamrec.sinks.draw import draw_face

from ..records import Detections, Event, Frame
from ..sources import Gap
from .identity import TrackIdentity
from .summary import timed

if TYPE_CHECKING:
    from .graph import FrameOutput, Pipeline

log = logging.getLogger("streamrec.pipeline")

# queue indices between the stages
TO_EMBED, TO_MATCH, TO_ANNOTATE, TO_OUTPUT = range(4)


@dataclass
class Work:
    """One frame's (or one end-of-stream's) journey through the graph."""

    camera: str
    frame: Frame | None
    tracks: list[Track] = field(default_factory=list)  # snapshots, present in this frame
    started: list[Track] = field(default_factory=list)
    ended: list[Track] = field(default_factory=list)
    requests: list[int] = field(default_factory=list)  # indices into tracks to embed
    weights: list[float] = field(default_factory=list)  # quality of each requested face
    crops: list[np.ndarray] = field(default_factory=list)  # aligned crops (when kept)
    embeddings: np.ndarray | None = None  # [len(requests), D]
    #: per track id: (label to draw, score, known person?)
    labels: dict[int, tuple[str | None, float | None, bool]] = field(default_factory=dict)
    image: np.ndarray | None = None  # annotated frame
    end: bool = False  # the camera's stream is over
    gap: str | None = None  # the camera dropped (live): tracks were ended

    @classmethod
    def end_of_stream(cls, camera: str) -> Work:
        return cls(camera, None, end=True)


def in_zones(points: np.ndarray, zones: list[np.ndarray]) -> np.ndarray:
    """Boolean mask: which points lie inside any of the polygons."""
    mask = np.zeros(len(points), bool)
    for zone in zones:
        for i, (x, y) in enumerate(points):
            if not mask[i] and cv2.pointPolygonTest(zone, (float(x), float(y)), False) >= 0:
                mask[i] = True
    return mask


class DetectTrackStage:
    """Runs the detector every N frames per camera and the tracker on every frame."""

    def __init__(self, graph: Pipeline) -> None:
        self.g = graph
        cfg = graph.cfg
        self.trackers = {
            name: IoUTracker(cfg.tracker.iou_threshold, cfg.tracker.max_missed)
            for name in graph.cameras
        }
        self.zones = {
            name: [np.asarray(z, np.float32).reshape(-1, 1, 2) for z in cam.ignore_zones]
            for name, cam in graph.cameras.items()
        }
        self.min_size = cfg.recognition.min_face_size
        #: frames processed since the camera's last detection (counted in processed frames,
        #: not source indices: a live camera that drops frames still detects every N)
        self.since_detect: dict[str, int] = {}
        self.thumbs: dict[str, np.ndarray] = {}
        self.scene_cut = cfg.tracker.scene_cut
        self.min_quality = cfg.recognition.min_quality

    def is_cut(self, camera: str, image: np.ndarray) -> bool:
        """A scene cut in edited video: the whole frame changes at once (tracks must not jump)."""
        if not self.scene_cut:
            return False
        step = max(1, image.shape[1] // 80)
        thumb = image[::step, ::step].astype(np.int16)
        prev = self.thumbs.get(camera)
        self.thumbs[camera] = thumb
        return (
            prev is not None
            and prev.shape == thumb.shape
            and float(np.abs(thumb - prev).mean()) > self.scene_cut
        )

    def run(self) -> None:
        ended = 0
        while ended < len(self.g.cameras):
            got = self.g.mux.get()
            if got is None:
                if self.g._abort.is_set():
                    return
                continue
            camera, item = got
            work = self.process(camera, item)
            self.g.put(TO_EMBED, work)
            ended += work.end

    def process(self, camera: str, item: Frame | Gap | Work) -> Work:
        g = self.g
        tracker = self.trackers[camera]
        if isinstance(item, Work):  # end of stream
            item.ended = tracker.end_all()
            return item
        if isinstance(item, Gap):
            self.since_detect.pop(camera, None)
            return Work(camera, None, ended=tracker.end_all(), gap=item.reason)
        frame = item
        summary = g.summary.cameras[camera]
        summary.frames += 1
        cut_tracks: list[Track] = []
        clock = g.summary.stage_seconds
        with timed(clock, "track"):
            if self.is_cut(camera, frame.image):
                cut_tracks = tracker.end_all()
                self.since_detect.pop(camera, None)
        since = self.since_detect.get(camera)
        detect = since is None or since + 1 >= g.cameras[camera].interval
        self.since_detect[camera] = 0 if since is None or detect else since + 1
        dets: Detections | None = None
        if detect:
            t0 = time.perf_counter()
            dets = g.analyzer.detect(frame.image)
            took = time.perf_counter() - t0
            clock["detect"] = clock.get("detect", 0.0) + took
            if g.metrics is not None:
                g.metrics.observe_detect(took)
                g.metrics.faces(camera, len(dets))
            if len(dets) and self.zones[camera]:
                centers = (dets.boxes[:, :2] + dets.boxes[:, 2:]) / 2
                dets = dets[~in_zones(centers, self.zones[camera])]
            summary.detector_runs += 1
            summary.faces += len(dets)
        with timed(clock, "track"):
            update = tracker.update(frame.index, dets)
            tracks = [copy.copy(t) for t in update.active]
        work = Work(
            camera,
            frame,
            tracks=tracks,
            started=[copy.copy(t) for t in update.started],
            ended=cut_tracks + [copy.copy(t) for t in update.ended],
        )
        if detect:
            idents = g.identities[camera]
            for t in update.started:
                idents[t.track_id] = TrackIdentity(t.track_id, frame.index, frame.time)
            for i, t in enumerate(tracks):
                ident = idents.get(t.track_id)
                if t.det_index < 0 or ident is None:
                    continue
                if t.box[3] - t.box[1] < self.min_size:
                    continue
                quality = geometric_quality(t.box, t.kps, t.det_score)
                if quality < self.min_quality:
                    continue
                if g.policy.needs_embedding(ident, frame.index, quality):
                    ident.last_request = frame.index
                    ident.best_request = max(ident.best_request, quality)
                    work.requests.append(i)
                    work.weights.append(quality)
        return work


class EmbedStage:
    """Aligns requested faces and embeds them, batching across queued frames and cameras."""

    def __init__(self, graph: Pipeline) -> None:
        self.g = graph
        self.batch_size = graph.cfg.recognition.batch_size
        self.size = graph.analyzer.embedder.input_size

    def run(self) -> None:
        ended = 0
        pending: list[Work] = []
        while ended < len(self.g.cameras):
            if not pending:
                work = self.g.get(TO_EMBED)
                if work is None:
                    continue
                pending.append(work)
            # gather more queued frames while the batch has room
            while sum(len(w.requests) for w in pending) < self.batch_size:
                more = self.g.get(TO_EMBED, timeout=0.0)
                if more is None:
                    break
                pending.append(more)
            self.process(pending)
            for w in pending:
                self.g.put(TO_MATCH, w)
                ended += w.end
            pending = []

    def process(self, works: list[Work]) -> None:
        crops = []
        clock = self.g.summary.stage_seconds
        with timed(clock, "align"):
            for w in works:
                if w.frame is None:
                    continue
                for k, i in enumerate(w.requests):
                    crop = align(w.frame.image, w.tracks[i].kps, self.size)
                    w.weights[k] *= sharpness_factor(crop)
                    crops.append(crop)
                    if self.g.keep_crops:
                        w.crops.append(crop)
        if not crops:
            return
        parts = []
        for i in range(0, len(crops), self.batch_size):
            batch = crops[i : i + self.batch_size]
            t0 = time.perf_counter()
            parts.append(self.g.analyzer.embedder.embed(batch))
            took = time.perf_counter() - t0
            clock["embed"] = clock.get("embed", 0.0) + took
            if self.g.metrics is not None:
                self.g.metrics.observe_embed(took, len(batch))
            self.g.summary.embed_calls += 1
        embeddings = np.concatenate(parts)
        start = 0
        for w in works:
            n = len(w.requests) if w.frame is not None else 0
            if n:
                w.embeddings = embeddings[start : start + n]
                start += n


class MatchStage:
    """Turns embeddings into track identities and writes the events."""

    def __init__(self, graph: Pipeline) -> None:
        self.g = graph

    def run(self) -> None:
        ended = 0
        while ended < len(self.g.cameras):
            work = self.g.get(TO_MATCH)
            if work is None:
                continue
            with timed(self.g.summary.stage_seconds, "match"):
                self.process(work)
            self.g.put(TO_ANNOTATE, work)
            ended += work.end

    def _event(
        self,
        kind: str,
        camera: str,
        track_id: int,
        frame: int,
        t: float,
        captured: float | None,
        **fields: Any,
    ) -> Event:
        return Event(
            kind,
            self.g.cameras[camera].source.name,
            track_id,
            frame,
            t,
            captured=captured,
            camera=camera,
            fields=fields,
        )

    def process(self, work: Work) -> None:
        g = self.g
        camera = work.camera
        idents = g.identities[camera]
        summary = g.summary.cameras[camera]
        frame = work.frame
        if frame is not None:
            for t in work.started:
                summary.tracks += 1
                if g.metrics is not None:
                    g.metrics.track(camera)
                g.emit(
                    self._event(
                        "track_start",
                        camera,
                        t.track_id,
                        frame.index,
                        frame.time,
                        frame.captured,
                        box=[round(float(v), 1) for v in t.box],
                    )
                )
            if work.embeddings is not None:
                for k, i in enumerate(work.requests):
                    ident = idents.get(work.tracks[i].track_id)
                    if ident is None:
                        continue
                    summary.embeddings += 1
                    weight = max(work.weights[k], 1e-3)
                    if work.crops and weight > ident.best_quality:
                        ident.best_crop, ident.best_quality = work.crops[k], weight
                    if g.policy.update(ident, work.embeddings[k], weight, g.matcher):
                        kind = "identified" if ident.name_changes == 1 else "renamed"
                        g.emit(
                            self._event(
                                kind,
                                camera,
                                ident.track_id,
                                frame.index,
                                frame.time,
                                frame.captured,
                                name=ident.name,
                                score=_round(ident.score),
                            )
                        )
                        if g.metrics is not None and ident.name is not None:
                            g.metrics.identity(camera, ident.name)
                        if g.status is not None:
                            g.status.add_recognition(
                                camera, ident.name, ident.score or 0.0, ident.track_id
                            )
                        if g.metrics is not None and frame.captured:
                            g.metrics.observe_latency(camera, time.time() - frame.captured)
                    self.label_unknown(camera, ident, frame)
            for t in work.tracks:
                ident = idents.get(t.track_id)
                if ident is None:
                    continue
                ident.frames += 1
                ident.last_frame, ident.last_time = frame.index, frame.time
                known = ident.name is not None
                work.labels[t.track_id] = (ident.name or ident.unknown, ident.score, known)
        for t in work.ended:
            self.end_track(camera, t.track_id)

    def label_unknown(self, camera: str, ident: TrackIdentity, frame: Frame) -> None:
        """Give a track whose evidence says "not in the gallery" a stable unknown-N label."""
        book = self.g.unknowns
        if (
            book is None
            or ident.name is not None
            or ident.unknown is not None
            or ident.embeddings < self.g.policy.min_embeddings
            or (ident.score is not None and ident.score >= self.g.policy.threshold)
        ):
            return
        mean = ident.mean
        assert mean is not None
        ident.unknown = book.assign(mean)
        self.g.emit(
            self._event(
                "unknown",
                camera,
                ident.track_id,
                frame.index,
                frame.time,
                frame.captured,
                label=ident.unknown,
            )
        )

    def end_track(self, camera: str, track_id: int) -> None:
        ident = self.g.identities[camera].pop(track_id, None)
        if ident is None:
            return
        if ident.name is not None:
            self.g.summary.cameras[camera].saw(ident.name, ident.first_time, ident.last_time)
        elif ident.unknown is not None and self.g.unknowns is not None:
            mean = ident.mean
            assert mean is not None
            self.g.unknowns.learn(ident.unknown, mean, ident.best_crop, ident.best_quality)
        self.g.emit(
            self._event(
                "track_end",
                camera,
                track_id,
                max(ident.last_frame, ident.first_frame),
                ident.last_time if ident.frames else ident.first_time,
                None,
                name=ident.name,
                score=_round(ident.score),
                first_frame=ident.first_frame,
                last_frame=max(ident.last_frame, ident.first_frame),
                frames=ident.frames,
                embeddings=ident.embeddings,
                name_changes=ident.name_changes,
                unknown=ident.unknown,
            )
        )

    def end_leftovers(self) -> None:
        """After an abort: end every track that is still open."""
        for camera, idents in self.g.identities.items():
            for track_id in sorted(idents):
                self.end_track(camera, track_id)


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 4)


class AnnotateStage:
    """Draws every present track (detected or carried by the tracker) with its name."""

    def __init__(self, graph: Pipeline, enabled: bool) -> None:
        self.g = graph
        self.enabled = enabled

    def run(self) -> None:
        ended = 0
        while ended < len(self.g.cameras):
            work = self.g.get(TO_ANNOTATE)
            if work is None:
                continue
            self.process(work)
            self.g.put(TO_OUTPUT, work)
            ended += work.end

    def process(self, work: Work) -> None:
        if not self.enabled or work.frame is None:
            return
        g = self.g
        # draw only for a consumer: the camera's outputs, or a live-view watcher
        if not g.cameras[work.camera].outputs and not (
            g.status is not None and g.status.wants_frame(work.camera)
        ):
            return
        with timed(g.summary.stage_seconds, "annotate"):
            image = work.frame.image.copy()
            for t in work.tracks:
                label, score, known = work.labels.get(t.track_id, (None, None, False))
                draw_face(image, t.box, label, score if known else None, known)
            work.image = image


class OutputStage:
    """Feeds annotated frames to the camera's outputs and the live view; counts progress."""

    def __init__(self, graph: Pipeline) -> None:
        self.g = graph
        self.outputs: dict[str, list[FrameOutput]] = {}

    def run(self) -> None:
        ended = 0
        while ended < len(self.g.cameras):
            work = self.g.get(TO_OUTPUT)
            if work is None:
                continue
            self.process(work)
            ended += work.end

    def process(self, work: Work) -> None:
        g = self.g
        camera = work.camera
        if work.end:
            self.close(camera)
            return
        if work.frame is None:
            return
        g.progress += 1
        if g.metrics is not None:
            g.metrics.frame(camera)
        if g.status is not None:
            g.status.frame(camera)
            if work.image is not None:
                g.status.publish_frame(camera, work.image)
        if work.image is None:
            return
        with timed(g.summary.stage_seconds, "encode"):
            outs = self.outputs.get(camera)
            if outs is None:
                factories: list[Callable[[Any], FrameOutput]] = g.cameras[camera].outputs
                outs = self.outputs[camera] = [make(work.frame) for make in factories]
            for out in outs:
                out.write(work.image)

    def close(self, camera: str) -> None:
        for out in self.outputs.pop(camera, []):
            try:
                out.close()
            except Exception:
                log.exception("closing an output of %s failed", camera)

    def close_all(self) -> None:
        for camera in list(self.outputs):
            self.close(camera)
