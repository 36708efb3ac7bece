"""Thread-safe live-state hub: the pipeline writes, the web server reads.

Per camera it keeps a state string, a rolling frame rate, the wall time of the last frame,
free-form counters and the latest annotated frame as JPEG bytes; globally a ring buffer of
recent recognitions: named and unknown tracks, each with the track's best aligned face (kept as
pixels, encoded only when someone asks for it). It observes the pipeline
(:class:`~streamrec.telemetry.Observer`: frames done, whether a camera's next annotated frame is
wanted) and reads its events (:meth:`LiveStatus.write`: identifications, unknown labels).

JPEG encoding is paid only when someone watches: :meth:`LiveStatus.publish_frame` encodes
(at most ``max_fps`` times a second) while a viewer is attached to the camera, and otherwise
at most once every ``idle_interval`` seconds so that a new viewer gets a picture at once. The
pipeline can call :meth:`LiveStatus.wants_frame` first to skip drawing annotations as well.
MJPEG streamers register with :meth:`LiveStatus.viewer` and block in
:meth:`LiveStatus.wait_frame` until a newer JPEG version exists.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from streamrec.records import Event
from streamrec.telemetry import CameraState, Observer, named_in, unknown_in


@dataclass(frozen=True)
class Recognition:
    """One entry of the recent recognitions: a track named (``identified``) or labelled
    ``unknown-N`` (``unknown``), with the track's best aligned face when there is one."""

    id: int  # increasing, never reused while the process runs
    kind: str  # "identified" or "unknown"
    camera: str
    track_id: int
    time: float  # wall-clock seconds
    name: str | None  # the person (identified)
    label: str | None  # the unknown-N label (unknown)
    score: float | None  # similarity to the person (identified)
    crop: np.ndarray | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """The JSON of ``/api/recent``; ``crop`` is the URL of the face (relative to the root)."""
        return {
            "id": self.id,
            "kind": self.kind,
            "camera": self.camera,
            "name": self.name,
            "label": self.label,
            "score": self.score,
            "track_id": self.track_id,
            "time": self.time,
            "crop": None if self.crop is None else f"api/recent/{self.id}.jpg",
        }


@dataclass
class _Camera:
    state: CameraState = CameraState.STARTING
    frame_times: deque[float] = field(default_factory=lambda: deque(maxlen=256))
    last_frame: float | None = None
    counters: dict[str, int] = field(default_factory=dict)
    viewers: int = 0
    jpeg: bytes | None = None
    version: int = 0  # bumped on every new JPEG
    last_encode: float = float("-inf")
    #: the camera's degradation level and what it gives up (pipeline.degrade)
    degradation: tuple[int, str] = (0, "normal")


class LiveStatus(Observer):
    """Live per-camera state, latest annotated JPEG per camera, and recent recognitions."""

    def __init__(
        self,
        *,
        max_width: int = 960,
        jpeg_quality: int = 75,
        max_fps: float = 10.0,
        idle_interval: float | None = 5.0,
        fps_window: float = 3.0,
        recent_size: int = 100,
    ) -> None:
        self.max_width = max_width
        self.jpeg_quality = jpeg_quality
        self.max_fps = max_fps
        self.idle_interval = idle_interval
        self.fps_window = fps_window
        self._cameras: dict[str, _Camera] = {}
        self._recent: deque[Recognition] = deque(maxlen=recent_size)
        self._next_id = 1
        self._sinks: dict[str, dict[str, Any]] = {}
        self._models: list[dict[str, Any]] = []
        self._frigate: dict[str, dict[str, int]] = {}
        self._cond = threading.Condition()

    def _camera(self, camera: str) -> _Camera:
        """The camera's record, created on first use; call with the lock held."""
        cam = self._cameras.get(camera)
        if cam is None:
            cam = self._cameras[camera] = _Camera()
        return cam

    # -- pipeline side: the events and the observer ----------------------------------------

    def write(self, event: Event) -> None:
        """Remember a track named (or renamed) as a person, or labelled ``unknown-N``, with the
        face the event carries."""
        camera = event.camera or event.source
        name, label = named_in(event), unknown_in(event)
        if name is not None:
            score = event.fields.get("score")
            score = float(score) if isinstance(score, (int, float)) else 0.0
            self.add_recognition(camera, name, score, event.track_id, crop=event.snapshot)
        elif label is not None:
            self.add_unknown(camera, label, event.track_id, crop=event.snapshot)

    def frame_done(self, camera: str, image: np.ndarray | None) -> None:
        self.frame(camera)
        if image is not None:
            self.publish_frame(camera, image)

    def frame_wanted(self, camera: str) -> bool:
        return self.wants_frame(camera)

    def degraded(self, camera: str, level: int, what: str) -> None:
        with self._cond:
            self._camera(camera).degradation = (level, what)

    def set_state(self, camera: str, state: CameraState) -> None:
        with self._cond:
            self._camera(camera).state = state

    def frame(self, camera: str, now: float | None = None) -> None:
        """Record that a frame was read (updates fps, last frame time and ``frames``)."""
        now = time.time() if now is None else now
        with self._cond:
            cam = self._camera(camera)
            cam.frame_times.append(now)
            cam.last_frame = now
            cam.counters["frames"] = cam.counters.get("frames", 0) + 1

    def incr(self, camera: str, counter: str, n: int = 1) -> None:
        """Add ``n`` to a named per-camera counter (``dropped``, ``reconnects``, ``faces`` ...)."""
        with self._cond:
            counters = self._camera(camera).counters
            counters[counter] = counters.get(counter, 0) + n

    def wants_frame(self, camera: str, now: float | None = None) -> bool:
        """Whether :meth:`publish_frame` would encode now (lets the caller skip drawing)."""
        now = time.monotonic() if now is None else now
        with self._cond:
            return self._due(self._camera(camera), now)

    def _due(self, cam: _Camera, now: float) -> bool:
        if cam.viewers > 0:
            return now - cam.last_encode >= 1.0 / self.max_fps
        return self.idle_interval is not None and now - cam.last_encode >= self.idle_interval

    def publish_frame(self, camera: str, image: np.ndarray) -> bool:
        """Offer the latest annotated BGR frame; returns True if it was encoded and published."""
        now = time.monotonic()
        with self._cond:
            cam = self._camera(camera)
            if not self._due(cam, now):
                return False
            cam.last_encode = now  # claimed before encoding, outside the lock
        height, width = image.shape[:2]
        if width > self.max_width:
            size = (self.max_width, max(1, round(height * self.max_width / width)))
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
        if not ok:
            return False
        self.publish_jpeg(camera, buf.tobytes())
        return True

    def publish_jpeg(self, camera: str, jpeg: bytes) -> None:
        """The camera's latest annotated frame, already JPEG (made elsewhere: a cluster actor)."""
        with self._cond:
            cam = self._camera(camera)
            cam.jpeg = jpeg
            cam.version += 1
            self._cond.notify_all()

    def add_recognition(
        self,
        camera: str,
        name: str,
        score: float,
        track_id: int,
        time_: float | None = None,
        crop: np.ndarray | None = None,
    ) -> None:
        """Remember an identification (``time_`` is wall-clock seconds, default now)."""
        self._remember("identified", camera, track_id, time_, name, None, score, crop)

    def add_unknown(
        self, camera: str, label: str, track_id: int, crop: np.ndarray | None = None
    ) -> None:
        """Remember a track labelled ``unknown-N`` (now)."""
        self._remember("unknown", camera, track_id, None, None, label, None, crop)

    def _remember(
        self,
        kind: str,
        camera: str,
        track_id: int,
        time_: float | None,
        name: str | None,
        label: str | None,
        score: float | None,
        crop: np.ndarray | None,
    ) -> None:
        # the pipeline may reuse its crop buffer: keep a copy (112x112: a few tens of kB)
        crop = None if crop is None else np.array(crop, copy=True)
        with self._cond:
            self._recent.append(
                Recognition(
                    self._next_id,
                    kind,
                    camera,
                    int(track_id),
                    time.time() if time_ is None else float(time_),
                    name,
                    label,
                    None if score is None else round(float(score), 4),
                    crop,
                )
            )
            self._next_id += 1

    def set_sinks(self, health: dict[str, dict[str, Any]]) -> None:
        """The event sinks' states (``FanoutSink.health()``), shown in :meth:`health`."""
        with self._cond:
            self._sinks = health

    def set_frigate(self, bridges: dict[str, dict[str, int]]) -> None:
        """The Frigate bridges' counters, shown in :meth:`health`."""
        with self._cond:
            self._frigate = bridges

    def set_models(self, models: list[dict[str, Any]]) -> None:
        """How each model runs (provider, precision), shown in :meth:`health`."""
        with self._cond:
            self._models = models

    def erased(self, name: str) -> None:
        self.forget(name)

    def forget(self, name: str) -> None:
        """Erase a person (or unknown label) from the recent recognitions."""
        with self._cond:
            kept = [r for r in self._recent if name not in (r.name, r.label)]
            self._recent.clear()
            self._recent.extend(kept)

    # -- reader side ---------------------------------------------------------------------

    def health(self, now: float | None = None) -> dict[str, Any]:
        """``{"ok", "time", "cameras", "sinks", "models"}`` (and ``frigate`` with bridges): ok
        when every camera and sink is."""
        now = time.time() if now is None else now
        cameras = self.snapshot(now)
        with self._cond:
            sinks = {k: dict(v) for k, v in self._sinks.items()}
            models = list(self._models)
            frigate = {k: dict(v) for k, v in self._frigate.items()}
        ok = all(c["ok"] for c in cameras.values()) and all(s["ok"] for s in sinks.values())
        out = {"ok": ok, "time": now, "cameras": cameras, "sinks": sinks, "models": models}
        if frigate:
            out["frigate"] = frigate
        return out

    def recent(self, n: int = 20) -> list[dict[str, Any]]:
        """The ``n`` most recent recognitions, newest first (see :meth:`Recognition.to_dict`)."""
        with self._cond:
            items = list(self._recent)
        return [r.to_dict() for r in items[::-1][: max(0, n)]]

    def recognition(self, id_: int) -> Recognition | None:
        """A recent recognition by id (None once it has left the ring buffer)."""
        with self._cond:
            return next((r for r in self._recent if r.id == id_), None)

    def cameras(self) -> list[str]:
        with self._cond:
            return sorted(self._cameras)

    def snapshot(self, now: float | None = None) -> dict[str, dict[str, Any]]:
        """Per camera: ``state``, ``ok``, ``fps``, ``last_frame_age`` (s or None), ``counters``,
        ``degradation`` (``level``: 0 normal; ``what`` it gives up)."""
        now = time.time() if now is None else now
        with self._cond:
            return {
                name: {
                    "state": cam.state.value,
                    "ok": cam.state.healthy,
                    "fps": round(self._fps(cam, now), 2),
                    "last_frame_age": (
                        None if cam.last_frame is None else round(max(0.0, now - cam.last_frame), 3)
                    ),
                    "counters": dict(cam.counters),
                    "degradation": {"level": cam.degradation[0], "what": cam.degradation[1]},
                }
                for name, cam in sorted(self._cameras.items())
            }

    def _fps(self, cam: _Camera, now: float) -> float:
        times = [t for t in cam.frame_times if t >= now - self.fps_window]
        if len(times) < 2 or times[-1] <= times[0]:
            return 0.0
        return (len(times) - 1) / (times[-1] - times[0])

    @contextmanager
    def viewer(self, camera: str) -> Iterator[None]:
        """Count a viewer of ``camera`` for the duration of the block (enables encoding)."""
        with self._cond:
            self._camera(camera).viewers += 1
        try:
            yield
        finally:
            with self._cond:
                self._camera(camera).viewers -= 1

    def wait_frame(self, camera: str, after: int, timeout: float) -> tuple[int, bytes] | None:
        """Block until the camera has a JPEG newer than version ``after``.

        Returns ``(version, jpeg)``, or None on timeout or :meth:`wake`.
        """
        with self._cond:
            cam = self._camera(camera)
            if cam.version <= after or cam.jpeg is None:
                self._cond.wait(timeout)
            if cam.version <= after or cam.jpeg is None:
                return None
            return cam.version, cam.jpeg

    def wake(self) -> None:
        """Wake every :meth:`wait_frame` caller (used at shutdown)."""
        with self._cond:
            self._cond.notify_all()
