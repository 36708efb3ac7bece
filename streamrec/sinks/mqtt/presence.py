"""Who is in view on each camera and who is present: the MQTT sink's state and its topics.

Topics (``<prefix>`` is ``topic_prefix``, ``<camera>`` a camera's topic level, ``<person>`` a
person's slug, see :mod:`~streamrec.sinks.mqtt.topics`):

- ``<prefix>/<camera>/status``: retained camera state (``set_status``: "online", "offline",
  "reconnecting" ...); a camera that sends events before any status is announced "online".
- ``<prefix>/<camera>/last_name``: retained, the name of the camera's last identification;
  ``None`` (Home Assistant's "unknown") ``presence_timeout`` s after the camera's last identified
  track ended.
- ``<prefix>/<camera>/people``: retained JSON, who is in view now: ``people`` (names of the open
  identified tracks), ``count`` (their number) and ``faces`` (open tracks, known or not).
- ``<prefix>/people/<person>``: retained JSON ``{name, presence, location, in_zones, camera,
  last_seen, last_seen_ts, score}``; ``presence`` is the camera the person is seen on, and
  ``not_home`` ``presence_timeout`` s after their last track ended (a timer, not an event);
  ``location`` is what their Home Assistant ``device_tracker`` shows: ``home`` while they are
  seen on any camera (or the zone name ``zones`` gives that camera), else ``not_home``;
  ``in_zones`` the same as a list (``["home"]``, ``[]``: the attribute Home Assistant's tracker
  reads after 2026.3). ``camera``/``last_seen`` are null for an enrolled person never seen
  (:meth:`Presence.announce`). The key is not ``state``: Home Assistant drops a ``state``
  attribute.

State of earlier runs (:meth:`Presence.adopt`): people and last names that a run which died left
"present" expire after the timeout, stale in-view lists are emptied, and :meth:`Presence.forget`
finds a person's topics from earlier runs. :meth:`Presence.close` expires everything at once: a
stopped sink leaves nobody present. Every change is told to the :class:`Publisher` s.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence

from streamrec.records import Event
from streamrec.sinks.mqtt.link import MqttLink
from streamrec.sinks.mqtt.publisher import Person, Publisher, Track
from streamrec.sinks.mqtt.topics import HOME, NONE, NOT_HOME, iso, person_slug, to_json


class Presence:
    """The cameras, open tracks and people of one sink (call everything with ``link.lock``
    held); it publishes the topics of the module docstring and tells ``publishers`` what
    changed."""

    def __init__(
        self,
        link: MqttLink,
        prefix: str,
        timeout: float,
        publishers: Sequence[Publisher],
        zones: dict[str, str] | None = None,
    ) -> None:
        self.link = link
        self.prefix = prefix
        self.timeout = timeout
        self.zones = dict(zones or {})  # camera topic level -> the location shown there
        self.publishers = list(publishers)
        self.cameras: set[str] = set()
        self.tracks: dict[tuple[str, int], Track] = {}  # open tracks by (camera, track id)
        self.people: dict[str, Person] = {}  # by name
        self._slugs: dict[str, str] = {}  # slug -> name
        self._last_names: dict[str, str] = {}  # camera -> its retained last name
        self._deadlines: dict[tuple[str, str], float] = {}  # (kind, key) -> monotonic time

    # -- what happens ---------------------------------------------------------------------------

    def write(self, camera: str, event: Event, name: str | None, seen: float) -> None:
        """Take in one event of ``camera`` (``name``: the person it names, ``seen``: when)."""
        self.add_camera(camera)
        key = (camera, event.track_id)
        if event.event == "track_start":
            box = event.fields.get("box")
            self.tracks[key] = Track(box=list(box) if box is not None else None)
        elif event.event in ("identified", "renamed"):
            track = self.tracks.setdefault(key, Track())
            previous, track.name = track.name, name
            if previous is not None and previous != name:
                self._left(camera, previous, seen)
            if name is not None:
                self._identified(camera, track, name, event, seen)
        elif event.event == "track_end":
            ended = self.tracks.pop(key, None)
            if ended is not None and ended.name is not None:
                self._left(camera, ended.name, seen)
        self._update_view(camera)
        for p in self.publishers:
            p.written(camera, event)

    def add_camera(self, camera: str) -> None:
        if camera in self.cameras:
            return
        self.cameras.add(camera)
        status = f"{self.prefix}/{camera}/status"
        if self.link.retained(status) is None:
            self.link.set_retained(status, b"online")
        self._update_view(camera)
        for p in self.publishers:
            p.camera_added(camera)

    def set_status(self, camera: str, status: str) -> None:
        self.add_camera(camera)
        self.link.set_retained(f"{self.prefix}/{camera}/status", status.encode())

    def forget(self, name: str) -> None:
        """Erase a person: clear their people topic, every camera's last name naming them and
        their name in the in-view lists; the publishers clear the rest."""
        person = self.people.pop(name, None)
        if person is not None:
            self._slugs.pop(person.slug, None)
        self._clear_person(name, person.slug if person is not None else None)
        self._deadlines.pop(("person", name), None)
        for track in self.tracks.values():
            if track.name == name:
                track.name = None
        for camera, named in list(self._last_names.items()):
            if named == name:
                self._set_last_name(camera, None)
                self._deadlines.pop(("last_name", camera), None)
        for camera in self.cameras:
            self._update_view(camera)

    def close(self) -> None:
        """Nobody is watched any more: every track ends, everyone is not_home, every last name
        is cleared, now."""
        self.tracks.clear()
        for camera in self.cameras:
            self._update_view(camera)
        for person in self.people.values():
            self._deadlines[("person", person.name)] = 0.0
        for camera in self._last_names:
            self._deadlines[("last_name", camera)] = 0.0
        self.expire(float("inf"))

    def announce(self, names: Sequence[str]) -> None:
        """Enrolled people: give each one not yet known a topic (not_home, never seen) so that
        their entities exist before their first sighting."""
        for name in names:
            if name not in self.people:
                self._person_changed(self._person(name))

    def faces(self, camera: str) -> int:
        """Open tracks on ``camera``."""
        return sum(1 for (c, _) in self.tracks if c == camera)

    # -- timers ---------------------------------------------------------------------------------

    def due(self) -> float | None:
        return min(self._deadlines.values(), default=None)

    def expire(self, now: float) -> None:
        for key, when in list(self._deadlines.items()):
            if when > now:
                continue
            del self._deadlines[key]
            kind, ident = key
            if kind == "person":
                person = self.people.get(ident)
                if person is not None and person.present and not self._open_cameras(ident):
                    person.present = False
                    self._person_changed(person)
            else:
                self._set_last_name(ident, None)

    # -- retained state of earlier runs ---------------------------------------------------------

    def adopt(self, retained: dict[str, bytes], forgotten: set[str]) -> None:
        """Take over the retained topics of earlier runs that this run has not written;
        ``forgotten``: names erased before they were read."""
        now = time.time()
        for topic, payload in retained.items():
            level, _, leaf = topic[len(self.prefix) + 1 :].partition("/")
            if level == "people":
                self._adopt_person(leaf, payload, now, forgotten)
            elif leaf == "last_name":
                named = payload.decode(errors="replace")
                if payload in (b"", NONE.encode()):
                    continue  # nobody (None, or an empty payload of an older version)
                if named in forgotten:
                    self.link.set_retained(topic, NONE.encode())
                else:
                    self.link.adopt(topic, payload)
                    self._last_names[level] = named
                    self._deadlines[("last_name", level)] = time.monotonic() + self.timeout
            elif leaf == "people":
                empty = {"camera": level, "people": [], "count": 0, "faces": 0}
                self.link.set_retained(topic, to_json(empty))

    def _adopt_person(self, slug: str, payload: bytes, now: float, forgotten: set[str]) -> None:
        try:
            data = json.loads(payload)
            name, camera = data["name"], data.get("camera") or ""
            last_seen = float(data.get("last_seen_ts") or 0.0)
            presence = data.get("presence", data.get("state"))  # "state" before issue 24
            score = data.get("score")
        except (ValueError, TypeError, KeyError):
            return  # not one of ours
        if not isinstance(name, str) or not isinstance(camera, str):
            return
        if name in forgotten:
            self._clear_person(name, slug)
            return
        if name in self.people or slug in self._slugs:
            return
        present = presence not in (NOT_HOME, None)
        score = float(score) if isinstance(score, (int, float)) else None
        person = Person(name, slug, camera, last_seen, score, present)
        self.link.adopt(f"{self.prefix}/people/{slug}", payload)
        self._register(person)
        if present:
            left = min(max(last_seen + self.timeout - now, 0.0), self.timeout)
            self._deadlines[("person", name)] = time.monotonic() + left

    # -- the state and its topics ---------------------------------------------------------------

    def _person(self, name: str) -> Person:
        person = self.people.get(name)
        if person is None:
            slug = person_slug(name)
            if self._slugs.get(slug, name) != name:  # another name with the same slug
                slug += "_" + hashlib.sha256(name.encode()).hexdigest()[:8]
            person = Person(name, slug, "", 0.0, None, False)
            self._register(person)
        return person

    def _register(self, person: Person) -> None:
        self.people[person.name] = person
        self._slugs[person.slug] = person.name
        for p in self.publishers:
            p.person_added(person)

    def _open_cameras(self, name: str) -> list[str]:
        return [camera for (camera, _), t in self.tracks.items() if t.name == name]

    def _identified(self, camera: str, track: Track, name: str, event: Event, seen: float) -> None:
        score = event.fields.get("score")
        person = self._person(name)
        person.camera, person.last_seen, person.present = camera, seen, True
        person.score = float(score) if isinstance(score, (int, float)) else None
        self._deadlines.pop(("person", name), None)
        self._person_changed(person)
        self._set_last_name(camera, name)
        self._deadlines.pop(("last_name", camera), None)
        for p in self.publishers:
            p.identified(camera, track, person, event)

    def _left(self, camera: str, name: str, seen: float) -> None:
        """One of ``name``'s tracks on ``camera`` ended (or was renamed to someone else)."""
        person = self.people.get(name)
        if person is None:  # forgotten meanwhile
            return
        person.last_seen = max(person.last_seen, seen)
        cameras = self._open_cameras(name)
        if cameras:
            person.camera = cameras[-1]
        else:
            self._deadlines[("person", name)] = time.monotonic() + self.timeout
        self._person_changed(person)
        if not any(t.name for (c, _), t in self.tracks.items() if c == camera):
            self._deadlines[("last_name", camera)] = time.monotonic() + self.timeout

    def location(self, p: Person) -> str:
        """What ``p``'s device tracker shows: home (or the zone of the camera they were seen on
        last), else not_home."""
        return self.zones.get(p.camera, HOME) if p.present else NOT_HOME

    def _person_changed(self, p: Person) -> None:
        seen = p.last_seen > 0
        last_seen = round(p.last_seen, 3) if seen else None
        location = self.location(p)
        payload = {
            "name": p.name,
            "presence": p.camera if p.present else NOT_HOME,
            "location": location,
            "in_zones": [] if location == NOT_HOME else [location],
            "camera": p.camera or None,
            "last_seen": iso(last_seen) if last_seen is not None else None,
            "last_seen_ts": last_seen,
            "score": p.score,
        }
        self.link.set_retained(f"{self.prefix}/people/{p.slug}", to_json(payload))
        for publisher in self.publishers:
            publisher.person_changed(p)

    def _set_last_name(self, camera: str, name: str | None) -> None:
        if name is None:
            self._last_names.pop(camera, None)
        else:
            self._last_names[camera] = name
        value = name if name is not None else NONE  # Home Assistant's "unknown"
        self.link.set_retained(f"{self.prefix}/{camera}/last_name", value.encode())

    def _update_view(self, camera: str) -> None:
        """Publish who is in view on ``camera`` now."""
        tracks = [t for (c, _), t in self.tracks.items() if c == camera]
        people = sorted({t.name for t in tracks if t.name is not None})
        view = {"camera": camera, "people": people, "count": len(people), "faces": len(tracks)}
        self.link.set_retained(f"{self.prefix}/{camera}/people", to_json(view))

    def _clear_person(self, name: str, slug: str | None) -> None:
        """``name`` is erased: their people topic (``slug``: theirs, if they have one) and
        what the publishers published of them."""
        if slug is not None:
            self.link.set_retained(f"{self.prefix}/people/{slug}", b"")
        for p in self.publishers:
            p.forgotten(name, slug)
