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
from streamrec.recognition import NewSample, Recognition

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


def test_a_change_through_the_service_reaches_the_pipeline_in_one_hop(tmp_path: Path) -> None:
    """One change mechanism (issue 23): an enrolment or an erasure made through the process's
    Recognition service is in the running pipeline's matcher when the call returns (no poll:
    ``gallery_poll`` is an hour); a write by another process is taken in by the revision check,
    the safety net the pipeline runs every ``gallery_poll`` seconds."""
    path = tmp_path / "gallery.db"
    Gallery(path, REC).close()
    cfg = load_config(None, {"gallery": str(path)})
    crop = np.zeros((112, 112, 3), np.uint8)
    with GallerySession(cfg, REC) as session:
        assert session.gallery is not None
        recognition = Recognition(FakeModels(), session.gallery)
        camera = Camera("cam", FakeSource("cam", [], 1), interval=5)  # type: ignore[arg-type]
        pipeline = build_pipeline(
            cfg, [camera], ListWriter(), recognition, session, gallery_poll=3600.0
        )
        matched = lambda: set(pipeline._match.matcher.names)  # noqa: E731
        recognition.enrol("Bob", [NewSample(_unit(0, 0, 1)[0], crop, None, "bob.jpg")])
        assert matched() == {"Bob"}
        recognition.remove("Bob")
        assert matched() == set()
        other = Gallery(path, REC)  # another process (the CLI) enrols Carol
        other.add("Carol", _unit(1, 0, 0))
        other.close()
        assert matched() == set()  # not pushed: only the revision check finds it
        assert recognition.refresh()
        assert matched() == {"Carol"}
