"""The face library as a newcomer met it (issue 20, items 8 and 12), through the REST API and
the command line with the small real models and real photos: enrolled photos are never dropped
for an unknown's samples, naming onto an enrolled person asks first, a thumbnail is never
replaced silently, people can be merged, and the same photo is one sample wherever it came from.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
from cli_helpers import SMALL, streamrec
from face_helpers import single_face

from streamrec.analyzer import FaceAnalyzer
from streamrec.config import HttpConfig
from streamrec.gallery.store import Gallery
from streamrec.recognition import Recognition
from streamrec.service import api, compreface
from streamrec.service.http import WebServer
from streamrec.service.metrics import Metrics
from streamrec.service.status import LiveStatus

ALEX = "Alex Lacamoire"
OBAMA = "Barack Obama"


@dataclass
class Site:
    base: str
    gallery: Gallery

    def get(self, path: str, **kw: Any) -> Any:
        r = requests.get(self.base + path, timeout=60, **kw)
        assert r.status_code == 200, r.text
        return r.json()

    def call(self, method: str, path: str, **kw: Any) -> requests.Response:
        return requests.request(method, self.base + path, timeout=60, **kw)


@pytest.fixture
def site(analyzer: FaceAnalyzer, tmp_path: Path) -> Iterator[Site]:
    gallery = analyzer.open_gallery(tmp_path / "gallery.db")
    status = LiveStatus()
    server = WebServer(status, Metrics(), "127.0.0.1", 0, None, HttpConfig(port=0))
    library = api.FaceLibrary(Recognition(analyzer, gallery), status)
    api.mount(server.app, library)
    compreface.mount(server.app, library)
    with server:
        yield Site(f"http://127.0.0.1:{server.port}", gallery)
    gallery.close()


def files(*paths: Path) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("files", (p.name, p.read_bytes(), "image/jpeg")) for p in paths]


def one(path: Path) -> dict[str, tuple[str, bytes, str]]:
    return {"file": (path.name, path.read_bytes(), "image/jpeg")}


def sightings(analyzer: FaceAnalyzer, photo: Path, n: int, seed: int = 0) -> np.ndarray:
    """``n`` camera sightings of the face in ``photo`` (its embedding, slightly perturbed)."""
    embedding, _ = single_face(analyzer, photo)
    rng = np.random.default_rng(seed)
    x = embedding[None] + rng.normal(0, 0.02, (n, embedding.size)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_enrolled_photos_are_never_dropped_for_an_unknowns_samples(
    site: Site, analyzer: FaceAnalyzer, media_dir: Path
) -> None:
    """Naming a 46-sample unknown "Alex Lacamoire" (who had 2 enrolled photos) dropped his 2
    photos as strays, with the success colour, and no question asked."""
    photos = media_dir / "face_recognition"
    alex = [photos / "alex-lacamoire.png", photos / "knn_examples/train/alex_lacamoire/img1.jpg"]
    r = site.call("POST", "/api/people", data={"name": ALEX}, files=files(*alex))
    assert r.status_code == 201 and r.json()["samples"] == 2, r.text
    alex_id = r.json()["id"]
    thumbnail = site.get(f"/api/people/{alex_id}")["thumbnail"]
    other = sightings(analyzer, photos / "lin-manuel-miranda.png", 46)  # somebody else
    _, lin_face = single_face(analyzer, photos / "lin-manuel-miranda.png")
    site.gallery.add_unknown("unknown-1", other, [lin_face] * 46, [0.93] * 46, "camera stage")
    (unknown,) = site.get("/api/unknowns")

    # the name is an enrolled person's: nothing happens, the answer says why
    r = site.call("POST", f"/api/unknowns/{unknown['id']}/name", json={"name": ALEX})
    assert r.status_code == 409 and "enrolled already" in r.json()["detail"]
    assert site.get(f"/api/people/{alex_id}")["samples"] == 2
    assert [u["label"] for u in site.get("/api/unknowns")] == ["unknown-1"]

    # asked for: merged, and his enrolled photos decide who is a stray
    body = {"name": ALEX, "merge": True}
    r = site.call("POST", f"/api/unknowns/{unknown['id']}/name", json=body)
    assert r.status_code == 200, r.text
    assert len(r.json()["strays"]) == 46  # the other face's sightings, not his photos
    samples = site.get(f"/api/people/{alex_id}/samples")
    assert [s["source"] for s in samples] == ["alex-lacamoire.png", "img1.jpg"]
    assert site.get(f"/api/people/{alex_id}")["thumbnail"] == thumbnail  # not replaced


def test_sightings_of_the_same_person_join_and_the_thumbnail_stays(
    site: Site, analyzer: FaceAnalyzer, media_dir: Path
) -> None:
    photos = media_dir / "face_recognition"
    r = site.call(
        "POST", "/api/people", data={"name": OBAMA}, files=files(photos / "obama-240p.jpg")
    )
    pid = r.json()["id"]
    first = site.get(f"/api/people/{pid}")
    # a better photo enrolled later becomes the thumbnail (the best-quality enrolled photo) ...
    r = site.call("POST", f"/api/people/{pid}/samples", files=one(photos / "obama.jpg"))
    assert r.status_code == 201
    best = site.get(f"/api/people/{pid}")
    faces = {s["source"]: s["face_id"] for s in site.get(f"/api/people/{pid}/samples")}
    assert best["thumbnail_face"] == faces["obama.jpg"] and not best["thumbnail_chosen"]
    assert first["thumbnail_face"] == faces["obama-240p.jpg"]
    # ... but an unknown's faces never do, however many and however sharp
    same = sightings(analyzer, photos / "obama2.jpg", 5)
    _, face = single_face(analyzer, photos / "obama2.jpg")
    site.gallery.add_unknown("unknown-1", same, [face] * 5, [0.95] * 5, "camera door")
    (unknown,) = site.get("/api/unknowns")
    body = {"name": OBAMA, "merge": True}
    r = site.call("POST", f"/api/unknowns/{unknown['id']}/name", json=body)
    assert r.status_code == 200 and r.json()["strays"] == [] and r.json()["samples"] == 7
    assert site.get(f"/api/people/{pid}")["thumbnail_face"] == faces["obama.jpg"]
    # the user picks another: it stays, whatever is added
    r = site.call("PATCH", f"/api/people/{pid}", json={"thumbnail": faces["obama-240p.jpg"]})
    assert r.status_code == 200 and r.json()["thumbnail_chosen"]
    site.call("POST", f"/api/people/{pid}/samples", files=one(photos / "obama3.jpg"))
    assert site.get(f"/api/people/{pid}")["thumbnail_face"] == faces["obama-240p.jpg"]
    r = site.call("PATCH", f"/api/people/{pid}", json={"thumbnail": 999999})
    assert r.status_code == 409
    r = site.call("PATCH", f"/api/people/{pid}", json={"thumbnail": None})  # automatic again
    assert r.json()["thumbnail_face"] == faces["obama.jpg"] and not r.json()["thumbnail_chosen"]


def test_two_people_are_merged_through_the_api_and_the_command_line(
    site: Site, media_dir: Path, tmp_path: Path
) -> None:
    """Renaming onto an existing name said "merge instead", but nothing could merge."""
    photos = media_dir / "face_recognition"
    a = site.call("POST", "/api/people", data={"name": "Barack"}, files=files(photos / "obama.jpg"))
    b = site.call("POST", "/api/people", data={"name": OBAMA}, files=files(photos / "obama2.jpg"))
    a_id, b_id = a.json()["id"], b.json()["id"]
    r = site.call("PATCH", f"/api/people/{a_id}", json={"name": OBAMA})
    assert r.status_code == 409 and "merge instead" in r.json()["detail"]
    r = site.call("POST", f"/api/people/{a_id}/merge", json={"into": b_id})
    assert r.status_code == 200 and r.json() == {
        "id": b_id, "name": OBAMA, "samples": 2, "added": 0, "duplicates": 0, "strays": []
    }  # fmt: skip
    assert [p["name"] for p in site.get("/api/people")] == [OBAMA]
    assert site.gallery.labels(OBAMA) == [OBAMA, "Barack"]
    assert site.call("POST", f"/api/people/{b_id}/merge", json={"into": b_id}).status_code == 409
    assert site.call("POST", f"/api/people/{a_id}/merge", json={"into": b_id}).status_code == 404

    site.call("POST", "/api/people", data={"name": "Obama"}, files=files(photos / "obama3.jpg"))
    gallery = str(site.gallery.path)
    out = streamrec("gallery", "merge", "Obama", OBAMA, "--gallery", gallery).stdout
    assert f"Obama merged into {OBAMA} (3 embedding(s))" in out
    proc = streamrec("gallery", "merge", "Nobody", OBAMA, "--gallery", gallery, check=False)
    assert proc.returncode == 2 and "no person 'Nobody'" in proc.stderr
    people = json.loads(streamrec("gallery", "list", "--gallery", gallery, "--json").stdout)
    assert [(p["name"], p["embeddings"]) for p in people] == [(OBAMA, 3)]


def test_the_same_photo_from_the_command_line_and_the_page_is_one_sample(
    site: Site, media_dir: Path
) -> None:
    photo = media_dir / "face_recognition/obama.jpg"
    gallery = str(site.gallery.path)
    streamrec("gallery", "add", OBAMA, str(photo), "--gallery", gallery, *SMALL)
    (person,) = site.get("/api/people")
    r = site.call("POST", f"/api/people/{person['id']}/samples", files=one(photo))
    assert r.status_code == 201 and r.json()["duplicates"] == 1 and r.json()["samples"] == 1
    r = site.call("POST", "/api/v1/recognition/faces", params={"subject": OBAMA},
                  files={"file": (photo.name, photo.read_bytes())})  # fmt: skip
    assert r.status_code == 201
    assert len(site.get(f"/api/people/{person['id']}/samples")) == 1
    out = streamrec("gallery", "add", OBAMA, str(photo), "--gallery", gallery, *SMALL).stdout
    assert "1 photo(s) already enrolled" in out


def test_naming_onto_an_enrolled_person_asks_on_the_command_line(
    site: Site, analyzer: FaceAnalyzer, media_dir: Path
) -> None:
    photos = media_dir / "face_recognition"
    site.call("POST", "/api/people", data={"name": OBAMA}, files=files(photos / "obama.jpg"))
    site.gallery.add_unknown("unknown-4", sightings(analyzer, photos / "obama2.jpg", 3))
    gallery = str(site.gallery.path)
    proc = streamrec("unknowns", "name", "unknown-4", OBAMA, "--gallery", gallery, check=False)
    assert proc.returncode == 2 and "enrolled already" in proc.stderr and "--merge" in proc.stderr
    assert [u.label for u in site.gallery.unknowns()] == ["unknown-4"]
    out = streamrec("unknowns", "name", "unknown-4", OBAMA, "--merge", "--gallery", gallery).stdout
    assert f"unknown-4 is now {OBAMA} (4 embedding(s))" in out
