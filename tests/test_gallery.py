"""Gallery: sub-centers, strays, schema migration, unconfirmed (unknown) people and their CLI."""

from __future__ import annotations

import json
import math
import sqlite3
import time
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import SMALL, assert_one_clear_line, streamrec

from streamrec.analyzer import read_image
from streamrec.errors import GalleryError
from streamrec.gallery.enroll import embed_single_face, enroll_images
from streamrec.gallery.matcher import Matcher
from streamrec.gallery.store import SCHEMA_VERSION, Gallery, GalleryPolicy, Recognizer

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
    return {f: embed_single_face(analyzer, folder / f) for f in [*OBAMA, "biden.jpg"]}


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
        report = enroll_images(analyzer, gallery, "a", [folder / "obama.jpg", folder / "biden.jpg"])
        assert report.added == [str(folder / "obama.jpg")] and report.total == 1
        (stray,) = report.dropped
        assert stray.source.endswith("biden.jpg") and stray.ambiguous and stray.angle > 75
        assert "inconsistent" in stray.describe()

        # an enrolled sample that the newer photos outvote is dropped too
        gallery.add("b", photos["biden.jpg"][None], ["biden.jpg"])
        result = gallery.add("b", np.stack([photos[f] for f in OBAMA]), OBAMA)
        assert result.total == 4 and [s.source for s in result.strays] == ["biden.jpg"]
        assert not result.strays[0].ambiguous

        # the same face twice is consistent: both kept, one sub-center
        result = gallery.add("c", np.stack([photos["obama.jpg"]] * 2), ["x", "y"])
        assert result.total == 2 and result.strays == []
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
        assert dict(db.execute("SELECT key, value FROM meta"))["schema_version"] == "2"
    with Gallery(path, FAKE) as gallery:  # opens again without migrating twice
        assert gallery.add("A", unit(5)).strays[0].source == "a4"
    assert SCHEMA_VERSION == 2

    with sqlite3.connect(path) as db:
        db.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(GalleryError, match="schema version 99"):
        Gallery(path, FAKE)


def crops(folder: Path, label: str, n: int) -> list[str]:
    folder.mkdir(exist_ok=True)
    paths = [folder / f"{label}-{i}.jpg" for i in range(n)]
    for p in paths:
        p.write_bytes(b"jpeg")
    return [str(p) for p in paths]


def test_unknowns_storage(tmp_path: Path) -> None:
    d = tmp_path / "crops"
    with Gallery(tmp_path / "g.db", FAKE, GalleryPolicy(max_crops=3)) as gallery:
        gallery.add("Known", unit(40))
        assert gallery.next_unknown_index() == 1
        first = crops(d, "u1", 2)
        gallery.add_unknown("unknown-1", unit(0, 3), first)
        gallery.add_unknown("unknown-2", unit(180), crops(d, "u2", 1))
        assert gallery.matcher().names == ["Known"]  # unconfirmed people are never matched
        assert gallery.unknown_matcher().names == ["unknown-1", "unknown-2"]
        assert [p.name for p in gallery.people()] == ["Known"]
        assert gallery.next_unknown_index() == 3

        # upsert: more embeddings, crops ranked by quality, the worst files deleted
        more = crops(d, "u1b", 3)
        gallery.add_unknown("unknown-1", unit(6), more, qualities=[0.9, 0.1, 0.5])
        (u1, u2) = gallery.unknowns()
        assert u1.label == "unknown-1" and u1.embeddings == 3
        assert u1.crops == [more[0], more[2], more[1]] and u1.first_seen <= u1.last_seen
        assert not any(Path(p).exists() for p in first)  # no quality given: ranked last

        with pytest.raises(GalleryError, match="unconfirmed"):
            gallery.add("unknown-1", unit(0))
        with pytest.raises(GalleryError, match="confirmed person"):
            gallery.add_unknown("Known", unit(0), [])

        # promotion: embeddings move, crop files go, the label is never handed out again
        result = gallery.promote("unknown-1", "Known")
        assert result.total == 4 and result.strays == []  # 0..6 degrees and 40: one look
        assert not any(Path(p).exists() for p in u1.crops)
        assert gallery.matcher().names == ["Known"]
        assert gallery.matcher().match(unit(2), 0.9)[0][0] == "Known"
        assert [u.label for u in gallery.unknowns()] == ["unknown-2"]
        gallery.add_unknown("unknown-3", unit(200), [])
        gallery.promote("unknown-3", "Third")
        assert gallery.next_unknown_index() == 4
        with pytest.raises(GalleryError, match="no unconfirmed person 'Third'"):
            gallery.promote("Third", "Other")

        # remove deletes every trace, crop files included
        gallery.remove("unknown-2")
        assert gallery.unknowns() == [] and not any(Path(p).exists() for p in u2.crops)

        # purge by age of last_seen; 0 days = keep forever
        old = crops(d, "u4", 2)
        gallery.add_unknown("unknown-4", unit(270), old)
        gallery.add_unknown("unknown-5", unit(300), crops(d, "u5", 1))
        gallery.db.execute(
            "UPDATE people SET last_seen = ? WHERE name = 'unknown-4'", (time.time() - 5 * 86400,)
        )
        gallery.db.commit()
        assert gallery.purge(0) == 0
        assert gallery.purge(6) == 0
        assert gallery.purge(4) == 1
        assert [u.label for u in gallery.unknowns()] == ["unknown-5"]
        assert not any(Path(p).exists() for p in old)


def test_unknowns_cli(analyzer, photos, media_dir: Path, tmp_path: Path) -> None:
    db = tmp_path / "g.db"
    with analyzer.open_gallery(db) as gallery:
        gallery.add("biden", photos["biden.jpg"][None], ["biden.jpg"])
        gallery.add_unknown(
            "unknown-7",
            np.stack([photos["obama.jpg"], photos["obama2.jpg"]]),
            crops(tmp_path, "a", 2),
        )
        gallery.add_unknown("unknown-8", photos["obama3.jpg"][None], crops(tmp_path, "b", 1))
        gallery.db.execute(
            "UPDATE people SET last_seen = ? WHERE name = 'unknown-8'", (time.time() - 40 * 86400,)
        )
        gallery.db.commit()

    listed = json.loads(streamrec("unknowns", "list", "--gallery", str(db), "--json").stdout)
    assert [(u["label"], u["embeddings"], len(u["crops"])) for u in listed] == [
        ("unknown-7", 2, 2),
        ("unknown-8", 1, 1),
    ]
    assert listed[0]["first_seen"] <= listed[0]["last_seen"] <= time.time()
    assert listed[1]["last_seen"] < time.time() - 39 * 86400
    text = streamrec("unknowns", "list", "--gallery", str(db)).stdout
    assert "unknown-7\t2 embedding(s)\t2 crop(s)\tfirst seen" in text and "2 unconfirmed" in text

    out = streamrec("unknowns", "name", "unknown-7", "Barack Obama", "--gallery", str(db)).stdout
    assert "unknown-7 is now Barack Obama (2 embedding(s))" in out
    assert not any(Path(p).exists() for p in listed[0]["crops"])
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
    assert not Path(listed[1]["crops"][0]).exists()
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
