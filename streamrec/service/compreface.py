"""CompreFace's REST API (v1.2.0, ``docs/Rest-API-description.md`` of exadel-inc/CompreFace)
as Double Take and CompreFace's own SDKs call it: this module's recognition routes, and
:func:`mount` adds the subjects (:mod:`.compreface_subjects`), detection
(:mod:`.compreface_detection`) and verification (:mod:`.compreface_verification`) services.
What they share (errors, base64 bodies, plugins, ``status``, the detection scale, the key's
refusals) is :mod:`.compreface_wire`. The API key (``x-api-key``) is the daemon's
``http.token``, checked like on every route; a missing or wrong one is answered as CompreFace
answers it.

* ``POST /api/v1/recognition/recognize`` (``file``; ``limit``, ``prediction_count``,
  ``det_prob_threshold``, ``face_plugins``, ``status``): every face, biggest first, with its
  ``box`` and the ``prediction_count`` most similar ``subjects``. No face: 400
  ``{"message": "No face is found in the given image", "code": 28}``;
* ``POST /api/v1/recognition/faces?subject=NAME`` (``file`` with one face; ``det_prob_threshold``):
  201 ``{"image_id", "subject"}``;
* ``GET /api/v1/recognition/faces`` (``page``, ``size``, ``subject``): the saved examples;
* ``DELETE /api/v1/recognition/faces?subject=NAME``: ``{"deleted": count}``;
  ``DELETE /api/v1/recognition/faces/{image_id}``: ``{"image_id", "subject"}``;
* ``GET /api/v1/recognition/faces/{image_id}/img``: the example's face as JPEG (empty if none).

Differences: ``similarity`` follows CompreFace's scale (0.5 is exactly
``recognition.threshold``, :func:`streamrec.scales.compreface_similarity`); an example's image
is its aligned face, not the uploaded photo; ``DELETE .../faces`` without a subject (CompreFace:
delete every face) is refused; deleting a subject's last example deletes the subject.
"""

from __future__ import annotations

import math
from typing import Annotated

import numpy as np
from fastapi import APIRouter, Body, Depends, FastAPI, Query
from fastapi.responses import Response
from pydantic import BaseModel, Field

from streamrec.gallery.store import Sample
from streamrec.scales import compreface_similarity
from streamrec.service import (
    compreface_detection,
    compreface_subjects,
    compreface_verification,
)
from streamrec.service.api import (
    ApiError,
    FaceLibrary,
    jpeg_response,
    sample_uuid,
    valid_name,
)
from streamrec.service.compreface_wire import (
    CompreFaceRoute,
    Face,
    FaceOptions,
    Found,
    Image,
    ImageBody,
    Threshold,
    answer_key_refusals,
    face_fields,
    found_any,
    min_score,
    plugins_versions,
)

PREFIX = "/api/v1/recognition"
#: image ids one ``POST /faces/delete`` may name
MAX_IDS = 1000
_FILE = ImageBody("file")


class Subject(BaseModel):
    subject: str
    similarity: float


class RecognizedFace(Face):
    subjects: list[Subject]


class RecognizeOut(BaseModel):
    result: list[RecognizedFace]
    plugins_versions: dict[str, str] | None = Field(None, description="with status=true")


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


def examples(lib: FaceLibrary, subject: str | None = None) -> list[tuple[str, Sample]]:
    """(subject, sample) of every saved example, by subject then age."""
    people = [p.name for p in lib.gallery.people()]
    if subject is not None:
        people = [p for p in people if p == subject]
    return [(name, s) for name in people for s in lib.gallery.samples(name)]


def example(lib: FaceLibrary, uid: str) -> tuple[str, Sample]:
    """The saved example of that ``image_id``; 404 code 11 (CompreFace's) if none."""
    found = next(((n, s) for n, s in examples(lib) if sample_uuid(s) == uid), None)
    if found is None:
        raise ApiError(404, f"Image {uid} not found", 11)
    return found


def recognize_route(cf: APIRouter, lib: FaceLibrary) -> None:
    """``/recognize``: who is in a photo, CompreFace's way."""

    @cf.post("/recognize", response_model_exclude_none=True, openapi_extra=_FILE.openapi)
    def recognize(
        images: Annotated[dict[str, Image], Depends(_FILE)],
        options: FaceOptions,
        prediction_count: Annotated[int, Query(ge=1, description="subjects per face")] = 1,
        detect_faces: Annotated[
            bool, Query(description="false: the image is one aligned face (no detection)")
        ] = True,
    ) -> RecognizeOut:
        """Recognize the faces of an image (CompreFace's *Recognize Faces from a Given Image*)."""
        data = images["file"].data
        if detect_faces:
            found = found_any(lib, data, options.threshold, options.limit)
        else:
            found = Found([])
            found.faces.append(lib.whole_face(data, found.timings))
        matcher = lib.recognition.matcher()
        scores = matcher.person_scores(np.stack([f.embedding for f in found.faces]))
        sims = compreface_similarity(scores, lib.recognition.threshold)
        result = []
        for i, f in enumerate(found.faces):
            best = np.argsort(-scores[i], kind="stable")[:prediction_count]
            subjects = [
                Subject(subject=matcher.names[j], similarity=round(float(sims[i, j]), 5))
                for j in best
            ]
            result.append(RecognizedFace(subjects=subjects, **face_fields(f, found, options)))
        versions = plugins_versions(lib, options)
        return RecognizeOut(result=result, plugins_versions=versions)


def example_routes(cf: APIRouter, lib: FaceLibrary) -> None:
    """``/faces``: the saved examples of subjects (a subject is a person)."""

    @cf.post("/faces", status_code=201, openapi_extra=_FILE.openapi)
    def add_face(
        subject: Annotated[str, Query(description="the name of the subject")],
        images: Annotated[dict[str, Image], Depends(_FILE)],
        det_prob_threshold: Threshold = None,
    ) -> SavedFace:
        """Save an example of a subject, created if new (*Add an Example of a Subject*)."""
        name = valid_name(subject)
        photo = images["file"]
        sample = lib.photo_sample(photo.data, photo.filename, min_score(det_prob_threshold))
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

    def delete_example(name: str, sample: Sample) -> None:
        """The subject's last example takes the subject with it."""
        if len(lib.gallery.samples(name)) == 1:
            lib.remove(name)
        else:
            with lib.refused():
                lib.recognition.delete_sample(name, sample.id)

    @cf.delete("/faces/{image_id}")
    def delete_face(image_id: str) -> SavedFace:
        """Delete one example (*Delete an Example of the Subject by ID*); the subject's last
        example takes the subject with it."""
        name, sample = example(lib, image_id)
        delete_example(name, sample)
        return SavedFace(image_id=image_id, subject=name)

    @cf.post("/faces/delete")
    def delete_faces(
        image_ids: Annotated[list[str], Body(max_length=MAX_IDS, description="image ids")],
    ) -> list[SavedFace]:
        """Delete several examples (*Delete Multiple Examples*); ids of no example are
        ignored, as CompreFace ignores them."""
        saved = {sample_uuid(s): (n, s) for n, s in examples(lib)}
        deleted = []
        for uid in dict.fromkeys(image_ids):
            if uid in saved:
                name, sample = saved[uid]
                delete_example(name, sample)
                deleted.append(SavedFace(image_id=uid, subject=name))
        return deleted

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


def router(lib: FaceLibrary) -> APIRouter:
    """The recognition service's recognize and example routes (see the module's docstring)."""
    cf = APIRouter(prefix=PREFIX, route_class=CompreFaceRoute, tags=["CompreFace"])
    recognize_route(cf, lib)
    example_routes(cf, lib)
    return cf


def mount(app: FastAPI, lib: FaceLibrary) -> None:
    """Add CompreFace's recognition (with subjects), detection and verification services to
    the web server's app."""
    answer_key_refusals(app)
    app.include_router(router(lib))
    app.include_router(compreface_subjects.router(lib))
    app.include_router(compreface_verification.router(lib, example))
    app.include_router(compreface_detection.router(lib))
