"""CompreFace's two verifications (REST API of CompreFace 1.2.0):

* ``POST /api/v1/verification/verify`` (*Face Verification Service*; ``source_image`` and
  ``target_image`` as multipart parts or base64 JSON; ``limit``, ``det_prob_threshold``,
  ``face_plugins``, ``status``): ``{"result": [{"source_image_face": {...}, "face_matches":
  [{box, similarity, ...}], "plugins_versions"?}]}``. The source image must hold exactly one
  face (none: 400 code 28, more: code 31), as ``FaceVerificationProcessServiceImpl.java``
  (v1.2.0, lines 135-139) checks; every face of the target (biggest first, ``limit``) is
  compared with it.
* ``POST /api/v1/recognition/faces/{image_id}/verify`` (*Verify Faces from a Given Image*;
  ``file``; the same options): ``{"result": [{box, subject, similarity, ...}],
  "plugins_versions"?}``, every face of the image compared with the saved example
  ``image_id`` (``SubjectService.verifyFace``, v1.2.0 line 228); an unknown id is 404 code 11.

``similarity`` is on CompreFace's scale (:func:`streamrec.scales.compreface_similarity`: 0.5
at streamrec's recognition threshold).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from streamrec.gallery.store import Sample
from streamrec.scales import compreface_similarity
from streamrec.service.api import ApiError, FaceLibrary
from streamrec.service.compreface_wire import (
    CompreFaceRoute,
    Face,
    FaceOptions,
    Found,
    Image,
    ImageBody,
    face_fields,
    found_any,
    plugins_versions,
)

_PAIR = ImageBody("source_image", "target_image")
_FILE = ImageBody("file")
Versions = Field(None, description="with status=true")


class FaceMatch(Face):
    similarity: float


class VerifiedFace(FaceMatch):
    subject: str


class Verification(BaseModel):
    source_image_face: Face
    face_matches: list[FaceMatch]
    plugins_versions: dict[str, str] | None = Versions


class VerifyOut(BaseModel):
    result: list[Verification]


class VerifyExampleOut(BaseModel):
    result: list[VerifiedFace]
    plugins_versions: dict[str, str] | None = Versions


def similarities(reference: np.ndarray, found: Found, threshold: float) -> list[float]:
    """CompreFace's similarity of each found face to the ``reference`` embedding."""
    faces = np.stack([f.embedding for f in found.faces])  # both normalised by the embedder
    return [round(float(s), 5) for s in compreface_similarity(faces @ reference, threshold)]


Example = Callable[[FaceLibrary, str], tuple[str, Sample]]


def router(lib: FaceLibrary, example: Example) -> APIRouter:
    """The verification routes (see the module's docstring); ``example(lib, image_id)`` finds
    a saved example."""
    cf = APIRouter(route_class=CompreFaceRoute, tags=["CompreFace"])

    @cf.post(
        "/api/v1/verification/verify",
        response_model_exclude_none=True,
        openapi_extra=_PAIR.openapi,
    )
    def verify(
        images: Annotated[dict[str, Image], Depends(_PAIR)],
        options: FaceOptions,
    ) -> VerifyOut:
        """Compare every face of ``target_image`` with the one face of ``source_image``
        (CompreFace's *Face Verification Service*)."""
        source = found_any(lib, images["source_image"].data, options.threshold)
        if len(source.faces) > 1:
            raise ApiError(400, "More than one face in the source image", 31)
        target = found_any(lib, images["target_image"].data, options.threshold, options.limit)
        sims = similarities(source.faces[0].embedding, target, lib.recognition.threshold)
        matches = [
            FaceMatch(similarity=sim, **face_fields(f, target, options))
            for f, sim in zip(target.faces, sims, strict=True)
        ]
        fields: dict[str, Any] = face_fields(source.faces[0], source, options)
        verification = Verification(
            source_image_face=Face(**fields),
            face_matches=matches,
            plugins_versions=plugins_versions(lib, options),
        )
        return VerifyOut(result=[verification])

    @cf.post(
        "/api/v1/recognition/faces/{image_id}/verify",
        response_model_exclude_none=True,
        openapi_extra=_FILE.openapi,
    )
    def verify_example(
        image_id: str,
        images: Annotated[dict[str, Image], Depends(_FILE)],
        options: FaceOptions,
    ) -> VerifyExampleOut:
        """Compare every face of an image with a saved example (CompreFace's *Verify Faces
        from a Given Image*)."""
        subject, sample = example(lib, image_id)
        reference = lib.gallery.vector(sample.id)
        if reference is None:  # deleted meanwhile
            raise ApiError(404, f"Image {image_id} not found", 11)
        found = found_any(lib, images["file"].data, options.threshold, options.limit)
        sims = similarities(reference, found, lib.recognition.threshold)
        return VerifyExampleOut(
            result=[
                VerifiedFace(subject=subject, similarity=s, **face_fields(f, found, options))
                for f, s in zip(found.faces, sims, strict=True)
            ],
            plugins_versions=plugins_versions(lib, options),
        )

    return cf
