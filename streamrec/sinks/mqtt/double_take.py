"""Double Take's own MQTT messages (``double_take_topics``), byte for byte as Double Take
v1.13.1's ``mqtt.util.js`` writes them (:mod:`streamrec.sinks.double_take`), so that
automations written for Double Take work unchanged:

- ``double-take/matches/<name>`` per matched person, ``double-take/matches/unknown`` with
  unknown faces, ``double-take/cameras/<camera>`` with every result (not retained, buffered
  like events);
- ``double-take/cameras/<camera>/person`` (retained): the person count, reset to ``0``
  ``PERSON_RESET_SECONDS`` after the camera's last result;
- ``double-take/available``: ``online`` while the sink runs, ``offline`` when it closes;
- with ``ha_discovery``: Double Take's own Home Assistant sensors
  (``<discovery_prefix>/sensor/double-take/<level>/config`` and ``/state``).

When (Double Take publishes once per processed event): a track of a camera, or a Frigate
object, is one event; each identification (``identified``/``renamed``) or ``unknown`` face of it
is one attempt, and the messages are published at each with the track's results so far (best
match and miss per name, unknowns, counts: Double Take's ``recognize.util.normalize``).

The values: ``confidence`` is Double Take's reading of CompreFace's similarity of the score
(:func:`~streamrec.scales.compreface_similarity` around streamrec's threshold, then Double
Take's ``detect`` rules: a match from 60, unknown below 40, a box of 10000 px² for a match);
``id`` is Frigate's event id and ``zones`` its ``current_zones`` for a Frigate object, else
``<camera>-<track>`` (lower case) and ``[]``; ``duration`` the seconds from the track's start
to the result; ``detector`` ``streamrec``; ``type`` ``stream`` for streamrec's cameras, the
picture's source (``snapshot``/``latest``) for Frigate's; ``filename``/``base64`` null (no match
image is kept).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from streamrec.records import Event
from streamrec.scales import compreface_similarity, js_to_fixed
from streamrec.sinks import double_take as dt
from streamrec.sinks.mqtt.link import MqttLink
from streamrec.sinks.mqtt.publisher import Person, Publisher, Track

DETECTOR = "streamrec"


@dataclass
class _Track:
    """The attempts of one track (Double Take's event) so far."""

    start: float  # the track's start in its events' ``time``
    box: object = None  # its first box (track_start)
    attempts: list[dt.Attempt] = field(default_factory=list)
    names: set[str] = field(default_factory=set)  # gallery names among its results

    def drop(self, name: str) -> None:
        """Forget the results naming ``name`` (renamed away from them, or erased)."""
        self.names.discard(name)
        subject = dt.subject_name(name)
        self.attempts = [
            replace(a, results=[r for r in a.results if r.name != subject]) for a in self.attempts
        ]


class DoubleTakeTopics(Publisher):
    """Double Take's topics of one sink (see the module docstring). ``threshold``: streamrec's
    recognition threshold (the cosine similarity CompreFace's 0.5 stands for);
    ``homeassistant``: the discovery prefix for Double Take's sensors, None for none."""

    def __init__(
        self,
        link: MqttLink,
        threshold: float,
        homeassistant: str | None,
        *,
        detect: dt.Detect | None = None,
        timezone: str = "UTC",
        reset_after: float = dt.PERSON_RESET_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.link = link
        self.threshold = threshold
        self.topics = dt.Topics(homeassistant=homeassistant)
        self.detect = detect or dt.Detect()
        self.timezone = timezone
        self.reset_after = reset_after
        self.clock = clock
        self._tracks: dict[tuple[str, int], _Track] = {}
        self._resets: dict[str, tuple[float, dt.Recognition]] = {}  # camera -> (when, last)
        self._levels: dict[str, set[str]] = {}  # name -> their sensors' levels (to erase)
        #: camera -> (its last recognition, the gallery names in it): what its retained Home
        #: Assistant state shows
        self._shown: dict[str, tuple[dt.Recognition, frozenset[str]]] = {}
        message = dt.available("online")
        self.link.set_retained(message.topic, message.payload)

    # -- the events ---------------------------------------------------------------------------

    def identified(self, camera: str, track: Track, person: Person, event: Event) -> None:
        score = event.fields.get("score")
        if not isinstance(score, (int, float)):
            return
        similarity = float(compreface_similarity(float(score), self.threshold))
        box = self._box(event, track.box)
        result = dt.normalize(person.name, similarity, box, self.detect)
        if result is None:
            return
        known = self._tracks.get((camera, event.track_id))
        if event.event == "renamed" and known is not None:  # its earlier names were wrong
            for earlier in known.names - {person.name}:
                known.drop(earlier)
        self._attempt(camera, event, result, person.name)

    def written(self, camera: str, event: Event) -> None:
        key = (camera, event.track_id)
        if event.event == "track_start":
            self._tracks[key] = _Track(start=event.time, box=event.fields.get("box"))
        elif event.event == "track_end":
            self._tracks.pop(key, None)
        elif event.event == "unknown":
            track = self._tracks.get(key)
            box = self._box(event, track.box if track is not None else None)
            result = dt.normalize(None, 0.0, box, self.detect)
            if result is not None:
                self._attempt(camera, event, result, None)

    def forgotten(self, name: str, slug: str | None) -> None:
        """Drop ``name``'s results from the open tracks and clear their Home Assistant sensor
        (its match messages went with the events the link dropped)."""
        for track in self._tracks.values():
            if name in track.names:
                track.drop(name)
        for level in self._levels.pop(name, set()):
            if self.topics.homeassistant:
                base = f"{self.topics.homeassistant}/sensor/double-take/{level}"
                self.link.set_retained(f"{base}/config", b"")
                self.link.set_retained(f"{base}/state", b"")
        for camera, (rec, names) in list(self._shown.items()):
            if name in names:  # the camera's state shows them: the reset state, with nobody
                del self._shown[camera]
                self._resets.pop(camera, None)
                nobody = replace(rec, outcome=dt.combine([]))
                for message in dt.reset_messages(nobody, self.topics):
                    self.link.set_retained(message.topic, message.payload)

    def offline(self) -> dict[str, bytes]:
        message = dt.available("offline")
        return {message.topic: message.payload}

    # -- timers -------------------------------------------------------------------------------

    def due(self) -> float | None:
        return min((when for when, _ in self._resets.values()), default=None)

    def expire(self, now: float) -> None:
        for camera, (when, rec) in list(self._resets.items()):
            if when <= now:
                del self._resets[camera]  # Double Take's reset state keeps the lists (shown)
                for message in dt.reset_messages(rec, self.topics):
                    self.link.set_retained(message.topic, message.payload)

    # -- the messages -------------------------------------------------------------------------

    def _attempt(self, camera: str, event: Event, result: dt.Result, name: str | None) -> None:
        key = (camera, event.track_id)
        frigate = _frigate(event)
        track = self._tracks.setdefault(key, _Track(start=0.0 if frigate else event.time))
        duration = js_to_fixed(max(event.time - track.start, 0.0), 2)
        kind = str(event.fields.get("frigate_source") or "snapshot") if frigate else "stream"
        track.attempts.append(dt.Attempt(kind, DETECTOR, duration, [result]))
        if name is not None:
            track.names.add(name)
        zones = event.fields.get("zones")
        rec = dt.Recognition(
            str(event.fields["frigate_event"]) if frigate else f"{camera.lower()}-{event.track_id}",
            duration,
            dt.timestamp(event.captured or time.time(), self.timezone),
            len(track.attempts),
            camera,
            [str(z) for z in zones] if isinstance(zones, list) else [],
            dt.combine(track.attempts),
        )
        names = frozenset(track.names)
        for message in dt.messages(rec, self.topics):
            if message.retain:
                self.link.set_retained(message.topic, message.payload)
            else:
                self.link.queue(message.topic, message.payload, names)
        for face in rec.outcome.matches:
            for gallery_name in track.names:
                if dt.subject_name(gallery_name) == face.result.name:
                    self._levels.setdefault(gallery_name, set()).add(
                        dt.topic_level(face.result.name)
                    )
        self._resets[camera.lower()] = (self.clock() + self.reset_after, rec)
        self._shown[camera.lower()] = (rec, names)

    @staticmethod
    def _box(event: Event, first: object) -> dt.Box:
        """The face's box of the event, else the track's ``first`` box (x1, y1, x2, y2)."""
        box = event.fields.get("box")
        if not (isinstance(box, list) and len(box) == 4):
            box = first
        if not (isinstance(box, list) and len(box) == 4):
            return dt.Box(0, 0, 0, 0)
        x1, y1, x2, y2 = (round(float(v)) for v in box)
        return dt.Box.of_corners(x1, y1, x2, y2)


def _frigate(event: Event) -> bool:
    return bool(event.fields.get("frigate_event"))
