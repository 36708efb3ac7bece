"""The camera monitor: what ``/health``, ``/metrics``, the logs and the MQTT camera status say
about the cameras, shared by the daemon and the cluster head.

It turns each camera's state and its source's counters (totals, see :class:`SourceCounters`)
into the live status, the metrics, a log line per state change and the retained MQTT camera
status (on every event sink that takes one, :class:`~streamrec.sinks.events.StatusSink`); the
event sinks' health, the models and the frame rates into ``/health`` and the gauges. The
daemon feeds it from its pipeline's sources once a second, the cluster head from the reports of
the camera actors (and from the actor restarts it sees).
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from streamrec.service.metrics import Metrics
from streamrec.service.status import LiveStatus
from streamrec.sinks.events import FanoutSink, StatusSink
from streamrec.sources import SourceStats
from streamrec.telemetry import CameraState

#: states logged as a warning (the camera is not delivering)
TROUBLE = (CameraState.CONNECTING, CameraState.RECONNECTING, CameraState.RESTARTING)


@dataclass
class SourceCounters:
    """A camera source's totals (the monitor turns them into increases)."""

    state: CameraState | None = None
    dropped: int = 0
    reconnects: int = 0
    stalls: int = 0
    last_error: str | None = None

    @classmethod
    def of(cls, stats: SourceStats, dropped: int) -> SourceCounters:
        """The totals of a source's stats; ``dropped``: its frames dropped anywhere."""
        return cls(stats.state, dropped, stats.reconnects, stats.stalls, stats.last_error)


class CameraMonitor:
    """The cameras' states and counters in ``status``, ``metrics``, the logs and MQTT.

    ``unlogged``: states whose changes the caller logs itself (the cluster driver logs the
    ends, with their frames); ``log``: the caller's logger.
    """

    def __init__(
        self,
        cameras: Collection[str],
        status: LiveStatus,
        metrics: Metrics,
        sinks: FanoutSink,
        unlogged: Collection[CameraState] = (),
        log: logging.Logger | None = None,
    ) -> None:
        self.cameras = list(cameras)
        self.status = status
        self.metrics = metrics
        self.sinks = sinks
        self.status_sinks = [s for s in sinks.sinks if isinstance(s, StatusSink)]
        self.unlogged = set(unlogged)
        self.log = log or logging.getLogger("streamrec.daemon")
        self._states: dict[str, CameraState] = {}
        self._seen = {name: SourceCounters() for name in self.cameras}
        self._sink_errors: dict[str, int] = {}

    def start(self) -> None:
        """Every camera's series at 0 and ``starting`` in the status and the metrics."""
        for name in self.cameras:
            self.metrics.add_camera(name)
            self.metrics.set_camera_state(name, CameraState.STARTING)
            self.status.set_state(name, CameraState.STARTING)

    def set_state(self, camera: str, state: CameraState, reason: str | None = None) -> None:
        """A camera's state (told again and again: only changes count); ``reason``: why a
        camera is (re)connecting."""
        if self._states.get(camera) is state:
            return
        self._states[camera] = state
        self.status.set_state(camera, state)
        self.metrics.set_camera_state(camera, state)
        if state in TROUBLE:
            why = f" ({reason})" if reason else ""
            self.log.warning("camera %s: %s%s", camera, state.value, why)
        elif state not in self.unlogged:
            self.log.info("camera %s: %s", camera, state.value)
        for sink in self.status_sinks:
            sink.set_status(camera, state.mqtt)

    def count(self, camera: str, totals: SourceCounters) -> None:
        """A camera source's totals: their increases go to the status and the metrics."""
        seen = self._seen[camera]
        if totals.dropped > seen.dropped:
            self.metrics.dropped(camera, totals.dropped - seen.dropped)
            self.status.incr(camera, "dropped", totals.dropped - seen.dropped)
        if totals.reconnects > seen.reconnects:
            for _ in range(totals.reconnects - seen.reconnects):
                self.metrics.reconnect(camera)
            self.status.incr(camera, "reconnects", totals.reconnects - seen.reconnects)
        for _ in range(totals.stalls - seen.stalls):
            self.metrics.stall(camera)
        seen.dropped = max(seen.dropped, totals.dropped)
        seen.reconnects = max(seen.reconnects, totals.reconnects)
        seen.stalls = max(seen.stalls, totals.stalls)

    def restarted(self, camera: str) -> None:
        """The camera's source and pipeline started again (a recreated actor): its counters
        count from 0, its degradation level is 0."""
        self._seen[camera] = SourceCounters()
        self.metrics.degraded(camera, 0, "normal")
        self.status.degraded(camera, 0, "normal")

    def poll(self, models: list[dict[str, Any]]) -> None:
        """The frame rates, the event sinks' health (``/health``,
        ``streamrec_sink_errors_total``) and how the ``models`` run."""
        for camera, shown in self.status.snapshot().items():
            self.metrics.set_camera_fps(camera, shown.get("fps", 0.0))
        health = self.sinks.health()
        self.status.set_sinks(health)
        self.status.set_models(models)
        for sink, h in health.items():
            new = h["errors"] - self._sink_errors.get(sink, 0)
            if new > 0:
                self.metrics.sink_errors(sink, new)
            self._sink_errors[sink] = h["errors"]

    def log_stats(self) -> None:
        """One line per camera: state, fps, frames, drops, reconnects, degradation."""
        for name, cam in self.status.snapshot().items():
            c = cam["counters"]
            self.log.info(
                "camera %s: %s, %.1f fps, %d frames, %d dropped, %d reconnects, "
                "degradation %d (%s)",
                name,
                cam["state"],
                cam["fps"],
                c.get("frames", 0),
                c.get("dropped", 0),
                c.get("reconnects", 0),
                cam["degradation"]["level"],
                cam["degradation"]["what"],
            )
