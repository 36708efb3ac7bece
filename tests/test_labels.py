"""Labels: one label per face on a frame, and the same people the same labels in a later run.

On fake models (synthetic scenes) and on the real models and media: the Hamilton clip (far
audience faces whose embeddings are nearly alike) and a two-visit clip cut from
``multi_face.avi`` by the test.
"""

from __future__ import annotations

import subprocess
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import lin_gallery
from fakes import BLUE, GREEN, RED, Face, FakeModels, FakeSource, ListWriter, recognition

from streamrec import load_config
from streamrec.config import Config
from streamrec.gallery.session import GallerySession
from streamrec.gallery.store import Gallery, Recognizer
from streamrec.geometry import iou_matrix
from streamrec.pipeline import Camera, build_pipeline
from streamrec.pipeline.build import source_options
from streamrec.pipeline.stage import Stage
from streamrec.recognition import Recognition
from streamrec.records import FrameWork, Work
from streamrec.sources import open_source

#: a face the fake embedder finds at cosine 0.97 from RED: another person who looks alike
ALIKE = (0, 60, 255)
#: per frame: (track id, box, label text) of every track shown
Shown = dict[int, list[tuple[int, np.ndarray, str | None]]]


class LabelTap(Stage):
    """Keeps what every finished frame shows."""

    name = "labels"

    def __init__(self) -> None:
        self.frames: Shown = {}

    def process(self, work: Work) -> None:
        if isinstance(work, FrameWork):
            self.frames[work.frame.index] = [
                (
                    t.track_id,
                    t.box.copy(),
                    label.text if (label := work.labels.get(t.track_id)) else None,
                )
                for t in work.tracks
            ]


def shared_labels(frames: Shown) -> dict[int, list[str]]:
    """Frames on which a label is shown on more than one track."""
    out = {}
    for index, shown in frames.items():
        counts = Counter(text for _, _, text in shown if text is not None)
        if twice := sorted(text for text, n in counts.items() if n > 1):
            out[index] = twice
    return out


def track_labels(events: list) -> dict[int, str | None]:
    """Each track's final name or unknown label, from its track_end."""
    return {
        e.track_id: e.fields["name"] or e.fields["unknown"]
        for e in events
        if e.event == "track_end"
    }


# -- fakes ---------------------------------------------------------------------------------

#: A face that is lost for two detection rounds (frames 10-19) and comes back where it was,
#: and a face that looks alike appearing next to it meanwhile (as if it were A moving fast)
LOST_AND_BACK = [
    Face(RED, 20, 60, frames=range(0, 10)),
    Face(RED, 20, 60, frames=range(20, 60)),
    Face(ALIKE, 110, 60, frames=range(10, 60)),
]


def run_fakes(
    faces: list[Face], frames: int, people: dict | None = None, gallery: str | None = None
) -> tuple[Shown, list]:
    cfg = load_config(None, {"gallery": gallery})
    cam = Camera("cam", FakeSource("cam", faces, frames), interval=5)
    writer, tap = ListWriter(), LabelTap()
    session = GallerySession(cfg, Recognizer("fake", "0" * 64, 3)) if gallery else None
    try:
        assert not (gallery and people), "the people of a gallery are the gallery's"
        rec = (
            Recognition(FakeModels(), session.gallery)
            if session is not None
            else recognition(people=people)
        )
        build_pipeline(cfg, [cam], writer, rec, session, taps=[tap]).run()
    finally:
        if session is not None:
            session.close()
    return tap.frames, writer.events


@pytest.mark.parametrize("people", [None, {"alice": RED}], ids=["unknown", "named"])
def test_fakes_a_face_back_from_lost_never_shares_its_label(people: dict | None) -> None:
    frames, events = run_fakes(LOST_AND_BACK, 60, people)
    assert shared_labels(frames) == {}
    labels = track_labels(events)
    assert len(labels) == 2  # face A kept its track; the face alike has its own
    first, second = sorted(labels)
    shown = {text for _, _, text in frames[55]}
    if people:
        # alice is on screen already: the face alike is not named alice beside her
        assert labels[first] == "alice" and shown == {"alice", None}
    else:
        assert labels[first] != labels[second] and None not in shown


def test_fakes_a_face_lost_for_good_is_continued_with_its_label() -> None:
    """The same scene without face A's return: the newer track is A moved on, and carries its
    label as soon as A's track has ended."""
    faces = [LOST_AND_BACK[0], Face(RED, 110, 60, frames=range(10, 60))]
    frames, events = run_fakes(faces, 60)
    ends = {e.track_id: e.fields for e in events if e.event == "track_end"}
    assert len(ends) == 2
    first, second = sorted(ends)
    assert ends[second]["continues"] == first
    assert ends[second]["unknown"] == ends[first]["unknown"] == "unknown-1"
    assert shared_labels(frames) == {}


def fake_gallery(path: Path) -> str:
    with Gallery(path, Recognizer("fake", "0" * 64, 3)):
        pass
    return str(path)


def test_fakes_a_later_visit_gets_the_labels_of_the_first(tmp_path: Path) -> None:
    """Three strangers, then the same three elsewhere on the frame and in another order, in a
    second run against what the first wrote: the same labels, never one label on two."""
    gallery = fake_gallery(tmp_path / "g.db")
    first_visit = [
        Face(RED, 10, 20, frames=range(0, 40)),
        Face(GREEN, 120, 20, frames=range(10, 40)),
        Face(BLUE, 230, 20, frames=range(20, 40)),
    ]
    second_visit = [
        Face(BLUE, 10, 150, frames=range(0, 40)),
        Face(RED, 120, 150, frames=range(5, 40)),
        Face(GREEN, 230, 150, frames=range(10, 40)),
    ]
    colour_of: dict[str, set] = {}
    for visit in (first_visit, second_visit):
        frames, events = run_fakes(visit, 40, gallery=gallery)
        assert shared_labels(frames) == {}
        labels = track_labels(events)
        for shown in frames.values():
            for track_id, box, _ in shown:
                (face,) = [f for f in visit if abs(f.x - box[0]) < 5 and abs(f.y - box[1]) < 5]
                colour_of.setdefault(labels[track_id], set()).add(face.color)
    assert sorted(colour_of) == ["unknown-1", "unknown-2", "unknown-3"]
    assert all(len(colours) == 1 for colours in colour_of.values()), colour_of


# -- real models and media -----------------------------------------------------------------

HAMILTON = "face_recognition/short_hamilton_clip.mp4"
#: a camera far away (as in test_hard_video): the clip scaled down into a 960x540 frame
FAR = "scale=256:192:flags=area,pad=960:540:40:40:color=0x303030"


def run_clip(cfg: Config, clip: Path, analyzer) -> tuple[Shown, list]:  # type: ignore[no-untyped-def]
    writer, tap = ListWriter(), LabelTap()
    with (
        GallerySession(cfg, analyzer.recognizer) as gallery,
        open_source(str(clip), source_options(cfg)) as source,
    ):
        cam = Camera(source.name, source, cfg.detector.interval)
        recognition = Recognition(analyzer, gallery.gallery)
        build_pipeline(cfg, [cam], writer, recognition, gallery, taps=[tap]).run()
    return tap.frames, writer.events


def with_gallery(cfg: Config, gallery: Path, persist: bool = True) -> Config:
    return replace(cfg, gallery=str(gallery), unknowns=replace(cfg.unknowns, persist=persist))


@pytest.fixture(scope="module")
def hamilton_twice(
    analyzer, small_config: Config, media_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> list[tuple[Shown, list]]:
    """The Hamilton clip run twice against one gallery (Lin-Manuel Miranda enrolled): the
    second run starts from the unknown people the first wrote. Most of its unknown faces are
    the far audience's, below the quality gate of unknown labels (``unknowns.min_quality``):
    the gate is off here, so that the labels of many alike faces are what is tested."""
    gallery = lin_gallery(tmp_path_factory.mktemp("hamilton") / "gallery.db", media_dir)
    cfg = with_gallery(small_config, gallery)
    cfg = replace(cfg, unknowns=replace(cfg.unknowns, min_quality=0.0))
    return [run_clip(cfg, media_dir / HAMILTON, analyzer) for _ in range(2)]


def test_hamilton_no_label_twice_on_a_frame(hamilton_twice) -> None:
    """Far audience faces whose embeddings are alike (cosine ~0.9): on every frame each label
    shown is on one face (named or unknown)."""
    for frames, _ in hamilton_twice:
        assert len(frames) == 275
        assert shared_labels(frames) == {}


def test_hamilton_second_run_gives_every_track_its_label(hamilton_twice) -> None:
    first, second = (track_labels(events) for _, events in hamilton_twice)
    unknown = [t for t, label in first.items() if label and label.startswith("unknown-")]
    assert len(unknown) >= 10
    assert second == first


def cut(source: Path, target: Path, start: int, end: int | None, scale: str | None) -> Path:
    trim = f"trim=start_frame={start}" + (f":end_frame={end}" if end else "")
    chain = ",".join(f for f in (scale, trim, "setpts=PTS-STARTPTS", "format=yuv420p") if f)
    crf = "32" if scale else "18"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-i", str(source), "-vf", chain, "-an",
         "-c:v", "libx264", "-crf", crf, "-preset", "veryfast", str(target)],
        check=True,
    )  # fmt: skip
    return target


@pytest.mark.parametrize("scale", [None, FAR], ids=["near", "far"])
def test_a_second_visit_gets_the_labels_of_the_first(
    analyzer, small_config: Config, media_dir: Path, tmp_path: Path, scale: str | None
) -> None:
    """``multi_face.avi`` (three people, near or as a far camera sees them) cut in two and
    processed as two runs: each person gets in the second visit the label of the first, and no
    label is on two people. Who is who comes from one run over the whole clip (its tracks go
    through the cut)."""
    clip = media_dir / "webcam_clips/multi_face.avi"
    middle = 351
    whole = cut(clip, tmp_path / "whole.mp4", 0, None, scale)
    visits = [
        cut(clip, tmp_path / "first.mp4", 0, middle, scale),
        cut(clip, tmp_path / "second.mp4", middle, None, scale),
    ]
    gallery = lin_gallery(tmp_path / "gallery.db", media_dir)
    reference, _ = run_clip(with_gallery(small_config, gallery, False), whole, analyzer)
    # (person in the whole run, visit, label) of every face shown with a label
    seen: Counter[tuple[str, int, str]] = Counter()
    for visit, path in enumerate(visits):
        frames, _ = run_clip(with_gallery(small_config, gallery), path, analyzer)
        assert shared_labels(frames) == {}
        for index, shown in frames.items():
            labelled = [(box, text) for _, box, text in shown if text]
            people = [(box, text) for _, box, text in reference[index + visit * middle] if text]
            if not labelled or not people:
                continue
            iou = iou_matrix(np.stack([b for b, _ in labelled]), np.stack([b for b, _ in people]))
            for (_, text), row in zip(labelled, iou, strict=True):
                if row.max() >= 0.5:
                    seen[(people[int(row.argmax())][1], visit, text)] += 1
    persons = {person for person, _, _ in seen}
    assert len(persons) == 3, seen
    for person in persons:
        first = {text for p, visit, text in seen if p == person and visit == 0}
        second = {text for p, visit, text in seen if p == person and visit == 1}
        assert len(first) == 1 and second == first, (person, seen)
    people_per_label = Counter(text for _, text in {(p, text) for p, _, text in seen})
    assert max(people_per_label.values()) == 1, seen
