"""What CompreFace's own Python client (compreface-sdk 0.6.0) sends for each call, recorded by a
stand-in server: the requests streamrec's CompreFace API must take as they come (the SDK
does not URL-encode names, joins options as ``?&key=value`` and writes booleans ``True``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from compreface_client import Services, services
from recording_server import RecordingServer, recording

KEY = "00000000-0000-0000-0000-000000000002"


@pytest.fixture
def server() -> Iterator[RecordingServer]:
    with recording((200, {"result": []})) as s:
        yield s


@pytest.fixture
def sdk(server: RecordingServer) -> Services:
    return services(server.url, KEY)


@pytest.fixture
def image(tmp_path: Path) -> Path:
    path = tmp_path / "lin.jpg"
    path.write_bytes(b"\xff\xd8 a jpeg")
    return path


def test_recognition_requests(sdk: Services, server: RecordingServer, image: Path) -> None:
    options = {
        "limit": 2,
        "det_prob_threshold": 0.8,
        "prediction_count": 3,
        "face_plugins": "age,gender",
        "status": True,
    }
    sdk.recognition.recognize(str(image), options)
    faces = sdk.recognition.get_face_collection()
    faces.add(str(image), "Lin Manuel", {"det_prob_threshold": 0.5})
    faces.list()
    faces.delete("6b6a4a4e-4b1c-4d3e-9a0a-0c5f7b1f2e3d")
    faces.delete_all("Lin Manuel")
    faces.verify(str(image), "6b6a4a4e-4b1c-4d3e-9a0a-0c5f7b1f2e3d", {"limit": 1})
    got = [(r.method, r.path, r.raw_query) for r in server.requests]
    assert got == [
        (
            "POST",
            "/api/v1/recognition/recognize",
            "&limit=2&det_prob_threshold=0.8&prediction_count=3&face_plugins=age,gender&status=True",
        ),
        ("POST", "/api/v1/recognition/faces", "subject=Lin%20Manuel&det_prob_threshold=0.5"),
        ("GET", "/api/v1/recognition/faces", ""),
        ("DELETE", "/api/v1/recognition/faces/6b6a4a4e-4b1c-4d3e-9a0a-0c5f7b1f2e3d", ""),
        ("DELETE", "/api/v1/recognition/faces", "subject=Lin%20Manuel"),
        (
            "POST",
            "/api/v1/recognition/faces/6b6a4a4e-4b1c-4d3e-9a0a-0c5f7b1f2e3d/verify",
            "&limit=1",
        ),
    ]
    for request in server.requests:
        assert request.headers["x-api-key"] == KEY
    upload = server.requests[0].part("file")
    assert (upload.filename, upload.data) == ("lin.jpg", image.read_bytes())
    assert server.requests[1].part("file").filename == "lin.jpg"


def test_subject_requests(sdk: Services, server: RecordingServer) -> None:
    subjects = sdk.recognition.get_subjects()
    subjects.list()
    subjects.add("Lin Manuel")
    subjects.update("Lin Manuel", "Lin-Manuel Miranda")
    subjects.delete("Lin-Manuel Miranda")
    subjects.delete_all()
    got = [(r.method, r.path, r.body) for r in server.requests]
    assert got == [
        ("GET", "/api/v1/recognition/subjects", b""),
        ("POST", "/api/v1/recognition/subjects", b'{"subject": "Lin Manuel"}'),
        (
            "PUT",
            "/api/v1/recognition/subjects/Lin%20Manuel",
            b'{"subject": "Lin-Manuel Miranda", "api_endpoint": "Lin Manuel"}',
        ),
        ("DELETE", "/api/v1/recognition/subjects/Lin-Manuel%20Miranda", b""),
        ("DELETE", "/api/v1/recognition/subjects", b""),
    ]
    for request in server.requests:
        assert request.headers["content-type"] == "application/json"
        assert request.headers["x-api-key"] == KEY


def test_detection_and_verification_requests(
    sdk: Services, server: RecordingServer, image: Path, tmp_path: Path
) -> None:
    other = tmp_path / "other.png"
    other.write_bytes(b"\x89PNG other")
    sdk.detection.detect(
        str(image), {"det_prob_threshold": 0.8, "face_plugins": "landmarks", "status": True}
    )
    sdk.verification.verify(str(image), str(other), {"limit": 1})
    detect, verify = server.requests
    assert (detect.method, detect.path, detect.raw_query) == (
        "POST",
        "/api/v1/detection/detect",
        "&det_prob_threshold=0.8&face_plugins=landmarks&status=True",
    )
    assert detect.part("file").data == image.read_bytes()
    assert (verify.method, verify.path, verify.raw_query) == (
        "POST",
        "/api/v1/verification/verify",
        "&limit=1",
    )
    assert verify.part("source_image").filename == "lin.jpg"
    assert verify.part("target_image").data == other.read_bytes()
