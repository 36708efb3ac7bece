"""Event sinks: the protocol, JSON serialisation, a JSONL file sink and a fan-out."""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from typing import IO, Any, Protocol, runtime_checkable

import numpy as np

from streamrec.errors import StreamrecError
from streamrec.records import Event

log = logging.getLogger(__name__)


class SinkError(StreamrecError):
    """An output (event file, video file, webhook URL) cannot be set up."""


@runtime_checkable
class EventSink(Protocol):
    """Receives pipeline events; may be called from several camera threads at once."""

    def write(self, event: Event) -> None: ...

    def close(self) -> None:
        """Flush and release everything; idempotent, safe on every exit path."""
        ...


def _json_default(value: Any) -> Any:
    # Event fields often carry numpy scalars (scores) or small arrays (boxes).
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def event_json(event: Event) -> str:
    """One-line compact JSON of ``event.to_dict()`` (numpy values converted)."""
    return json.dumps(
        event.to_dict(), default=_json_default, ensure_ascii=False, separators=(",", ":")
    )


class DropCounter:
    """Counts events dropped from a full buffer, logging the first and then every 1000th."""

    def __init__(self, what: str) -> None:
        self._what = what
        self.count = 0

    def add(self) -> None:
        self.count += 1
        if self.count == 1 or self.count % 1000 == 0:
            log.warning(
                "%s: buffer full, dropped the oldest event (%d dropped so far)",
                self._what,
                self.count,
            )


class JsonlEventSink:
    """Appends one JSON object per line to a file, flushed after every line.

    The file is opened in append mode so that a restarted recorder never truncates the events
    of an earlier run. Flushing each line means a killed process loses at most the line being
    written (the data is in the OS page cache; ``close()`` also fsyncs).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file: IO[str] | None = self.path.open("a", encoding="utf-8")
        except OSError as exc:
            raise SinkError(f"cannot write events to {self.path}: {exc.strerror or exc}") from None

    def write(self, event: Event) -> None:
        line = event_json(event) + "\n"
        with self._lock:
            if self._file is None:
                raise RuntimeError(f"event file {self.path} is already closed")
            self._file.write(line)
            self._file.flush()

    def close(self) -> None:
        with self._lock:
            if self._file is None:
                return
            file, self._file = self._file, None
        try:
            file.flush()
            _fsync(file)
        finally:
            file.close()

    def __enter__(self) -> JsonlEventSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _fsync(file: IO[str]) -> None:
    try:
        os.fsync(file.fileno())
    except OSError as exc:  # e.g. a pipe or /dev/stdout
        log.debug("fsync of %s failed: %s", file.name, exc)


class FanoutSink:
    """Writes every event to several sinks; a failing sink does not stop the others."""

    def __init__(self, sinks: list[EventSink]) -> None:
        self.sinks = list(sinks)
        self._failures = [0] * len(self.sinks)

    def write(self, event: Event) -> None:
        for i, sink in enumerate(self.sinks):
            try:
                sink.write(event)
            except Exception as exc:
                self._failures[i] += 1
                # Full traceback once per sink, then one line per failure.
                log.error(
                    "event sink %s failed (%d failures): %s",
                    type(sink).__name__,
                    self._failures[i],
                    exc,
                    exc_info=self._failures[i] == 1,
                )

    def close(self) -> None:
        for sink in self.sinks:
            try:
                sink.close()
            except Exception:
                log.exception("closing event sink %s failed", type(sink).__name__)

    def __enter__(self) -> FanoutSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
