"""The face library over HTTP: the native REST API under ``/api/`` and the Faces page.

People and unknown people are addressed by their id (a number); a name is data, never part of
a path (``GET /api/people?name=`` finds a person by name). Routes (JSON unless said otherwise;
URLs in answers are relative to the server's root):

* ``GET /api/people`` (``?name=``: only that person), ``POST /api/people`` (form: ``name``,
  photos ``files`` and/or a recent recognition ``recent``), ``GET|PATCH|DELETE
  /api/people/{id}`` (PATCH ``{"name"}`` renames, ``{"thumbnail": face id or null}`` picks the
  thumbnail), ``POST /api/people/{id}/merge`` (``{"into": id}``: fold them into that person);
* ``GET|POST /api/people/{id}/samples`` (form: a photo ``file`` or ``recent``),
  ``DELETE /api/people/{id}/samples/{sample}``; ``GET /api/faces/{face}.jpg`` (a stored face);
* ``GET /api/unknowns``, ``POST /api/unknowns/{id}/name`` (``{"name"}``: confirm it; onto an
  enrolled person's name only with ``"merge": true``, else 409 asking),
  ``POST /api/unknowns/{id}/merge`` (``{"into": id}``), ``DELETE /api/unknowns/{id}``;
* (the recent recognitions and their faces, ``/api/recent`` and ``/api/recent/{id}.jpg``, are
  routes of :mod:`streamrec.service.http`: cluster mode serves them too);
* ``POST /api/recognize`` (form: ``file``): every face with box, landmarks, name and score;
* ``GET /faces``: the Faces page (``web/faces.html``).

Every write goes through the process's :class:`~streamrec.recognition.Recognition` service,
which hands it to the running pipeline before it returns, so a change counts from the next
frame; an erasure returns once the pipeline has forgotten the person and the event files are
rewritten. Names are checked by the one rule (:func:`~streamrec.gallery.names.validate_name`): a
refused name is a 400; a photo for a sample must show exactly one face (else 400, with the
message of :class:`~streamrec.recognition.FaceCountError`).

Uploads are decoded with Pillow into at most ``MAX_SIDE`` pixels (answers are in the original
image's coordinates); one upload is analysed at a time, with a few waiting, so uploads cannot
starve the cameras.
"""

from __future__ import annotations

import hashlib
import io
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from importlib import resources
from typing import Annotated, Any

import cv2
import numpy as np
from fastapi import APIRouter, FastAPI, File, Form, HTTPException, Query, UploadFile
from fastapi.responses import Response
from PIL import Image, ImageOps
from pydantic import BaseModel, Field

from streamrec.errors import GalleryError
from streamrec.gallery.store import (
    AddResult,
    Gallery,
    InvalidName,
    NameConflict,
    Person,
    Removed,
    Sample,
    UnknownPerson,
    validate_name,
)
from streamrec.recognition import FaceCountError, FoundFace, NewSample, Recognition, only_face
from streamrec.service.http import page_csp
from streamrec.service.status import LiveStatus

log = logging.getLogger(__name__)

#: uploads are analysed at most this big (longest side); detection runs smaller anyway
MAX_SIDE = 2048
#: uploads with more pixels are refused (a small file can hold a huge image); a baseline JPEG
#: is decoded at a reduced scale (1/2, 1/4, 1/8), so one of 50 MP costs about 75 MB at most
MAX_PIXELS = 50_000_000
#: images decoded whole are refused beyond this: progressive JPEGs (their decoder holds every
#: coefficient: up to 6 bytes a pixel) and other formats (Pillow: 4 bytes a pixel, WebP 16,
#: its decoder copies twice); so one upload never costs more than about 90 MB
MAX_FULL_PIXELS = 8_000_000
_PIXELS = {"WEBP": 4_000_000}
_REDUCED = {
    1: cv2.IMREAD_COLOR,
    2: cv2.IMREAD_REDUCED_COLOR_2,
    4: cv2.IMREAD_REDUCED_COLOR_4,
    8: cv2.IMREAD_REDUCED_COLOR_8,
}
#: what Pillow may decode (CompreFace's list); nothing that runs external programs
IMAGE_FORMATS = ("JPEG", "PNG", "BMP", "GIF", "TIFF", "WEBP", "ICO")
NOT_AN_IMAGE = "not an image (JPEG, PNG, BMP, GIF, TIFF, WebP or ICO)"
#: uploads analysed or waiting at once; more get 503 (each holds a web server thread)
MAX_ANALYSES = 3
JPEG: dict[int | str, dict[str, Any]] = {
    200: {"content": {"image/jpeg": {}}, "description": "a JPEG image"}
}
#: image ids (CompreFace's ``image_id``) are derived from a sample's id and creation time
_IMAGE_NAMESPACE = uuid.UUID("6f0c1b52-4d1e-4a8e-9f5e-2b7d3c9a1e40")


class ApiError(HTTPException):
    """A refusal with a clear ``detail``; ``code`` is CompreFace's error code for it."""

    def __init__(self, status_code: int, detail: str, code: int = 0) -> None:
        super().__init__(status_code, detail)
        self.code = code


def decode_image(data: bytes) -> tuple[np.ndarray, float]:
    """A BGR image of at most ``MAX_SIDE`` px from an upload, upright (EXIF orientation), and
    the scale back to the original (original pixels per returned pixel).

    Pillow reads the header (the format must be one of ``IMAGE_FORMATS``; the size is checked
    before anything is decoded). A baseline JPEG is then decoded by OpenCV at a reduced scale
    (``IMREAD_REDUCED_*``); anything else by Pillow, scaled down before it is turned upright
    and converted, so only the decoded image and the small copy ever coexist.
    """
    try:
        with Image.open(io.BytesIO(data), formats=IMAGE_FORMATS) as im:
            width, height = im.size
            reduced = im.format == "JPEG" and not im.info.get("progressive")
            limit = MAX_PIXELS if reduced else _PIXELS.get(im.format or "", MAX_FULL_PIXELS)
            if width * height > limit:
                kind = "a baseline JPEG" if reduced else f"{im.format}, unless a baseline JPEG"
                raise ApiError(
                    400,
                    f"image too large: {width}x{height} pixels (at most {limit:,} in {kind}): "
                    "scale it down",
                    26,
                )
            if not reduced:
                im.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
                ImageOps.exif_transpose(im, in_place=True)  # on the small image
                rgb = np.asarray(im if im.mode == "RGB" else im.convert("RGB"))
                image = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    except ApiError:
        raise
    except Exception:  # Pillow raises many kinds for bad, truncated or hostile files
        raise ApiError(400, NOT_AN_IMAGE, 21) from None
    if reduced:  # OpenCV turns it upright by its EXIF orientation, and refuses a truncated one
        factor = max(f for f in _REDUCED if f == 1 or max(width, height) / f >= MAX_SIDE)
        decoded = cv2.imdecode(np.frombuffer(data, np.uint8), _REDUCED[factor])
        if decoded is None:
            raise ApiError(400, NOT_AN_IMAGE, 21)
        image = decoded
    longest = max(image.shape[:2])
    if longest > MAX_SIDE:
        f = MAX_SIDE / longest
        image = cv2.resize(image, None, fx=f, fy=f, interpolation=cv2.INTER_AREA)
    return image, max(width, height) / max(image.shape[:2])


def sample_uuid(sample: Sample) -> str:
    """The stable UUID of a sample (CompreFace's ``image_id``): a sample id that SQLite hands
    out again after a deletion gets another UUID, since its creation time differs."""
    return str(uuid.uuid5(_IMAGE_NAMESPACE, f"{sample.id}:{sample.created!r}"))


def shown_source(source: str) -> str:
    """A sample's source as answers show it: a file's name only (``photo.jpg``,
    ``clip.mp4#frame=12``), never where the server keeps it; uploads and camera tracks as
    they are."""
    if source.startswith(("upload ", "camera ")):
        return source
    return re.split(r"[\\/]", source)[-1]


def face_url(face_id: int) -> str:
    return f"api/faces/{face_id}.jpg"


def jpeg_response(data: bytes) -> Response:
    return Response(data, media_type="image/jpeg")


class FaceLibrary:
    """What the face routes share: the Recognition service, the live status, the erasure of
    files. The service's gallery is None when the daemon runs without one (the gallery routes
    answer 409); its changes reach the running pipeline before they return."""

    def __init__(
        self,
        recognition: Recognition,
        status: LiveStatus,
        erase_files: Callable[[Sequence[str]], object] = lambda labels: None,
    ) -> None:
        """``erase_files``: erases the labels of a person removed through the API from the
        event files and the sinks too (the running pipeline forgets them in memory)."""
        self.recognition = recognition
        self.status = status
        self._erase_files = erase_files
        self._slots = threading.BoundedSemaphore(MAX_ANALYSES)
        self._analysis = threading.Lock()

    @property
    def gallery(self) -> Gallery:
        if self.recognition.store is None:
            raise ApiError(
                409, "this daemon has no gallery: set 'gallery:' in its config and restart it"
            )
        return self.recognition.store

    @contextmanager
    def refused(self) -> Iterator[None]:
        """The gallery's refusals as answers: a refused name is a 400, a name clash and its
        other refusals (the last sample ...) a 409."""
        try:
            yield
        except InvalidName as exc:
            raise ApiError(400, str(exc), 26) from None
        except NameConflict as exc:
            raise ApiError(409, str(exc), 44) from None
        except GalleryError as exc:
            raise ApiError(409, str(exc).replace(f" in gallery {self.gallery.path}", "")) from None

    def erased(self, removed: Removed) -> None:
        """After a removal (the pipeline has forgotten the person already, so that nothing
        running writes them again): the files and sinks forget every label they had."""
        for label in removed.labels:
            self.status.forget(label)
        try:
            self._erase_files(removed.labels)
        except Exception as exc:
            log.error("erasing a person from the event files failed: %s", exc)

    def remove(self, person: int | str) -> Removed:
        """Erase a person (or an unknown person) everywhere."""
        with self.refused():
            removed = self.recognition.remove(person)
        self.erased(removed)
        return removed

    @contextmanager
    def _analysing(self) -> Iterator[None]:
        if not self._slots.acquire(blocking=False):
            raise ApiError(503, "busy analysing other uploads; retry in a moment")
        try:
            with self._analysis:
                yield
        finally:
            self._slots.release()

    def faces_in(
        self, data: bytes, min_score: float = 0.0, timings: dict[str, float] | None = None
    ) -> list[FoundFace]:
        """Every face of an uploaded image scoring at least ``min_score``, biggest first, in the
        original image's coordinates; ``timings`` gets the ms the detector and the embedder
        took (:meth:`Recognition.faces`)."""
        with self._analysing():
            image, scale = decode_image(data)
            found = self.recognition.faces(image, min_score, timings)
        # in the original image's pixels; boxes kept inside it (crops are cut from them)
        height, width = (round(n * scale) for n in image.shape[:2])
        bounds = np.array([width, height, width, height], np.float32)
        faces = [
            replace(f, box=np.clip(f.box * scale, 0, bounds), kps=f.kps * scale) for f in found
        ]
        return sorted(faces, key=lambda f: -f.area)

    def whole_face(self, data: bytes, timings: dict[str, float] | None = None) -> FoundFace:
        """An uploaded image that is a face already, aligned (CompreFace's
        ``detect_faces=false``): no detection, the whole image resized for the recognizer;
        its box is the image, its detector score 1, its landmarks (there are none) the image's
        corners and centre, its quality unmeasured (0); ``timings`` gets the ms the
        ``calculator`` took (the ``detector``: 0)."""
        models = self.recognition.models
        if models is None:
            raise ApiError(409, "this process has no face models")
        with self._analysing():
            image, scale = decode_image(data)
            size = models.embedder.input_size
            start = time.perf_counter()
            crop = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
            embedding = self.recognition.embed([crop])[0]
            if timings is not None:
                timings |= {"detector": 0.0, "calculator": (time.perf_counter() - start) * 1e3}
        height, width = (round(n * scale) for n in image.shape[:2])
        box = np.array([0, 0, width, height], np.float32)
        points = [[0, 0], [width, 0], [width / 2, height / 2], [0, height], [width, height]]
        return FoundFace(box, np.array(points, np.float32), 1.0, embedding, crop, 0.0)

    def one_face(self, data: bytes, min_score: float = 0.0) -> FoundFace:
        """The one face of an uploaded image; 400 saying how many were found otherwise."""
        try:
            return only_face(self.faces_in(data, min_score))
        except FaceCountError as exc:
            raise face_count_refused(exc) from None

    def embed_crop(self, crop: np.ndarray) -> np.ndarray:
        with self._analysing():
            return self.recognition.embed([crop])[0]

    def recent_sample(self, recent_id: int) -> NewSample:
        """A recent recognition's face, picked by the user: enrolled on purpose."""
        item = self.status.recognition(recent_id)
        if item is None or item.crop is None:
            raise ApiError(
                404, f"no recent recognition {recent_id} with a face (it may have expired)"
            )
        source = f"camera {item.camera} track {item.track_id} at {item.time:.0f}"
        return NewSample(self.embed_crop(item.crop), item.crop, None, source)

    def upload_sample(self, upload: UploadFile, min_score: float = 0.0) -> NewSample:
        """An uploaded photo with exactly one face; its sha256 identifies it (the same photo
        sent again, or enrolled from the command line, adds nothing)."""
        return self.photo_sample(upload.file.read(), upload.filename, min_score)

    def photo_sample(self, data: bytes, filename: str | None, min_score: float = 0.0) -> NewSample:
        """A photo's bytes with exactly one face (``filename``: its source, if printable)."""
        face = self.one_face(data, min_score)
        name = (filename or "").replace("\\", "/").rsplit("/", 1)[-1]
        source = name if name.isprintable() and 0 < len(name) <= 200 else "upload"
        digest = hashlib.sha256(data).hexdigest()
        return NewSample(face.embedding, face.crop, face.quality, source, digest)

    def enrol(self, name: str, samples: Sequence[NewSample]) -> AddResult:
        """Add samples to ``name`` (created if new)."""
        with self.refused():
            return self.recognition.enrol(name, samples)

    def person(self, person_id: int) -> Person:
        """An enrolled person, or 404."""
        found = self._find(person_id)
        if not isinstance(found, Person):
            raise ApiError(404, "no such person", 42)
        return found

    def unknown(self, unknown_id: int) -> UnknownPerson:
        """An unconfirmed person, or 404."""
        found = self._find(unknown_id)
        if not isinstance(found, UnknownPerson):
            raise ApiError(404, "no such unknown person")
        return found

    def _find(self, ref: int | str) -> Person | UnknownPerson | None:
        try:
            return self.gallery.person(ref)
        except GalleryError:
            return None

    def named(self, name: str) -> Person | None:
        """The enrolled person of that exact name, if any."""
        found = self._find(name)
        return found if isinstance(found, Person) else None


def face_count_refused(exc: FaceCountError) -> ApiError:
    """No face, or several, where one is needed: a 400 with CompreFace's code (28 / 31)."""
    return ApiError(400, str(exc), 28 if exc.count == 0 else 31)


def valid_name(name: str) -> str:
    """The name rule of every entry point; a refused name is a 400."""
    try:
        return validate_name(name)
    except GalleryError as exc:
        raise ApiError(400, str(exc), 26) from None


# -- models (they document the answers in the OpenAPI schema) --------------------------------


class PersonOut(BaseModel):
    id: int = Field(description="how the API addresses the person")
    name: str
    samples: int = Field(description="sample embeddings")
    faces: int = Field(description="stored face images")
    created: float
    thumbnail: str | None = Field(description="URL of their thumbnail face")
    thumbnail_face: int | None = Field(description="id of the thumbnail's face image")
    thumbnail_chosen: bool = Field(
        description="picked by a user (else: the best-quality enrolled photo)"
    )


class SampleOut(BaseModel):
    id: int
    source: str = Field(description="where it came from (a file's name, an upload, a camera track)")
    created: float
    face: str | None = Field(description="URL of its face image")
    face_id: int | None = Field(description="id of its face image (to pick it as thumbnail)")
    enrolled: bool = Field(description="added on purpose (not a sighting of an unknown)")
    image_id: str = Field(description="its CompreFace image_id")


class EnrolOut(BaseModel):
    id: int = Field(description="the person's id")
    name: str
    samples: int = Field(description="samples the person holds now")
    added: int = Field(description="samples this call added")
    duplicates: int = Field(description="samples skipped: the person had them already")
    strays: list[str] = Field(description="samples dropped as too far from the person's look")


class RemovedOut(BaseModel):
    name: str
    samples: int
    faces: int


class LeftOut(BaseModel):
    samples: int = Field(description="samples the person holds now")


class UnknownOut(BaseModel):
    id: int = Field(description="how the API addresses it")
    label: str
    samples: int
    faces: int
    first_seen: float
    last_seen: float
    crops: list[str] = Field(description="URLs of its best faces, best first")


class RecognizedFace(BaseModel):
    bbox: list[float] = Field(description="x1, y1, x2, y2 in image pixels")
    kps: list[list[float]] = Field(description="eyes, nose, mouth corners: [x, y] each")
    det_score: float
    name: str | None = Field(description="the person, or null when unknown")
    score: float | None = Field(description="cosine similarity to the best person")


class RecognizeOut(BaseModel):
    faces: list[RecognizedFace]


class NameIn(BaseModel):
    name: str = Field(description="a person's name (1-100 printable characters, no / or \\)")
    merge: bool = Field(
        False, description="the name is an enrolled person's: fold the unknown into them"
    )


class PersonPatch(BaseModel):
    name: str | None = Field(None, description="rename them")
    thumbnail: int | None = Field(
        None, description="id of one of their face images, or null: the best enrolled photo"
    )


class MergeIn(BaseModel):
    into: int = Field(description="id of the person (or unknown person) to merge into")


def person_out(p: Person) -> PersonOut:
    return PersonOut(
        id=p.id,
        name=p.name,
        samples=p.embeddings,
        faces=p.faces,
        created=p.created,
        thumbnail=None if p.thumbnail is None else face_url(p.thumbnail),
        thumbnail_face=p.thumbnail,
        thumbnail_chosen=p.thumbnail_chosen,
    )


def enrol_out(person: Person, sources: Sequence[str], result: AddResult) -> EnrolOut:
    gone = set(result.duplicates) | {s.source for s in result.strays}
    return EnrolOut(
        id=person.id,
        name=person.name,
        samples=result.total,
        added=sum(1 for s in sources if s not in gone),
        duplicates=len(result.duplicates),
        strays=[s.describe() for s in result.strays],
    )


NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "no such person"}}
UNKNOWN_404: dict[int | str, dict[str, Any]] = {404: {"description": "no such unknown"}}


def router(lib: FaceLibrary) -> APIRouter:
    """The native routes (see the module's docstring), a group at a time."""
    api = APIRouter(prefix="/api", tags=["face library"])
    people_routes(api, lib)
    sample_routes(api, lib)
    unknown_routes(api, lib)
    recognize_route(api, lib)
    return api


def samples_of(
    lib: FaceLibrary, files: Sequence[UploadFile], recent: int | None
) -> list[NewSample]:
    """The samples a request sends: photos (one face each) and/or a recent recognition."""
    samples = [lib.upload_sample(f) for f in files]
    if recent is not None:
        samples.append(lib.recent_sample(recent))
    if not samples:
        raise ApiError(422, "send a photo ('file' or 'files') or a recent recognition id")
    return samples


def enrolled(lib: FaceLibrary, name: str, samples: Sequence[NewSample]) -> EnrolOut:
    """Enrol ``samples`` to ``name``; what it did."""
    result = lib.enrol(name, samples)
    person = lib.person(lib.gallery.person(name).id)
    return enrol_out(person, [s.source for s in samples], result)


def removed_out(removed: Removed) -> RemovedOut:
    return RemovedOut(name=removed.name, samples=removed.samples, faces=removed.faces)


def people_routes(api: APIRouter, lib: FaceLibrary) -> None:
    """``/api/people``: list, create, read, change, merge and erase people."""

    @api.get("/people")
    def people(
        name: Annotated[str | None, Query(description="only the person of this exact name")] = None,
    ) -> list[PersonOut]:
        """Enrolled people with their sample and face counts and a thumbnail."""
        return [person_out(p) for p in lib.gallery.people() if name is None or p.name == name]

    @api.post(
        "/people",
        status_code=201,
        responses={400: {"description": "a name the rule refuses"}, 409: {"description": "taken"}},
    )
    def create_person(
        name: Annotated[str, Form()],
        files: Annotated[list[UploadFile] | None, File(description="photos, one face each")] = None,
        recent: Annotated[int | None, Form(description="id of a recent recognition")] = None,
    ) -> EnrolOut:
        """Enrol a new person from photos (exactly one face each) and/or a recent track's face."""
        name = valid_name(name)
        if lib._find(name) is not None:
            raise ApiError(409, "a person of that name exists: add samples to them instead", 43)
        return enrolled(lib, name, samples_of(lib, files or [], recent))

    @api.get("/people/{person_id:rowid}", responses=NOT_FOUND)
    def person(person_id: int) -> PersonOut:
        """One enrolled person."""
        return person_out(lib.person(person_id))

    @api.patch(
        "/people/{person_id:rowid}",
        responses={**NOT_FOUND, 400: {"description": "refused"}, 409: {"description": "taken"}},
    )
    def change_person(person_id: int, body: PersonPatch) -> PersonOut:
        """Rename a person (``name``) and/or pick their thumbnail (``thumbnail``: one of their
        face images' ids, or null for the best enrolled photo)."""
        lib.person(person_id)
        if "name" in body.model_fields_set:
            if body.name is None:
                raise ApiError(400, "name: a person's name must not be empty", 26)
            with lib.refused():
                lib.recognition.rename(person_id, valid_name(body.name))
        if "thumbnail" in body.model_fields_set:
            with lib.refused():
                lib.recognition.set_thumbnail(person_id, body.thumbnail)
        return person_out(lib.person(person_id))

    @api.post(
        "/people/{person_id:rowid}/merge",
        responses={**NOT_FOUND, 409: {"description": "the same person, or an unknown"}},
    )
    def merge_person(person_id: int, body: MergeIn) -> EnrolOut:
        """Fold a person into another one (``into``): their samples and faces become the
        other's, their name joins the other's lineage (an erasure of the other erases it)."""
        lib.person(person_id)
        into = lib.person(body.into)
        with lib.refused():
            result = lib.recognition.merge(person_id, into.id)
        return enrol_out(lib.person(into.id), [], result)

    @api.delete("/people/{person_id:rowid}", responses=NOT_FOUND)
    def delete_person(person_id: int) -> RemovedOut:
        """Erase a person: every sample, face image and template; every label they had, in
        the event files and the sinks."""
        return removed_out(lib.remove(lib.person(person_id).id))


def sample_routes(api: APIRouter, lib: FaceLibrary) -> None:
    """A person's samples, and the stored face images."""

    @api.get("/people/{person_id:rowid}/samples", responses=NOT_FOUND)
    def samples(person_id: int) -> list[SampleOut]:
        """A person's samples, oldest first."""
        lib.person(person_id)
        return [
            SampleOut(
                id=s.id,
                source=shown_source(s.source),
                created=s.created,
                face=None if s.face is None else face_url(s.face),
                face_id=s.face,
                enrolled=s.enrolled,
                image_id=sample_uuid(s),
            )
            for s in lib.gallery.samples(person_id)
        ]

    @api.post("/people/{person_id:rowid}/samples", status_code=201, responses=NOT_FOUND)
    def add_sample(
        person_id: int,
        file: Annotated[UploadFile | None, File(description="a photo with one face")] = None,
        recent: Annotated[int | None, Form(description="id of a recent recognition")] = None,
    ) -> EnrolOut:
        """Add a sample to a person from a photo (exactly one face) or a recent track's face."""
        name = lib.person(person_id).name
        return enrolled(lib, name, samples_of(lib, [file] if file is not None else [], recent))

    @api.delete(
        "/people/{person_id:rowid}/samples/{sample_id:rowid}",
        responses={**NOT_FOUND, 409: {"description": "the person's last sample"}},
    )
    def delete_sample(person_id: int, sample_id: int) -> LeftOut:
        """Delete one sample (and its face image); the last one cannot go: delete the person."""
        lib.person(person_id)
        if sample_id not in {s.id for s in lib.gallery.samples(person_id)}:
            raise ApiError(404, "the person has no such sample")
        with lib.refused():
            left = lib.recognition.delete_sample(person_id, sample_id)
        return LeftOut(samples=left)

    @api.get(
        "/faces/{face_id:rowid}.jpg",
        response_class=Response,
        responses={**JPEG, 404: {"description": "no such face"}},
    )
    def face(face_id: int) -> Response:
        """A stored face image (an aligned crop) of a person or an unknown."""
        found = lib.gallery.face(face_id)
        if found is None:
            raise ApiError(404, "no such face image", 11)
        return jpeg_response(found.jpeg)


def unknown_routes(api: APIRouter, lib: FaceLibrary) -> None:
    """``/api/unknowns``: list, name, merge and erase unknown people."""

    @api.get("/unknowns")
    def unknowns() -> list[UnknownOut]:
        """Unconfirmed people found by the cameras, with their best faces."""
        gallery = lib.gallery
        return [
            UnknownOut(
                id=u.id,
                label=u.label,
                samples=u.embeddings,
                faces=u.faces,
                first_seen=u.first_seen,
                last_seen=u.last_seen,
                crops=[face_url(f.id) for f in gallery.faces(u.id)],
            )
            for u in gallery.unknowns()
        ]

    @api.post(
        "/unknowns/{unknown_id:rowid}/name",
        responses={**UNKNOWN_404, 409: {"description": "the name is an enrolled person's"}},
    )
    def name_unknown(unknown_id: int, body: NameIn) -> EnrolOut:
        """Name an unknown person: confirmed under that name. If the name is an enrolled
        person's, nothing happens (409) unless ``merge`` is true: then it is folded into them
        (their enrolled photos are never dropped for its samples). Its label is never used
        again."""
        lib.unknown(unknown_id)
        name = valid_name(body.name)
        with lib.refused():
            result = lib.recognition.promote(unknown_id, name, merge=body.merge)
        return enrol_out(lib.person(lib.gallery.person(name).id), [], result)

    @api.post("/unknowns/{unknown_id:rowid}/merge", responses=UNKNOWN_404)
    def merge_unknown(unknown_id: int, body: MergeIn) -> EnrolOut:
        """Fold an unknown person into another unknown or an enrolled person (``into``)."""
        lib.unknown(unknown_id)
        target = lib._find(body.into)
        if target is None:
            raise ApiError(404, "no such person to merge into")
        with lib.refused():
            result = lib.recognition.merge(unknown_id, body.into)
        after = lib.gallery.person(body.into)
        name = after.name if isinstance(after, Person) else after.label
        return EnrolOut(
            id=after.id,
            name=name,
            samples=result.total,
            added=0,
            duplicates=0,
            strays=[s.describe() for s in result.strays],
        )

    @api.delete("/unknowns/{unknown_id:rowid}", responses=UNKNOWN_404)
    def delete_unknown(unknown_id: int) -> RemovedOut:
        """Erase an unknown person with its faces; its label is never used again."""
        return removed_out(lib.remove(lib.unknown(unknown_id).id))


def recognize_route(api: APIRouter, lib: FaceLibrary) -> None:
    """``/api/recognize``: who is in a photo."""

    @api.post("/recognize", responses={400: {"description": "not an image"}})
    def recognize(file: Annotated[UploadFile, File(description="an image")]) -> RecognizeOut:
        """Every face of an image: box, landmarks, detector score, name (or null) and score."""
        faces = lib.faces_in(file.file.read())
        return RecognizeOut(
            faces=[
                RecognizedFace(
                    bbox=[round(float(v), 1) for v in f.box],
                    kps=[[round(float(v), 1) for v in p] for p in f.kps],
                    det_score=round(f.det_score, 4),
                    name=name,
                    score=None if score is None else round(score, 4),
                )
                for f, (name, score) in zip(faces, lib.recognition.identify(faces), strict=True)
            ]
        )


ICON = (
    b'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32">'
    b'<rect width="32" height="32" rx="6" fill="#1e232b"/>'
    b'<circle cx="16" cy="13" r="6" fill="#4c8df6"/>'
    b'<path d="M5 29c1.5-6 6-9 11-9s9.5 3 11 9z" fill="#4c8df6"/></svg>'
)


def pages(history: bool = False) -> APIRouter:
    """The Faces page and the pages' icon, served from the package (the page's script and
    style are inline: its CSP allows exactly those, by hash). ``history``: the face history's
    routes are there (the page shows its section)."""
    page = (resources.files("streamrec.service") / "web" / "faces.html").read_bytes()
    if history:
        page = page.replace(b"<body>", b'<body data-history="1">', 1)
    headers = {"content-security-policy": page_csp(page)}
    ui = APIRouter(include_in_schema=False)

    @ui.get("/faces")
    def faces_page() -> Response:
        return Response(page, media_type="text/html; charset=utf-8", headers=headers)

    @ui.get("/icon.svg")
    def icon() -> Response:
        """The pages' icon: they link it with their token (a browser asks for /favicon.ico
        without one otherwise, and gets a 401)."""
        return Response(ICON, media_type="image/svg+xml")

    return ui


def mount(app: FastAPI, lib: FaceLibrary, history: bool = False) -> None:
    """Add the native face-library routes and the Faces page to the web server's app
    (``history``: the face history's routes are mounted too, :mod:`.history_api`)."""
    pil_log = logging.getLogger("PIL")
    if pil_log.level == logging.NOTSET:  # its debug lines show uploads' EXIF (names, places)
        pil_log.setLevel(logging.INFO)
    app.include_router(router(lib))
    app.include_router(pages(history))
