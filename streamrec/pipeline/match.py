"""Match: embeddings become track identities, and identities become events.

A change of the gallery is taken in at once and in full (:meth:`MatchStage.set_matcher`): it
waits for the frame being matched, then re-decides every open track of every camera before it
returns, so once it has returned no event of this stage names a person who was erased (and no
track carries an unknown label that died). Everything the stage emits is emitted under its lock.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np

from streamrec.gallery.matcher import Matcher
from streamrec.gallery.unknowns import UnknownBook
from streamrec.pipeline.identity import CameraIdentities, Naming, TrackIdentity
from streamrec.pipeline.stage import Stage
from streamrec.records import Event, Frame, FrameWork, TrackSighting, Work
from streamrec.telemetry import EventWriter, Latency, Observer

__all__ = ["EventWriter", "MatchStage"]


class MatchStage(Stage):
    name = "match"

    def __init__(
        self,
        identities: dict[str, CameraIdentities],
        matcher: Matcher,
        events: EventWriter,
        sources: dict[str, str],
        observer: Observer,
        unknowns: UnknownBook | None = None,
    ) -> None:
        """``sources``: each camera's source name (the events' ``source``)."""
        self.identities = identities
        self.matcher = matcher
        self.events = events
        self.sources = sources
        self.observer = observer
        self.unknowns = unknowns
        #: capture time of each open track's first frame, by (camera, track): decision latency
        self._first_seen: dict[tuple[str, int], float] = {}
        self._lock = threading.RLock()

    def set_matcher(self, matcher: Matcher, dead_labels: set[str] | None = None) -> None:
        """Swap the gallery snapshot (from any thread) and re-decide every open track against
        it now; tracks carrying ``dead_labels`` (unknown-N labels that were erased, merged or
        promoted) lose them. A track that loses its name says so (``renamed``, name null, at
        its last frame)."""
        with self._lock:
            self.matcher = matcher
            for camera, idents in self.identities.items():
                idents.drop_labels(dead_labels or set())
                for naming in idents.rematch(matcher):
                    self._named(camera, None, naming)

    def _emit(
        self,
        kind: str,
        camera: str,
        track_id: int,
        frame: int,
        t: float,
        captured: float | None,
        snapshot: np.ndarray | None = None,
        sighting: TrackSighting | None = None,
        **fields: Any,
    ) -> None:
        source = self.sources[camera]
        event = Event(
            kind, source, track_id, frame, t, captured, camera, fields, snapshot, sighting
        )
        self.events.write(event)
        if captured and kind in ("track_start", "identified", "unknown"):
            now = time.time()
            self.observer.latency(camera, Latency.EVENT, now - captured)
            key = (camera, track_id)
            first = self._first_seen.pop(key, None) if kind != "track_start" else None
            if first is not None:  # the track's first decision (identified or unknown)
                self.observer.latency(camera, Latency.DECISION, now - first)

    def process(self, work: Work) -> None:
        t0 = time.perf_counter()
        with self._lock:
            if isinstance(work, FrameWork):
                self._frame(work)
            else:
                for t in work.ended:
                    self.end_track(work.camera, t.track_id)
        self.observer.busy("match", time.perf_counter() - t0)

    def _frame(self, work: FrameWork) -> None:
        camera, frame = work.camera, work.frame
        idents = self.identities[camera]
        matcher = self.matcher
        for t in work.started:
            idents.announce(t.track_id)
            if frame.captured:
                self._first_seen[(camera, t.track_id)] = frame.captured
            box = [round(float(v), 1) for v in t.box]
            self._emit(
                "track_start", camera, t.track_id, frame.index, frame.time, frame.captured, box=box
            )
        idents.seen([t.track_id for t in work.tracks], frame.index, frame.time, frame.captured)
        for t in work.ended:  # gone before this frame: their labels are free for it
            self.end_track(camera, t.track_id, frame)
        for job in work.jobs:
            if job.embedding is None or job.track_id not in idents:
                continue
            used, namings = idents.add(job, matcher)
            if not used:
                continue
            self.observer.evidence(camera)
            for naming in namings:
                self._named(camera, frame, naming)
        for t in work.tracks:
            self._label_unknown(camera, t.track_id, frame)
            label = idents.label(t.track_id)
            if label is not None:
                work.labels[t.track_id] = label

    def _named(self, camera: str, frame: Frame | None, naming: Naming) -> None:
        """Emit a naming at ``frame`` (None: at the track's last frame)."""
        index, t, captured = (
            (frame.index, frame.time, frame.captured) if frame is not None else naming.last
        )
        self._emit(
            "renamed" if naming.renamed else "identified",
            camera,
            naming.track_id,
            index,
            t,
            captured,
            naming.crop,
            name=naming.name,
            score=None if naming.score is None else round(naming.score, 4),
        )

    def _label_unknown(self, camera: str, track_id: int, frame: Frame) -> None:
        if self.unknowns is None:
            return
        idents = self.identities[camera]
        label = idents.label_unknown(track_id, self.unknowns, camera)
        if label is not None:
            at = (frame.index, frame.time, frame.captured)
            self._emit("unknown", camera, track_id, *at, idents.crop(track_id), label=label)

    def end_track(self, camera: str, track_id: int, frame: Frame | None = None) -> None:
        """End a track at ``frame``, the frame whose detection round ended it (None: the stream
        ended or dropped); the tracks its end names (continuing it, or taking its name) are
        named at ``frame`` (None: at their last frame)."""
        with self._lock:
            self._first_seen.pop((camera, track_id), None)
            ident, namings = self.identities[camera].end(track_id, self.matcher)
            if ident is not None and ident.announced:  # else it never reached this stage
                self._ended(camera, ident, frame)
            for naming in namings:
                self._named(camera, frame, naming)

    def _ended(self, camera: str, ident: TrackIdentity, frame: Frame | None) -> None:
        last_time = ident.last_time if ident.frames else ident.first_time
        if ident.name is None and ident.unknown is not None and self.unknowns is not None:
            mean = ident.mean
            assert mean is not None
            self.unknowns.learn(ident.unknown, mean, ident.best_crop, ident.best_quality, camera)
        last_frame = max(ident.last_frame, ident.first_frame)
        self._emit(
            "track_end",
            camera,
            ident.track_id,
            last_frame,
            last_time,
            ident.last_captured,
            sighting=_sighting(camera, ident, last_time),
            name=ident.name,
            score=None if ident.score is None else round(float(ident.score), 4),
            first_frame=ident.first_frame,
            last_frame=last_frame,
            frames=ident.frames,
            embeddings=ident.embeddings,
            name_changes=ident.name_changes,
            unknown=ident.unknown,
            continues=ident.continues,
            ended_frame=frame.index if frame is not None else last_frame,
            ended_time=round(frame.time, 4) if frame is not None else last_time,
        )
        if frame is not None and frame.captured:
            self.observer.latency(camera, Latency.TRACK_END, time.time() - frame.captured)

    def finish(self) -> None:
        """End every track still open (after an abort, or a stream that never ended)."""
        with self._lock:
            for camera, idents in self.identities.items():
                for track_id in idents.open_tracks():
                    self.end_track(camera, track_id)


def _sighting(camera: str, ident: TrackIdentity, last_time: float) -> TrackSighting | None:
    """What an ended track leaves in the face history (None: it was never embedded). A file
    has no capture times: its track is placed at the time it ended, as long as it lasted."""
    mean = ident.mean
    if mean is None:
        return None
    last = ident.last_captured or time.time()
    first = ident.first_captured or last - max(0.0, last_time - ident.first_time)
    return TrackSighting(
        camera,
        first,
        last,
        np.asarray(mean, np.float32),
        ident.best_crop,
        float(ident.best_quality),
        ident.name or ident.unknown,
        None if ident.score is None or ident.name is None else float(ident.score),
    )
