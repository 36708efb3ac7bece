"""Common parts of all video sources: options, stats, the Gap record, redaction, buffering."""

from __future__ import annotations

import logging
import threading
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Generic, TypeVar

from ..config import MAX_SECONDS
from ..errors import ConfigError
from ..records import Frame
from ..redact import redact
from ..telemetry import CameraState

LOG = logging.getLogger("streamrec.sources")

#: damage messages kept (and logged) per source; later ones are only counted
MAX_DAMAGE_MESSAGES = 100


@dataclass
class SourceOptions:
    """How sources are opened and kept alive (the ``live`` section of the config)."""

    rtsp_transport: str = "tcp"  # "tcp" | "udp"
    #: seconds to wait for a source to open (network sources)
    open_timeout: float = 10.0
    #: a live source that produces no frame for this long is stalled and reopened
    stall_timeout: float = 5.0
    #: first reconnect delay (s); doubles per failed attempt up to ``reconnect_max``, full jitter
    reconnect_initial: float = 0.5
    reconnect_max: float = 30.0
    #: decoder threads per source; 0 lets FFmpeg pick one per core
    decoder_threads: int = 0
    #: decoded frames a file source reads ahead of the consumer
    prefetch: int = 4
    #: apply the container's display rotation (phone videos) so faces are upright
    autorotate: bool = True
    #: extra FFmpeg demuxer/protocol options, e.g. {"buffer_size": "4194304"}
    ffmpeg_options: dict[str, str] = field(default_factory=dict)
    #: files and recordings: the span to read, in media seconds (seek to ``start``, stop before
    #: ``end``; None: to the end); live sources ignore it
    start: float = 0.0
    end: float | None = None

    def __post_init__(self) -> None:
        if self.rtsp_transport not in ("tcp", "udp"):
            raise ConfigError(f"rtsp_transport must be 'tcp' or 'udp', not {self.rtsp_transport!r}")
        for key in ("open_timeout", "stall_timeout", "reconnect_initial", "reconnect_max"):
            if not getattr(self, key) > 0:
                raise ConfigError(f"{key} must be > 0, not {getattr(self, key)!r}")
        if self.reconnect_max < self.reconnect_initial:
            raise ConfigError("reconnect_max must be >= reconnect_initial")
        if self.decoder_threads < 0:
            raise ConfigError(f"decoder_threads must be >= 0, not {self.decoder_threads}")
        if self.prefetch < 1:
            raise ConfigError(f"prefetch must be >= 1, not {self.prefetch}")
        if not 0 <= self.start <= MAX_SECONDS:
            raise ConfigError(
                f"start (--start) must be seconds from 0 to {MAX_SECONDS:.0e}, not {self.start!r}"
            )
        if self.end is not None and not self.start < self.end <= MAX_SECONDS:
            raise ConfigError(
                f"end (--end) must be after start ({self.start:g}) and at most {MAX_SECONDS:.0e} "
                f"s, not {self.end!r}"
            )


@dataclass
class SourceStats:
    """Counters of one source, updated by its reader thread (read them at any time).

    ``frames`` counts frames read from the source; on live sources ``dropped`` of them were
    replaced by a newer frame before the consumer took them. ``disconnects`` counts every lost
    stream, stalls included; ``reconnects`` counts streams reopened after a loss.
    """

    frames: int = 0
    dropped: int = 0
    decode_errors: int = 0
    disconnects: int = 0
    reconnects: int = 0
    stalls: int = 0
    state: CameraState = CameraState.CONNECTING
    last_frame_wall: float | None = None
    #: why the last connection attempt or stream failed (credentials redacted)
    last_error: str | None = None
    damage: list[str] = field(default_factory=list)


@dataclass
class Gap:
    """A live stream was lost: tracks of this source should end now; frames resume later."""

    source: str
    reason: str
    captured: float


T = TypeVar("T")


class ItemBuffer(Generic[T]):
    """Hand-over between a reader thread and the consumer.

    ``newest_wins=False``: a bounded FIFO whose ``put`` blocks while full (files: nothing is
    lost, the consumer sets the pace). ``newest_wins=True``: at most one pending frame; a new one
    replaces it and ``on_drop`` is called (live sources). ``Gap`` items are never dropped.
    """

    def __init__(
        self, capacity: int, newest_wins: bool, on_drop: Callable[[], None] | None = None
    ) -> None:
        self._items: deque[T | Gap] = deque()
        self._capacity = capacity
        self._newest_wins = newest_wins
        self._on_drop = on_drop
        self._cond = threading.Condition()
        self._finished = False
        self._closed = False
        self._error: BaseException | None = None

    def put(self, item: T | Gap) -> bool:
        """Add ``item``; False when the buffer was closed (the producer should stop)."""
        with self._cond:
            if self._newest_wins:
                self._drop_frames()  # pending frames predate both a new frame and a gap
            else:
                while len(self._items) >= self._capacity and not self._closed:
                    self._cond.wait()
            if self._closed:
                return False
            self._items.append(item)
            self._cond.notify_all()
            return True

    def _drop_frames(self) -> None:
        kept = [i for i in self._items if isinstance(i, Gap)]
        for _ in range(len(self._items) - len(kept)):
            if self._on_drop is not None:
                self._on_drop()
        self._items = deque(kept)

    def finish(self, error: BaseException | None = None) -> None:
        """No more items will come; ``error`` is raised to the consumer after the last item."""
        with self._cond:
            self._finished = True
            self._error = error
            self._cond.notify_all()

    def close(self) -> None:
        """Drop pending items and wake everyone: producers stop, the consumer gets None."""
        with self._cond:
            self._closed = True
            self._items.clear()
            self._cond.notify_all()

    def get(self) -> T | Gap | None:
        """Block until an item is available; None when finished (after the last item) or closed."""
        with self._cond:
            while not self._items and not self._finished and not self._closed:
                self._cond.wait()
            if self._items and not self._closed:
                item = self._items.popleft()
                self._cond.notify_all()
                return item
            if self._error is not None:
                error, self._error = self._error, None
                raise error
            return None


class Source(ABC):
    """A video source: iterate it for ``Frame`` (and, on live sources, ``Gap``) records.

    ``name`` is the display name (credentials redacted), ``live`` tells cameras (newest frame
    wins) from files (every frame). ``fps``, ``total_frames``, ``width`` and ``height`` are None
    while unknown (a camera not connected yet; ``total_frames`` only for files). Always
    ``close()`` it (or use ``with``): it owns a reader thread and an open stream.
    """

    live: bool = False

    def __init__(self, name: str, options: SourceOptions) -> None:
        self.name = name
        self.options = options
        self.fps: float | None = None
        self.total_frames: int | None = None
        self.width: int | None = None
        self.height: int | None = None
        self.stats = SourceStats()
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None
        self._index = 0  # index of the next frame read from the source
        self._last_damage: str | None = None
        self._repeats = 0

    @abstractmethod
    def _next_item(self) -> Frame | Gap | None:
        """Block until the next item; None once the source has ended or was closed."""

    @abstractmethod
    def _wake(self) -> None:
        """Unblock the reader thread and the consumer after ``close()`` was requested."""

    def __iter__(self) -> Iterator[Frame | Gap]:
        while (item := self._next_item()) is not None:
            yield item

    def _start(self, target: Callable[[], None]) -> None:
        self._thread = threading.Thread(target=target, name=f"source {self.name}", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop the reader thread and release the stream; idempotent, callable from any thread."""
        if self._closed.is_set():
            return
        self._closed.set()
        self._wake()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            # the reader may be inside a blocking open or read that times out by itself
            thread.join(max(self.options.open_timeout, self.options.stall_timeout) + 2.0)
            if thread.is_alive():
                LOG.warning("%s: reader thread still blocked after close()", self.name)
        self.stats.state = CameraState.STOPPED

    def __enter__(self) -> Source:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _damage(self, reason: str) -> None:
        """Count and record a decode problem near the next frame index.

        Repeats of the same message (a run of bad packets) share one entry: "... (12 times)".
        """
        self.stats.decode_errors += 1
        message = f"frame ~{self._index}: {reason}"
        if message == self._last_damage:
            self._repeats += 1
            if len(self.stats.damage) <= MAX_DAMAGE_MESSAGES:  # else only counted
                self.stats.damage[-1] = f"{message} ({self._repeats} times)"
            return
        self._last_damage, self._repeats = message, 1
        if len(self.stats.damage) < MAX_DAMAGE_MESSAGES:
            self.stats.damage.append(message)
            LOG.warning("%s: %s", self.name, message)
        elif len(self.stats.damage) == MAX_DAMAGE_MESSAGES:
            self.stats.damage.append("further damage only counted in decode_errors")
            LOG.warning("%s: more damage; only counting it from now on", self.name)

    def _counted(self, wall: float) -> int:
        """Account for one frame read from the source; returns its index."""
        index = self._index
        self._index += 1
        self.stats.frames += 1
        self.stats.last_frame_wall = wall
        return index


def describe_error(exc: BaseException) -> str:
    """One-line, credential-free reason for ``exc`` (FFmpeg errors without the quoted URL)."""
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return redact(" ".join(str(text).split()))
