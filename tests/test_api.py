"""The face library's REST APIs (native and CompreFace) on a real server, with the small real
models and real photos: every route, validation, the token rules, a CompreFace client's flow."""

from __future__ import annotations

import io
import json
import logging
import re
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from api_server import Served, served
from face_helpers import single_face
from PIL import Image

from streamrec.analyzer import FaceAnalyzer
from streamrec.media import read_image
from streamrec.service import api

TOKEN = "api-test-token"
OBAMA = "Barack Obama"
BIDEN = "Joe Biden"
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


@pytest.fixture(scope="module")
def photos(media_dir: Path) -> Callable[[str], Path]:
    folder = media_dir / "face_recognition"
    return lambda name: folder / name


@pytest.fixture
def serve(analyzer: FaceAnalyzer, tmp_path: Path) -> Iterator[Callable[..., Served]]:
    with served(analyzer, tmp_path) as start:
        yield start


def upload(path: Path, field_name: str = "file") -> dict[str, Any]:
    return {field_name: (path.name, path.read_bytes(), "image/jpeg")}


def decoded(body: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None, "not a decodable image"
    return image


def test_people_samples_and_faces(serve, photos) -> None:
    s = serve()
    files = [
        ("files", (p, photos(p).read_bytes(), "image/jpeg")) for p in ("obama.jpg", "obama2.jpg")
    ]
    r = s.post("/api/people", data={"name": OBAMA}, files=files)
    assert r.status_code == 201, r.text
    pid = r.json()["id"]
    assert r.json() == {
        "id": pid, "name": OBAMA, "samples": 2, "added": 2, "duplicates": 0, "strays": []
    }  # fmt: skip
    assert len(s.reloads) == 1  # the running pipeline takes the change in at once

    people = s.get("/api/people").json()
    assert [(p["id"], p["name"], p["samples"], p["faces"]) for p in people] == [(pid, OBAMA, 2, 2)]
    thumb = s.get("/" + people[0]["thumbnail"])
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    assert decoded(thumb.content).shape == (112, 112, 3)
    assert s.get(f"/api/people/{pid}").json() == people[0]
    assert s.get("/api/people", params={"name": OBAMA}).json() == people  # found by name
    assert s.get("/api/people", params={"name": "Nobody"}).json() == []

    samples = s.get(f"/api/people/{pid}/samples").json()
    assert [x["source"] for x in samples] == ["obama.jpg", "obama2.jpg"]  # file names only
    assert all(x["enrolled"] for x in samples)
    assert all(UUID.match(x["image_id"]) for x in samples)
    assert all(s.get("/" + x["face"]).status_code == 200 for x in samples)

    r = s.post(f"/api/people/{pid}/samples", files=upload(photos("obama3.jpg")))
    assert r.status_code == 201 and r.json()["samples"] == 3 and r.json()["added"] == 1
    again = s.post(f"/api/people/{pid}/samples", files=upload(photos("obama3.jpg"), "file"))
    assert again.status_code == 201 and again.json()["duplicates"] == 1  # the same photo twice
    assert again.json()["samples"] == 3

    first = samples[0]["id"]
    r = s.delete(f"/api/people/{pid}/samples/{first}")
    assert r.status_code == 200 and r.json() == {"samples": 2}
    assert first not in [x["id"] for x in s.get(f"/api/people/{pid}/samples").json()]
    assert s.get("/" + samples[0]["face"]).status_code == 404  # its face went with it

    r = s.request("PATCH", f"/api/people/{pid}", json={"name": "Barack H. Obama"})
    assert r.status_code == 200 and r.json()["name"] == "Barack H. Obama" and r.json()["id"] == pid

    r = s.delete(f"/api/people/{pid}")
    assert r.status_code == 200 and r.json() == {
        "name": "Barack H. Obama",
        "samples": 2,
        "faces": 2,
    }
    assert s.get(f"/api/people/{pid}").status_code == 404
    assert s.get("/api/people").json() == []
    assert s.gallery.people() == []
    # create, add, delete sample, rename, delete (the same photo again changed nothing)
    assert len(s.reloads) == 5


def test_names_are_validated_and_any_name_is_addressable(serve, photos) -> None:
    s = serve()
    obama = upload(photos("obama.jpg"), "files")
    for bad in ("", "   ", "x" * 101, "bell\x07", "tab\x1b", "AC/DC", "..", " Lead", "unknown-3"):
        r = s.post("/api/people", data={"name": bad}, files=obama)
        assert r.status_code in (400, 422), (bad, r.text)  # 422: FastAPI's own (empty form)
        assert "name" in json.dumps(r.json()["detail"])
    assert s.gallery.people() == []
    # non-ASCII letters work in every route; people are addressed by id
    name = "Ångström Łódź 李"
    r = s.post("/api/people", data={"name": name}, files=obama)
    assert r.status_code == 201
    pid = r.json()["id"]
    assert s.get(f"/api/people/{pid}").json()["name"] == name
    assert len(s.get(f"/api/people/{pid}/samples").json()) == 1
    r = s.request("PATCH", f"/api/people/{pid}", json={"name": "\x00"})
    assert r.status_code == 400 and "control characters" in r.json()["detail"]
    r = s.request("PATCH", f"/api/people/{pid}", json={"name": "a/b"})
    assert r.status_code == 400 and "path separator" in r.json()["detail"]
    assert s.post("/api/people", data={"name": name}, files=obama).status_code == 409
    assert s.delete(f"/api/people/{pid}").status_code == 200


def test_bad_input_gets_a_clear_4xx(serve, photos, tmp_path: Path) -> None:
    s = serve(max_body=1_000_000)
    assert s.post("/api/people", data={"name": OBAMA}, files=upload(photos("obama.jpg"), "files"))
    not_image = {"file": ("notes.jpg", b"GIF89a but not really an image", "image/jpeg")}
    pid = s.gallery.person(OBAMA).id
    for path in ("/api/recognize", f"/api/people/{pid}/samples"):
        r = s.post(path, files=not_image)
        assert r.status_code == 400, r.text
        assert r.json() == {"detail": "not an image (JPEG, PNG, BMP, GIF, TIFF, WebP or ICO)"}
    truncated = photos("obama.jpg").read_bytes()[:5000]
    r = s.post("/api/recognize", files={"file": ("cut.jpg", truncated, "image/jpeg")})
    assert r.status_code == 400 and "not an image" in r.json()["detail"]

    # a tiny file holding a huge image is refused before it is decoded
    bomb = io.BytesIO()
    Image.new("1", (9000, 9000)).save(bomb, "PNG")
    assert len(bomb.getvalue()) < 1_000_000
    r = s.post("/api/recognize", files={"file": ("big.png", bomb.getvalue(), "image/png")})
    assert r.status_code == 400 and "too large" in r.json()["detail"]

    big = photos("obama-1080p.jpg").read_bytes() * 3
    assert len(big) > 1_000_000
    r = s.post("/api/recognize", files={"file": ("big.jpg", big, "image/jpeg")})
    assert r.status_code == 413

    r = s.post(f"/api/people/{pid}/samples", files=upload(photos("two_people.jpg")))
    assert r.status_code == 400 and r.json()["detail"].startswith("2 faces found")
    view = photos("obama.jpg").parent.parent / "insightface/view.jpg"
    r = s.post(f"/api/people/{pid}/samples", files=upload(view))
    assert r.status_code == 400 and r.json()["detail"] == "No face is found in the given image"
    r = s.post(f"/api/people/{pid}/samples")
    assert r.status_code == 422 and "photo" in r.json()["detail"]

    name = {"json": {"name": "X"}}
    huge = "9" * 18
    for method, path, body in (
        ("GET", "/api/people/999", {}),
        ("GET", f"/api/people/{huge}", {}),
        ("GET", "/api/people/999/samples", {}),
        ("POST", "/api/people/999/samples", {"files": upload(view)}),
        ("PATCH", "/api/people/999", name),
        ("DELETE", "/api/people/999", {}),
        ("DELETE", "/api/people/999/samples/1", {}),
        ("DELETE", f"/api/people/{pid}/samples/999", {}),
        ("POST", "/api/people/999/merge", {"json": {"into": pid}}),
        ("POST", f"/api/people/{pid}/merge", {"json": {"into": 999}}),
        ("POST", "/api/unknowns/999/name", name),
        ("POST", "/api/unknowns/999/merge", {"json": {"into": pid}}),
        ("DELETE", "/api/unknowns/999", {}),
        ("DELETE", f"/api/unknowns/{pid}", {}),  # a person is no unknown
        ("GET", "/api/faces/999.jpg", {}),
        ("GET", "/api/recent/999.jpg", {}),
    ):
        r = s.request(method, path, **body)
        assert r.status_code == 404, (method, path, r.status_code, r.text)
        assert isinstance(r.json()["detail"], str)
    # a photo sent where JSON is expected: 422, and the photo is not echoed back
    r = s.request("PATCH", f"/api/people/{pid}", files=upload(photos("obama.jpg")))
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body"]
    assert len(r.content) < 500

    only = s.get(f"/api/people/{pid}/samples").json()[0]["id"]
    r = s.delete(f"/api/people/{pid}/samples/{only}")
    assert r.status_code == 409 and "remove the person" in r.json()["detail"]
    assert str(s.gallery.path) not in r.text  # no server paths in answers
    r = s.post("/api/people", data={"name": OBAMA}, files=upload(photos("obama2.jpg"), "files"))
    assert r.status_code == 409
    # ids are numbers: anything else matches no route (and a name is never read as a path)
    assert s.get("/api/people/x/samples/abc").status_code == 404
    assert s.delete("/api/people/x/samples/abc").status_code == 404
    assert s.delete(f"/api/people/{OBAMA}/samples/1").status_code == 404
    assert s.get(f"/api/faces/{'9' * 20}.jpg").status_code == 404


def test_without_a_gallery_the_library_routes_say_so(serve, photos) -> None:
    s = serve(gallery=False)
    r = s.get("/api/people")
    assert r.status_code == 409 and "gallery" in r.json()["detail"]
    faces = s.post("/api/recognize", files=upload(photos("obama.jpg"))).json()["faces"]
    assert len(faces) == 1 and faces[0]["name"] is None  # recognition still answers


def test_recognize_an_uploaded_image(serve, photos) -> None:
    s = serve()
    s.post("/api/people", data={"name": OBAMA}, files=upload(photos("obama.jpg"), "files"))
    r = s.post("/api/recognize", files=upload(photos("two_people.jpg")))
    assert r.status_code == 200, r.text
    faces = r.json()["faces"]
    assert len(faces) == 2
    height, width = read_image(photos("two_people.jpg")).shape[:2]
    for f in faces:
        assert set(f) == {"bbox", "kps", "det_score", "name", "score"}
        x1, y1, x2, y2 = f["bbox"]
        assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height
        assert len(f["kps"]) == 5 and all(x1 <= x <= x2 and y1 <= y <= y2 for x, y in f["kps"])
    named = [f for f in faces if f["name"] == OBAMA]
    assert len(named) == 1 and named[0]["score"] >= 0.4
    assert [f["name"] for f in faces if f is not named[0]] == [None]
    view = photos("obama.jpg").parent.parent / "insightface/view.jpg"
    assert s.post("/api/recognize", files=upload(view)).json() == {"faces": []}


def test_large_photos_are_analysed_in_original_coordinates(serve, photos, analyzer) -> None:
    """A photo bigger than MAX_SIDE is analysed scaled down, answered in its own pixels."""
    s = serve()
    small = read_image(photos("obama.jpg"))
    factor = 2 * api.MAX_SIDE / max(small.shape[:2]) + 0.5
    large = cv2.resize(small, None, fx=factor, fy=factor, interpolation=cv2.INTER_CUBIC)
    ok, jpeg = cv2.imencode(".jpg", large, [cv2.IMWRITE_JPEG_QUALITY, 80])
    assert ok
    got = s.post("/api/recognize", files={"file": ("large.jpg", jpeg.tobytes(), "image/jpeg")})
    box = np.array(got.json()["faces"][0]["bbox"])
    expected = analyzer.detect(small).boxes[0] * factor
    assert np.abs(box - expected).max() < 0.03 * (expected[2] - expected[0]), (box, expected)


def seed_unknowns(s: Served, analyzer: FaceAnalyzer, photos: Callable[[str], Path]) -> None:
    """Unconfirmed people as the pipeline writes them: an embedding with its face."""
    for label, photo in (
        ("unknown-1", "biden.jpg"),
        ("unknown-2", "obama.jpg"),
        ("unknown-3", "obama2.jpg"),
        ("unknown-4", "alex-lacamoire.png"),
    ):
        embedding, crop = single_face(analyzer, photos(photo))
        assert s.gallery.add_unknown(label, embedding[None], [crop], [0.9], "camera door")


def test_unknown_people(serve, photos, analyzer) -> None:
    s = serve()
    seed_unknowns(s, analyzer, photos)
    listed = s.get("/api/unknowns").json()
    assert [u["label"] for u in listed] == ["unknown-1", "unknown-2", "unknown-3", "unknown-4"]
    assert all(len(u["crops"]) == 1 and u["samples"] == 1 for u in listed)
    assert decoded(s.get("/" + listed[0]["crops"][0]).content).shape == (112, 112, 3)

    ids = {u["label"]: u["id"] for u in listed}
    r = s.post(f"/api/unknowns/{ids['unknown-1']}/name", json={"name": BIDEN})
    assert r.status_code == 200 and r.json()["name"] == BIDEN and r.json()["samples"] == 1
    assert [p["name"] for p in s.get("/api/people").json()] == [BIDEN]
    assert s.gallery.tombstoned("unknown-1")

    r = s.post(f"/api/unknowns/{ids['unknown-3']}/merge", json={"into": ids["unknown-2"]})
    assert r.status_code == 200 and r.json()["samples"] == 2
    r = s.post(f"/api/unknowns/{ids['unknown-2']}/name", json={"name": OBAMA})
    assert r.status_code == 200 and r.json()["samples"] == 2
    # naming an unknown after an enrolled person is asked for: nothing happens without merge
    r = s.post(f"/api/unknowns/{ids['unknown-4']}/name", json={"name": BIDEN})
    assert r.status_code == 409 and "enrolled already" in r.json()["detail"]
    assert [u["label"] for u in s.get("/api/unknowns").json()] == ["unknown-4"]
    r = s.post(f"/api/unknowns/{ids['unknown-4']}/name", json={"name": BIDEN, "merge": True})
    assert r.status_code == 200 and r.json()["name"] == BIDEN
    assert {p["name"]: p["samples"] for p in s.get("/api/people").json()}[OBAMA] == 2
    assert s.get("/api/unknowns").json() == []
    assert all(s.gallery.tombstoned(f"unknown-{i}") for i in (1, 2, 3, 4))

    seed = s.gallery.next_unknown_index()
    assert seed == 5  # labels are never handed out again
    embedding, crop = single_face(analyzer, photos("obama3.jpg"))
    s.gallery.add_unknown("unknown-5", embedding[None], [crop], [0.9])
    (u5,) = s.get("/api/unknowns").json()
    assert s.post(f"/api/unknowns/{u5['id']}/name", json={"name": "\n"}).status_code == 400
    assert s.post(f"/api/unknowns/{u5['id']}/merge", json={"into": 999}).status_code == 404
    r = s.delete(f"/api/unknowns/{u5['id']}")
    assert r.status_code == 200 and r.json() == {"name": "unknown-5", "samples": 1, "faces": 1}
    assert s.gallery.tombstoned("unknown-5")
    biden = s.gallery.person(BIDEN).id
    assert s.delete(f"/api/unknowns/{biden}").status_code == 404  # a person is no unknown


def test_recent_recognitions_with_faces(serve, photos, analyzer) -> None:
    s = serve()
    _, lin = single_face(analyzer, photos("lin-manuel-miranda.png"))
    _, alex = single_face(analyzer, photos("alex-lacamoire.png"))
    s.status.add_recognition("stage", "Someone", 0.61234, 4, crop=lin)
    s.status.add_unknown("door", "unknown-7", 9, crop=alex)
    s.status.add_recognition("stage", "Nobody", 0.5, 5)  # no face
    recent = s.get("/api/recent?n=10").json()
    assert [r["kind"] for r in recent] == ["identified", "unknown", "identified"]
    faceless, unknown, named = recent
    assert named["name"] == "Someone" and named["score"] == 0.6123 and named["label"] is None
    assert unknown["label"] == "unknown-7" and unknown["name"] is None
    assert unknown["score"] is None and unknown["camera"] == "door"
    assert faceless["crop"] is None
    assert {"camera", "name", "score", "track_id", "time"} <= set(named)  # the shape it had
    image = decoded(s.get("/" + named["crop"]).content)
    assert image.shape == (112, 112, 3)

    r = s.post("/api/people", data={"name": "Lin-Manuel Miranda", "recent": str(named["id"])})
    assert r.status_code == 201 and r.json()["samples"] == 1, r.text
    lin_id = r.json()["id"]
    source = s.get(f"/api/people/{lin_id}/samples").json()[0]["source"]
    assert source.startswith("camera stage track 4")
    r = s.post(f"/api/people/{lin_id}/samples", data={"recent": str(unknown["id"])})
    assert r.status_code == 201, r.text  # a different person: kept or dropped as a stray
    r = s.post("/api/people", data={"name": "X", "recent": str(faceless["id"])})
    assert r.status_code == 404 and "recent" in r.json()["detail"]


def test_token_rules(serve, photos) -> None:
    s = serve(token=TOKEN)
    routes = ("/api/people", "/api/unknowns", "/faces")
    for path in routes:
        assert s.get(path).status_code == 401, path
        assert s.get(path, headers={"x-api-key": "wrong"}).status_code == 401, path
        assert s.get(path, headers={"x-api-key": TOKEN}).status_code == 200, path
        assert s.get(path, headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
        assert s.get(f"{path}?token={TOKEN}").status_code == 200, path
    # CompreFace's routes: its answers (test_compreface_services checks them in full)
    r = s.post("/api/v1/recognition/faces?subject=X", files=upload(photos("obama.jpg")))
    assert r.status_code == 400 and r.json()["code"] == 20 and s.gallery.people() == []
    assert s.get("/api/v1/recognition/faces", headers={"x-api-key": TOKEN}).status_code == 200
    # without a token (loopback only) any key is accepted, as on every route
    open_ = serve()
    assert open_.get("/api/people", headers={"x-api-key": "anything"}).status_code == 200


def test_faces_page_is_served_with_a_strict_policy(serve) -> None:
    s = serve()
    page = s.get("/faces")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    # only the page's own inline script and style run (by hash); nothing from elsewhere
    assert "script-src 'sha256-" in csp and "style-src 'sha256-" in csp
    assert "unsafe" not in csp and "http" not in csp
    assert "innerHTML" not in page.text and "src=\"http" not in page.text


def test_openapi_documents_every_route(serve) -> None:
    s = serve()
    paths = s.get("/openapi.json").json()["paths"]
    expected = {
        "/api/people": {"get", "post"},
        "/api/people/{person_id}": {"get", "patch", "delete"},
        "/api/people/{person_id}/samples": {"get", "post"},
        "/api/people/{person_id}/samples/{sample_id}": {"delete"},
        "/api/people/{person_id}/merge": {"post"},
        "/api/faces/{face_id}.jpg": {"get"},
        "/api/unknowns": {"get"},
        "/api/unknowns/{unknown_id}/name": {"post"},
        "/api/unknowns/{unknown_id}/merge": {"post"},
        "/api/unknowns/{unknown_id}": {"delete"},
        "/api/recent/{recent_id}.jpg": {"get"},
        "/api/recognize": {"post"},
        "/api/v1/recognition/recognize": {"post"},
        "/api/v1/recognition/faces": {"get", "post", "delete"},
        "/api/v1/recognition/faces/{image_id}": {"delete"},
        "/api/v1/recognition/faces/{image_id}/img": {"get"},
        "/api/v1/recognition/faces/{image_id}/verify": {"post"},
        "/api/v1/recognition/subjects": {"get", "post", "delete"},
        "/api/v1/recognition/subjects/{subject}": {"put", "delete"},
        "/api/v1/detection/detect": {"post"},
        "/api/v1/verification/verify": {"post"},
    }
    for path, methods in expected.items():
        assert set(paths[path]) == methods, path
        for op in paths[path].values():
            assert op.get("description") or op.get("summary"), path
    # CompreFace's images: a multipart part or base64 in JSON
    body = paths["/api/v1/verification/verify"]["post"]["requestBody"]["content"]
    assert set(body) == {"multipart/form-data", "application/json"}
    assert body["application/json"]["schema"]["required"] == ["source_image", "target_image"]
    assert "/faces" not in paths


def test_names_never_reach_the_log(serve, photos, caplog) -> None:
    s = serve()
    with caplog.at_level(logging.DEBUG):
        pid = s.post(
            "/api/people",
            data={"name": "Secret Person"},
            files=upload(photos("obama.jpg"), "files"),
        ).json()["id"]
        s.get(f"/api/people/{pid}/samples")
        s.delete(f"/api/people/{pid}")
        s.delete(f"/api/people/{pid}")

        def routes() -> list[str]:
            return [r.getMessage() for r in caplog.records if r.name == "streamrec.service.http"]

        # the server logs a request once its answer is sent: wait for the last one's line
        deadline = time.monotonic() + 10
        while len(routes()) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
    server_side = [r for r in caplog.records if not r.name.startswith("urllib3")]
    assert server_side and not [r for r in server_side if "Secret" in r.getMessage()]
    assert "Pete Souza" not in caplog.text  # the photo's EXIF (PIL's debug lines)
    assert "DELETE /api/people/{person_id:rowid} 200" in routes()  # the route, not the path


# -- CompreFace ----------------------------------------------------------------------------

CF = "/api/v1/recognition"


def compreface_file(path: Path) -> dict[str, Any]:
    """What a CompreFace client (Double Take, the SDKs) sends: the image as multipart 'file'."""
    return {"file": (path.name, path.open("rb"), "application/octet-stream")}


def test_compreface_client_flow(serve, photos) -> None:
    """Double Take's calls, with its headers and query parameters, and CompreFace's answers."""
    s = serve(token=TOKEN)
    key = {"x-api-key": TOKEN}

    # train: POST /faces?subject=NAME
    r = s.post(
        f"{CF}/faces",
        params={"subject": OBAMA},
        files=compreface_file(photos("obama.jpg")),
        headers=key,
    )
    assert r.status_code == 201, r.text
    saved = r.json()
    assert set(saved) == {"image_id", "subject"} and saved["subject"] == OBAMA
    assert uuid.UUID(saved["image_id"]).version == 5

    # recognize: Double Take puts face_plugins in the URL (the literal "undefined" when unset)
    r = s.post(
        f"{CF}/recognize?face_plugins=undefined",
        params={"det_prob_threshold": 0.8},
        files=compreface_file(photos("obama3.jpg")),
        headers=key,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"result"} and len(body["result"]) == 1
    face = body["result"][0]
    assert set(face) == {"box", "subjects"}
    assert set(face["box"]) == {"probability", "x_max", "y_max", "x_min", "y_min"}
    assert all(isinstance(face["box"][k], int) for k in ("x_max", "y_max", "x_min", "y_min"))
    assert 0.8 <= face["box"]["probability"] <= 1.0
    assert (
        face["box"]["x_min"] < face["box"]["x_max"] and face["box"]["y_min"] < face["box"]["y_max"]
    )
    assert [set(x) for x in face["subjects"]] == [{"subject", "similarity"}]
    best = face["subjects"][0]
    assert best["subject"] == OBAMA
    # Double Take: confidence = similarity * 100, a match from 60 (its default)
    assert best["similarity"] * 100 >= 60, best

    # list
    r = s.get(f"{CF}/faces", headers=key)
    assert r.status_code == 200
    assert r.json() == {
        "faces": [{"image_id": saved["image_id"], "subject": OBAMA}],
        "page_number": 0,
        "page_size": 20,
        "total_pages": 1,
        "total_elements": 1,
    }

    # remove: DELETE /faces?subject=NAME
    r = s.delete(f"{CF}/faces", params={"subject": OBAMA}, headers=key)
    assert r.status_code == 200 and r.json() == {"deleted": 1}
    assert s.get(f"{CF}/faces", headers=key).json()["total_elements"] == 0
    assert s.gallery.people() == []
    r = s.post(f"{CF}/recognize", files=compreface_file(photos("obama3.jpg")), headers=key)
    assert r.json()["result"][0]["subjects"] == []
    r = s.delete(f"{CF}/faces", params={"subject": OBAMA}, headers=key)
    assert r.status_code == 200 and r.json() == {"deleted": 0}


def test_compreface_options_and_errors(serve, photos) -> None:
    s = serve()
    for subject, photo in ((OBAMA, "obama.jpg"), (OBAMA, "obama2.jpg"), (BIDEN, "biden.jpg")):
        r = s.post(f"{CF}/faces", params={"subject": subject}, files=compreface_file(photos(photo)))
        assert r.status_code == 201, r.text

    # no face: 400 with code 28 (what Double Take checks)
    view = photos("obama.jpg").parent.parent / "insightface/view.jpg"
    r = s.post(f"{CF}/recognize", files=compreface_file(view))
    assert r.status_code == 400
    assert r.json() == {"message": "No face is found in the given image", "code": 28}

    two = compreface_file(photos("two_people.jpg"))
    r = s.post(
        f"{CF}/recognize",
        params={"prediction_count": 2, "face_plugins": "landmarks,calculator"},
        files=two,
    )
    result = r.json()["result"]
    assert len(result) == 2
    areas = [
        (f["box"]["x_max"] - f["box"]["x_min"]) * (f["box"]["y_max"] - f["box"]["y_min"])
        for f in result
    ]
    assert areas == sorted(areas, reverse=True)  # biggest faces first
    for f in result:
        assert [x["subject"] for x in f["subjects"]] in ([OBAMA, BIDEN], [BIDEN, OBAMA])
        sims = [x["similarity"] for x in f["subjects"]]
        assert sims == sorted(sims, reverse=True) and all(0 <= x <= 1 for x in sims)
        assert len(f["landmarks"]) == 5 and all(
            isinstance(v, int) for p in f["landmarks"] for v in p
        )
        assert len(f["embedding"]) == 128
    # each of the two is recognised as a different person above 0.5 (the threshold)
    assert {f["subjects"][0]["subject"] for f in result} == {OBAMA, BIDEN}
    assert all(f["subjects"][0]["similarity"] > 0.5 for f in result)
    r = s.post(
        f"{CF}/recognize",
        params={"limit": 1, "status": "true"},
        files=compreface_file(photos("two_people.jpg")),
    )
    assert (
        len(r.json()["result"]) == 1
        and r.json()["result"][0]["box"]["x_max"] == result[0]["box"]["x_max"]
    )
    # det_prob_threshold and box.probability are on one scale: a face is kept up to its own
    low, high = sorted(f["box"]["probability"] for f in result)
    assert high - low > 0.0005, (low, high)
    for threshold, kept in ((low - 0.0001, 2), (low + 0.0001, 1), (high + 0.0001, 0)):
        r = s.post(
            f"{CF}/recognize",
            params={"det_prob_threshold": threshold},
            files=compreface_file(photos("two_people.jpg")),
        )
        assert len(r.json().get("result", [])) == kept, (threshold, r.text)

    # pages
    page = s.get(f"{CF}/faces", params={"page": 1, "size": 2}).json()
    assert page["page_number"] == 1 and page["page_size"] == 2
    assert page["total_pages"] == 2 and page["total_elements"] == 3 and len(page["faces"]) == 1
    obama = s.get(f"{CF}/faces", params={"subject": OBAMA}).json()["faces"]
    assert [f["subject"] for f in obama] == [OBAMA, OBAMA]

    # one example: its image, then deleting it
    img = s.get(f"{CF}/faces/{obama[0]['image_id']}/img")
    assert img.headers["content-type"] == "image/jpeg" and decoded(img.content).shape == (
        112,
        112,
        3,
    )
    r = s.delete(f"{CF}/faces/{obama[0]['image_id']}")
    assert r.status_code == 200 and r.json() == {"image_id": obama[0]["image_id"], "subject": OBAMA}
    assert s.get(f"{CF}/faces", params={"subject": OBAMA}).json()["total_elements"] == 1
    biden = s.get(f"{CF}/faces", params={"subject": BIDEN}).json()["faces"][0]["image_id"]
    assert s.delete(f"{CF}/faces/{biden}").json()["subject"] == BIDEN  # the last one: the subject
    assert [p.name for p in s.gallery.people()] == [OBAMA]

    # CompreFace's errors
    missing = uuid.uuid4()
    assert s.delete(f"{CF}/faces/{missing}").json() == {
        "message": f"Image {missing} not found",
        "code": 11,
    }
    assert s.get(f"{CF}/faces/{missing}/img").status_code == 404
    for path, kwargs, code in (
        (f"{CF}/recognize", {}, 34),  # no file
        (f"{CF}/faces", {"files": compreface_file(photos("obama.jpg"))}, 33),  # no subject
        (
            f"{CF}/recognize?det_prob_threshold=2",
            {"files": compreface_file(photos("obama.jpg"))},
            26,
        ),
        (f"{CF}/recognize?limit=-1", {"files": compreface_file(photos("obama.jpg"))}, 26),
        (f"{CF}/faces?subject=%07", {"files": compreface_file(photos("obama.jpg"))}, 26),
        (f"{CF}/faces?subject=X", {"files": compreface_file(photos("two_people.jpg"))}, 31),
        (f"{CF}/recognize", {"files": {"file": ("x.jpg", b"nope", "image/jpeg")}}, 21),
    ):
        r = s.post(path, **kwargs)
        assert r.status_code == 400, (path, r.text)
        assert set(r.json()) == {"message", "code"} and r.json()["code"] == code, (path, r.text)
    r = s.delete(f"{CF}/faces")
    assert r.status_code == 400 and r.json()["code"] == 33  # never the whole collection at once
    assert [p.name for p in s.gallery.people()] == [OBAMA]
