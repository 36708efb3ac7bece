"""Frigate as a source: recognise the people in the pictures of Frigate's tracked objects.

A camera with ``frigate:`` (instead of ``source:``) subscribes to ``<topic_prefix>/events`` and
``<topic_prefix>/tracked_object_update`` on Frigate's MQTT broker. For each ``new``/``update``/
``end`` message of a followed label (``person``) that is not a false positive, it fetches the
object's next frame from Frigate's HTTP API (:mod:`~streamrec.service.frigate_api`: the live
snapshot without drawings while the object is in progress, the clean copy once it ended, the
camera's ``latest.jpg`` while it has no snapshot), finds, embeds and names the faces with the
daemon's Recognition service (the gallery as it is now), and publishes the result as streamrec
events through the daemon's sinks. A newer snapshot of the same object is checked again, latest
frames are polled every ``delay`` s while the object is active, up to ``attempts`` frames per
object; with ``stop_on_match`` none after a confident match (the threshold plus
``recognition.single_face_margin``). Of several frames the best wins: the highest similarity
names the object, and a face of the best quality is reported when none is named. With
``sub_label: true`` the name is written back to Frigate (``POST /api/events/<id>/sub_label``,
the score on Frigate's face score scale), unless the event has a sub label someone else set
(Frigate's own face recognition, seen on ``tracked_object_update`` or in the event, Double Take
...) and ``overwrite`` is off.

Each Frigate object is one streamrec track on the Frigate camera (``camera`` is Frigate's camera
name, ``source`` the bridge's name): ``identified`` (a face matched: ``name``, ``score``,
``box``), ``renamed`` (a later snapshot named someone else with a higher score), ``unknown``
(faces, none in the gallery; once per object, without an ``unknown-N`` label) and ``track_end``
(Frigate ended the object: the best ``name`` or null, ``snapshots`` checked, most ``faces`` seen;
``reason`` when the bridge ended it instead: ``stopped``, ``evicted``). Every event carries
``frigate_event`` (Frigate's id), ``frigate_label``, ``frigate_score`` (its ``top_score``) and
``zones`` (its ``current_zones``) and ``frigate_source`` (``snapshot`` or ``latest``: Double
Take's image types); ``frame`` is the picture's number within the object, ``time`` its seconds
since the object started, ``captured`` Frigate's capture time of the snapshot.
Track ids start at ``FIRST_TRACK_ID`` so that they never meet a pipeline track on a streamrec
camera of the same name (MQTT presence keys tracks by camera and id).

Bounded and never blocking the cameras: messages wait in a queue of ``queue_size`` Frigate
objects (a newer message of a queued object replaces it; when full the oldest is dropped and
counted), one worker thread does the HTTP requests (timeout, retries with exponential backoff,
``Retry-After`` honoured) and the recognition, the MQTT client reconnects by itself, and a
Frigate that is down is logged once per outage, refused credentials in one line. The API's
credentials (``user``/``password``, the URL, ``headers``) never reach a log, and names never
reach the log either.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from streamrec.errors import ConfigError
from streamrec.records import Event
from streamrec.scales import FRIGATE_RECOGNITION_THRESHOLD, frigate_face_score
from streamrec.service.frigate_api import SUB_LABEL_MAX, ApiStats, FrigateApi, Picture, credentials
from streamrec.sinks.mqtt.link import Endpoint, MqttLink, Tls

if TYPE_CHECKING:
    from streamrec.config import CameraConfig, Config, FrigateConfig
    from streamrec.recognition import FoundFace, GalleryChange, Recognition
    from streamrec.telemetry import EventWriter

log = logging.getLogger("streamrec.frigate")

#: track ids of Frigate objects start here (pipeline tracks count from 1 per camera)
FIRST_TRACK_ID = 1_000_000_000
#: Frigate objects followed at once; beyond, the least recently started one is ended
MAX_OBJECTS = 1000
#: largest MQTT message read (Frigate's event messages are a few KiB)
MAX_MESSAGE = 256 * 1024

_LOOSE = ConfigDict(extra="ignore")


class _Snapshot(BaseModel):
    model_config = _LOOSE
    frame_time: float | None = None


class FrigateObject(BaseModel):
    """The fields of a Frigate tracked object (``before``/``after``) that the bridge reads."""

    model_config = _LOOSE
    # used in API paths: Frigate's ids are "<start time>-<random letters and digits>"
    id: str = Field(pattern=r"^[0-9]+(\.[0-9]+)?-[A-Za-z0-9]+$", max_length=64)
    camera: str = Field(min_length=1, max_length=256)
    label: str = Field(max_length=256)
    top_score: float | None = None
    false_positive: bool | None = False
    start_time: float
    end_time: float | None = None
    frame_time: float | None = None
    has_snapshot: bool = False
    #: [name, score] (0.14+ in MQTT), a name, or None
    sub_label: list[Any] | str | None = None
    current_zones: list[str] = Field(default_factory=list, max_length=100)
    snapshot: _Snapshot | None = None


class FaceUpdate(BaseModel):
    """A message on ``<topic_prefix>/tracked_object_update`` (Frigate 0.16+); only ``face``
    results are read."""

    model_config = _LOOSE
    type: str
    id: str = Field(max_length=64)
    name: str | None = None
    score: float | None = None


class FrigateMessage(BaseModel):
    """A message on ``<topic_prefix>/events``."""

    model_config = _LOOSE
    type: Literal["new", "update", "end"]
    after: FrigateObject


_MESSAGE = TypeAdapter(FrigateMessage)
_FACE = TypeAdapter(FaceUpdate)


@dataclass
class FrigateStats(ApiStats):
    """Counters of one bridge (read them at any time); see also :class:`ApiStats`."""

    messages: int = 0  # event messages received
    ignored: int = 0  # other labels or cameras, false positives, ended before any check
    invalid: int = 0  # not a Frigate event message
    dropped: int = 0  # queued objects dropped because the queue was full
    snapshots: int = 0  # pictures checked for faces (snapshots and latest frames)
    identified: int = 0  # objects named
    kept: int = 0  # sub labels left as someone else set them (overwrite: false)


@dataclass
class Broker:
    """Where Frigate's events are read from: a broker and Frigate's ``topic_prefix``."""

    endpoint: Endpoint
    topic_prefix: str = "frigate"


@dataclass
class _Object:
    """A followed Frigate object: one streamrec track."""

    track_id: int
    camera: str
    start_time: float
    attempts: int = 0  # pictures fetched or tried
    snapshots: int = 0  # pictures checked
    checked: float | None = None  # frame_time of the last snapshot fetched or tried
    done: bool = False  # a confident match, and stop_on_match: nothing more to check
    posted: str | None = None  # the sub label streamrec set
    labelled: bool = False  # someone else set a sub label (Frigate's face recognition ...)
    captured: float | None = None
    name: str | None = None
    score: float | None = None
    faces: int = 0
    unknown: bool = False  # the unknown event was sent
    frigate: dict[str, Any] = field(default_factory=dict)  # frigate_* fields of the events


def broker_of(cfg: Config, cam: CameraConfig) -> Broker:
    """Frigate's broker for a bridge: its own ``mqtt.host``, else the broker of events.mqtt."""
    assert cam.frigate is not None
    own = cam.frigate.mqtt
    if own.host:
        endpoint = Endpoint(own.host, own.port, own.username, own.password)
        return Broker(endpoint, own.topic_prefix)
    events = cfg.events.mqtt
    if events is None:
        where = cfg.source_file or "the config"
        raise ConfigError(
            f"{where}: camera '{cam.name}': frigate.mqtt.host is not set and there is no "
            "events.mqtt broker to use instead: set it to the broker Frigate publishes on"
        )
    tls = Tls.of(events.tls, events.ca_certs, events.certfile, events.keyfile, events.tls_insecure)
    endpoint = Endpoint(events.host, events.port, events.username, events.password, tls)
    return Broker(endpoint, own.topic_prefix)


class FrigateBridge:
    """One ``cameras:`` entry with ``frigate:``; see the module docstring. ``start()`` connects
    and starts the worker, ``close()`` stops them and ends every followed object."""

    def __init__(
        self,
        name: str,
        cfg: FrigateConfig,
        broker: Broker,
        recognition: Recognition,
        events: EventWriter,
        margin: float = 0.05,
    ) -> None:
        self.name = name
        self.cfg = cfg
        self.broker = broker
        self.stats = FrigateStats()
        self.topic = f"{broker.topic_prefix.strip('/')}/events"
        self._recognition = recognition
        self._events = events
        self._threshold = cfg.min_score if cfg.min_score is not None else recognition.threshold
        #: a match this far above the threshold is confident (stop_on_match): the pipeline's
        #: rule for naming a track on one face (recognition.single_face_margin)
        self._confident = self._threshold + margin
        #: a person who leaves the gallery leaves the objects followed under their name
        self._unsubscribe = recognition.subscribe(self._gallery_changed)
        self._stop = threading.Event()
        self._api = FrigateApi(cfg, credentials(cfg, dict(os.environ)), self._stop, self.stats)
        #: Frigate's own face results by event id (tracked_object_update), for objects not
        #: followed yet
        self._named_by_frigate: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Condition()  # guards the queue, the objects and the counters
        self._pending: OrderedDict[str, FrigateMessage] = OrderedDict()
        self._objects: OrderedDict[str, _Object] = OrderedDict()
        self._next_track = FIRST_TRACK_ID
        self._closed = False
        self._invalid_logged = False
        self._worker = threading.Thread(target=self._work, name=f"frigate {name}", daemon=True)
        where = broker.endpoint.address
        self._link = MqttLink(
            broker.endpoint,
            label=f"Frigate bridge {name}: {where}",
            client_id=f"streamrec-frigate-{uuid.uuid4().hex[:12]}",
        )
        self._link.subscribe(
            self.topic,
            1,
            self.offer,
            lambda: log.info("Frigate bridge %s: reading %s on %s", name, self.topic, where),
        )
        updates = f"{broker.topic_prefix.strip('/')}/tracked_object_update"
        self._link.subscribe(updates, 1, self.offer_face, lambda: None)

    @classmethod
    def from_config(
        cls,
        cfg: Config,
        cam: CameraConfig,
        recognition: Recognition,
        events: EventWriter,
    ) -> FrigateBridge:
        """The bridge of a ``cameras:`` entry with ``frigate:``; ConfigError without a broker."""
        assert cam.frigate is not None
        broker = broker_of(cfg, cam)
        margin = cfg.recognition.single_face_margin
        return cls(cam.name, cam.frigate, broker, recognition, events, margin)

    # -- life cycle --------------------------------------------------------------------------

    def start(self) -> None:
        """Connect to the broker (in the background, retried forever) and start the worker."""
        self._worker.start()
        self._link.start()
        log.info(
            "Frigate bridge %s: events from %s/%s, snapshots from %s",
            self.name,
            self.broker.endpoint.address,
            self.topic,
            self._api.base,
        )

    def _gallery_changed(self, change: GalleryChange) -> None:
        for name in change.left:
            self.forget(name)

    def forget(self, name: str) -> None:
        """A person left the gallery (erased, renamed, merged away): the objects followed under
        their name lose it at once (their ``track_end`` names nobody)."""
        with self._lock:
            for obj in self._objects.values():
                if obj.name == name:
                    obj.name, obj.score = None, None

    def close(self, timeout: float = 2.0) -> None:
        """Stop reading, give the worker ``timeout`` s to finish the object in hand (a request
        still waiting is abandoned), then end every followed object. Idempotent."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._unsubscribe()
        self._link.close(0.0)
        with self._lock:
            self._lock.notify_all()
        if self._worker.ident is not None:
            self._worker.join(timeout)
        with self._lock:
            for obj in self._objects.values():
                self._end(obj, "stopped")
            self._objects.clear()
            self._pending.clear()
            self._closed = True  # a request the worker still waits for emits nothing
        self._api.close()

    # -- Frigate's messages (paho's thread) ------------------------------------------------

    def offer(self, payload: bytes) -> None:
        """Take one message of ``<topic_prefix>/events``: queue it, or count why not."""
        message = None
        if len(payload) <= MAX_MESSAGE:
            with contextlib.suppress(ValidationError):
                message = _MESSAGE.validate_json(payload)
        with self._lock:
            self.stats.messages += 1
            if message is None:
                self.stats.invalid += 1
                if not self._invalid_logged:
                    self._invalid_logged = True
                    log.warning(
                        "Frigate bridge %s: ignoring a message on %s that is not a Frigate "
                        "event (logged once, then counted)",
                        self.name,
                        self.topic,
                    )
                return
            if not self._wanted(message):
                self.stats.ignored += 1
                return
            event_id = message.after.id
            if event_id not in self._pending and len(self._pending) >= self.cfg.queue_size:
                self._pending.popitem(last=False)
                self.stats.dropped += 1
                if self.stats.dropped == 1 or self.stats.dropped % 100 == 0:
                    log.warning(
                        "Frigate bridge %s: queue full, dropped the oldest object "
                        "(%d dropped so far)",
                        self.name,
                        self.stats.dropped,
                    )
            self._pending[event_id] = message  # a queued object keeps its place, newest state
            self._lock.notify_all()

    def offer_face(self, payload: bytes) -> None:
        """Take one message of ``<topic_prefix>/tracked_object_update``: a face Frigate itself
        named (at its recognition threshold) counts as a sub label set by someone else."""
        update = None
        if len(payload) <= MAX_MESSAGE:
            with contextlib.suppress(ValidationError):
                update = _FACE.validate_json(payload)
        if update is None or update.type != "face" or update.name in (None, "", "unknown"):
            return
        if (update.score or 0.0) < FRIGATE_RECOGNITION_THRESHOLD:
            return
        with self._lock:
            obj = self._objects.get(update.id)
            if obj is not None:
                obj.labelled = True
            else:
                self._named_by_frigate[update.id] = str(update.name)
                while len(self._named_by_frigate) > MAX_OBJECTS:
                    self._named_by_frigate.popitem(last=False)

    def _wanted(self, message: FrigateMessage) -> bool:
        obj, cfg = message.after, self.cfg
        if obj.label not in cfg.labels or (cfg.cameras and obj.camera not in cfg.cameras):
            return False
        if message.type == "end" and obj.id in self._objects:
            return True
        if obj.false_positive:
            return False
        # a snapshot, or the camera's latest frame while the object is active
        return obj.has_snapshot or (message.type != "end" and obj.end_time is None)

    # -- the worker --------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            with self._lock:
                while not self._pending and not self._stop.is_set():
                    self._lock.wait()
                if self._stop.is_set():
                    return
                _, message = self._pending.popitem(last=False)
            try:
                self._handle(message)
            except Exception:
                log.exception("Frigate bridge %s: checking an event failed", self.name)

    def _handle(self, message: FrigateMessage) -> None:
        """Check the frames of one object the message makes due (see :meth:`_next`)."""
        after = message.after
        ended = message.type == "end" or after.end_time is not None
        with self._lock:
            obj = self._objects.get(after.id)
            if obj is None:
                obj = self._follow(after)
            obj.frigate = {
                "frigate_event": after.id,
                "frigate_label": after.label,
                "frigate_score": after.top_score,
                "zones": list(after.current_zones),
            }
            label = after.sub_label[0] if isinstance(after.sub_label, list) else after.sub_label
            if label and label != obj.posted:
                obj.labelled = True
        while not self._stop.is_set():
            with self._lock:
                due = self._next(obj, after, ended)
            if due is None:
                break
            source, shot = due
            picture = self._api.picture(
                after.id, after.camera, ended=ended, has_snapshot=source != "latest",
                crop=self.cfg.crop,
            )  # fmt: skip
            if picture is not None:
                self._recognise(obj, picture, shot or after.frame_time or time.time())
            if source != "latest" or self._stop.wait(self.cfg.delay):
                break  # one per snapshot; latest frames until done, out of attempts or ended
            with self._lock:
                if after.id in self._pending:  # newer news of the object (a snapshot, its end)
                    break
        if message.type == "end":
            with self._lock:
                if self._objects.pop(after.id, None) is not None:
                    self._end(obj, None)

    def _next(
        self, obj: _Object, after: FrigateObject, ended: bool
    ) -> tuple[str, float | None] | None:
        """The next frame of ``obj`` to check, (source, snapshot time), or None (call with the
        lock held): a snapshot Frigate has not shown before, else while the object is active
        and has no snapshot its camera's latest frame; nothing once ``attempts`` are used or
        (``stop_on_match``) a confident match."""
        if obj.attempts >= self.cfg.attempts or obj.done or self._closed:
            return None
        shot = after.snapshot.frame_time if after.snapshot is not None else None
        if after.has_snapshot:
            if obj.attempts and (shot is None or shot == obj.checked):
                return None
            source = "snapshot"
        elif not ended:
            source = "latest"
        else:
            return None
        obj.attempts += 1
        obj.checked = shot  # also when it fails: a newer snapshot is tried, not this one
        return source, shot

    def _follow(self, after: FrigateObject) -> _Object:
        """Start following a Frigate object (call with the lock held)."""
        if len(self._objects) >= MAX_OBJECTS:
            _, oldest = self._objects.popitem(last=False)
            self._end(oldest, "evicted")
        obj = _Object(self._next_track, after.camera, after.start_time)
        obj.labelled = self._named_by_frigate.pop(after.id, None) is not None
        self._next_track += 1
        self._objects[after.id] = obj
        return obj

    def _recognise(self, obj: _Object, picture: Picture, captured: float) -> None:
        faces = self._recognition.faces(picture.image)
        best = _best(faces, self._recognition.identify(faces, self._threshold))
        with self._lock:
            self.stats.snapshots += 1
            obj.snapshots += 1
            obj.captured = captured
            obj.faces = max(obj.faces, len(faces))
            # Double Take's image types: a clean snapshot is a snapshot
            obj.frigate["frigate_source"] = "latest" if picture.source == "latest" else "snapshot"
            if best is None or self._closed:
                return
            face, name, score = best
            if name is None or score is None:
                if obj.name is None and not obj.unknown:
                    obj.unknown = True
                    shown = None if score is None else round(score, 4)
                    self._emit("unknown", obj, None, faces=len(faces), score=shown, box=_box(face))
                return
            obj.done = self.cfg.stop_on_match and score >= self._confident
            kind = self._naming(obj, name, score)
            if kind is None:
                return
            self._emit(kind, obj, face.crop, name=name, score=round(score, 4), box=_box(face))
        if self.cfg.sub_label:
            self._label(obj, name, score)

    def _label(self, obj: _Object, name: str, score: float) -> None:
        """Write ``name`` as the object's sub label, unless someone else set one (checked in
        Frigate first) and ``overwrite`` is off."""
        event_id = str(obj.frigate["frigate_event"])
        if not self.cfg.overwrite:
            current = self._api.sub_label(event_id)
            with self._lock:
                if obj.labelled or (current is not None and current != obj.posted):
                    obj.labelled = True
                    self.stats.kept += 1
                    return
        if self._api.set_sub_label(event_id, name, frigate_face_score(score, self._threshold)):
            with self._lock:
                obj.posted = name[:SUB_LABEL_MAX]

    def _naming(self, obj: _Object, name: str, score: float) -> str | None:
        """The event a match makes (call with the lock held): ``identified`` for the object's
        first name, ``renamed`` for another name with a higher score, else None."""
        if obj.name is None:
            kind = "identified"
            self.stats.identified += 1
        elif name != obj.name and score > (obj.score or 0.0):
            kind = "renamed"
        else:
            if name == obj.name:
                obj.score = max(score, obj.score or 0.0)
            return None
        obj.name, obj.score = name, score
        return kind

    def _end(self, obj: _Object, reason: str | None) -> None:
        """The object's ``track_end``, if anything was checked (call with the lock held)."""
        if obj.snapshots == 0:
            return
        fields: dict[str, Any] = {
            "name": obj.name,
            "score": None if obj.score is None else round(obj.score, 4),
            "snapshots": obj.snapshots,
            "faces": obj.faces,
        }
        if reason is not None:
            fields["reason"] = reason
        self._emit("track_end", obj, None, **fields)

    def _emit(self, kind: str, obj: _Object, crop: np.ndarray | None, **fields: Any) -> None:
        """Write one event of ``obj`` to the sinks (call with the lock held)."""
        if self._closed:
            return
        captured = obj.captured if obj.captured is not None else obj.start_time
        event = Event(
            kind,
            self.name,
            obj.track_id,
            max(obj.snapshots - 1, 0),
            round(max(captured - obj.start_time, 0.0), 3),
            captured,
            obj.camera,
            {**fields, **obj.frigate},
            crop,
        )
        try:
            self._events.write(event)
        except Exception:
            log.exception("Frigate bridge %s: writing an event failed", self.name)


def _best(
    faces: list[FoundFace], named: list[tuple[str | None, float | None]]
) -> tuple[FoundFace, str | None, float | None] | None:
    """The face to report: the best named one (highest similarity), else the face of the best
    quality, with its name (None: nobody) and similarity."""
    if not faces:
        return None
    ranked = [(face, name, score) for face, (name, score) in zip(faces, named, strict=True)]
    found = [r for r in ranked if r[1] is not None and r[2] is not None]
    if found:
        return max(found, key=lambda r: r[2] or 0.0)
    return max(ranked, key=lambda r: r[0].quality)


def _box(face: FoundFace) -> list[float]:
    return [round(float(v), 1) for v in face.box]
