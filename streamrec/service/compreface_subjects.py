"""CompreFace's subjects API (*Managing Subjects*, since CompreFace 0.6; as 1.2.0's
``SubjectController.java``, ``SubjectService.java`` (``updateSubjectName``, lines 135-152) and
``dao/SubjectDao.java`` (not found: lines 39, 109; exists: line 151) answer):

* ``GET /api/v1/recognition/subjects`` (also with a trailing ``/``): ``{"subjects": [names]}``;
* ``POST /api/v1/recognition/subjects`` ``{"subject": NAME}``: 201 ``{"subject"}``, a subject
  without examples (a person without samples: recognition skips them until they have one);
  400 code 43 ``Subject already exists``;
* ``PUT /api/v1/recognition/subjects/{subject}`` ``{"subject": NEW}``: ``{"updated": true}``;
  onto an existing subject the two are merged (CompreFace reassigns the examples), the same
  name is ``{"updated": false}``; no such subject: 404 code 42;
* ``DELETE /api/v1/recognition/subjects/{subject}``: ``{"subject"}``, erased everywhere (as
  ``DELETE /api/people/{id}``); no such subject: 404 code 42.

Every name goes through :func:`~streamrec.service.api.valid_name` (a refused one is 400 code
26) and is matched exactly (CompreFace ignores case). ``DELETE /api/v1/recognition/subjects``
(CompreFace: every subject) is refused, as ``DELETE /faces`` without a subject is.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body
from pydantic import BaseModel, Field

from streamrec.gallery.store import Person
from streamrec.service.api import ApiError, FaceLibrary, valid_name
from streamrec.service.compreface_wire import CompreFaceRoute

PREFIX = "/api/v1/recognition/subjects"


class SubjectIn(BaseModel):
    subject: str = Field(description="the subject's name (1-100 printable characters, no / or \\)")


class SubjectOut(BaseModel):
    subject: str


class SubjectsOut(BaseModel):
    subjects: list[str]


class UpdatedOut(BaseModel):
    updated: bool


def _subject(lib: FaceLibrary, name: str) -> Person:
    """The enrolled person a subject names; 404 code 42 (CompreFace's) if none."""
    person = lib.named(valid_name(name))
    if person is None:
        raise ApiError(404, f"Subject {name} not found", 42)
    return person


def router(lib: FaceLibrary) -> APIRouter:
    """The subjects routes (see the module's docstring)."""
    cf = APIRouter(prefix=PREFIX, route_class=CompreFaceRoute, tags=["CompreFace"])

    @cf.get("")
    @cf.get("/", include_in_schema=False)
    def list_subjects() -> SubjectsOut:
        """Every subject, by name (*List Subjects*)."""
        return SubjectsOut(subjects=[p.name for p in lib.gallery.people()])

    @cf.post("", status_code=201)
    def add_subject(body: SubjectIn) -> SubjectOut:
        """A new subject without examples (*Add a Subject*)."""
        name = valid_name(body.subject)
        if lib._find(name) is not None:
            raise ApiError(400, "Subject already exists", 43)
        lib.enrol(name, [])
        return SubjectOut(subject=name)

    @cf.put("/{subject}")
    def rename_subject(subject: str, body: Annotated[SubjectIn, Body()]) -> UpdatedOut:
        """Rename a subject; onto an existing one, merge them (*Rename a Subject*)."""
        person = _subject(lib, subject)
        new = valid_name(body.subject)
        if new == person.name:
            return UpdatedOut(updated=False)
        target = lib.named(new)
        with lib.refused():
            if target is None:
                lib.recognition.rename(person.id, new)
            else:
                lib.recognition.merge(person.id, target.id)
        return UpdatedOut(updated=True)

    @cf.delete("/{subject}")
    def delete_subject(subject: str) -> SubjectOut:
        """Erase a subject with every example (*Delete a Subject*)."""
        person = _subject(lib, subject)
        lib.remove(person.id)
        return SubjectOut(subject=person.name)

    @cf.delete("")
    def delete_all_subjects() -> SubjectOut:
        """Refused: every subject at once (*Delete All Subjects*) is one mistake away from
        losing the whole gallery; delete them one by one."""
        raise ApiError(
            400,
            "deleting every subject at once is refused: delete them one by one "
            f"(DELETE {PREFIX}/<subject>)",
            36,
        )

    return cf
