"""Double Take v1.13.1's CompreFace detector, ported to Python for the tests: the requests it
sends and how it reads the answers.

Upstream: jakowenko/double-take ``api/src/util/detectors/compreface.js`` at v1.13.1 (commit
8e2728d): ``recognize`` (lines 10-30), ``train`` (32-49), ``remove`` (51-67), ``normalize``
(69-112); its defaults ``api/src/constants/defaults.js`` (``det_prob_threshold: 0.8``,
``timeout: 15``). It sends with axios 0.27.2 and form-data 4.0.0 (its package-lock); what those
put on the wire was recorded once from node (axios 0.27.2 + form-data 4.0.0 against a recording
server, 2026-12-07): the headers below, the ``file`` part with the file's name and the MIME type
of its extension, the body chunked (axios pipes form-data's stream), the query ``face_plugins=``
(the configured value, or the literal ``undefined``) then ``&det_prob_threshold=``.
"""

from __future__ import annotations

import mimetypes
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from streamrec.sinks import double_take as dt

#: axios 0.27.2's own headers in node
AXIOS_HEADERS = {"Accept": "application/json, text/plain, */*", "User-Agent": "axios/0.27.2"}
#: Double Take's ``detectors.compreface`` defaults (v1.13.1 defaults.js)
DET_PROB_THRESHOLD = 0.8
TIMEOUT = 15


def js_number(value: float) -> str:
    """A number as JavaScript writes it into a URL (``0.8``, ``1``)."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _form(path: Path) -> tuple[dict[str, str], Iterator[bytes]]:
    """form-data 4.0.0's multipart of one ``file`` part: its boundary (26 dashes, 24 digits),
    its headers and its body, streamed (sent chunked)."""
    boundary = "-" * 26 + "".join(secrets.choice("0123456789") for _ in range(24))
    kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"

    def body() -> Iterator[bytes]:
        yield (
            f"--{boundary}\r\n"
            f'Content-Disposition: form-data; name="file"; filename="{path.name}"\r\n'
            f"Content-Type: {kind}\r\n\r\n"
        ).encode()
        yield path.read_bytes()
        yield f"\r\n--{boundary}--\r\n".encode()

    return {"content-type": f"multipart/form-data; boundary={boundary}"}, body()


@dataclass(frozen=True)
class Detector:
    """``detectors.compreface`` of Double Take's config: ``url``, ``key``, ``face_plugins``
    (None: unset, sent as ``undefined``), ``det_prob_threshold``."""

    url: str
    key: str
    face_plugins: str | None = None
    det_prob_threshold: float = DET_PROB_THRESHOLD

    def recognize(self, image: Path, test: bool = False) -> requests.Response:
        """``recognize({key, test})``: ``test`` is the detector check of ``GET
        /api/recognize/test``, which always sends 0.8."""
        headers, body = _form(image)
        plugins = "undefined" if self.face_plugins is None else self.face_plugins
        threshold = js_number(0.8 if test else self.det_prob_threshold)
        return requests.post(
            f"{self.url}/api/v1/recognition/recognize?face_plugins={plugins}"
            f"&det_prob_threshold={threshold}",
            headers={**AXIOS_HEADERS, **headers, "x-api-key": self.key},
            data=body,
            timeout=TIMEOUT,
        )

    def train(self, name: str, image: Path) -> requests.Response:
        """``train({name, key})``: ``POST /faces?subject=name`` (axios encodes the name)."""
        headers, body = _form(image)
        return requests.post(
            f"{self.url}/api/v1/recognition/faces",
            params={"subject": name},
            headers={**AXIOS_HEADERS, **headers, "x-api-key": self.key},
            data=body,
            timeout=TIMEOUT,
        )

    def remove(self, name: str) -> requests.Response:
        """``remove({name})``: ``DELETE /faces?subject=name``."""
        return requests.delete(
            f"{self.url}/api/v1/recognition/faces",
            params={"subject": name},
            headers={**AXIOS_HEADERS, "x-api-key": self.key},
            timeout=TIMEOUT,
        )


class DetectorError(Exception):
    """What ``normalize`` throws (``new Error(data.message)``)."""


def normalize(data: Any, detect: dt.Detect | None = None) -> list[dt.Result]:
    """``normalize({camera, data})``: no ``result`` is no face when ``code`` is 28, else an
    error with ``data.message``; each face's best subject read on Double Take's scale
    (:func:`streamrec.sinks.double_take.normalize`, which ports lines 75-109)."""
    if data.get("result") is None:  # JavaScript's !data.result (an empty list is truthy)
        if data.get("code") == 28:
            return []
        raise DetectorError(data.get("message"))
    results = []
    for obj in data["result"]:
        face = obj["subjects"][0] if obj["subjects"] else None
        b = obj["box"]
        box = dt.Box.of_corners(b["x_min"], b["y_min"], b["x_max"], b["y_max"])
        r = dt.normalize(
            face and face["subject"],
            face["similarity"] if face else 0.0,
            box,
            detect or dt.Detect(),
        )
        if r is not None:
            results.append(r)
    return results
