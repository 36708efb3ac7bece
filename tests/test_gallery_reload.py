"""A running pipeline follows its gallery quietly: a revision that changes who is matched (or
erases a label) is one INFO line; the run's own unknown people, which move the revision about
once a second, are DEBUG."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import SMALL, lin_gallery, streamrec
from fakes import FakeModels, FakeSource, ListWriter

from streamrec import load_config
from streamrec.gallery.session import GallerySession
from streamrec.gallery.store import Gallery, Recognizer
from streamrec.pipeline import Camera, build_pipeline
from streamrec.recognition import Recognition

REC = Recognizer("fake.onnx", "0" * 64, 3)


def _unit(*v: float) -> np.ndarray:
    a = np.asarray([v], np.float32)
    return a / np.linalg.norm(a)


def test_only_a_reload_that_changes_something_is_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "gallery.db"
    store = Gallery(path, REC)
    store.add("Alice", _unit(1, 0, 0))
    cfg = load_config(None, {"gallery": str(path)})
    with GallerySession(cfg, REC) as session:
        camera = Camera("cam", FakeSource("cam", [], 1), interval=5)  # type: ignore[arg-type]
        recognition = Recognition(FakeModels(), session.gallery)
        build_pipeline(cfg, [camera], ListWriter(), recognition, session)  # it subscribes

        def reload() -> list[int]:
            caplog.clear()
            with caplog.at_level(logging.DEBUG, logger="streamrec.pipeline"):
                assert recognition.refresh()
            return [r.levelno for r in caplog.records if "gallery revision" in r.getMessage()]

        store.add_unknown("unknown-1", _unit(0, 1, 0))  # as a run writes its strangers
        assert reload() == [logging.DEBUG]
        store.add("Bob", _unit(0, 0, 1))
        assert reload() == [logging.INFO]
        store.add("Bob", _unit(0, 0.1, 1))  # another photo of him: matched differently
        assert reload() == [logging.INFO]
        store.remove("unknown-1")  # a label erased
        assert reload() == [logging.INFO]
    store.close()


def test_a_run_with_a_gallery_logs_no_revisions(media_dir: Path, tmp_path: Path) -> None:
    """The run writes its unknown people to the gallery, which moves its revision: nothing of
    that reaches the log."""
    gallery = lin_gallery(tmp_path / "gallery.db", media_dir)
    clip = media_dir / "face_recognition/short_hamilton_clip.mp4"
    proc = streamrec("run", str(clip), "--gallery", str(gallery), "--no-progress", *SMALL)
    listed = streamrec("unknowns", "list", "--gallery", str(gallery), "--json", *SMALL).stdout
    assert json.loads(listed), "strangers were seen and written"
    assert "gallery revision" not in proc.stderr, proc.stderr
