"""The face history as a user drives it (issue 25 phase B), on the real models and media: a run
writes it, ``streamrec search`` finds a person seen only on video from a still photo, naming
the unknown names their past (one retroactive event), ``history reject`` and ``erase``."""

from __future__ import annotations

import json
import stat
from collections import Counter
from pathlib import Path

import pytest
from cli_helpers import SMALL, assert_one_clear_line, read_events, streamrec

CLIP = "face_recognition/short_hamilton_clip.mp4"
LIN_PHOTO = "face_recognition/lin-manuel-miranda.png"


@pytest.fixture(scope="module")
def ran(media_dir: Path, analyzer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The clip run once with a gallery where nobody is enrolled: everyone is unknown."""
    root = tmp_path_factory.mktemp("history")
    gallery = root / "faces.db"
    analyzer.open_gallery(gallery).close()
    streamrec(
        "run", str(media_dir / CLIP), "--gallery", str(gallery), "--no-progress",
        "--events", str(root / "run.jsonl"), *SMALL,
    )  # fmt: skip
    return gallery


def _json(*args: str) -> list[dict]:
    return json.loads(streamrec(*args).stdout)


def test_a_run_writes_the_history_privately(ran: Path) -> None:
    folder = ran.with_name("faces.history")
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for f in [folder / "history.db", *folder.glob("crops/*/*.jpg")]:
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
    rows = _json("history", "list", "--gallery", str(ran), "--json", *SMALL)
    events = read_events(ran.with_name("run.jsonl"))
    ends = [e for e in events if e["event"] == "track_end" and e["embeddings"]]
    assert len(rows) == len(ends) > 0  # one sighting per embedded track
    assert all(r["crop"] and r["first_seen"] <= r["last_seen"] for r in rows)
    assert any(r["label"] and r["label"].startswith("unknown-") for r in rows)


def test_search_naming_reject_and_erase(ran: Path, media_dir: Path) -> None:
    gallery = ["--gallery", str(ran), *SMALL]
    photo = str(media_dir / LIN_PHOTO)
    hits = _json("search", photo, "--json", "--limit", "5", *gallery)
    assert hits and hits == sorted(hits, key=lambda h: -h["similarity"])
    top = hits[0]
    assert top["similarity"] > 0.5 and top["label"].startswith("unknown-"), hits
    lin = top["label"]
    # the other filters: a camera that is not there, a time after every sighting
    assert _json("search", photo, "--json", "--camera", "nowhere", *gallery) == []
    assert _json("search", photo, "--json", "--since", "2999-01-01", *gallery) == []

    # naming the unknown names their past: one retroactive event for the identity
    events = ran.with_name("named.jsonl")
    named = streamrec("unknowns", "name", lin, "Lin", "--set", f"events.jsonl={events}", *gallery)
    assert "named back in time" in named.stdout
    retro = [e for e in read_events(events) if e.get("retroactive")]
    assert len(retro) == 1 and retro[0]["event"] == "identified"
    assert retro[0]["name"] == "Lin" and retro[0]["previous"] == lin
    assert retro[0]["sightings"] >= Counter(h["label"] for h in hits)[lin]
    hits = _json("search", photo, "--json", *gallery)
    assert hits[0]["label"] == "Lin" and hits[0]["id"] == top["id"]

    folder = ran.with_name("faces.history")
    named_rows = _json("history", "list", "--json", "--label", "Lin", *gallery)
    assert len(named_rows) == retro[0]["sightings"]
    crops = [folder / "crops" / f"{r['id'] // 10_000:06d}" / f"{r['id']}.jpg" for r in named_rows]
    assert all(c.exists() for c in crops)

    # not this person: the sighting loses the name
    rejected = streamrec("history", "reject", str(top["id"]), *gallery)
    assert "is not Lin" in rejected.stdout
    after = {r["id"]: r for r in _json("history", "list", "--json", "--limit", "1000", *gallery)}
    assert after[top["id"]]["label"] is None

    # erase: every sighting, crop and rejected face of every label she had (the rejected
    # sighting is someone else's face: it stays, without her name)
    out = streamrec("erase", "Lin", *gallery).stdout
    assert "face history: removed" in out and "1 rejected face(s)" in out
    left = _json("history", "list", "--json", "--limit", "1000", *gallery)
    assert not any(r["label"] in ("Lin", lin) for r in left)
    assert not any(c.exists() for c in crops if c.stem != str(top["id"]))
    assert {r["id"]: r["label"] for r in left}[top["id"]] is None


def test_search_refuses_a_photo_without_exactly_one_face(ran: Path, media_dir: Path) -> None:
    gallery = ["--gallery", str(ran), *SMALL]
    none = streamrec("search", str(media_dir / "insightface/view.jpg"), *gallery, check=False)
    assert none.returncode == 2
    assert_one_clear_line(none, "no face")
    two = streamrec(
        "search", str(media_dir / "face_recognition/two_people.jpg"), *gallery, check=False
    )
    assert two.returncode == 2
    assert_one_clear_line(two, "2 faces")


def test_search_without_a_history_says_so(tmp_path: Path, media_dir: Path) -> None:
    proc = streamrec(
        "search", str(media_dir / LIN_PHOTO), "--gallery", str(tmp_path / "none.db"), *SMALL,
        check=False,
    )  # fmt: skip
    assert proc.returncode == 2
    assert_one_clear_line(proc, "no face history")
