"""``double-take/matches/<person>`` and ``double-take/cameras/<camera>``: each identification
shaped like Double Take's payloads (the fields an automation reads: camera, match name,
confidence in percent, box), buffered like events (``double_take_topics``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from streamrec.records import Event
from streamrec.sinks.mqtt.link import MqttLink
from streamrec.sinks.mqtt.publisher import Person, Publisher, Track
from streamrec.sinks.mqtt.topics import iso, to_json

DOUBLE_TAKE = "double-take"


class DoubleTakeTopics(Publisher):
    """``faces(camera)``: the open tracks of a camera (Double Take's person count)."""

    def __init__(self, link: MqttLink, faces: Callable[[str], int]) -> None:
        self.link = link
        self.faces = faces

    def identified(self, camera: str, track: Track, person: Person, event: Event) -> None:
        match: dict[str, Any] = {
            "name": person.name,
            "confidence": round(person.score * 100, 2) if person.score is not None else None,
            "match": True,
            "detector": "streamrec",
        }
        if track.box is not None and len(track.box) == 4:
            x1, y1, x2, y2 = (round(float(v)) for v in track.box)
            match["box"] = {"top": y1, "left": x1, "width": x2 - x1, "height": y2 - y1}
        seen = person.last_seen
        base = {"id": f"{camera}-{event.track_id}", "timestamp": iso(seen), "camera": camera}
        counts = {"person": self.faces(camera), "match": 1, "miss": 0, "unknown": 0}
        by_camera = {**base, "zones": [], "matches": [match], "misses": [], "unknowns": []}
        names = frozenset([person.name])
        self.link.queue(
            f"{DOUBLE_TAKE}/matches/{person.slug}", to_json({**base, "match": match}), names
        )
        self.link.queue(
            f"{DOUBLE_TAKE}/cameras/{camera}", to_json({**by_camera, "counts": counts}), names
        )
