"""The face history on the real media: what each track of a real run would leave as a sighting,
and the ground truth that can be had without labelling anyone by hand.

Until phase B adds the hook (the ``track_end`` event carrying the track's mean embedding, best
crop and quality), a run's tracks are read from the pipeline's own identity records:
:func:`capture_tracks` wraps ``CameraIdentities.end`` and ``MatchStage.process`` for the time of
a run (nothing of the pipeline is edited), so each :class:`RunTrack` holds exactly what the
pipeline knew when the track ended.

Ground truth, independent of the recognizer:

- *one-person clips*: the three webcam clips of the same man, and the InsightFace clip of one
  woman (``MEDIA.md``): every track of such a clip group is that person;
- *continuity across a cut*: a clip cut in two visits at time T: a track ending at T in the first
  visit and one starting at T in the second, where their boxes overlap, are one person;
- *two people*: tracks present in the same frame of a run, and tracks of different clip groups.
"""

from __future__ import annotations

import contextlib
import copy
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from unittest import mock

import cv2
import numpy as np

import streamrec
from streamrec.analyzer import FaceAnalyzer
from streamrec.config import Config
from streamrec.errors import MediaError
from streamrec.media import read_image
from streamrec.pipeline.identity import CameraIdentities, TrackIdentity
from streamrec.pipeline.match import MatchStage
from streamrec.records import FrameWork

SMALL = {
    "models.detector": "det_500m.onnx",
    "models.recognizer": "mobilefacenet_128d.onnx",
    "models.download": False,
}

#: the two-visit set: (clip group, file); a group is one person when it is in ONE_PERSON
CLIPS = [
    ("webcam", "webcam_clips/default.wmv"),
    ("webcam", "webcam_clips/changeLighting.wmv"),
    ("webcam", "webcam_clips/Video_14.wmv"),
    ("insight", "insightface/inspireface_810_1684206192.mp4"),
    ("multi", "webcam_clips/multi_face.avi"),
    ("hamilton", "face_recognition/short_hamilton_clip.mp4"),
    ("facenet", "facenet_pytorch/video.mp4"),
]
ONE_PERSON = {"webcam", "insight"}
#: clips of nobody enrolled in the negatives measurement (the strangers)
STRANGER_CLIPS = [c for c in CLIPS if c[0] != "hamilton"]
HAMILTON = "face_recognition/short_hamilton_clip.mp4"
#: the known people of the Hamilton clip and their photos
KNOWN = {
    "Lin-Manuel Miranda": ["face_recognition/lin-manuel-miranda.png"],
    "Alex Lacamoire": [
        "face_recognition/alex-lacamoire.png",
        "face_recognition/knn_examples/train/alex_lacamoire/img1.jpg",
    ],
    "Barack Obama": [
        "face_recognition/obama.jpg",
        "face_recognition/obama2.jpg",
        "face_recognition/obama3.jpg",
    ],
}


def small_config(overrides: dict[str, Any] | None = None) -> Config:
    return streamrec.load_config(None, {**SMALL, **(overrides or {})})


def with_threshold(analyzer: FaceAnalyzer, threshold: float) -> FaceAnalyzer:
    """The same models with another recognition threshold (the pipeline reads the analyzer's)."""
    other = copy.copy(analyzer)
    other.threshold = threshold
    other.cfg = replace(
        analyzer.cfg, recognition=replace(analyzer.cfg.recognition, threshold=threshold)
    )
    return other


@dataclass
class RunTrack:
    """One ended track of a run: what its sighting would hold, and where it was."""

    run: int
    group: str
    camera: str
    track_id: int
    first_frame: int
    last_frame: int
    first_time: float
    last_time: float
    first_box: np.ndarray
    last_box: np.ndarray
    mean: np.ndarray
    crop: np.ndarray | None
    quality: float
    name: str | None
    score: float | None
    unknown: str | None
    embeddings: int
    continues: int | None  # the track of the same run whose evidence it took over

    @property
    def label(self) -> str | None:
        return self.name or self.unknown

    @property
    def key(self) -> tuple[int, str, int]:
        return (self.run, self.camera, self.track_id)


@dataclass
class _Capture:
    ended: list[tuple[str, TrackIdentity]] = field(default_factory=list)
    boxes: dict[tuple[str, int], list[tuple[int, np.ndarray]]] = field(default_factory=dict)


@contextmanager
def capture_tracks() -> Iterator[_Capture]:
    """Record every track a run ends (its identity record) and its first and last box."""
    cap = _Capture()
    end, process = CameraIdentities.end, MatchStage.process

    def ending(self: CameraIdentities, track_id: int, matcher: Any) -> Any:
        ended = end(self, track_id, matcher)
        ident = ended[0]
        if ident is not None and ident.announced and ident.mean is not None:
            camera = next((c for c, i in _owner.items() if i is self), "")
            cap.ended.append((camera, ident))
        return ended

    _owner: dict[str, CameraIdentities] = {}

    def processing(self: MatchStage, work: Any) -> None:
        _owner.update(self.identities)
        if isinstance(work, FrameWork):
            for t in work.tracks:
                seen = cap.boxes.setdefault((work.camera, t.track_id), [])
                entry = (work.frame.index, t.box.copy())
                if len(seen) < 2:
                    seen.append(entry)
                else:
                    seen[1] = entry
        process(self, work)

    with (
        mock.patch.object(CameraIdentities, "end", ending),
        mock.patch.object(MatchStage, "process", processing),
    ):
        yield cap


def run_clip(
    analyzer: FaceAnalyzer,
    media: Path,
    group: str,
    clip: str,
    run: int,
    gallery: Path | None = None,
    start: float | None = None,
    end: float | None = None,
    matcher_wrap: Any = None,
    unknown_gate: float | None = None,
) -> list[RunTrack]:
    """One run of the real pipeline on a clip (or a span of it); its tracks.

    ``matcher_wrap``: a function applied to every matcher snapshot the run reads from the
    gallery (the negatives measurement wraps it in a GuardedMatcher). ``unknown_gate``: the
    pipeline's ``unknowns.min_quality`` (a track whose best face is below it gets no
    ``unknown-N`` label); None: the config's."""
    from streamrec.gallery.store import Gallery

    patches: list[Any] = []
    if matcher_wrap is not None:
        real = Gallery.matcher
        patches.append(mock.patch.object(Gallery, "matcher", lambda self: matcher_wrap(real(self))))
    cfg = analyzer.cfg
    if unknown_gate is not None:
        cfg = replace(cfg, unknowns=replace(cfg.unknowns, min_quality=unknown_gate))
    with capture_tracks() as cap, contextlib.ExitStack() as stack:
        for p in patches:
            stack.enter_context(p)
        list(
            streamrec.process(
                media / clip, gallery=gallery, config=cfg, analyzer=analyzer, start=start, end=end
            )
        )
    out = []
    for camera, ident in cap.ended:
        boxes = cap.boxes.get((camera, ident.track_id))
        if not boxes:
            continue
        assert ident.mean is not None
        out.append(
            RunTrack(
                run,
                group,
                camera,
                ident.track_id,
                boxes[0][0],
                boxes[-1][0],
                ident.first_time,
                ident.last_time if ident.frames else ident.first_time,
                boxes[0][1],
                boxes[-1][1],
                np.asarray(ident.mean, np.float32),
                ident.best_crop,
                ident.best_quality,
                ident.name,
                ident.score,
                ident.unknown,
                ident.embeddings,
                ident.continues,
            )
        )
    return out


def duration(path: Path) -> float:
    cap = cv2.VideoCapture(str(path))
    try:
        frames = cap.get(cv2.CAP_PROP_FRAME_COUNT)
        fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    finally:
        cap.release()
    return float(frames / fps)


@dataclass
class TwoVisits:
    """Every clip cut in two visits, all first visits run before all second visits, with one
    gallery (nobody enrolled): the tracks of every run, and each clip's cut."""

    tracks: list[RunTrack]
    cuts: dict[str, float]  # clip -> the cut (s)
    runs: dict[int, tuple[str, str, str]]  # run -> (group, clip, "A" | "B")


def two_visits(
    analyzer: FaceAnalyzer, media: Path, gallery: Path, unknown_gate: float | None = None
) -> TwoVisits:
    tracks: list[RunTrack] = []
    cuts = {clip: round(duration(media / clip) / 2, 2) for _, clip in CLIPS}
    runs: dict[int, tuple[str, str, str]] = {}
    for visit in ("A", "B"):
        for group, clip in CLIPS:
            run = len(runs)
            runs[run] = (group, clip, visit)
            span = (None, cuts[clip]) if visit == "A" else (cuts[clip], None)
            tracks += run_clip(
                analyzer,
                media,
                group,
                clip,
                run,
                gallery,
                span[0],
                span[1],
                unknown_gate=unknown_gate,
            )
    return TwoVisits(tracks, cuts, runs)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def _near(a: np.ndarray, b: np.ndarray, faces: float = 1.0) -> bool:
    """Are two boxes' centres within ``faces`` face heights of each other?"""
    ca = np.array([(a[0] + a[2]) / 2, (a[1] + a[3]) / 2])
    cb = np.array([(b[0] + b[2]) / 2, (b[1] + b[3]) / 2])
    return bool(np.hypot(*(ca - cb)) < faces * max(a[3] - a[1], b[3] - b[1]))


class Truth:
    """Who is who among the tracks of a :class:`TwoVisits`, as far as it can be known."""

    def __init__(self, visits: TwoVisits) -> None:
        self.visits = visits
        tracks = visits.tracks
        self.index = {t.key: i for i, t in enumerate(tracks)}
        parent = list(range(len(tracks)))

        def find(i: int) -> int:
            while parent[i] != i:
                parent[i] = parent[parent[i]]
                i = parent[i]
            return i

        def union(a: int, b: int) -> None:
            parent[find(a)] = find(b)

        by_group: dict[str, list[int]] = {}
        for i, t in enumerate(tracks):
            by_group.setdefault(t.group, []).append(i)
        for group, members in by_group.items():
            if group in ONE_PERSON:
                for i in members[1:]:
                    union(members[0], i)
        # continuity across each clip's cut
        self.links: list[tuple[int, int]] = []
        first_b: dict[int, int] = {}
        last_a: dict[int, int] = {}
        for t in tracks:
            visit = visits.runs[t.run][2]
            if visit == "B":
                first_b[t.run] = min(first_b.get(t.run, t.first_frame), t.first_frame)
            else:
                last_a[t.run] = max(last_a.get(t.run, t.last_frame), t.last_frame)
        pair = {r: r + len(CLIPS) for r, v in visits.runs.items() if v[2] == "A"}
        ends = [
            i
            for i, a in enumerate(tracks)
            if visits.runs[a.run][2] == "A" and a.last_frame >= last_a[a.run] - 1
        ]
        starts = [
            j
            for j, b in enumerate(tracks)
            if visits.runs[b.run][2] == "B" and b.first_frame <= first_b.get(b.run, 0) + 1
        ]
        for i in ends:
            a = tracks[i]
            near = sorted(
                (
                    (_iou(a.last_box, tracks[j].first_box), j)
                    for j in starts
                    if tracks[j].run == pair[a.run]
                ),
                reverse=True,
            )
            # one clear match, and no other face near it on either side of the cut (where
            # faces cross, the tracker may have swapped them: who is who is unknown)
            if not near or near[0][0] < 0.5:
                continue
            j = near[0][1]
            b = tracks[j]
            crowded = any(
                _near(tracks[k].last_box, a.last_box)
                for k in ends
                if k != i and tracks[k].run == a.run
            ) or any(
                _near(tracks[k].first_box, b.first_box)
                for k in starts
                if k != j and tracks[k].run == b.run
            )
            if not crowded:
                self.links.append((i, j))
                union(i, j)
        self.person = [find(i) for i in range(len(tracks))]
        # people known to be different: different clip groups, or present together in a run
        self._apart: set[tuple[int, int]] = set()
        for i, a in enumerate(tracks):
            for j in range(i + 1, len(tracks)):
                b = tracks[j]
                pa, pb = self.person[i], self.person[j]
                if pa == pb:
                    continue
                relinked = a.run == b.run and (
                    a.continues == b.track_id or b.continues == a.track_id
                )
                if a.group != b.group or (
                    a.run == b.run
                    and not relinked
                    and a.first_frame <= b.last_frame
                    and b.first_frame <= a.last_frame
                ):
                    self._apart.add((min(pa, pb), max(pa, pb)))

    def apart(self, pa: int, pb: int) -> bool:
        return (min(pa, pb), max(pa, pb)) in self._apart

    def label_people(self) -> dict[str, set[int]]:
        """Each label -> the people (union-find roots) whose tracks carry it."""
        out: dict[str, set[int]] = {}
        for i, t in enumerate(self.visits.tracks):
            if t.label is not None:
                out.setdefault(t.label, set()).add(self.person[i])
        return out

    def shared_labels(self) -> list[str]:
        """Labels carried by two people known to be different."""
        bad = []
        for label, people in self.label_people().items():
            ps = sorted(people)
            if any(self.apart(a, b) for k, a in enumerate(ps) for b in ps[k + 1 :]):
                bad.append(label)
        return sorted(bad)

    def both_visits(self) -> dict[int, tuple[set[str], set[str]]]:
        """People seen on both sides of a cut (linked tracks with labels): their labels in the
        first visit and in the second."""
        out: dict[int, tuple[set[str], set[str]]] = {}
        tracks = self.visits.tracks
        for i, j in self.links:
            a, b = tracks[i], tracks[j]
            if a.label is None or b.label is None:
                continue
            first, second = out.setdefault(self.person[i], (set(), set()))
            first.add(a.label)
            second.add(b.label)
        return out

    def splits(self) -> list[tuple[int, set[str]]]:
        """People of :meth:`both_visits` whose labels differ: (person, their labels)."""
        return [(p, a | b) for p, (a, b) in self.both_visits().items() if len(a | b) > 1]

    def judge(self, pairs: list[tuple[str, str]]) -> dict[str, list[tuple[str, str]]]:
        """Merge suggestions judged: ``wrong`` (two people known different), ``recovering``
        (joins the labels of a split person), ``unverified`` (neither can be told)."""
        people = self.label_people()
        split_sets = [labels for _, labels in self.splits()]
        out: dict[str, list[tuple[str, str]]] = {"wrong": [], "recovering": [], "unverified": []}
        for a, b in pairs:
            pa, pb = people.get(a, set()), people.get(b, set())
            if any(self.apart(x, y) for x in pa for y in pb):
                out["wrong"].append((a, b))
            elif any(a in s and b in s for s in split_sets):
                out["recovering"].append((a, b))
            else:
                out["unverified"].append((a, b))
        return out

    def recovered(self, pairs: list[tuple[str, str]]) -> int:
        """Split people whose labels the suggestions join into one (transitively)."""
        parent: dict[str, str] = {}

        def find(x: str) -> str:
            while parent.get(x, x) != x:
                x = parent[x]
            return x

        for a, b in pairs:
            parent[find(a)] = find(b)
        return sum(len({find(label) for label in labels}) == 1 for _, labels in self.splits())


# --- photos -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PhotoFace:
    path: str
    person: str
    embedding: np.ndarray


def labelled_photos(media: Path) -> list[tuple[str, str]]:
    """(relative path, person) of the labelled single-person photos of the media."""
    out: list[tuple[str, str]] = []
    for person, paths in KNOWN.items():
        out += [(p, person) for p in paths]
    fr = "face_recognition"
    out += [(f"{fr}/{n}", "Barack Obama") for n in ("obama-720p.jpg", "obama_small.jpg")]
    out += [
        (f"{fr}/knn_examples/train/obama/{n}", "Barack Obama") for n in ("obama.jpg", "obama2.jpg")
    ]
    out += [(f"{fr}/knn_examples/test/obama1.jpg", "Barack Obama")]
    out += [(f"{fr}/knn_examples/test/alex_lacamoire1.jpg", "Alex Lacamoire")]
    for person in ("biden", "kit_harington", "rose_leslie"):
        folder = media / fr / "knn_examples/train" / person
        out += [(str(p.relative_to(media)), person) for p in sorted(folder.iterdir())]
    out += [(f"{fr}/biden.jpg", "biden")]
    for p in sorted((media / "facenet_pytorch/test_images").glob("*/1.jpg")):
        out.append((str(p.relative_to(media)), p.parent.name))
    for name in ("lennon-1", "lennon-2", "clapton-1", "clapton-2", "adams", "carell"):
        out.append((f"openface_examples/{name}.jpg", name.split("-")[0]))
    ins = "insightface"
    out += [(f"{ins}/Tom_Hanks_54745.png", "hanks"), (f"{ins}/Nathalie_Baye_0002.jpg", "baye")]
    out += [(f"{ins}/Rob_Lowe_000{i}.jpg", "lowe") for i in (1, 2)]
    rows = (media / "deepface/identities.csv").read_text().splitlines()[1:]
    for row in rows:
        file, cluster = row.split(",")[:2]
        out.append((f"deepface/{file}", f"deepface-{cluster}"))
    return [(p, person) for p, person in out if (media / p).is_file()]


def photo_faces(analyzer: FaceAnalyzer, media: Path) -> list[PhotoFace]:
    """The embedding of the largest face of each labelled photo."""
    out = []
    for rel, person in labelled_photos(media):
        image = read_image(media / rel)
        faces = analyzer.analyze(image)
        if not faces:
            continue
        face = max(faces, key=lambda f: float((f.bbox[2] - f.bbox[0]) * (f.bbox[3] - f.bbox[1])))
        out.append(PhotoFace(rel, person, face.embedding))
    return out


def video_faces(analyzer: FaceAnalyzer, media: Path, every: int = 3) -> np.ndarray:
    """Embeddings of every face on every ``every``-th frame of the clips [N, D]."""
    out = []
    for _, clip in CLIPS:
        cap = cv2.VideoCapture(str(media / clip))
        i = 0
        try:
            while True:
                ok, frame = cap.read()
                if not ok:
                    break
                if i % every == 0:
                    out += [f.embedding for f in analyzer.analyze(frame)]
                i += 1
        finally:
            cap.release()
    return np.stack(out).astype(np.float32)


def media_dirs() -> tuple[Path, Path]:
    models = Path(os.environ.get("STREAMREC_MODELS", "../shared/models"))
    media = Path(os.environ.get("STREAMREC_MEDIA", "../shared/media"))
    return models, media


# --- negatives -------------------------------------------------------------------------------


def enrol_known(analyzer: FaceAnalyzer, media: Path, gallery: Path) -> list[str]:
    """Enrol the Hamilton clip's known people and every other labelled person of the photos
    (more people, more chances of a false name); their names."""
    from streamrec.recognition import Recognition

    recognition = Recognition(analyzer)
    by_person: dict[str, list[np.ndarray]] = {}
    for rel, person in labelled_photos(media):
        try:
            vector = recognition.single_face(read_image(media / rel)).embedding
        except MediaError:  # no face, or several: not a usable photo
            continue
        by_person.setdefault(person, []).append(vector)
    with analyzer.open_gallery(gallery) as g:
        for person, vectors in by_person.items():
            g.add(person, np.stack(vectors), [f"photo {i}" for i in range(len(vectors))])
    return sorted(by_person)


def _run_of(clips: list[tuple[str, str]], clip: str) -> int:
    return next(i for i, (_, c) in enumerate(clips) if c == clip)


@dataclass
class NegativesRun:
    """False names on the stranger clips before and after rejecting the first ones."""

    threshold: float
    before: list[RunTrack]  # stranger tracks named someone, before
    rejected: list[RunTrack]  # the first ``rejections`` of them, rejected
    after: list[RunTrack]  # stranger tracks named someone, with the negatives
    known_before: list[RunTrack]  # Hamilton tracks named, before
    known_after: list[RunTrack]  # ... and with the negatives


def _named(tracks: list[RunTrack]) -> list[RunTrack]:
    return [t for t in tracks if t.name is not None]


def negatives_run(
    analyzer: FaceAnalyzer,
    media: Path,
    gallery: Path,
    threshold: float,
    rejections: int = 3,
    clips: list[tuple[str, str]] | None = None,
    spans: tuple[tuple[float | None, float | None], tuple[float | None, float | None]] = (
        (None, None),
        (None, None),
    ),
) -> NegativesRun:
    """Run the stranger clips at ``threshold``, reject the first false names (their track's
    face becomes a negative of the person it was given), run them again with the negatives.
    ``spans``: the part of each clip the rejections come from, and the part measured (the
    same by default; (first half, second half) for held-out figures, as fractions of each
    clip's duration)."""
    from streamrec.history.negatives import GuardedMatcher

    an = with_threshold(analyzer, threshold)
    clips = clips if clips is not None else STRANGER_CLIPS

    def strangers(
        span: tuple[float | None, float | None],
        wrap: Any = None,
        only: set[str] | None = None,
    ) -> list[RunTrack]:
        out: list[RunTrack] = []
        for run, (group, clip) in enumerate(clips):
            if only is not None and clip not in only:
                continue
            d = duration(media / clip)
            start = None if span[0] is None else span[0] * d
            end = None if span[1] is None else span[1] * d
            out += run_clip(an, media, group, clip, run, gallery, start, end, matcher_wrap=wrap)
        return out

    first = _named(strangers(spans[0]))
    before = first if spans[0] == spans[1] else _named(strangers(spans[1]))
    rejected = first[:rejections]
    negatives: dict[str, list[np.ndarray]] = {}
    for t in rejected:
        assert t.name is not None
        negatives.setdefault(t.name, []).append(t.mean)
    stacked = {name: np.stack(v) for name, v in negatives.items()}

    def guard(matcher: Any) -> Any:
        return GuardedMatcher(matcher, stacked)

    # negatives only ever lower a person's score: a clip where nobody was named before has
    # nobody named after, so only the clips with false names are run again
    named_clips = {clip for _, clip in clips for t in before if t.run == _run_of(clips, clip)}
    after = _named(strangers(spans[1], guard, named_clips))
    known_before = _named(run_clip(an, media, "hamilton", HAMILTON, 0, gallery))
    known_after = _named(run_clip(an, media, "hamilton", HAMILTON, 0, gallery, matcher_wrap=guard))
    return NegativesRun(threshold, before, rejected, after, known_before, known_after)


# --- search ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SearchQuery:
    """A still face whose person is known, and the runs it must not be found in."""

    what: str
    embedding: np.ndarray
    person: int  # a Truth person (union-find root)
    exclude_runs: frozenset[int]


def frame_at(path: Path, index: int) -> np.ndarray | None:
    cap = cv2.VideoCapture(str(path))
    try:
        cap.set(cv2.CAP_PROP_POS_FRAMES, index)
        ok, frame = cap.read()
    finally:
        cap.release()
    return frame if ok else None


def still_queries(analyzer: FaceAnalyzer, media: Path, truth: Truth) -> list[SearchQuery]:
    """Stills of people seen on video, with where their answer must come from:

    - the first frame of each clip's first visit: each face that is the start of a first-visit
      track of a person seen again after the cut; the first visit is left out of the search,
      so the person's only sightings are in the second visit (another moment of the clip);
    - every 40th frame of ``default.wmv``: the webcam man, whose other sightings are the other
      two webcam clips (another session, other lighting); ``default.wmv``'s runs are left out.
    """
    visits = truth.visits
    tracks = visits.tracks
    linked = {truth.person[i] for i, _ in truth.links}
    out: list[SearchQuery] = []
    for run, (group, clip, visit) in visits.runs.items():
        if visit != "A":
            continue
        frame = frame_at(media / clip, 0)
        if frame is None:
            continue
        starts = [i for i, t in enumerate(tracks) if t.run == run and t.first_frame == 0]
        for face in analyzer.analyze(frame):
            best = max(starts, key=lambda i: _iou(face.bbox, tracks[i].first_box), default=None)
            if best is None or _iou(face.bbox, tracks[best].first_box) < 0.5:
                continue
            person = truth.person[best]
            if person in linked and group not in ONE_PERSON:
                out.append(SearchQuery(f"{clip} frame 0", face.embedding, person, frozenset({run})))
    webcam_runs = [r for r, v in visits.runs.items() if v[1] == "webcam_clips/default.wmv"]
    man = next(truth.person[i] for i, t in enumerate(tracks) if t.group == "webcam")
    for index in range(0, 288, 40):
        frame = frame_at(media / "webcam_clips/default.wmv", index)
        faces = analyzer.analyze(frame) if frame is not None else []
        if len(faces) == 1:
            out.append(
                SearchQuery(
                    f"default.wmv frame {index}", faces[0].embedding, man, frozenset(webcam_runs)
                )
            )
    return out


def sightings_of(tracks: list[RunTrack]) -> list[Any]:
    """The sightings these tracks would leave (wall-clock times: run * 1000 s + media time)."""
    from streamrec.history.records import TrackSighting

    return [
        TrackSighting(
            t.camera,
            t.run * 1000.0 + t.first_time,
            t.run * 1000.0 + t.last_time,
            t.mean,
            t.crop,
            t.quality,
            t.label,
            t.score,
        )
        for t in tracks
    ]


def unknown_sightings(truth: Truth, per_track: bool) -> list[Any]:
    """The tracks as grouping sees them (``per_track``: each its own label, as if every track
    had been seen by a separate system), with times as :func:`sightings_of` gives them."""
    from streamrec.history.grouping import UnknownSighting

    out = []
    for i, t in enumerate(truth.visits.tracks):
        label = f"track-{i}" if per_track else t.unknown
        if label is not None:
            out.append(
                UnknownSighting(
                    i,
                    label,
                    t.camera,
                    t.run * 1000.0 + t.first_time,
                    t.run * 1000.0 + t.last_time,
                    t.mean,
                    t.quality,
                )
            )
    return out


def search_recall(
    store: Any, truth: Truth, queries: list[SearchQuery]
) -> tuple[int, dict[int, int]]:
    """Fill ``store`` (a HistoryStore) with every track's sighting and search each query:
    (queries whose top hit, outside its excluded runs, is its person; sighting id -> track)."""
    tracks = truth.visits.tracks
    ids = store.add(sightings_of(tracks))
    track_of = dict(zip(ids, range(len(tracks)), strict=True))
    right = 0
    for q in queries:
        hits = [
            h
            for h in store.search(q.embedding, k=len(tracks))
            if tracks[track_of[h.sighting]].run not in q.exclude_runs
        ]
        right += bool(hits) and truth.person[track_of[hits[0].sighting]] == q.person
    return right, track_of


def replay_negatives(
    matcher: Any,
    stranger_first: list[RunTrack],
    stranger_then: list[RunTrack],
    known: list[RunTrack],
    threshold: float,
    rejections: int = 3,
) -> tuple[int, int, int, int]:
    """The "not this person" rule replayed on tracks' final means (a track is named when its
    mean reaches ``threshold``; the pipeline's single-face rule is left out): rejections are
    the first false names of ``stranger_first``; returns (false names in ``stranger_then``
    before, after; ``known`` tracks whose name changed, of those named before)."""
    from streamrec.history.negatives import GuardedMatcher

    def names(m: Any, tracks: list[RunTrack]) -> list[str | None]:
        if not tracks:
            return []
        return [n for n, _ in m.match(np.stack([t.mean for t in tracks]), threshold)]

    first = [
        (t, n) for t, n in zip(stranger_first, names(matcher, stranger_first), strict=True) if n
    ]
    negs: dict[str, list[np.ndarray]] = {}
    for t, n in first[:rejections]:
        negs.setdefault(n, []).append(t.mean)
    guarded = GuardedMatcher(matcher, {n: np.stack(v) for n, v in negs.items()})
    before = sum(n is not None for n in names(matcher, stranger_then))
    after = sum(n is not None for n in names(guarded, stranger_then))
    kb, ka = names(matcher, known), names(guarded, known)
    return (
        before,
        after,
        sum(b is not None for b in kb),
        sum(b != a for b, a in zip(kb, ka, strict=True) if b),
    )
