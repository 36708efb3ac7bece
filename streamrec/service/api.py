"""The face library over HTTP: the native REST API under ``/api/`` and the Faces page.

Routes (JSON unless said otherwise; URLs in answers are relative to the server's root):

* ``GET /api/people``, ``POST /api/people`` (form: ``name``, photos ``files`` and/or a recent
  recognition ``recent``), ``GET|PATCH|DELETE /api/people/{name}``;
* ``GET|POST /api/people/{name}/samples`` (form: a photo ``file`` or ``recent``),
  ``DELETE /api/people/{name}/samples/{id}``; ``GET /api/faces/{id}.jpg`` (a stored face);
* ``GET /api/unknowns``, ``POST /api/unknowns/{label}/name`` (``{"name"}``: confirm it, or fold
  it into that person if enrolled), ``POST /api/unknowns/{label}/merge`` (``{"into"}``),
  ``DELETE /api/unknowns/{label}``;
* (the recent recognitions and their faces, ``/api/recent`` and ``/api/recent/{id}.jpg``, are
  routes of :mod:`streamrec.service.http`: cluster mode serves them too);
* ``POST /api/recognize`` (form: ``file``): every face with box, landmarks, name and score;
* ``GET /faces``: the Faces page (``web/faces.html``).

Every write goes through the :class:`~streamrec.gallery.store.Gallery` and then reloads the
running pipeline, so a change counts from the next frame. Uploads are decoded with Pillow into
at most ``MAX_SIDE`` pixels (answers are in the original image's coordinates); one upload is
analysed at a time, with a few waiting, so uploads cannot starve the cameras.
"""

from __future__ import annotations

import hashlib
import io
import logging
import re
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from typing import Annotated, Any

import cv2
import numpy as np
from fastapi import APIRouter, FastAPI, File, Form, HTTPException, UploadFile
from fastapi.responses import Response
from PIL import Image, ImageOps
from pydantic import BaseModel, Field

from streamrec.analyzer import FaceAnalyzer
from streamrec.errors import GalleryError
from streamrec.gallery.matcher import Matcher
from streamrec.gallery.store import AddResult, Gallery, Person, Sample, validate_name
from streamrec.models.alignment import align
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


@dataclass(frozen=True)
class FoundFace:
    """A face of an uploaded image, in the original image's coordinates."""

    box: np.ndarray  # x1, y1, x2, y2
    kps: np.ndarray  # [5, 2]
    det_score: float
    embedding: np.ndarray
    crop: np.ndarray  # aligned BGR face

    @property
    def area(self) -> float:
        return float((self.box[2] - self.box[0]) * (self.box[3] - self.box[1]))


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
    """What the face routes share: the analyzer, the gallery, the live status, the reload.

    ``gallery`` is None when the daemon runs without one (the gallery routes answer 409);
    ``reload`` makes the running pipeline take a change in at once.
    """

    def __init__(
        self,
        analyzer: FaceAnalyzer,
        gallery: Gallery | None,
        status: LiveStatus,
        reload: Callable[[], object],
        erase_files: Callable[[str], object] = lambda name: None,
    ) -> None:
        """``erase_files``: erases a person removed through the API from the event files and
        review crops too (the running pipeline forgets them in memory and on MQTT)."""
        self.analyzer = analyzer
        self._gallery = gallery
        self.status = status
        self._reload = reload
        self._erase_files = erase_files
        self._slots = threading.BoundedSemaphore(MAX_ANALYSES)
        self._analysis = threading.Lock()
        self._matcher: tuple[int, Matcher] | None = None

    @property
    def gallery(self) -> Gallery:
        if self._gallery is None:
            raise ApiError(
                409, "this daemon has no gallery: set 'gallery:' in its config and restart it"
            )
        return self._gallery

    def erased(self, name: str) -> None:
        """After a removal: the person is erased everywhere (files, memory, MQTT)."""
        self.changed()
        try:
            self._erase_files(name)
        except Exception as exc:
            log.error("erasing a person from the event files failed: %s", exc)

    def changed(self) -> None:
        """After a write: the pipeline takes the new revision in now (it would within a
        second anyway, so a failure here is only logged)."""
        try:
            self._reload()
        except Exception as exc:
            log.warning("gallery reload after an API change failed: %s", exc)

    def matcher(self) -> Matcher:
        """The confirmed people, rebuilt only when the gallery's revision moved."""
        if self._gallery is None:
            return Matcher.empty(self.analyzer.embedder.dim)
        revision = self._gallery.revision
        if self._matcher is None or self._matcher[0] != revision:
            self._matcher = (revision, self._gallery.matcher())
        return self._matcher[1]

    @contextmanager
    def _analysing(self) -> Iterator[None]:
        if not self._slots.acquire(blocking=False):
            raise ApiError(503, "busy analysing other uploads; retry in a moment")
        try:
            with self._analysis:
                yield
        finally:
            self._slots.release()

    def faces_in(self, data: bytes, min_score: float = 0.0) -> list[FoundFace]:
        """Every face of an uploaded image scoring at least ``min_score``, biggest first."""
        with self._analysing():
            image, scale = decode_image(data)
            dets = self.analyzer.detect(image)
            keep = [i for i in range(len(dets)) if float(dets.scores[i]) >= min_score]
            size = self.analyzer.embedder.input_size
            crops = [align(image, dets.kps[i], size) for i in keep]
            embeddings = self.analyzer.embedder.embed(crops)
        # in the original image's pixels; boxes kept inside it (crops are cut from them)
        height, width = (round(n * scale) for n in image.shape[:2])
        bounds = np.array([width, height, width, height], np.float32)
        faces = [
            FoundFace(
                np.clip(dets.boxes[i] * scale, 0, bounds),
                dets.kps[i] * scale,
                float(dets.scores[i]),
                e,
                crop,
            )
            for i, e, crop in zip(keep, embeddings, crops, strict=True)
        ]
        return sorted(faces, key=lambda f: -f.area)

    def one_face(self, data: bytes, min_score: float = 0.0) -> FoundFace:
        """The one face of an uploaded image; 400 saying how many were found otherwise."""
        faces = self.faces_in(data, min_score)
        if not faces:
            raise ApiError(400, "No face is found in the given image", 28)
        if len(faces) > 1:
            raise ApiError(400, f"{len(faces)} faces found in the image; exactly one is needed", 31)
        return faces[0]

    def embed_crop(self, crop: np.ndarray) -> np.ndarray:
        with self._analysing():
            return self.analyzer.embedder.embed([crop])[0]

    def recent_sample(self, recent_id: int) -> tuple[np.ndarray, np.ndarray, str]:
        """Embedding, face and source of a recent recognition's crop."""
        item = self.status.recognition(recent_id)
        if item is None or item.crop is None:
            raise ApiError(
                404, f"no recent recognition {recent_id} with a face (it may have expired)"
            )
        source = f"camera {item.camera} track {item.track_id} at {item.time:.0f}"
        return self.embed_crop(item.crop), item.crop, source

    def upload_sample(
        self, upload: UploadFile, min_score: float = 0.0
    ) -> tuple[np.ndarray, np.ndarray, str]:
        """Embedding, face and source of an uploaded photo with exactly one face."""
        data = upload.file.read()
        face = self.one_face(data, min_score)
        # the content, not the file name, identifies it: the same photo twice adds nothing
        return face.embedding, face.crop, f"upload sha256:{hashlib.sha256(data).hexdigest()[:16]}"

    def enrol(self, name: str, samples: Sequence[tuple[np.ndarray, np.ndarray, str]]) -> AddResult:
        """Add samples to ``name`` (created if new), then reload the pipeline."""
        result = self.call(
            self.gallery.add,
            name,
            np.stack([s[0] for s in samples]),
            [s[2] for s in samples],
            [s[1] for s in samples],
        )
        self.changed()
        return result

    def call(self, method: Callable[..., Any], *args: Any) -> Any:
        """A gallery call; its refusals (a clash, the last sample ...) become 409."""
        try:
            return method(*args)
        except GalleryError as exc:
            raise ApiError(409, str(exc).replace(f" in gallery {self.gallery.path}", "")) from None

    def person(self, name: str) -> Person:
        """An enrolled person, or 404."""
        try:
            found = self.gallery.person(name)
        except GalleryError:
            found = None
        if not isinstance(found, Person):
            raise ApiError(404, "no such person", 42)
        return found

    def unknown(self, label: str) -> None:
        """404 unless ``label`` is an unconfirmed person."""
        if label not in {u.label for u in self.gallery.unknowns()}:
            raise ApiError(404, "no such unknown person")

    def thumbnail(self, name: str) -> str | None:
        best = self.gallery.faces(name, limit=1)
        return face_url(best[0].id) if best else None


def valid_name(name: str) -> str:
    try:
        return validate_name(name)
    except GalleryError as exc:
        raise ApiError(422, str(exc), 26) from None


# -- models (they document the answers in the OpenAPI schema) --------------------------------


class PersonOut(BaseModel):
    name: str
    samples: int = Field(description="sample embeddings")
    faces: int = Field(description="stored face images")
    created: float
    thumbnail: str | None = Field(description="URL of the best face image")


class SampleOut(BaseModel):
    id: int
    source: str = Field(
        description="where it came from (a file's name, an upload, a camera track)"
    )
    created: float
    face: str | None = Field(description="URL of its face image")
    image_id: str = Field(description="its CompreFace image_id")


class EnrolOut(BaseModel):
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
    name: str = Field(description="a person's name (1-100 printable characters)")


class MergeIn(BaseModel):
    into: str = Field(description="the unknown or enrolled person to merge into")


def enrol_out(name: str, sources: Sequence[str], result: AddResult) -> EnrolOut:
    gone = set(result.duplicates) | {s.source for s in result.strays}
    return EnrolOut(
        name=name,
        samples=result.total,
        added=sum(1 for s in sources if s not in gone),
        duplicates=len(result.duplicates),
        strays=[s.describe() for s in result.strays],
    )


def router(lib: FaceLibrary) -> APIRouter:
    """The native routes (see the module's docstring)."""
    api = APIRouter(prefix="/api", tags=["face library"])
    not_found: dict[int | str, dict[str, Any]] = {404: {"description": "no such person"}}

    def samples_of(
        files: Sequence[UploadFile], recent: int | None
    ) -> list[tuple[np.ndarray, np.ndarray, str]]:
        samples = [lib.upload_sample(f) for f in files]
        if recent is not None:
            samples.append(lib.recent_sample(recent))
        if not samples:
            raise ApiError(422, "send a photo ('file' or 'files') or a recent recognition id")
        return samples

    @api.get("/people")
    def people() -> list[PersonOut]:
        """Enrolled people with their sample and face counts and a thumbnail."""
        return [
            PersonOut(
                name=p.name,
                samples=p.embeddings,
                faces=p.faces,
                created=p.created,
                thumbnail=lib.thumbnail(p.name),
            )
            for p in lib.gallery.people()
        ]

    @api.post(
        "/people",
        status_code=201,
        responses={409: {"description": "the name is taken"}},
    )
    def create_person(
        name: Annotated[str, Form()],
        files: Annotated[list[UploadFile] | None, File(description="photos, one face each")] = None,
        recent: Annotated[int | None, Form(description="id of a recent recognition")] = None,
    ) -> EnrolOut:
        """Enrol a new person from photos (exactly one face each) and/or a recent track's face."""
        name = valid_name(name)
        try:
            lib.gallery.person(name)
            taken = True
        except GalleryError:
            taken = False
        if taken:
            raise ApiError(409, "a person of that name exists: add samples to them instead", 43)
        samples = samples_of(files or [], recent)
        return enrol_out(name, [s[2] for s in samples], lib.enrol(name, samples))

    @api.get("/people/{name:path}/samples", responses=not_found)
    def samples(name: str) -> list[SampleOut]:
        """A person's samples, oldest first."""
        lib.person(name)
        return [
            SampleOut(
                id=s.id,
                source=shown_source(s.source),
                created=s.created,
                face=None if s.face is None else face_url(s.face),
                image_id=sample_uuid(s),
            )
            for s in lib.gallery.samples(name)
        ]

    @api.post("/people/{name:path}/samples", status_code=201, responses=not_found)
    def add_sample(
        name: str,
        file: Annotated[UploadFile | None, File(description="a photo with one face")] = None,
        recent: Annotated[int | None, Form(description="id of a recent recognition")] = None,
    ) -> EnrolOut:
        """Add a sample to a person from a photo (exactly one face) or a recent track's face."""
        name = lib.person(name).name
        samples = samples_of([file] if file is not None else [], recent)
        return enrol_out(name, [s[2] for s in samples], lib.enrol(name, samples))

    @api.delete(
        "/people/{name:path}/samples/{sample_id}",
        responses={**not_found, 409: {"description": "the person's last sample"}},
    )
    def delete_sample(name: str, sample_id: int) -> LeftOut:
        """Delete one sample (and its face image); the last one cannot go: delete the person."""
        lib.person(name)
        if sample_id not in {s.id for s in lib.gallery.samples(name)}:
            raise ApiError(404, "the person has no such sample")
        left = lib.call(lib.gallery.delete_sample, name, sample_id)
        lib.changed()
        return LeftOut(samples=left)

    @api.get("/people/{name:path}", responses=not_found)
    def person(name: str) -> PersonOut:
        """One enrolled person."""
        p = lib.person(name)
        return PersonOut(
            name=p.name,
            samples=p.embeddings,
            faces=p.faces,
            created=p.created,
            thumbnail=lib.thumbnail(p.name),
        )

    @api.patch("/people/{name:path}", responses={**not_found, 409: {"description": "taken"}})
    def rename(name: str, body: NameIn) -> PersonOut:
        """Rename a person."""
        lib.person(name)
        new = valid_name(body.name)
        lib.call(lib.gallery.rename, name, new)
        lib.changed()
        return person(new)

    def erase(name: str) -> RemovedOut:
        removed = lib.call(lib.gallery.remove, name)
        lib.erased(name)
        return RemovedOut(name=removed.name, samples=removed.samples, faces=removed.faces)

    @api.delete("/people/{name:path}", responses=not_found)
    def delete_person(name: str) -> RemovedOut:
        """Erase a person: every sample, face image and template."""
        return erase(lib.person(name).name)

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

    @api.get("/unknowns")
    def unknowns() -> list[UnknownOut]:
        """Unconfirmed people found by the cameras, with their best faces."""
        gallery = lib.gallery
        return [
            UnknownOut(
                label=u.label,
                samples=u.embeddings,
                faces=u.faces,
                first_seen=u.first_seen,
                last_seen=u.last_seen,
                crops=[face_url(f.id) for f in gallery.faces(u.label)],
            )
            for u in gallery.unknowns()
        ]

    unknown_404: dict[int | str, dict[str, Any]] = {404: {"description": "no such unknown"}}

    @api.post("/unknowns/{label}/name", responses=unknown_404)
    def name_unknown(label: str, body: NameIn) -> EnrolOut:
        """Name an unknown person: confirmed under that name, or folded into that person if
        they are enrolled. Its label is never used again."""
        lib.unknown(label)
        name = valid_name(body.name)
        result = lib.call(lib.gallery.promote, label, name)
        lib.changed()
        return enrol_out(name, [], result)

    @api.post("/unknowns/{label}/merge", responses=unknown_404)
    def merge_unknown(label: str, body: MergeIn) -> EnrolOut:
        """Fold an unknown person into another unknown or an enrolled person."""
        lib.unknown(label)
        try:
            lib.gallery.person(body.into)
        except GalleryError:
            raise ApiError(404, "no such person to merge into") from None
        result = lib.call(lib.gallery.merge, label, body.into)
        lib.changed()
        return enrol_out(body.into, [], result)

    @api.delete("/unknowns/{label}", responses=unknown_404)
    def delete_unknown(label: str) -> RemovedOut:
        """Erase an unknown person with its faces; its label is never used again."""
        lib.unknown(label)
        return erase(label)

    @api.post("/recognize", responses={400: {"description": "not an image"}})
    def recognize(file: Annotated[UploadFile, File(description="an image")]) -> RecognizeOut:
        """Every face of an image: box, landmarks, detector score, name (or null) and score."""
        faces = lib.faces_in(file.file.read())
        matcher = lib.matcher()
        matches: list[tuple[str | None, float | None]] = (
            matcher.match(np.stack([f.embedding for f in faces]), lib.analyzer.threshold)
            if faces and len(matcher)
            else [(None, None)] * len(faces)
        )
        return RecognizeOut(
            faces=[
                RecognizedFace(
                    bbox=[round(float(v), 1) for v in f.box],
                    kps=[[round(float(v), 1) for v in p] for p in f.kps],
                    det_score=round(f.det_score, 4),
                    name=name,
                    score=None if score is None else round(score, 4),
                )
                for f, (name, score) in zip(faces, matches, strict=True)
            ]
        )

    return api


def pages() -> APIRouter:
    """The Faces page, served from the package (its script and style are inline: the page CSP
    allows exactly those, by hash)."""
    page = (resources.files("streamrec.service") / "web" / "faces.html").read_bytes()
    headers = {"content-security-policy": page_csp(page)}
    ui = APIRouter(include_in_schema=False)

    @ui.get("/faces")
    def faces_page() -> Response:
        return Response(page, media_type="text/html; charset=utf-8", headers=headers)

    return ui


def mount(app: FastAPI, lib: FaceLibrary) -> None:
    """Add the native face-library routes and the Faces page to the web server's app."""
    pil_log = logging.getLogger("PIL")
    if pil_log.level == logging.NOTSET:  # its debug lines show uploads' EXIF (names, places)
        pil_log.setLevel(logging.INFO)
    app.include_router(router(lib))
    app.include_router(pages())
