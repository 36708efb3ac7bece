"""The face history over HTTP (beside :mod:`.api`, same token, same upload limits):

* ``POST /api/search`` (form: a photo ``file`` with one face; ``since``, ``until``: Unix times,
  ``camera``, ``limit``, ``min_similarity``: default the recognition threshold): the sightings
  whose face matches, best first, with time, camera, label, similarity and the crop's URL;
* ``GET /api/sightings`` (``?label=``, ``?limit=``): sightings, newest first;
* ``GET /api/sightings/{id}/crop``: a sighting's face (JPEG);
* ``POST /api/sightings/{id}/reject``: "not this person": the sighting loses its name and its
  face becomes a negative of that person; every running matcher takes it in (the gallery's
  revision moves);
* ``DELETE /api/sightings/{id}``: a sighting and its face are deleted;
* ``POST /api/sightings/assign`` (``{"ids": [...], "name": ...}``): the sightings are that
  person's (or ``unknown-N``'s) in the history;
* ``POST /api/history/reprocess`` (``{"label": ...}``): a group's sightings matched against the
  gallery as it is now; those that match someone are given to them;
* ``GET /api/history/suggestions``: unknown people that look like one (merge them with
  ``POST /api/unknowns/{id}/merge``).

A label is data in the answers, never part of a path.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, File, Form, Query, UploadFile
from fastapi.responses import Response
from pydantic import BaseModel, Field

from streamrec.history import naming
from streamrec.history.grouping import UnknownGroups, UnknownSighting
from streamrec.history.negatives import NegativeStore
from streamrec.history.records import Hit, StoredSighting
from streamrec.history.store import HistoryStore
from streamrec.service.api import JPEG, ApiError, FaceLibrary, jpeg_response

#: most results one answer lists
MAX_RESULTS = 500


class SightingOut(BaseModel):
    id: int
    first_seen: float
    last_seen: float
    camera: str
    label: str | None
    score: float | None
    similarity: float | None = None
    crop: str | None  # the URL of its face


class RejectOut(BaseModel):
    id: int
    rejected: str | None  # the label it had (null: it had none)


class AssignIn(BaseModel):
    ids: list[int] = Field(min_length=1, max_length=MAX_RESULTS)
    name: str = Field(min_length=1, max_length=200)


class ReprocessIn(BaseModel):
    label: str = Field(min_length=1, max_length=200)


class ChangedOut(BaseModel):
    changed: int
    names: dict[str, int] = {}  # (reprocess) how many went to each name


class SuggestionOut(BaseModel):
    label: str
    into: str
    similarity: float
    sightings: list[int]


def crop_url(sighting: int) -> str:
    return f"api/sightings/{sighting}/crop"


def sighting_out(s: StoredSighting | Hit) -> SightingOut:
    sid = s.id if isinstance(s, StoredSighting) else s.sighting
    return SightingOut(
        id=sid,
        first_seen=round(s.first_seen, 3),
        last_seen=round(s.last_seen, 3),
        camera=s.camera,
        label=s.label,
        score=None if s.score is None else round(s.score, 4),
        similarity=round(s.similarity, 4) if isinstance(s, Hit) else None,
        crop=crop_url(sid) if s.crop else None,
    )


def router(lib: FaceLibrary, store: HistoryStore) -> APIRouter:
    """Search and the sightings: list, crop, reject, delete."""
    api = APIRouter(prefix="/api", tags=["face history"])
    missing: dict[int | str, dict[str, Any]] = {404: {"description": "no such sighting"}}

    @api.post("/search", responses={400: {"description": "not one face"}})
    def search(
        file: Annotated[UploadFile, File(description="a photo with exactly one face")],
        since: Annotated[float | None, Form(ge=0)] = None,
        until: Annotated[float | None, Form(ge=0)] = None,
        camera: Annotated[str | None, Form(max_length=200)] = None,
        limit: Annotated[int, Form(ge=1, le=MAX_RESULTS)] = 20,
        min_similarity: Annotated[float | None, Form(ge=-1, le=1)] = None,
    ) -> list[SightingOut]:
        """The sightings whose face matches the photo's (similarity at least
        ``min_similarity``, default the recognition threshold), best first."""
        face = lib.one_face(file.file.read())
        if len(face.embedding) != store.dim:
            raise ApiError(409, "the history was made with another recognizer")
        floor = lib.recognition.threshold if min_similarity is None else min_similarity
        hits = store.search(face.embedding, limit, since, until, camera or None, floor)
        return [sighting_out(h) for h in hits]

    @api.get("/sightings")
    def sightings(
        label: Annotated[str | None, Query(max_length=200)] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_RESULTS)] = 100,
    ) -> list[SightingOut]:
        """Sightings, newest first (of one name or unknown-N with ``label``)."""
        return [sighting_out(s) for s in store.sightings(label, limit)]

    @api.get(
        "/sightings/{sighting_id:rowid}/crop",
        response_class=Response,
        responses={**JPEG, **missing},
    )
    def crop(sighting_id: int) -> Response:
        """A sighting's best face (aligned crop, JPEG)."""
        path = store.crop_path(sighting_id)
        try:
            data = path.read_bytes() if path is not None else None
        except OSError:  # purged meanwhile
            data = None
        if data is None:
            raise ApiError(404, "no such sighting, or it has no face")
        return jpeg_response(data)

    @api.post("/sightings/{sighting_id:rowid}/reject", responses=missing)
    def reject(sighting_id: int) -> RejectOut:
        """Not this person: the face is never given that name again (nor faces closer to it
        than to the person's own)."""
        if store.sighting(sighting_id) is None:
            raise ApiError(404, "no such sighting")
        label = NegativeStore(store).reject(sighting_id)
        if label is not None:  # every Recognition service takes the new negative in
            with lib.refused():
                lib.gallery.touch()
            lib.recognition.refresh()
        return RejectOut(id=sighting_id, rejected=label)

    @api.delete("/sightings/{sighting_id:rowid}", responses=missing)
    def delete(sighting_id: int) -> RejectOut:
        """Delete a sighting and its face."""
        found = store.sighting(sighting_id)
        if found is None or not store.delete([sighting_id]):
            raise ApiError(404, "no such sighting")
        return RejectOut(id=sighting_id, rejected=None)

    return api


def review_router(lib: FaceLibrary, store: HistoryStore) -> APIRouter:
    """The review routes: assign, reprocess, merge suggestions."""
    api = APIRouter(prefix="/api", tags=["face history"])

    @api.post("/sightings/assign", responses={400: {"description": "a refused name"}})
    def assign(body: AssignIn) -> ChangedOut:
        """These sightings are this person's (or this ``unknown-N``'s), as the user says."""
        with lib.refused():
            changed = naming.assign(store, body.ids, body.name)
        return ChangedOut(changed=changed)

    @api.post("/history/reprocess")
    def reprocess(body: ReprocessIn) -> ChangedOut:
        """Match a group's sightings (a name or ``unknown-N``) against the gallery as it is
        now: those that match someone are given to them."""
        ids, labels, vectors = store.labelled()
        mine = [i for i, label in enumerate(labels) if label == body.label]
        if not mine:
            raise ApiError(404, "no sightings with that label")
        matches = lib.recognition.matcher().match(vectors[mine], lib.recognition.threshold)
        by_name: dict[str, list[int]] = {}
        for i, (name, _) in zip(mine, matches, strict=True):
            if name is not None and name != body.label:
                by_name.setdefault(name, []).append(int(ids[i]))
        changed = sum(naming.assign(store, group, name) for name, group in by_name.items())
        return ChangedOut(changed=changed, names={n: len(g) for n, g in by_name.items()})

    @api.get("/history/suggestions")
    def suggestions() -> list[SuggestionOut]:
        """Unknown people whose faces say they are one person (strongest first)."""
        ids, labels, vectors = store.labelled(unknown_only=True)
        groups = UnknownGroups.for_threshold(store.dim, lib.recognition.threshold)
        by_label: dict[str, list[int]] = {}
        for sid, label, vector in zip(ids.tolist(), labels, vectors, strict=True):
            s = store.sighting(sid)
            if s is None:
                continue
            point = UnknownSighting(
                sid, label, s.camera, s.first_seen, s.last_seen, vector, s.quality
            )
            if groups.add(point):
                by_label.setdefault(label, []).append(sid)
        return [
            SuggestionOut(
                label=m.label,
                into=m.into,
                similarity=round(m.similarity, 4),
                sightings=[len(by_label.get(m.label, [])), len(by_label.get(m.into, []))],
            )
            for m in groups.suggestions()
        ]

    return api


def mount(app: FastAPI, lib: FaceLibrary, store: HistoryStore) -> None:
    """Add the face history's routes (the Faces page shows them with ``api.mount(...,
    history=True)``)."""
    app.include_router(router(lib, store))
    app.include_router(review_router(lib, store))
