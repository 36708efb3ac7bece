"""``gallery add NAME --from-video``: enrol the man of one clip, recognise him in two others."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest
from cli_helpers import SMALL, streamrec

from streamrec.media import IMAGE_SUFFIXES, read_image
from streamrec.records import Frame
from streamrec.sources import open_source


@pytest.fixture(scope="module")
def man_gallery(models_dir: Path, media_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    db = tmp_path_factory.mktemp("video") / "g.db"
    clip = media_dir / "webcam_clips/default.wmv"
    out = streamrec(
        "gallery", "add", "man", "--from-video", str(clip), "--gallery", str(db), *SMALL
    ).stdout
    picked = re.search(r"man: picked (\d+) face\(s\) from frames ([\d, ]+) of", out)
    assert picked, out
    frames = [int(f) for f in picked.group(2).split(", ")]
    assert int(picked.group(1)) == len(frames) == 8  # enrollment.video_faces
    assert frames == sorted(set(frames))
    assert "man: enrolled 8 photo(s)" in out
    with sqlite3.connect(db) as conn:
        sources = sorted(s for (s,) in conn.execute("SELECT source FROM embeddings"))
    assert sources == sorted(f"{clip}#frame={f}" for f in frames)
    return db


@pytest.mark.parametrize("clip", ["changeLighting.wmv", "Video_14.wmv"])
def test_man_is_recognised_in_other_clips(analyzer, man_gallery, media_dir: Path, clip: str):
    with analyzer.open_gallery(man_gallery) as gallery:
        matcher = gallery.matcher()
    with_face = named = 0
    with open_source(str(media_dir / "webcam_clips" / clip)) as source:
        for item in source:
            if not isinstance(item, Frame) or item.index % 5:
                continue
            faces = analyzer.analyze(item.image, matcher)
            if faces:
                with_face += 1
                named += any(f.name == "man" for f in faces)
    assert with_face >= 10, with_face
    assert named / with_face >= 0.7, (named, with_face)


def test_nobody_else_is_taken_for_him(analyzer, man_gallery, media_dir: Path) -> None:
    with analyzer.open_gallery(man_gallery) as gallery:
        matcher = gallery.matcher()
    folder = media_dir / "face_recognition"
    photos = sorted(
        p
        for d in (folder, folder / "knn_examples/test")
        for p in d.iterdir()
        if p.suffix.lower() in IMAGE_SUFFIXES
    )
    assert len(photos) > 10
    faces = 0
    for photo in photos:
        found = analyzer.analyze(read_image(photo), matcher)
        faces += len(found)
        assert all(f.name is None for f in found), (photo, [(f.name, f.score) for f in found])
    assert faces > 10
