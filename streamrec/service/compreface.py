"""The part of CompreFace's REST API that Double Take and other CompreFace clients call.

Same paths, parameters, fields, status codes and errors as CompreFace's published REST API
(``docs/Rest-API-description.md`` of exadel-inc/CompreFace); the API key (``x-api-key``) is the
daemon's ``http.token``, checked like on every route:

* ``POST /api/v1/recognition/recognize`` (multipart ``file``; ``limit``, ``prediction_count``,
  ``det_prob_threshold``, ``face_plugins``, ``status``): every face, biggest first, with its
  ``box`` and the ``prediction_count`` most similar ``subjects``; ``landmarks`` and
  ``embedding`` with the ``landmarks`` and ``calculator`` plugins (others are ignored, and so
  is ``status``). No face: 400 ``{"message": "No face is found in the given image", "code": 28}``;
* ``POST /api/v1/recognition/faces?subject=NAME`` (multipart ``file`` with one face):
  201 ``{"image_id", "subject"}``;
* ``GET /api/v1/recognition/faces`` (``page``, ``size``, ``subject``): the saved examples;
* ``DELETE /api/v1/recognition/faces?subject=NAME``: ``{"deleted": count}``;
  ``DELETE /api/v1/recognition/faces/{image_id}``: ``{"image_id", "subject"}``;
* ``GET /api/v1/recognition/faces/{image_id}/img``: the example's face as JPEG (empty if none).

Errors are ``{"message", "code"}`` with CompreFace's codes. Differences: ``similarity`` follows
CompreFace's scale (0.5 is exactly ``recognition.threshold``, see :func:`similarity`); an
example's image is its aligned face, not the uploaded photo; ``DELETE .../faces`` without a
subject (CompreFace: delete every face) is refused; deleting a subject's last example deletes
the subject.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, FastAPI, File, HTTPException, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field

from streamrec.gallery.store import Sample
from streamrec.recognition import FaceCountError
from streamrec.service.api import (
    ApiError,
    FaceLibrary,
    face_count_refused,
    jpeg_response,
    sample_uuid,
    valid_name,
)

#: how fast ``similarity`` goes from 0 to 1 around the threshold (per unit of distance)
STEEPNESS = 5.0
PREFIX = "/api/v1/recognition"
_THRESHOLD = Query(ge=0.0, le=1.0, description="minimum detector confidence that a face is a face")


def similarity(cosine: np.ndarray, threshold: float) -> np.ndarray:
    """CompreFace's similarity scale for cosine similarities: like CompreFace's calculators,
    ``(tanh((d_t - d) * STEEPNESS) + 1) / 2`` of the distance ``d`` between the normalised
    embeddings and ``d_t`` the recognizer's threshold distance, so that 0.5 is exactly
    ``recognition.threshold`` and clients' percentage thresholds (Double Take's match at 60)
    mean what they mean with CompreFace."""
    distance = np.sqrt(np.clip(2.0 - 2.0 * np.asarray(cosine, np.float64), 0.0, 4.0))
    at_threshold = math.sqrt(2.0 - 2.0 * threshold)
    return np.asarray((np.tanh((at_threshold - distance) * STEEPNESS) + 1.0) / 2.0)


def _error(status: int, message: str, code: int) -> JSONResponse:
    return JSONResponse({"message": message, "code": code}, status_code=status)


def _validation(exc: RequestValidationError) -> JSONResponse:
    """FastAPI's 422 in CompreFace's words: a missing parameter (33) or part (34), or a bad
    value (26)."""
    first = exc.errors()[0]
    where, name = first["loc"][0], str(first["loc"][-1])
    if first["type"] == "missing":
        if where == "body":
            return _error(400, f"Required request part '{name}' is not present", 34)
        return _error(400, f"Required request parameter '{name}' is not present", 33)
    return _error(400, f"{name}: {first['msg']}", 26)


class _CompreFaceRoute(APIRoute):
    """Answers every refusal of its routes in CompreFace's shape."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as exc:
                return _validation(exc)
            except HTTPException as exc:  # CompreFace answers bad values with 400, never 422
                status = 400 if exc.status_code == 422 else exc.status_code
                return _error(status, str(exc.detail), getattr(exc, "code", 0))

        return route


class Box(BaseModel):
    probability: float
    x_max: int
    y_max: int
    x_min: int
    y_min: int


class Subject(BaseModel):
    subject: str
    similarity: float


class RecognizedFace(BaseModel):
    box: Box
    subjects: list[Subject]
    landmarks: list[list[int]] | None = Field(None, description="with face_plugins=landmarks")
    embedding: list[float] | None = Field(None, description="with face_plugins=calculator")


class RecognizeOut(BaseModel):
    result: list[RecognizedFace]


class SavedFace(BaseModel):
    image_id: str
    subject: str


class FacesPage(BaseModel):
    faces: list[SavedFace]
    page_number: int
    page_size: int
    total_pages: int
    total_elements: int


class DeletedOut(BaseModel):
    deleted: int


def router(lib: FaceLibrary) -> APIRouter:
    """The CompreFace routes (see the module's docstring)."""
    cf = APIRouter(prefix=PREFIX, route_class=_CompreFaceRoute, tags=["CompreFace"])
    recognize_route(cf, lib)
    example_routes(cf, lib)
    return cf


def examples(lib: FaceLibrary, subject: str | None = None) -> list[tuple[str, Sample]]:
    """(subject, sample) of every saved example, by subject then age."""
    people = [p.name for p in lib.gallery.people()]
    if subject is not None:
        people = [p for p in people if p == subject]
    return [(name, s) for name in people for s in lib.gallery.samples(name)]


def example(lib: FaceLibrary, uid: str) -> tuple[str, Sample]:
    found = next(((n, s) for n, s in examples(lib) if sample_uuid(s) == uid), None)
    if found is None:
        raise ApiError(404, f"Image {uid} not found", 11)
    return found


def recognize_route(cf: APIRouter, lib: FaceLibrary) -> None:
    """``/recognize``: who is in a photo, CompreFace's way."""

    @cf.post("/recognize", response_model_exclude_none=True)
    def recognize(
        file: Annotated[UploadFile, File(description="the image")],
        limit: Annotated[int, Query(ge=0, description="biggest faces first; 0: all")] = 0,
        prediction_count: Annotated[int, Query(ge=1, description="subjects per face")] = 1,
        det_prob_threshold: Annotated[float | None, _THRESHOLD] = None,
        face_plugins: Annotated[str, Query(description="landmarks, calculator")] = "",
        status: Annotated[bool, Query(description="accepted; no timings are returned")] = False,
    ) -> RecognizeOut:
        """Recognize the faces of an image (CompreFace's *Recognize Faces from a Given Image*)."""
        faces = lib.faces_in(file.file.read(), det_prob_threshold or 0.0)
        if not faces:
            raise face_count_refused(FaceCountError(0))
        faces = faces[:limit] if limit else faces
        plugins = {p.strip().lower() for p in face_plugins.split(",")}
        matcher = lib.recognition.matcher()
        scores = matcher.person_scores(np.stack([f.embedding for f in faces]))
        sims = similarity(scores, lib.recognition.threshold)
        result = []
        for i, f in enumerate(faces):
            best = np.argsort(-scores[i], kind="stable")[:prediction_count]
            x1, y1, x2, y2 = (round(float(v)) for v in f.box)
            result.append(
                RecognizedFace(
                    box=Box(
                        probability=round(f.det_score, 5), x_max=x2, y_max=y2, x_min=x1, y_min=y1
                    ),
                    subjects=[
                        Subject(subject=matcher.names[j], similarity=round(float(sims[i, j]), 5))
                        for j in best
                    ],
                    landmarks=(
                        [[round(float(x)), round(float(y))] for x, y in f.kps]
                        if "landmarks" in plugins
                        else None
                    ),
                    embedding=(
                        [float(v) for v in f.embedding] if "calculator" in plugins else None
                    ),
                )
            )
        return RecognizeOut(result=result)


def example_routes(cf: APIRouter, lib: FaceLibrary) -> None:
    """``/faces``: the saved examples of subjects (a subject is a person)."""

    @cf.post("/faces", status_code=201)
    def add_face(
        subject: Annotated[str, Query(description="the name of the subject")],
        file: Annotated[UploadFile, File(description="an image with one face")],
        det_prob_threshold: Annotated[float | None, _THRESHOLD] = None,
    ) -> SavedFace:
        """Save an example of a subject, created if new (*Add an Example of a Subject*)."""
        name = valid_name(subject)
        sample = lib.upload_sample(file, det_prob_threshold or 0.0)
        result = lib.enrol(name, [sample])
        for stray in result.strays:
            if stray.source == sample.source:
                raise ApiError(400, stray.describe(), 26)
        saved = lib.gallery.samples(name)
        # the same photo saved before: that example is the one
        found = next((s for s in reversed(saved) if s.sha256 == sample.sha256), saved[-1])
        return SavedFace(image_id=sample_uuid(found), subject=name)

    @cf.get("/faces")
    def list_faces(
        page: Annotated[int, Query(ge=0, description="page number, from 0")] = 0,
        size: Annotated[int, Query(ge=1, le=1000, description="faces per page")] = 20,
        subject: Annotated[str | None, Query(description="only this subject's")] = None,
    ) -> FacesPage:
        """The saved examples, a page at a time (*List of All Saved Examples of the Subject*)."""
        rows = examples(lib, subject)
        chosen = rows[page * size : (page + 1) * size]
        return FacesPage(
            faces=[SavedFace(image_id=sample_uuid(s), subject=n) for n, s in chosen],
            page_number=page,
            page_size=size,
            total_pages=math.ceil(len(rows) / size),
            total_elements=len(rows),
        )

    @cf.delete("/faces")
    def delete_subject(
        subject: Annotated[str, Query(description="whose examples (required here)")],
    ) -> DeletedOut:
        """Delete every example of a subject, i.e. the subject (*Delete All Examples of the
        Subject by Name*); 0 when there is no such subject."""
        person = lib.named(subject)
        if person is None:
            return DeletedOut(deleted=0)
        return DeletedOut(deleted=lib.remove(person.id).samples)

    @cf.delete("/faces/{image_id}")
    def delete_face(image_id: str) -> SavedFace:
        """Delete one example (*Delete an Example of the Subject by ID*); the subject's last
        example takes the subject with it."""
        name, sample = example(lib, image_id)
        if len(lib.gallery.samples(name)) == 1:
            lib.remove(name)
        else:
            with lib.refused():
                lib.recognition.delete_sample(name, sample.id)
        return SavedFace(image_id=image_id, subject=name)

    @cf.get(
        "/faces/{image_id}/img",
        response_class=Response,
        responses={200: {"content": {"image/jpeg": {}}}},
    )
    def face_image(image_id: str) -> Response:
        """An example's face as JPEG; empty when there is none (*Download an Image example of
        the Subject by ID*)."""
        _, sample = example(lib, image_id)
        face = lib.gallery.face(sample.face) if sample.face is not None else None
        return jpeg_response(face.jpeg if face is not None else b"")


def mount(app: FastAPI, lib: FaceLibrary) -> None:
    """Add the CompreFace routes to the web server's app."""
    app.include_router(router(lib))
