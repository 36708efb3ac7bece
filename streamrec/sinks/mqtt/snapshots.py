"""``<prefix>/<camera>/snapshot``: retained JPEG of the camera's last identification.

The picture is the event's ``snapshot`` (the track's best aligned face, BGR) when the pipeline
attaches one, at most ``max_width`` wide, encoded once on the link's sender thread (never on
the pipeline's). Erasing a person clears the snapshots showing them, and those of earlier runs
(whose person is unknown).
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

from streamrec.records import Event
from streamrec.sinks.mqtt.link import MqttLink
from streamrec.sinks.mqtt.publisher import Person, Publisher, Track


def encode_snapshot(image: np.ndarray, max_width: int, quality: int) -> bytes | None:
    """JPEG of a BGR image, scaled down to ``max_width`` pixels wide; None if unusable."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3 or not image.size:
        return None
    height, width = image.shape[:2]
    if width > max_width:
        size = (max_width, max(1, round(height * max_width / width)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return buf.tobytes() if ok else None


class Snapshots(Publisher):
    """The snapshot topics of one sink (see the module docstring); with ``enabled`` False it
    publishes none, but still clears those of earlier runs when a person is erased."""

    def __init__(
        self,
        link: MqttLink,
        prefix: str,
        enabled: bool,
        max_width: int,
        quality: int,
        shown: Callable[[str, bool], None] = lambda camera, shown: None,
    ) -> None:
        self.link = link
        self.shown = shown  # told when a camera's snapshot is published (True) or cleared
        self.prefix = prefix
        self.enabled = enabled
        self.max_width = max_width
        self.quality = quality
        self._owner: dict[str, str | None] = {}  # camera -> name (None: an earlier run's)
        self._todo: dict[str, tuple[str, np.ndarray]] = {}  # camera -> (name, image)
        self._encoding = 0  # snapshots taken out of _todo and not yet published
        self._forgotten: set[str] = set()  # erased while their snapshot was being encoded

    def identified(self, camera: str, track: Track, person: Person, event: Event) -> None:
        if self.enabled and isinstance(event.snapshot, np.ndarray):
            self._todo[camera] = (person.name, event.snapshot)

    def forgotten(self, name: str, slug: str | None) -> None:
        """Clear the snapshots showing ``name``, and those of earlier runs (owner unknown)."""
        self._todo = {c: v for c, v in self._todo.items() if v[0] != name}
        if self._encoding:
            self._forgotten.add(name)
        for camera, owner in list(self._owner.items()):
            if owner in (name, None):
                del self._owner[camera]
                self.link.set_retained(f"{self.prefix}/{camera}/snapshot", b"")
                self.shown(camera, False)

    def adopt(self, retained: dict[str, bytes], forgotten: set[str]) -> None:
        for topic in retained:
            camera, _, leaf = topic[len(self.prefix) + 1 :].partition("/")
            if leaf == "snapshot" and camera != "people":
                self._owner.setdefault(camera, None)
        for name in forgotten:
            self.forgotten(name, None)

    def work(self) -> None:
        with self.link.lock:
            todo, self._todo = self._todo, {}
            self._encoding += len(todo)
        for camera, (name, image) in todo.items():
            jpeg = encode_snapshot(image, self.max_width, self.quality)
            with self.link.lock:
                self._encoding -= 1
                if jpeg is not None and name not in self._forgotten:
                    self._owner[camera] = name
                    self.link.set_retained(f"{self.prefix}/{camera}/snapshot", jpeg)
                    self.shown(camera, True)
                if not self._encoding:
                    self._forgotten.clear()

    def busy(self) -> bool:
        return bool(self._todo or self._encoding)
