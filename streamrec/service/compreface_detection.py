"""CompreFace's detection service (*Face Detection Service* of CompreFace 1.2.0's REST API):

``POST /api/v1/detection/detect`` (multipart ``file`` or base64 JSON ``{"file"}``; ``limit``,
``det_prob_threshold``, ``face_plugins``, ``status``): ``{"result": [{box, landmarks?,
embedding?, execution_time?}], "plugins_versions"?}``, biggest faces first. No face: 400 code
28, as CompreFace's embedding calculator answers (``NoFaceFoundError``).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from streamrec.service.api import FaceLibrary
from streamrec.service.compreface_wire import (
    CompreFaceRoute,
    Face,
    FaceOptions,
    Image,
    ImageBody,
    face_fields,
    found_any,
    plugins_versions,
)

PREFIX = "/api/v1/detection"
_FILE = ImageBody("file")


class DetectOut(BaseModel):
    result: list[Face]
    plugins_versions: dict[str, str] | None = Field(None, description="with status=true")


def router(lib: FaceLibrary) -> APIRouter:
    """The detection route (see the module's docstring)."""
    cf = APIRouter(prefix=PREFIX, route_class=CompreFaceRoute, tags=["CompreFace"])

    @cf.post("/detect", response_model_exclude_none=True, openapi_extra=_FILE.openapi)
    def detect(
        images: Annotated[dict[str, Image], Depends(_FILE)],
        options: FaceOptions,
    ) -> DetectOut:
        """Find the faces of an image (CompreFace's *Face Detection Service*)."""
        found = found_any(lib, images["file"].data, options.threshold, options.limit)
        return DetectOut(
            result=[Face(**face_fields(f, found, options)) for f in found.faces],
            plugins_versions=plugins_versions(lib, options),
        )

    return cf
