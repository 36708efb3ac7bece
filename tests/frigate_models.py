"""Frigate's own pydantic models of its HTTP API, copied field for field for the stand-in
(tests/frigate_standin.py), with the versions they come from (blakeblackshear/frigate tags).

- ``frigate/api/defs/request/events_body.py``: ``EventsSubLabelBody`` (0.15.2; 0.16.0-0.17.2 add
  ``camera``). 0.14.1 had no model (Flask, ``frigate/api/event.py set_sub_label``): its checks are
  ``check_sub_label_0_14`` here.
- ``frigate/api/defs/request/app_body.py``: ``AppPostLoginBody`` (0.15.2-0.17.2; 0.14.1 read
  ``request.get_json()["user"]``/``["password"]``).
- ``frigate/api/defs/query/media_query_parameters.py``: ``MediaEventsSnapshotQueryParams``
  (0.15.2-0.17.2, unchanged) and ``MediaLatestFrameQueryParams`` (0.15.2; 0.16.4 adds ``store``;
  0.17.2 adds ``paths``).
- ``frigate/api/defs/response/event_response.py``: ``EventResponse`` (0.16.4-0.17.2; 0.15.2 has
  ``thumbnail: str``), ``frigate/api/defs/response/generic_response.py``: ``GenericResponse``.
"""

from __future__ import annotations

from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, Field

# ruff: noqa: UP045 -- Optional[...] as in Frigate's source


class EventsSubLabelBody015(BaseModel):
    """0.15.2"""

    subLabel: str = Field(title="Sub label", max_length=100)
    subLabelScore: Optional[float] = Field(
        title="Score for sub label", default=None, gt=0.0, le=1.0
    )


class EventsSubLabelBody(BaseModel):
    """0.16.0-0.17.2"""

    subLabel: str = Field(title="Sub label", max_length=100)
    subLabelScore: Optional[float] = Field(
        title="Score for sub label", default=None, gt=0.0, le=1.0
    )
    camera: Optional[str] = Field(title="Camera this object is detected on.", default=None)


class AppPostLoginBody(BaseModel):
    user: str
    password: str


class MediaEventsSnapshotQueryParams(BaseModel):
    download: Optional[bool] = False
    timestamp: Optional[int] = None
    bbox: Optional[int] = None
    crop: Optional[int] = None
    height: Optional[int] = None
    quality: Optional[int] = 70


class MediaLatestFrameQueryParams015(BaseModel):
    """0.15.2"""

    bbox: Optional[int] = None
    timestamp: Optional[int] = None
    zones: Optional[int] = None
    mask: Optional[int] = None
    motion: Optional[int] = None
    regions: Optional[int] = None
    quality: Optional[int] = 70
    height: Optional[int] = None


class MediaLatestFrameQueryParams016(MediaLatestFrameQueryParams015):
    """0.16.4"""

    store: Optional[int] = None


class MediaLatestFrameQueryParams017(MediaLatestFrameQueryParams016):
    """0.17.2"""

    paths: Optional[int] = None


class EventResponse(BaseModel):
    id: str
    label: str
    sub_label: Optional[str]
    camera: str
    start_time: float
    end_time: Optional[float]
    false_positive: Optional[bool]
    zones: list[str]
    thumbnail: Optional[str]
    has_clip: bool
    has_snapshot: bool
    retain_indefinitely: bool
    plus_id: Optional[str]
    model_hash: Optional[str]
    detector_type: Optional[str]
    model_type: Optional[str]
    data: dict[str, Any]

    model_config = ConfigDict(protected_namespaces=())


class GenericResponse(BaseModel):
    success: bool
    message: str


def sub_label_body(version: str) -> type[BaseModel]:
    return EventsSubLabelBody015 if version == "0.15" else EventsSubLabelBody


def latest_params(version: str) -> type[BaseModel]:
    return {
        "0.14": MediaLatestFrameQueryParams015,  # Flask: read bbox, timestamp ... h, quality
        "0.15": MediaLatestFrameQueryParams015,
        "0.16": MediaLatestFrameQueryParams016,
    }.get(version, MediaLatestFrameQueryParams017)


def check_sub_label_0_14(body: Any) -> tuple[int, dict[str, Any]] | None:
    """0.14.1's checks of a sub label POST (status, answer), None when accepted. Its answer to
    a score out of bounds concatenates the float to a string: Flask answers 500."""
    data = body if isinstance(body, dict) else {}
    label, score = data.get("subLabel"), data.get("subLabelScore")
    if label is None:
        return 400, {"success": False, "message": "A sub label must be supplied"}
    if label and len(label) > 100:
        message = label + " exceeds the 100 character limit for sub_label"
        return 400, {"success": False, "message": message}
    if score is not None and (score > 1.0 or score < 0):
        return 500, {"message": "Internal Server Error"}
    return None
