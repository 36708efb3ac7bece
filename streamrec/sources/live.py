"""Live sources: a capture thread keeps only the newest frame and reconnects forever."""

from __future__ import annotations

import random
import time
from abc import abstractmethod
from collections.abc import Generator
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np

from ..records import Frame, Picture
from ..telemetry import CameraState
from .base import LOG, Gap, ItemBuffer, Source, SourceOptions, describe_error

C = TypeVar("C")  # an open connection (container, capture device)

#: (the picture: a BGR image or the decoder's picture, converted only by the stage that needs it,
#: so a frame dropped for being late is never converted; media seconds or None), as produced by
#: ``LiveSource._read``
Grab = tuple[np.ndarray | Picture, float | None]


class StallError(Exception):
    """No frame arrived within ``stall_timeout``: the stream is reopened."""


@dataclass
class _Pending:
    index: int
    time: float
    captured: float
    image: np.ndarray | Picture


class LiveSource(Source, Generic[C]):
    """A camera: newest frame wins, lost or stalled streams are reopened until ``close()``.

    Subclasses open (``_connect``), read (``_read``) and close (``_disconnect``) one
    connection; this class runs the capture thread, the one-slot buffer, the ``Gap`` records,
    the exponential backoff with full jitter, and the counters. ``time`` of a frame is seconds
    since the source was created, following the stream's timestamps within a connection.
    """

    live = True

    def __init__(self, name: str, options: SourceOptions) -> None:
        super().__init__(name, options)
        self._buffer: ItemBuffer[_Pending] = ItemBuffer(1, newest_wins=True, on_drop=self._drop)
        self._t0 = time.monotonic()
        self._offset = 0.0  # added to the stream's media time to get source time
        self._last_time = 0.0
        self._lost = False  # a stream was lost before: reconnecting, not connecting
        self._hinted = False  # the hint for a failing connection is given once

    @abstractmethod
    def _connect(self) -> C:
        """Open the stream; raise on failure (retried with backoff)."""

    def _hint(self, exc: Exception) -> str | None:
        """What the user can change when connecting fails with ``exc``, if this source knows."""
        return None

    @abstractmethod
    def _read(self, conn: C) -> Generator[Grab, None, None]:
        """Yield frames until the stream ends (return) or fails (raise; StallError if silent)."""

    @abstractmethod
    def _disconnect(self, conn: C) -> None:
        """Release the connection; must not raise."""

    def _start_capture(self, conn: C | None = None) -> None:
        """Start the capture thread, with an already open connection if the caller has one."""
        self._start(lambda: self._run(conn))

    def _drop(self) -> None:
        self.stats.dropped += 1

    def _set_state(self, state: CameraState) -> None:
        if not self._closed.is_set():
            self.stats.state = state

    def _run(self, conn: C | None) -> None:
        failures = 0  # failed attempts in a row, for the backoff
        try:
            while not self._closed.is_set():
                if conn is None:
                    self._set_state(
                        CameraState.RECONNECTING if self._lost else CameraState.CONNECTING
                    )
                    try:
                        conn = self._connect()
                    except Exception as exc:
                        hint = None if self._hinted else self._hint(exc)
                        if hint is not None:
                            self._hinted = True
                            LOG.warning("%s: %s", self.name, hint)
                        self._retry_later(f"cannot connect: {describe_error(exc)}", failures)
                        failures += 1
                        continue
                    LOG.info("%s: connected", self.name)
                try:
                    got, reason, stalled = self._pump(conn)
                finally:
                    self._disconnect(conn)
                conn = None
                if self._closed.is_set():
                    break
                self.stats.stalls += stalled
                if got:
                    failures = 0
                    self._lost = True
                    self._set_state(CameraState.RECONNECTING)  # before the Gap: its reader sees it
                    self.stats.disconnects += 1
                    self._buffer.put(Gap(self.name, reason, time.time()))
                self._retry_later(f"stream lost: {reason}" if got else reason, failures)
                failures += 1
        except BaseException as exc:  # a bug: let the consumer see it instead of hanging
            LOG.exception("%s: capture thread failed", self.name)
            self._buffer.finish(exc)

    def _pump(self, conn: C) -> tuple[int, str, bool]:
        """Read frames into the buffer; returns (frames read, why it stopped, stalled)."""
        got = 0
        frames = self._read(conn)
        try:
            for image, media in frames:
                if self._closed.is_set():
                    break
                wall = time.time()
                if got == 0:
                    self._first_frame(media)
                got += 1
                pending = _Pending(self._counted(wall), self._source_time(media), wall, image)
                self._buffer.put(pending)
            return got, "end of stream", False
        except StallError as exc:
            return got, f"stalled: {exc}", True
        except Exception as exc:
            return got, describe_error(exc), False
        finally:
            frames.close()  # finish the reader while its connection is still open

    def _first_frame(self, media: float | None) -> None:
        if self._lost:
            self.stats.reconnects += 1
            LOG.warning("%s: reconnected, frames resume", self.name)
        self._set_state(CameraState.RUNNING)
        if media is not None:
            self._offset = (time.monotonic() - self._t0) - media

    def _source_time(self, media: float | None) -> float:
        t = time.monotonic() - self._t0 if media is None else self._offset + media
        self._last_time = max(t, self._last_time)  # never backwards across timestamp jumps
        return self._last_time

    def _retry_later(self, reason: str, failures: int) -> None:
        """Record ``reason`` and sleep: uniform(0, min(max, initial * 2**failures))."""
        self.stats.last_error = reason
        self._set_state(CameraState.RECONNECTING if self._lost else CameraState.CONNECTING)
        cap = min(
            self.options.reconnect_max, self.options.reconnect_initial * 2 ** min(failures, 30)
        )
        delay = random.uniform(0.0, cap)
        LOG.warning("%s: %s; retrying in %.1f s", self.name, reason, delay)
        self._closed.wait(delay)

    def _next_item(self) -> Frame | Gap | None:
        item = self._buffer.get()
        if item is None or isinstance(item, Gap):
            return item
        return Frame(self.name, item.index, item.time, item.image, item.captured)

    def _wake(self) -> None:
        self._buffer.close()
