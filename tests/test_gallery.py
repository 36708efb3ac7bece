"""Gallery: sub-centers, strays, schema migration, unconfirmed (unknown) people and their CLI."""

from __future__ import annotations

import json
import math
import sqlite3
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from cli_helpers import SMALL, assert_one_clear_line, streamrec
from face_helpers import single_face

from streamrec.enrolment import enroll_images
from streamrec.errors import GalleryError
from streamrec.gallery.matcher import Matcher
from streamrec.gallery.schema import SCHEMA_VERSION
from streamrec.gallery.store import (
    Gallery,
    GalleryPolicy,
    NameConflict,
    Recognizer,
)
from streamrec.media import read_image
from streamrec.recognition import Recognition

FAKE = Recognizer("fake.onnx", "f" * 64, 8)

OBAMA = ["obama.jpg", "obama2.jpg", "obama3.jpg", "obama-480p.jpg"]


def unit(*angles_deg: float) -> np.ndarray:
    """Unit vectors in the plane of the first two axes of an 8-d space, at these angles."""
    out = np.zeros((len(angles_deg), FAKE.dim), np.float32)
    for i, a in enumerate(angles_deg):
        out[i, 0], out[i, 1] = math.cos(math.radians(a)), math.sin(math.radians(a))
    return out


@pytest.fixture(scope="module")
def photos(analyzer, media_dir: Path) -> dict[str, np.ndarray]:
    """Real embeddings of Obama's photos and Biden's."""
    folder = media_dir / "face_recognition"
    return {f: single_face(analyzer, folder / f)[0] for f in [*OBAMA, "biden.jpg"]}


def test_stray_photo_is_dropped_and_reported(analyzer, media_dir: Path, tmp_path: Path) -> None:
    folder = media_dir / "face_recognition"
    db = tmp_path / "g.db"
    out = streamrec(
        "gallery",
        "add",
        "obama",
        *(str(folder / f) for f in [*OBAMA[:2], "biden.jpg", *OBAMA[2:]]),
        "--gallery",
        str(db),
        *SMALL,
    ).stdout
    strays = [line for line in out.splitlines() if "stray" in line]
    assert len(strays) == 1 and "biden.jpg" in strays[0], out
    assert "from the dominant sub-center of obama" in strays[0]
    assert "obama: enrolled 4 photo(s), 4 embedding(s) in total" in out
    listing = streamrec("gallery", "list", "--gallery", str(db)).stdout
    assert "obama\t4 sample(s)" in listing

    with analyzer.open_gallery(db) as gallery:
        matcher = gallery.matcher()
        sources = [s for (s,) in gallery.db.execute("SELECT source FROM embeddings")]
    assert not any("biden" in s for s in sources)
    test = analyzer.analyze(
        read_image(media_dir / "face_recognition/knn_examples/test/obama1.jpg"), matcher
    )
    assert [f.name for f in test] == ["obama"]
    biden = analyzer.analyze(read_image(folder / "biden.jpg"), matcher)
    assert [f.name for f in biden] == [None]


def test_small_counts_and_older_strays(analyzer, photos, media_dir: Path, tmp_path: Path) -> None:
    folder = media_dir / "face_recognition"
    with analyzer.open_gallery(tmp_path / "g.db") as gallery:
        # two photos too far apart: nobody can tell which is wrong; the first one is kept
        files = [folder / "obama.jpg", folder / "biden.jpg"]
        report = enroll_images(Recognition(analyzer, gallery), "a", files)
        assert report.added == [str(folder / "obama.jpg")] and report.total == 1
        (stray,) = report.dropped
        assert stray.source.endswith("biden.jpg") and stray.ambiguous and stray.angle > 75
        assert "inconsistent" in stray.describe()

        # an enrolled sample that the newer photos outvote is dropped too
        gallery.add("b", photos["biden.jpg"][None], ["biden.jpg"])
        result = gallery.add("b", np.stack([photos[f] for f in OBAMA]), OBAMA)
        assert result.total == 4 and [s.source for s in result.strays] == ["biden.jpg"]
        assert not result.strays[0].ambiguous

        # the same photo under two names is one sample (imports are idempotent)
        result = gallery.add("c", np.stack([photos["obama.jpg"]] * 2), ["x", "y"])
        assert result.total == 1 and result.strays == [] and result.duplicates == ["y"]
        people = {p.name: p for p in gallery.people()}
        assert people["c"].subcenters == 1
        assert 1 <= people["b"].subcenters <= GalleryPolicy().subcenters


def test_matching_uses_the_best_subcenter(tmp_path: Path) -> None:
    """Two looks 60 degrees apart: their mean loses to a neighbour, the right sub-center wins."""
    rng = np.random.default_rng(0)
    looks = unit(0, 0, 0, 60, 60, 60) + rng.normal(0, 0.01, (6, FAKE.dim)).astype(np.float32)
    looks /= np.linalg.norm(looks, axis=1, keepdims=True)
    query = unit(-25)
    with Gallery(tmp_path / "g.db", FAKE) as gallery:
        assert gallery.add("A", looks).strays == []
        gallery.add("B", unit(-55))
        matcher = gallery.matcher()
        assert len(matcher) == 2 and matcher.names == ["A", "B"]
        assert {p.name: p.subcenters for p in gallery.people()} == {"A": 2, "B": 1}
        assert matcher.match(query, 0.5) == [
            ("A", pytest.approx(math.cos(math.radians(25)), abs=0.02))
        ]

    mean = looks.mean(axis=0)
    mean_matcher = Matcher(
        ["A", "B"], np.stack([mean / np.linalg.norm(mean), unit(-55)[0]]), np.array([0, 1])
    )
    assert mean_matcher.match(query, 0.5)[0][0] == "B"  # a single mean template gets it wrong


@pytest.mark.parametrize("k", [1, 2, 3])
def test_at_most_k_subcenters(tmp_path: Path, k: int) -> None:
    looks = unit(*[0] * 4, *[20] * 2, *[45] * 4, *[90] * 4)  # four looks, 14 samples
    with Gallery(tmp_path / "g.db", FAKE, GalleryPolicy(subcenters=k)) as gallery:
        assert gallery.add("A", looks).strays == []
        (person,) = gallery.people()
        assert person.embeddings == 14 and person.subcenters == k


V1_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE people (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, created REAL NOT NULL);
CREATE TABLE embeddings (
    id INTEGER PRIMARY KEY,
    person_id INTEGER NOT NULL REFERENCES people(id) ON DELETE CASCADE,
    vector BLOB NOT NULL,
    source TEXT,
    created REAL NOT NULL
);
CREATE INDEX embeddings_person ON embeddings(person_id);
"""


def test_migration_from_schema_1(tmp_path: Path) -> None:
    path = tmp_path / "v1.db"
    with sqlite3.connect(path) as db:
        db.executescript(V1_SCHEMA)
        db.executemany(
            "INSERT INTO meta VALUES (?, ?)",
            [
                ("schema_version", "1"),
                ("recognizer_name", FAKE.name),
                ("recognizer_sha256", FAKE.sha256),
                ("dim", str(FAKE.dim)),
                ("revision", "3"),
            ],
        )
        db.execute("INSERT INTO people VALUES (1, 'A', 1.0), (2, 'B', 2.0)")
        rows = [(1, v, f"a{i}") for i, v in enumerate(unit(0, 10, 60, 70, 170))]
        rows.append((2, unit(-90)[0], "b"))
        db.executemany(
            "INSERT INTO embeddings (person_id, vector, source, created) VALUES (?, ?, ?, 0)",
            [(p, v.tobytes(), s) for p, v, s in rows],
        )
    with Gallery(path, FAKE) as gallery:
        people = {p.name: p for p in gallery.people()}
        # sub-centers are computed; samples are kept (a stray goes on the person's next change)
        assert people["A"].embeddings == 5 and people["A"].subcenters == 2
        assert people["B"].subcenters == 1
        assert gallery.revision > 3 and gallery.unknowns() == []
        assert gallery.matcher().match(unit(65), 0.5)[0][0] == "A"
    with sqlite3.connect(path) as db:
        assert dict(db.execute("SELECT key, value FROM meta"))["schema_version"] == "4"
    with Gallery(path, FAKE) as gallery:  # opens again without migrating twice
        assert gallery.add("A", unit(5)).strays[0].source == "a4"
    assert SCHEMA_VERSION == 4

    with sqlite3.connect(path) as db:
        db.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(GalleryError, match="schema version 99"):
        Gallery(path, FAKE)


def faces(n: int, start: int = 0) -> list[np.ndarray]:
    """Distinct small BGR images standing in for aligned face crops."""
    return [np.full((16, 16, 3), 10 * (start + i), np.uint8) for i in range(n)]


def shade(face) -> int:  # type: ignore[no-untyped-def]
    """The grey level a stored face image was made with (undoes ``faces``)."""
    return round(float(cv2.imdecode(np.frombuffer(face.jpeg, np.uint8), 0).mean()) / 10)


def test_unknowns_storage(tmp_path: Path) -> None:
    with Gallery(tmp_path / "g.db", FAKE, GalleryPolicy(max_crops=3)) as gallery:
        gallery.add("Known", unit(40))
        assert gallery.next_unknown_index() == 1
        assert gallery.add_unknown("unknown-1", unit(0, 3), faces(2))
        assert gallery.add_unknown("unknown-2", unit(180), faces(1, 5))
        assert gallery.matcher().names == ["Known"]  # unconfirmed people are never matched
        assert gallery.unknown_matcher().names == ["unknown-1", "unknown-2"]
        assert [p.name for p in gallery.people()] == ["Known"]
        assert gallery.next_unknown_index() == 3

        # upsert: more samples, the best faces kept by quality (no quality ranks last)
        gallery.add_unknown("unknown-1", unit(6, 7, 8), faces(3, 10), qualities=[0.9, 0.1, 0.5])
        (u1, _) = gallery.unknowns()
        assert u1.label == "unknown-1" and u1.embeddings == 5 and u1.faces == 3
        assert [shade(f) for f in gallery.faces("unknown-1")] == [10, 12, 11]
        assert u1.first_seen <= u1.last_seen

        with pytest.raises(GalleryError, match="unconfirmed"):
            gallery.add("unknown-1", unit(0))
        assert not gallery.add_unknown("Known", unit(0))  # a confirmed person: refused

        # promotion onto an enrolled person's name is asked for (nothing happens otherwise);
        # samples and faces move, the label is tombstoned: never written again
        revision = gallery.revision
        with pytest.raises(NameConflict, match="'Known' is enrolled already"):
            gallery.promote("unknown-1", "Known")
        assert gallery.revision == revision and not gallery.tombstoned("unknown-1")
        result = gallery.promote("unknown-1", "Known", merge=True)
        assert result.total == 6 and result.strays == []  # 0..8 degrees and 40: one look
        assert gallery.person("Known").faces == 3  # type: ignore[union-attr]
        assert gallery.matcher().match(unit(2), 0.9)[0][0] == "Known"
        assert [u.label for u in gallery.unknowns()] == ["unknown-2"]
        assert not gallery.add_unknown("unknown-1", unit(0), faces(1))
        assert gallery.tombstoned("unknown-1")
        assert "unknown-1" not in gallery.unknown_matcher().names
        gallery.add_unknown("unknown-3", unit(200))
        gallery.promote("unknown-3", "Third")
        assert gallery.next_unknown_index() == 4
        with pytest.raises(GalleryError, match="no unconfirmed person 'Third'"):
            gallery.promote("Third", "Other")

        # merge: unknown-4 folds into unknown-2 and is tombstoned
        gallery.add_unknown("unknown-4", unit(185), faces(1, 20))
        assert gallery.merge("unknown-4", "unknown-2").total == 2
        assert [u.label for u in gallery.unknowns()] == ["unknown-2"]
        assert sorted(shade(f) for f in gallery.faces("unknown-2")) == [5, 20]
        assert not gallery.add_unknown("unknown-4", unit(185))

        # remove erases every trace, and the label stays dead
        removed = gallery.remove("unknown-2")
        assert (removed.samples, removed.faces) == (2, 2)
        assert gallery.unknowns() == [] and not gallery.add_unknown("unknown-2", unit(180))
        assert gallery.next_unknown_index() == 5

        # purge by age of last_seen; 0 days = keep forever
        gallery.add_unknown("unknown-5", unit(270), faces(1))
        gallery.add_unknown("unknown-6", unit(300), faces(1))
        gallery.db.execute(
            "UPDATE people SET last_seen = ? WHERE name = 'unknown-5'", (time.time() - 5 * 86400,)
        )
        gallery.db.commit()
        assert gallery.purge(0) == 0
        assert gallery.purge(6) == 0
        assert gallery.purge(4) == 1
        assert [u.label for u in gallery.unknowns()] == ["unknown-6"]
        assert gallery.evict_unknowns(0) == 1 and gallery.unknown_count() == 0


def test_samples_faces_rename_and_idempotent_add(tmp_path: Path) -> None:
    with Gallery(tmp_path / "g.db", FAKE) as gallery:
        first = gallery.add("Ann", unit(0, 5), ["a.jpg", "b.jpg"], faces(2))
        assert first.total == 2 and first.duplicates == []
        again = gallery.add("Ann", unit(0, 9), ["a.jpg", "c.jpg"], faces(2))
        assert again.total == 3 and again.duplicates == ["a.jpg"]  # same source: skipped
        same_face = gallery.add("Ann", unit(9), ["copy-of-c.jpg"])
        assert same_face.duplicates == ["copy-of-c.jpg"]  # same embedding: skipped
        samples = gallery.samples("Ann")
        assert [s.source for s in samples] == ["a.jpg", "b.jpg", "c.jpg"]
        assert all(s.face is not None for s in samples)
        face = gallery.face(samples[1].face or 0)
        assert face is not None and face.person == "Ann" and face.jpeg[:2] == b"\xff\xd8"
        assert gallery.delete_sample("Ann", samples[1].id) == 2
        assert gallery.face(samples[1].face or 0) is None  # its face went with it
        gallery.rename("Ann", "Anne")
        assert [p.name for p in gallery.people()] == ["Anne"]
        with pytest.raises(GalleryError, match="last one"):
            (only,) = gallery.samples("Anne")[:1]
            gallery.delete_sample("Anne", only.id)
            gallery.delete_sample("Anne", gallery.samples("Anne")[0].id)
        with pytest.raises(GalleryError, match="at most 100"):
            gallery.add("x" * 101, unit(0))
        with pytest.raises(GalleryError, match="control"):
            gallery.add("a\x00b", unit(0))


def test_migration_from_schema_2_moves_crops_into_the_file(tmp_path: Path) -> None:
    path = tmp_path / "v2.db"
    with Gallery(path, FAKE) as gallery:
        gallery.add_unknown("unknown-1", unit(0))
    crop = tmp_path / "c.jpg"
    cv2.imwrite(str(crop), np.full((8, 8, 3), 100, np.uint8))
    with sqlite3.connect(path) as db:  # roll the file back to schema 2 with a crop file
        db.execute("DROP TABLE faces")
        db.execute("DROP TABLE tombstones")
        db.execute(
            "CREATE TABLE crops (id INTEGER PRIMARY KEY, person_id INTEGER NOT NULL, "
            "path TEXT NOT NULL, quality REAL, created REAL NOT NULL)"
        )
        db.execute("INSERT INTO crops VALUES (1, 1, ?, 0.5, 0)", (str(crop),))
        db.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    with Gallery(path, FAKE) as gallery:
        (face,) = gallery.faces("unknown-1")
        assert face.quality == 0.5 and face.jpeg == crop.read_bytes() if crop.exists() else True
    assert not crop.exists()  # the gallery owns its faces: the file is gone


def test_unknowns_cli(analyzer, photos, media_dir: Path, tmp_path: Path) -> None:
    db = tmp_path / "g.db"
    with analyzer.open_gallery(db) as gallery:
        gallery.add("biden", photos["biden.jpg"][None], ["biden.jpg"])
        gallery.add_unknown(
            "unknown-7", np.stack([photos["obama.jpg"], photos["obama2.jpg"]]), faces(2)
        )
        gallery.add_unknown("unknown-8", photos["obama3.jpg"][None], faces(1))
        gallery.db.execute(
            "UPDATE people SET last_seen = ? WHERE name = 'unknown-8'", (time.time() - 40 * 86400,)
        )
        gallery.db.commit()

    listed = json.loads(streamrec("unknowns", "list", "--gallery", str(db), "--json").stdout)
    assert [(u["label"], u["embeddings"], u["faces"]) for u in listed] == [
        ("unknown-7", 2, 2),
        ("unknown-8", 1, 1),
    ]
    assert listed[0]["first_seen"] <= listed[0]["last_seen"] <= time.time()
    assert listed[1]["last_seen"] < time.time() - 39 * 86400
    text = streamrec("unknowns", "list", "--gallery", str(db)).stdout
    assert "unknown-7\t2 embedding(s)\t2 face(s)\tfirst seen" in text and "2 unconfirmed" in text

    out = streamrec("unknowns", "name", "unknown-7", "Barack Obama", "--gallery", str(db)).stdout
    assert "unknown-7 is now Barack Obama (2 embedding(s))" in out
    people = json.loads(streamrec("gallery", "list", "--gallery", str(db), "--json").stdout)
    assert sorted(p["name"] for p in people) == ["Barack Obama", "biden"]

    recognized = json.loads(
        streamrec(
            "recognize",
            str(media_dir / "face_recognition/knn_examples/test/obama1.jpg"),
            "--gallery",
            str(db),
            "--json",
            *SMALL,
        ).stdout
    )
    assert [f["name"] for f in recognized[0]["faces"]] == ["Barack Obama"]

    out = streamrec("unknowns", "purge", "--gallery", str(db)).stdout  # default: 30 days
    assert "purged 1 unconfirmed people not seen for 30 day(s)" in out
    assert "0 unconfirmed" in streamrec("unknowns", "list", "--gallery", str(db)).stdout

    proc = streamrec("unknowns", "name", "unknown-9", "X", "--gallery", str(db), check=False)
    assert_one_clear_line(proc, "no unconfirmed person 'unknown-9'")
    proc = streamrec("gallery", "add", "X", "--gallery", str(db), *SMALL, check=False)
    assert_one_clear_line(proc, "--from-video")


def test_tied_groups_keep_the_earliest(tmp_path: Path) -> None:
    with Gallery(tmp_path / "g.db", FAKE) as gallery:
        result = gallery.add("A", unit(0, 5, 100, 105), ["a", "b", "c", "d"])
        assert [(s.source, s.ambiguous) for s in result.strays] == [("c", True), ("d", True)]
        assert result.total == 2
