"""What every CompreFace route shares: its errors, its image bodies, its options and the face
it answers with, as CompreFace 1.2.0 has them (``docs/Rest-API-description.md``; error codes of
``java/common/.../handler/CommonExceptionCode.java``, v1.2.0).

* Errors are ``{"message", "code"}``; FastAPI's 422 becomes CompreFace's 400 with code 33 (a
  missing parameter), 34 (a missing part) or 26 (a bad value).
* An image comes as a multipart part or, with ``Content-Type: application/json``, as a base64
  string under the same name (*Base64 Support*, since 0.5.1): ``{"file": "<base64>"}``.
* ``det_prob_threshold`` and ``box.probability`` are on CompreFace's detection scale
  (:data:`streamrec.scales.SCRFD`), so that its default 0.8 keeps the faces SCRFD keeps.
* ``face_plugins``: ``landmarks`` and ``calculator`` are answered; CompreFace's other plugins
  (``age``, ``gender``, ``mask``, ``pose``, ``landmarks2d106``) get a 400 saying they are not
  supported; other words are ignored, as CompreFace ignores them (Double Take sends the literal
  ``undefined`` when none is configured).
* ``status=true`` adds each face's ``execution_time`` (ms) and the answer's ``plugins_versions``.
* A missing or wrong API key is answered as CompreFace's ``SecurityValidationFilter`` answers
  it (:func:`key_refusal`), the key never repeated.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from streamrec.scales import SCRFD
from streamrec.service.api import ApiError, FaceLibrary, FoundFace
from streamrec.service.http import KeyRefusal, key_refusals

#: the plugins streamrec answers
SUPPORTED_PLUGINS = ("landmarks", "calculator")
#: CompreFace 1.2.0's other plugin slugs (``embedding-calculator/src/services/facescan/plugins``:
#: agegender/agegender.py:58,70, insightface/insightface.py:187,196,217,
#: insightface/facemask/facemask.py:35, mixins.py:116): refused, never silently ignored; other
#: words are dropped as CompreFace's ``filter_face_plugins`` drops them (managers.py:86-88)
UNSUPPORTED_PLUGINS = ("age", "gender", "mask", "pose", "landmarks2d106")
#: base64 characters an image may take in a JSON body (a 6 MB image; the server's
#: ``http.max_body`` bounds the whole body before this)
MAX_BASE64 = 8 * 1024 * 1024

Limit = Annotated[int, Query(ge=0, description="biggest faces first; 0: all")]
Threshold = Annotated[
    float | None,
    Query(
        ge=0.0,
        le=1.0,
        description="minimum probability that a face is a face, on CompreFace's scale "
        "(default 0.8: every face the detector accepts)",
    ),
]
Plugins = Annotated[
    str, Query(description="landmarks, calculator (age, gender, mask, pose: not supported)")
]
Status = Annotated[bool, Query(description="add execution_time and plugins_versions")]


@dataclass(frozen=True)
class Options:
    """The options every route that finds faces takes (``limit``, ``det_prob_threshold``,
    ``face_plugins``, ``status``)."""

    limit: int
    threshold: float | None
    plugins: frozenset[str]
    status: bool


def _options(
    limit: Limit = 0,
    det_prob_threshold: Threshold = None,
    face_plugins: Plugins = "",
    status: Status = False,
) -> Options:
    return Options(limit, det_prob_threshold, plugins(face_plugins), status)


#: a route's options, as a FastAPI dependency (an unsupported plugin is refused there)
FaceOptions = Annotated[Options, Depends(_options)]


def error(status: int, message: str, code: int) -> JSONResponse:
    return JSONResponse({"message": message, "code": code}, status_code=status)


def _validation(exc: RequestValidationError) -> JSONResponse:
    """FastAPI's 422 in CompreFace's words: a missing parameter (33) or part (34), or a bad
    value (26)."""
    first = exc.errors()[0]
    where, name = first["loc"][0], str(first["loc"][-1])
    if first["type"] == "missing":
        if where == "body":
            return error(400, f"Required request part '{name}' is not present", 34)
        return error(400, f"Required request parameter '{name}' is not present", 33)
    return error(400, f"{name}: {first['msg']}", 26)


class CompreFaceRoute(APIRoute):
    """Answers every refusal of its routes in CompreFace's shape."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as exc:
                return _validation(exc)
            except HTTPException as exc:  # CompreFace answers bad values with 400, never 422
                # (Starlette's own too: a form with too many files or fields)
                status = 400 if exc.status_code == 422 else exc.status_code
                return error(status, str(exc.detail), getattr(exc, "code", 0))

        return route


# -- image bodies -----------------------------------------------------------------------------


def _missing(name: str) -> ApiError:
    return ApiError(400, f"Required request part '{name}' is not present", 34)


def _from_base64(name: str, value: object) -> bytes:
    """A JSON field's image: a base64 string (standard alphabet, padded, no line breaks)."""
    if value is None:
        raise _missing(name)
    if not isinstance(value, str):
        raise ApiError(400, f"{name}: a base64 string is needed", 26)
    if len(value) > MAX_BASE64:
        raise ApiError(400, f"{name}: at most {MAX_BASE64:,} base64 characters", 26)
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        # CompreFace 1.2.0 InvalidBase64Exception.java:23: "Provided value is not Base64", code 21
        raise ApiError(400, f"{name}: Provided value is not Base64", 21) from None


@dataclass(frozen=True)
class Image:
    """An image sent to a CompreFace route: its bytes and, from a multipart part, its file
    name (None from base64)."""

    data: bytes
    filename: str | None = None


class ImageBody:
    """A dependency: the images of a request by part name, from a multipart form or a base64
    JSON object (CompreFace's two ways)."""

    def __init__(self, *names: str) -> None:
        self.names = names
        self.openapi: dict[str, Any] = {
            "requestBody": {
                "required": True,
                "content": {
                    kind: {
                        "schema": {
                            "type": "object",
                            "required": list(names),
                            "properties": {n: {"type": "string", "format": fmt} for n in names},
                        }
                    }
                    for kind, fmt in (
                        ("multipart/form-data", "binary"),
                        ("application/json", "base64"),
                    )
                },
            }
        }

    async def __call__(self, request: Request) -> dict[str, Image]:
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind == "application/json":
            try:
                body = json.loads(await request.body())
            except (ValueError, UnicodeDecodeError):
                raise ApiError(400, "the body is not JSON", 26) from None
            if not isinstance(body, dict):
                raise ApiError(400, "the body must be a JSON object", 26)
            return {n: Image(_from_base64(n, body.get(n))) for n in self.names}
        if kind != "multipart/form-data":  # as a form without the part
            raise _missing(self.names[0])
        images: dict[str, Image] = {}
        # the parts' buffers (temporary files past 1 MB) are closed once read
        async with request.form(max_files=len(self.names), max_fields=20) as form:
            for name in self.names:
                part = form.get(name)
                if not isinstance(part, UploadFile):
                    raise _missing(name)
                images[name] = Image(await part.read(), part.filename)
        return images


# -- options and faces ------------------------------------------------------------------------


def plugins(face_plugins: str) -> frozenset[str]:
    """The plugins asked for that streamrec answers; 400 for one it does not have."""
    asked = {p.strip().lower() for p in face_plugins.split(",") if p.strip()}
    refused = sorted(asked & set(UNSUPPORTED_PLUGINS))
    if refused:
        raise ApiError(
            400,
            f"face plugin {', '.join(refused)} is not supported by streamrec "
            f"(it answers {' and '.join(SUPPORTED_PLUGINS)})",
            36,
        )
    return frozenset(asked & set(SUPPORTED_PLUGINS))


def min_score(det_prob_threshold: float | None) -> float:
    """The detector score a CompreFace ``det_prob_threshold`` stands for (None: CompreFace's
    default, 0.8, i.e. every face the detector accepts)."""
    return 0.0 if det_prob_threshold is None else SCRFD.score_for(det_prob_threshold)


class Box(BaseModel):
    probability: float = Field(description="on CompreFace's scale (0.8: the detector's default)")
    x_max: int
    y_max: int
    x_min: int
    y_min: int


class Face(BaseModel):
    """What CompreFace answers of every face; the optional parts with their plugin or
    ``status``."""

    box: Box
    landmarks: list[list[int]] | None = Field(None, description="with face_plugins=landmarks")
    embedding: list[float] | None = Field(None, description="with face_plugins=calculator")
    execution_time: dict[str, float] | None = Field(None, description="ms, with status=true")


@dataclass
class Found:
    """The faces of an image with how long finding them took (ms)."""

    faces: list[FoundFace]
    timings: dict[str, float] = field(default_factory=dict)


def find(lib: FaceLibrary, data: bytes, threshold: float | None, limit: int = 0) -> Found:
    """Every face of an image scoring at least ``threshold`` (CompreFace's scale), biggest
    first, at most ``limit`` (0: all)."""
    timings: dict[str, float] = {}
    faces = lib.faces_in(data, min_score(threshold), timings)
    return Found(faces[:limit] if limit else faces, timings)


def found_any(lib: FaceLibrary, data: bytes, threshold: float | None, limit: int = 0) -> Found:
    """:func:`find`; no face is CompreFace's 400 code 28 (what Double Take reads as none)."""
    found = find(lib, data, threshold, limit)
    if not found.faces:
        raise ApiError(400, "No face is found in the given image", 28)
    return found


def face_fields(f: FoundFace, found: Found, options: Options) -> dict[str, Any]:
    """The fields of a :class:`Face` (and of the models extending it) for one found face:
    per face, the detector's time is the image's and the calculator's the batch's share."""
    x1, y1, x2, y2 = (round(float(v)) for v in f.box)
    fields: dict[str, Any] = {
        "box": Box(
            probability=round(SCRFD.probability(f.det_score), 5),
            x_max=x2,
            y_max=y2,
            x_min=x1,
            y_min=y1,
        )
    }
    if "landmarks" in options.plugins:
        fields["landmarks"] = [[round(float(x)), round(float(y))] for x, y in f.kps]
    if "calculator" in options.plugins:
        fields["embedding"] = [float(v) for v in f.embedding]
    if options.status:
        share = found.timings.get("calculator", 0.0) / max(len(found.faces), 1)
        fields["execution_time"] = {
            "detector": round(found.timings.get("detector", 0.0), 1),
            "calculator": round(share, 1),
        }
    return fields


def _model_name(model: object) -> str:
    """A model's class and file (``ScrfdDetector.det_500m``)."""
    path = getattr(model, "path", None)
    kind = type(model).__name__
    return f"{kind}.{Path(path).stem}" if path is not None else kind


def plugins_versions(lib: FaceLibrary, options: Options) -> dict[str, str] | None:
    """CompreFace's ``plugins_versions`` with ``status``: the models behind the detector and
    the calculator, and the plugins answered."""
    if not options.status:
        return None
    models = lib.recognition.models
    versions = {
        "detector": f"streamrec.{_model_name(models.detector if models else None)}",
        "calculator": f"streamrec.{_model_name(models.embedder if models else None)}",
    }
    return versions | {p: f"streamrec.{p}" for p in sorted(options.plugins)}


# -- API keys -----------------------------------------------------------------------------------

#: the service each route family's key opens (CompreFace's ``ModelNotFoundException`` names it)
SERVICES = {
    "/api/v1/recognition/": "Recognition",
    "/api/v1/detection/": "Detection",
    "/api/v1/verification/": "Verification",
}


def key_refusal(service: str) -> KeyRefusal:
    """A refused ``x-api-key`` as CompreFace 1.2.0's ``SecurityValidationFilter.java`` answers
    it (lines 98-131): none, 400 code 20 ``Missing header: x-api-key`` (lines 126-128); a wrong
    one, 404 code 10 ``ModelNotFoundException`` (lines 115-119, which writes the key into the
    message: never here, a client may show or log it). A key that is not a UUID (lines 101-112,
    400 code 26) is not refused: streamrec's key is ``http.token``, any text."""

    def refuse(kind: str) -> Response:
        if kind == "missing":
            return error(400, "Missing header: x-api-key", 20)
        if kind == "throttled":
            return error(429, "too many wrong API keys from this address: retry later", 0)
        return error(404, f"{service} service with this API key not found", 10)

    return refuse


def answer_key_refusals(app: FastAPI) -> None:
    """CompreFace's routes answer a missing or wrong key in CompreFace's shape."""
    for prefix, service in SERVICES.items():
        key_refusals(app)[prefix] = key_refusal(service)
