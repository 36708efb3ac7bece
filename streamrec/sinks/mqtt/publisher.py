"""The seam between the MQTT sink's state and what it publishes.

:class:`~streamrec.sinks.mqtt.presence.Presence` follows the events (cameras, open tracks,
people and whether they are present) and tells every :class:`Publisher` what changed; each
publisher turns that into the messages of one concern (Home Assistant discovery, Double Take,
snapshots ...) on the :class:`~streamrec.sinks.mqtt.link.MqttLink`. A new concern is one new
publisher, added in :meth:`MqttEventSink.__init__ <streamrec.sinks.mqtt.sink.MqttEventSink>`.
"""

from __future__ import annotations

from dataclasses import dataclass

from streamrec.records import Event


@dataclass
class Track:
    """An open track of a camera: who it names (None: nobody yet) and its first box."""

    name: str | None = None
    box: list[float] | None = None


@dataclass
class Person:
    """A person the sink has published, under ``<prefix>/people/<slug>``."""

    name: str  # as in the gallery
    slug: str
    camera: str  # where last seen
    last_seen: float  # epoch seconds
    score: float | None
    present: bool  # state is ``camera`` (else not_home)


class Publisher:
    """One concern published over the link; every hook does nothing unless overridden.

    Hooks are called with the sink's lock held, in the order of the events, and must not block
    (publish with ``link.queue`` / ``link.set_retained``, which only buffer). ``camera`` is a
    camera's topic level.
    """

    def camera_added(self, camera: str) -> None:
        """A camera sent its first event (or status)."""

    def person_added(self, person: Person) -> None:
        """A person got a topic: named for the first time, or found in the retained state of an
        earlier run."""

    def person_changed(self, person: Person) -> None:
        """A person's presence changed (seen, left a camera, not_home)."""

    def identified(self, camera: str, track: Track, person: Person, event: Event) -> None:
        """A track on ``camera`` was named ``person`` (``identified`` or ``renamed``)."""

    def written(self, camera: str, event: Event) -> None:
        """Any event of ``camera``, once the presence has taken it in (an ``unknown`` face, a
        track that ended ...)."""

    def forgotten(self, name: str, slug: str | None) -> None:
        """A person or label was erased: clear what names them (``slug``: their topic level,
        None when they had none)."""

    def adopt(self, retained: dict[str, bytes], forgotten: set[str]) -> None:
        """The retained topics under the prefix that earlier runs left (read once after the
        first connection; topics this run has written since are left out), and the names
        erased before they were read."""

    def offline(self) -> dict[str, bytes]:
        """The retained values to publish when the sink closes (topic -> payload)."""
        return {}

    def due(self) -> float | None:
        """When :meth:`expire` wants to run next (monotonic; None: no timer)."""
        return None

    def expire(self, now: float) -> None:
        """Run the timers that are due at ``now`` (monotonic)."""

    def work(self) -> None:
        """Slow work kept off the pipeline's threads; called on the link's sender thread
        without the sink's lock (take it to touch shared state)."""

    def busy(self) -> bool:
        """Work waits for :meth:`work` (``sync`` and ``close`` wait for it)."""
        return False
