"""Hard-video evaluation: streamrec's track-level naming against per-frame matching.

A labels file names clips and who is in each (``clip,people``: the people as gallery names
separated by ``;``, empty for a clip of nobody enrolled). For every clip, every frame is scored
twice: as streamrec shows it (the names drawn on the frame by ``streamrec run`` with the
config) and as plain per-frame matching shows it (the same models and threshold, the detector
on every frame, each face named by itself). A frame is *named right* when every name on it
belongs to the clip's people (and there is one), *named wrong* when any name does not, else
*unnamed*. Shares are of all the clip's frames; the overall row weighs clips by their frames.

streamrec runs as it always does (threads, batching, the gallery given); unknown people are not
written to the gallery.
"""

from __future__ import annotations

import copy
import csv
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .analyzer import FaceAnalyzer
from .config import Config
from .errors import StreamrecError
from .evaluation import EvalError
from .gallery.session import GallerySession
from .pipeline import Camera, Summary, build_pipeline
from .pipeline.build import source_options
from .pipeline.match import EventWriter
from .pipeline.stage import Stage
from .recognition import Recognition
from .records import Event, Frame, FrameWork, Work
from .sources import open_source

KINDS = ("right", "wrong", "unnamed")


@dataclass(frozen=True)
class LabelledClip:
    path: Path
    people: frozenset[str]  # gallery names of the people in it; empty: nobody enrolled


@dataclass(frozen=True)
class Shown:
    """One face as streamrec draws it on a frame."""

    track_id: int
    box: tuple[float, float, float, float]
    name: str | None  # the gallery name, None when unknown or not decided yet


@dataclass
class Counts:
    """Frames named right, named wrong and unnamed."""

    right: int = 0
    wrong: int = 0
    unnamed: int = 0

    @property
    def frames(self) -> int:
        return self.right + self.wrong + self.unnamed

    def add(self, names: set[str], people: frozenset[str]) -> None:
        if names - people:
            self.wrong += 1
        elif names:
            self.right += 1
        else:
            self.unnamed += 1

    def __iadd__(self, other: Counts) -> Counts:
        self.right += other.right
        self.wrong += other.wrong
        self.unnamed += other.unnamed
        return self

    def shares(self) -> dict[str, float]:
        n = max(self.frames, 1)
        return {k: getattr(self, k) / n for k in KINDS}


@dataclass
class ClipResult:
    clip: LabelledClip
    streamrec: Counts
    per_frame: Counts
    tracks: int
    embeddings: int
    detector_runs: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "clip": str(self.clip.path),
            "people": sorted(self.clip.people),
            "frames": self.streamrec.frames,
            "streamrec": self.streamrec.shares(),
            "per_frame": self.per_frame.shares(),
            "tracks": self.tracks,
            "embeddings": self.embeddings,
            "embeddings_per_track": round(self.embeddings / self.tracks, 2) if self.tracks else 0,
            "detector_runs": self.detector_runs,
        }


@dataclass
class VideoEvalResult:
    clips: list[ClipResult] = field(default_factory=list)

    def total(self, which: str) -> Counts:
        out = Counts()
        for c in self.clips:
            out += getattr(c, which)
        return out

    @property
    def report(self) -> dict[str, Any]:
        s, p = self.total("streamrec"), self.total("per_frame")
        return {
            "clips": [c.to_dict() for c in self.clips],
            "overall": {
                "frames": s.frames,
                "streamrec": s.shares(),
                "per_frame": p.shares(),
                "named_right_ratio": s.right / p.right if p.right else None,
            },
        }

    def format_table(self) -> str:
        head = f"{'clip':28} {'frames':>6}  {'streamrec right/wrong/unnamed':>30}  "
        lines = [head + f"{'per-frame right/wrong/unnamed':>30}  emb/track"]

        def row(label: str, frames: int, s: Counts, p: Counts, extra: str) -> str:
            def cells(c: Counts) -> str:
                return " ".join(f"{v:>9.1%}" for v in c.shares().values())

            return f"{label[-28:]:28} {frames:>6}  {cells(s):>30}  {cells(p):>30}  {extra}"

        for c in self.clips:
            per_track = f"{c.embeddings / c.tracks:.1f}" if c.tracks else "-"
            lines.append(
                row(c.clip.path.name, c.streamrec.frames, c.streamrec, c.per_frame, per_track)
            )
        s, p = self.total("streamrec"), self.total("per_frame")
        lines.append(row("overall", s.frames, s, p, ""))
        if p.right:
            lines.append(
                f"streamrec names {s.right / p.right:.2f}x the frames per-frame matching "
                "names right"
            )
        return "\n".join(lines)


def read_labels(path: Path) -> list[LabelledClip]:
    """``clip,people`` rows (a header first; people separated by ``;``); clip paths are relative
    to the labels file's folder."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise EvalError(f"cannot read labels file {path}: {exc}") from None
    rows = [r for r in csv.reader(text.splitlines()) if r and any(c.strip() for c in r)]
    header = [h.strip().lower() for h in rows[0]] if rows else []
    if header[:2] != ["clip", "people"]:
        raise EvalError(
            f"{path}:1: the header must be 'clip,people' (a clip, then the gallery names of the "
            "people in it separated by ';', empty for nobody enrolled)"
        )
    clips = []
    for no, row in enumerate(rows[1:], start=2):
        if len(row) > 2:
            raise EvalError(
                f"{path}:{no}: expected 'clip,people', got {len(row)} columns "
                "(separate people with ';')"
            )
        clip = path.parent / row[0].strip()
        if not clip.is_file():
            raise EvalError(f"{path}:{no}: clip not found: {clip}")
        people = frozenset(p.strip() for p in (row[1] if len(row) > 1 else "").split(";"))
        clips.append(LabelledClip(clip, people - {""}))
    if not clips:
        raise EvalError(f"labels file {path} lists no clip")
    return clips


class FrameTap(Stage):
    """A tap stage: hands every finished frame's shown faces to ``on_frame``."""

    name = "tap"

    def __init__(self, on_frame: Callable[[int, list[Shown]], None]) -> None:
        self.on_frame = on_frame

    def process(self, work: Work) -> None:
        if isinstance(work, FrameWork):
            shown = []
            for t in work.tracks:
                label = work.labels.get(t.track_id)
                name = label.text if label is not None and label.known else None
                box = tuple(float(v) for v in t.box)
                shown.append(Shown(t.track_id, box, name))  # type: ignore[arg-type]
            self.on_frame(work.frame.index, shown)


class _NoEvents:
    def write(self, event: Event) -> None:
        pass


def eval_config(cfg: Config) -> Config:
    """``cfg`` for evaluation runs: unknown people are grouped but never written anywhere."""
    cfg = copy.deepcopy(cfg)
    cfg.unknowns.persist = False
    cfg.unknowns.crops_dir = None
    return cfg


def run_streamrec(
    cfg: Config,
    recognition: Recognition,
    gallery: GallerySession,
    clip: Path,
    on_frame: Callable[[int, list[Shown]], None],
    events: EventWriter | None = None,
) -> Summary:
    """``streamrec run`` on ``clip`` (no video output); every frame's shown faces to
    ``on_frame``, the events to ``events``."""
    with open_source(str(clip), source_options(cfg)) as source:
        camera = Camera(source.name, source, cfg.detector.interval)
        writer = events if events is not None else _NoEvents()
        pipeline = build_pipeline(
            cfg, [camera], writer, recognition, gallery, taps=[FrameTap(on_frame)]
        )
        return pipeline.run()


def per_frame_names(cfg: Config, recognition: Recognition, clip: Path) -> list[set[str]]:
    """The names per-frame matching gives each frame of ``clip`` (read as streamrec reads it):
    every face named by itself."""
    out = []
    with open_source(str(clip), source_options(cfg)) as source:
        for item in source:
            if isinstance(item, Frame):
                named = recognition.identify(recognition.faces(item.image))
                out.append({name for name, _ in named if name})
    return out


FrameCallback = Callable[[LabelledClip, int, list[Shown]], None]


def evaluate_clip(
    cfg: Config,
    recognition: Recognition,
    gallery: GallerySession,
    clip: LabelledClip,
    on_frame: FrameCallback | None = None,
) -> ClipResult:
    """Score one clip; ``on_frame`` also sees what streamrec showed on every frame."""
    names: dict[int, set[str]] = {}

    def seen(index: int, shown: list[Shown]) -> None:
        names[index] = {s.name for s in shown if s.name}
        if on_frame is not None:
            on_frame(clip, index, shown)

    summary = run_streamrec(cfg, recognition, gallery, clip.path, seen)
    cam = next(iter(summary.cameras.values()))
    streamrec = Counts()
    for index in sorted(names):
        streamrec.add(names[index], clip.people)
    per_frame = Counts()
    for found in per_frame_names(cfg, recognition, clip.path):
        per_frame.add(found, clip.people)
    return ClipResult(clip, streamrec, per_frame, cam.tracks, cam.embeddings, cam.detector_runs)


def evaluate_videos(
    cfg: Config,
    analyzer: FaceAnalyzer,
    clips: list[LabelledClip],
    on_frame: FrameCallback | None = None,
) -> VideoEvalResult:
    """Every clip (see :func:`read_labels`), against the gallery of ``cfg``."""
    if not cfg.gallery:
        raise StreamrecError("eval --video needs the gallery of the people: add --gallery FILE")
    cfg = eval_config(cfg)
    result = VideoEvalResult()
    with GallerySession(cfg, analyzer.recognizer) as gallery:
        recognition = Recognition(analyzer, gallery.gallery)
        known = set(recognition.matcher().names)
        for clip in clips:
            unknown = sorted(clip.people - known)
            if unknown:
                raise EvalError(
                    f"{clip.path.name}: not in the gallery {cfg.gallery}: {', '.join(unknown)} "
                    "(the people column takes gallery names)"
                )
            result.clips.append(evaluate_clip(cfg, recognition, gallery, clip, on_frame))
    return result
