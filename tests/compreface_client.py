"""CompreFace's own Python client (``compreface-sdk`` 0.6.0, exadel-inc/compreface-python-sdk)
pointed at a server under test: ``services(url, key)`` gives its recognition, detection and
verification services. The SDK is installed --no-deps by .ci/run (see pyproject's dev extra)."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from compreface import CompreFace
from compreface.service import DetectionService, RecognitionService, VerificationService


@dataclass
class Services:
    recognition: RecognitionService
    detection: DetectionService
    verification: VerificationService


def services(url: str, key: str) -> Services:
    """The SDK's services for the CompreFace API at ``url`` (scheme://host:port)."""
    parts = urlsplit(url)
    client = CompreFace(f"{parts.scheme}://{parts.hostname}", str(parts.port))
    return Services(
        client.init_face_recognition(key),
        client.init_face_detection(key),
        client.init_face_verification(key),
    )
