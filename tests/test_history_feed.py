"""The face history in the running product (issue 25 phase B) on fake models: every track
leaves a sighting, the gallery's namings reach the past once, "not this person" guards the
matcher, an erasure removes everything, and the history config section."""

from __future__ import annotations

import stat
from pathlib import Path

import numpy as np
import pytest
from fakes import BLUE, EMBEDDING, GREEN, RED, Face, FakeModels, FakeSource, ListWriter, recognition

from streamrec import load_config
from streamrec.errors import ConfigError
from streamrec.gallery.store import Gallery, Recognizer
from streamrec.history.feed import GuardedPeople, HistoryFeed, existing_history, history_feed
from streamrec.history.negatives import GuardedMatcher, NegativeStore
from streamrec.history.store import HistoryStore, history_folder
from streamrec.history.writer import HistoryWriter
from streamrec.pipeline import Camera, build_pipeline
from streamrec.privacy import erase_files
from streamrec.recognition import Recognition
from streamrec.records import TrackSighting
from streamrec.sinks import FanoutSink

FAKE = Recognizer("fake", "fake-sha", 3)
#: a stranger whose fake face is close to RED (cosine 0.89 > the fake threshold 0.5)
CRIMSON = (0, 120, 255)


def run(faces: list[Face], sink: object, rec: Recognition) -> list:
    """One fake camera through the pipeline; the events it wrote."""
    cfg = load_config(None, {"gallery": None})
    writer = ListWriter()
    cam = Camera("cam", FakeSource("cam", faces, 40), interval=5)  # type: ignore[arg-type]
    sinks = FanoutSink([sink, writer]) if sink is not None else writer
    build_pipeline(cfg, [cam], sinks, rec, None, []).run()
    return writer.events


def test_track_end_carries_the_sighting() -> None:
    events = run([Face(RED, 20, 60), Face(GREEN, 200, 60)], None, recognition(None, {"alice": RED}))
    ends = [e for e in events if e.event == "track_end"]
    assert len(ends) == 2
    by_label = {e.sighting.label: e.sighting for e in ends}
    assert set(by_label) == {"alice", "unknown-1"}
    alice, stranger = by_label["alice"], by_label["unknown-1"]
    assert isinstance(alice, TrackSighting) and alice.camera == "cam"
    assert np.allclose(alice.embedding, [0, 0, 1], atol=0.05)
    assert abs(float(np.linalg.norm(stranger.embedding)) - 1) < 1e-5
    assert alice.crop is not None and alice.crop.shape == (112, 112, 3)
    assert alice.first_seen <= alice.last_seen and alice.quality > 0
    assert alice.score is not None and alice.score > 0.9
    assert stranger.score is None  # an unknown label has no score
    assert "sighting" not in ends[0].to_dict()


def test_feed_stores_every_track_privately_and_flushes_on_close(tmp_path: Path) -> None:
    folder = history_folder(tmp_path / "faces.db")
    feed = HistoryFeed(HistoryStore(folder, FAKE), None)
    run([Face(RED, 20, 60), Face(BLUE, 200, 60)], feed, recognition(None, {"alice": RED}))
    feed.close()
    feed.close()  # idempotent (the fan-out and the run's exit stack both close it)
    with HistoryStore(folder, FAKE) as store:
        seen = store.sightings()
        assert sorted(s.label or "" for s in seen) == ["alice", "unknown-1"]
        assert all(s.crop for s in seen)
        crop = store.crop_path(seen[0].id)
        assert crop is not None and stat.S_IMODE(crop.stat().st_mode) == 0o600
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE((folder / "history.db").stat().st_mode) == 0o600


def _gallery_with_unknown(tmp_path: Path, label: str, vector: list[float]) -> Gallery:
    gallery = Gallery(tmp_path / "faces.db", FAKE)
    assert gallery.add_unknown(label, np.asarray([vector], np.float32))
    return gallery


def _sighting(label: str | None, vector: list[float], t: float = 1000.0) -> TrackSighting:
    crop = np.full((112, 112, 3), 128, np.uint8)
    v = np.asarray(vector, np.float32)
    return TrackSighting("cam", t, t + 5, v / np.linalg.norm(v), crop, 0.8, label, None)


def test_naming_an_unknown_names_its_past_once_with_one_retroactive_event(
    tmp_path: Path,
) -> None:
    gallery = _gallery_with_unknown(tmp_path, "unknown-4", [0, 0, 1])
    store = HistoryStore(history_folder(gallery.path), FAKE)
    store.add([_sighting("unknown-4", [0, 0.1, 1], t) for t in (100.0, 200.0, 300.0)])
    feed = HistoryFeed(store, gallery, poll=3600)
    sent: list = []
    feed.emit = sent.append
    feed.follow()
    assert sent == []  # nothing named yet
    gallery.promote("unknown-4", "Jane")
    feed.follow()
    feed.follow()  # once per identity, not per call nor per sighting
    assert len(sent) == 1
    event = sent[0].to_dict()
    assert event["event"] == "identified" and event["retroactive"] is True
    assert event["name"] == "Jane" and event["previous"] == "unknown-4"
    assert event["sightings"] == 3 and event["first_seen"] == 100.0
    assert event["camera"] == "cam" and event["cameras"] == ["cam"]
    assert [s.label for s in store.sightings()] == ["Jane"] * 3
    # a late sighting of a running pipeline still carrying the old label lands on her
    store.add([_sighting("unknown-4", [0, 0, 1], 400.0)])
    assert len(store.sightings("Jane")) == 4
    # a rename follows too
    gallery.rename("Jane", "Jane Doe")
    feed.follow()
    assert [e.fields["name"] for e in sent] == ["Jane", "Jane Doe"]
    feed.close()
    gallery.close()


def test_rejecting_a_false_name_guards_the_recognition_service(tmp_path: Path) -> None:
    gallery = Gallery(tmp_path / "faces.db", FAKE)
    gallery.add("alice", np.asarray([EMBEDDING[RED]], np.float32), ["photo"])
    store = HistoryStore(history_folder(gallery.path), FAKE)
    feed = HistoryFeed(store, gallery, poll=3600)
    people = GuardedPeople(gallery, store)
    rec = Recognition(FakeModels(), gallery, people=people)
    scene = [Face(CRIMSON, 20, 60)]
    first = run(scene, feed, rec)
    named = [e.fields["name"] for e in first if e.event == "identified"]
    assert named == ["alice"], "the stranger looks enough like alice to be named her"
    feed.writer.close()  # written
    feed.writer = HistoryWriter(store)
    (wrong,) = store.sightings("alice")
    assert NegativeStore(store).reject(wrong.id) == "alice"
    assert store.sighting(wrong.id).label is None  # type: ignore[union-attr]
    # the running service takes it in through its change mechanism (the gallery's revision)
    assert not isinstance(rec.matcher(), GuardedMatcher)
    gallery.touch()
    assert isinstance(rec.matcher(), GuardedMatcher)
    again = run(scene, feed, rec)
    assert [e for e in again if e.event == "identified"] == []
    # alice herself is still named (no loss of correct names)
    herself = run([Face(RED, 20, 60)], feed, rec)
    assert [e.fields["name"] for e in herself if e.event == "identified"] == ["alice"]
    feed.close()
    gallery.close()


def test_erase_removes_sightings_crops_and_negatives_of_every_label(tmp_path: Path) -> None:
    gallery = _gallery_with_unknown(tmp_path, "unknown-2", [1, 0, 0])
    store = HistoryStore(history_folder(gallery.path), FAKE)
    ids = store.add(
        [_sighting("unknown-2", [1, 0, 0]), _sighting("Bob", [0, 1, 0]), _sighting(None, [1, 1, 0])]
    )
    NegativeStore(store).add("unknown-2", np.asarray([1, 0.2, 0], np.float32))
    gallery.promote("unknown-2", "Ann")
    HistoryFeed(store, gallery, poll=3600).follow()  # her past is Ann's now
    crop = store.crop_path(ids[0])
    assert crop is not None and crop.exists()
    store.close()
    removed = gallery.remove("Ann")
    gallery.close()
    cfg = load_config(None, {"gallery": str(gallery.path)})
    report = erase_files(cfg, list(removed.labels), [])
    assert any(
        "face history: removed 1 sighting(s), 1 crop(s) and 1 rejected" in line
        for line in report.lines
    ), report.lines
    with existing_history(cfg) as after:  # type: ignore[union-attr]
        assert sorted(s.label or "-" for s in after.sightings()) == ["-", "Bob"]
        assert NegativeStore(after).all() == {}
        assert after.sightings("unknown-2") == [] and after.sightings("Ann") == []
    assert not crop.exists()


def test_history_section_is_validated_and_needs_a_gallery(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(None, {"history.retention_days": -1})
    assert "history.retention_days" in str(err.value)
    bad = tmp_path / "bad.yaml"
    bad.write_text("history:\n  retension_days: 3\n")
    with pytest.raises(ConfigError) as err:
        load_config(str(bad))
    message = str(err.value)
    assert "bad.yaml" in message and "retension_days" in message and "retention_days" in message
    assert history_feed(load_config(None, {"gallery": None}), FAKE, None, 0.5) == []
    off = load_config(None, {"gallery": str(tmp_path / "g.db"), "history.enabled": False})
    assert history_feed(off, FAKE, None, 0.5) == []
    on = load_config(None, {"gallery": str(tmp_path / "g.db"), "history.max_sightings": 5})
    (feed,) = history_feed(on, FAKE, None, 0.5)
    assert feed.store.policy.max_sightings == 5 and feed.store.policy.retention_days == 30
    feed.close()


def test_retention_is_applied_at_start(tmp_path: Path) -> None:
    folder = history_folder(tmp_path / "faces.db")
    with HistoryStore(folder, FAKE) as store:
        store.add([_sighting("Old", [1, 0, 0], 1000.0), _sighting("New", [0, 1, 0], 4e9)])
    cfg = load_config(None, {"gallery": str(tmp_path / "faces.db")})
    (feed,) = history_feed(cfg, FAKE, None, 0.5)
    feed.close()  # the writer purges when it starts; closing waits for it
    with HistoryStore(folder, FAKE) as store:
        assert [s.label for s in store.sightings()] == ["New"]


def test_enrolling_a_person_names_their_unknown_past(tmp_path: Path) -> None:
    gallery = Gallery(tmp_path / "faces.db", FAKE)
    store = HistoryStore(history_folder(gallery.path), FAKE)
    store.add([_sighting("unknown-5", [0, 0.2, 1], t) for t in (10.0, 20.0)])
    store.add([_sighting("unknown-6", [1, 0, 0])])  # someone else
    feed = HistoryFeed(store, gallery, threshold=0.5, poll=3600)
    sent: list = []
    feed.emit = sent.append
    feed.follow()  # the people at start: nobody new
    gallery.add("alice", np.asarray([EMBEDDING[RED]], np.float32), ["photo"])
    feed.follow()
    assert [(e.fields["name"], e.fields["previous"], e.fields["sightings"]) for e in sent] == [
        ("alice", "unknown-5", 2)
    ]
    assert [s.label for s in store.sightings()] == ["unknown-6", "alice", "alice"]
    feed.close()
    gallery.close()

