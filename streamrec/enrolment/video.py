"""Enrolment from a video clip: the main person's best and most varied faces.

Detection runs on every ``step``-th frame and the IoU tracker links the faces into tracks. The
main track is the one with the most face (sum of face heights over its detections: frames x
size). Its faces are ranked by quality (geometric quality x sharpness of the aligned crop) and
picked greedily, skipping faces too close in time to one already picked or almost the same
embedding (cosine above ``similar``), so the gallery gets distinct looks, not one look N times.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from streamrec.enrolment.photos import EnrollReport
from streamrec.errors import MediaError
from streamrec.models.quality import geometric_quality, sharpness_factor
from streamrec.pipeline.tracking import IoUTracker
from streamrec.recognition import NewSample, Recognition
from streamrec.records import Frame
from streamrec.sources import open_source

#: aligned crops kept per track while reading (the best by quality; bounds memory on long clips)
_KEEP_PER_TRACK = 300


@dataclass
class _Candidate:
    frame: int
    quality: float
    crop: np.ndarray  # aligned for the recognizer


@dataclass
class _TrackFaces:
    weight: float = 0.0  # sum of face heights over the track's detections
    detections: int = 0
    candidates: list[_Candidate] = field(default_factory=list)

    def keep(self, candidate: _Candidate) -> None:
        self.candidates.append(candidate)
        if len(self.candidates) >= 2 * _KEEP_PER_TRACK:
            self.candidates.sort(key=lambda c: -c.quality)
            del self.candidates[_KEEP_PER_TRACK:]


@dataclass(frozen=True)
class VideoPick:
    """Faces picked from a clip for enrolment."""

    source: str
    frames: list[int]  # frame index of each picked face
    embeddings: np.ndarray  # [len(frames), D]
    faces: list[np.ndarray]  # the aligned crop of each picked face
    track_detections: int  # detections in the chosen track
    other_tracks: int  # face tracks not used (other people, short fragments)
    frames_read: int

    @property
    def sources(self) -> list[str]:
        return [f"{self.source}#frame={n}" for n in self.frames]

    def describe(self, name: str) -> str:
        frames = ", ".join(map(str, self.frames))
        others = f"; {self.other_tracks} other face track(s) ignored" if self.other_tracks else ""
        return (
            f"{name}: picked {len(self.frames)} face(s) from frames {frames} of {self.source} "
            f"(main track: {self.track_detections} detections in {self.frames_read} frames"
            f"{others})"
        )


def _frames(path: str) -> Iterator[Frame]:
    with open_source(path) as source:
        for item in source:
            if isinstance(item, Frame):
                yield item


def _collect_tracks(
    recognition: Recognition, path: str, step: int
) -> tuple[list[_TrackFaces], int]:
    tracker = IoUTracker(max_missed=5)
    tracks: dict[int, _TrackFaces] = {}
    read = 0
    for frame in _frames(path):
        read += 1
        if frame.index % step:
            continue
        dets = recognition.detect(frame.image)
        for track in tracker.update(frame.index, dets).active:
            if track.det_index < 0:
                continue
            i = track.det_index
            faces = tracks.setdefault(track.track_id, _TrackFaces())
            faces.weight += float(dets.boxes[i, 3] - dets.boxes[i, 1])
            faces.detections += 1
            quality = geometric_quality(dets.boxes[i], dets.kps[i], float(dets.scores[i]))
            if quality > 0:
                crop = recognition.crop(frame.image, dets.kps[i])
                faces.keep(_Candidate(frame.index, quality * sharpness_factor(crop), crop))
    return list(tracks.values()), read


def pick_video_faces(
    recognition: Recognition, path: str | Path, count: int, step: int = 2, similar: float = 0.95
) -> VideoPick:
    """Up to ``count`` good, varied faces of the main person in the clip at ``path``."""
    tracks, read = _collect_tracks(recognition, str(path), step)
    if not tracks:
        raise MediaError(f"no face found in {path}")
    main = max(tracks, key=lambda t: t.weight)
    ranked = sorted((c for c in main.candidates if c.quality > 0), key=lambda c: -c.quality)
    if not ranked:
        raise MediaError(f"no usable face in {path} (all too small, blurred or turned away)")
    span = max(c.frame for c in ranked) - min(c.frame for c in ranked)
    min_gap = span // (2 * count)
    chosen: list[_Candidate] = []
    vectors: list[np.ndarray] = []
    batch = 4 * count
    for start in range(0, len(ranked), batch):
        chunk = [
            c
            for c in ranked[start : start + batch]
            if all(abs(c.frame - o.frame) >= min_gap for o in chosen)
        ]
        if not chunk:
            continue
        embedded = recognition.embed([c.crop for c in chunk])
        for c, e in zip(chunk, embedded, strict=True):
            if len(chosen) == count:
                break
            if all(abs(c.frame - o.frame) >= min_gap for o in chosen) and all(
                float(e @ v) <= similar for v in vectors
            ):
                chosen.append(c)
                vectors.append(e)
        if len(chosen) == count:
            break
    order = np.argsort([c.frame for c in chosen])
    return VideoPick(
        source=str(path),
        frames=[chosen[i].frame for i in order],
        embeddings=np.stack([vectors[i] for i in order]),
        faces=[chosen[i].crop for i in order],
        track_detections=main.detections,
        other_tracks=len(tracks) - 1,
        frames_read=read,
    )


def enroll_video(
    recognition: Recognition, name: str, path: str | Path, count: int, step: int = 2
) -> tuple[EnrollReport, VideoPick]:
    """Enrol ``name`` from the ``count`` best faces of the main person of a clip; sources are
    recorded as ``FILE#frame=N``."""
    pick = pick_video_faces(recognition, path, count, step)
    samples = [
        NewSample(e, crop, None, source)
        for e, crop, source in zip(pick.embeddings, pick.faces, pick.sources, strict=True)
    ]
    report = EnrollReport(name, added=pick.sources)
    report.record(recognition.enrol(name, samples))
    return report, pick
