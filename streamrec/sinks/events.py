"""Event sinks: the protocol, JSON serialisation, a JSONL file sink and a fan-out."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Protocol, runtime_checkable

import numpy as np

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

from streamrec.errors import StreamrecError
from streamrec.files import open_private, write_private
from streamrec.records import Event
from streamrec.telemetry import Observer

log = logging.getLogger(__name__)


class SinkError(StreamrecError):
    """An output (event file, video file, webhook URL) cannot be set up."""


@runtime_checkable
class HealthReporting(Protocol):
    """A sink that knows its own state (a broker connection, a backlog)."""

    def health(self) -> dict[str, Any]:
        """At least ``ok``; anything else is shown as it is in ``/health``."""
        ...


@runtime_checkable
class Forgetting(Protocol):
    """A sink that keeps what it was given (a file, retained topics) and can erase a person."""

    def forget(self, name: str) -> Any: ...


@runtime_checkable
class Announcing(Protocol):
    """A sink that announces the enrolled people before they are seen (MQTT discovery)."""

    def announce(self, names: list[str]) -> None: ...


@runtime_checkable
class StatusSink(Protocol):
    """A sink that also publishes camera status (MQTT)."""

    def set_status(self, camera: str, status: str) -> None: ...


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
    """Appends one JSON object per line to a private file (0600), flushed after every line.

    The file is opened in append mode so that a restarted recorder never truncates the events
    of an earlier run. Flushing each line means a killed process loses at most the line being
    written (the data is in the OS page cache; ``close()`` also fsyncs). Each line is written
    under an advisory lock, and a file rewritten meanwhile by another process (``streamrec
    erase``, ``events purge``: they replace it atomically) is reopened, so no line is lost.
    """

    name = "jsonl"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser()
        self._lock = threading.Lock()
        try:
            self._file: IO[str] | None = open_private(self.path, "a")
        except OSError as exc:
            raise SinkError(f"cannot write events to {self.path}: {exc.strerror or exc}") from None

    def write(self, event: Event) -> None:
        line = event_json(event) + "\n"
        with self._lock:
            if self._file is None:
                raise RuntimeError(f"event file {self.path} is already closed")
            try:
                with locked(self._file):
                    if not _replaced(self.path, self._file):
                        self._file.write(line)
                        self._file.flush()
                        return
                self._file.close()  # rewritten by another process: write to the new file
                self._file = open_private(self.path, "a")
                with locked(self._file):
                    self._file.write(line)
                    self._file.flush()
            except OSError as exc:
                # a full disk: start again from a fresh handle rather than let the buffer of
                # the failed lines grow (the failure is counted and reported by the fan-out)
                with contextlib.suppress(OSError):
                    self._file.close()
                self._file = open_private(self.path, "a")
                raise SinkError(
                    f"cannot write events to {self.path}: {exc.strerror or exc}"
                ) from None

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


@contextmanager
def locked(file: IO[Any]) -> Iterator[None]:
    """An exclusive advisory lock on an open file (none where the OS has no ``flock``)."""
    if fcntl is None:
        yield
        return
    fcntl.flock(file.fileno(), fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(file.fileno(), fcntl.LOCK_UN)


def _replaced(path: Path, file: IO[str]) -> bool:
    """The path no longer names the open file (rewritten or deleted by another process)."""
    try:
        return os.stat(path).st_ino != os.fstat(file.fileno()).st_ino
    except FileNotFoundError:
        return True


def mentioned(event: dict[str, Any]) -> frozenset[str]:
    """Every text value of an event (names, labels ...): what :func:`mentions` looks at."""
    out: set[str] = set()
    for v in event.values():
        if isinstance(v, str):
            out.add(v)
        elif isinstance(v, list):
            out.update(x for x in v if isinstance(x, str))
    return frozenset(out)


def mentions(event: dict[str, Any], names: Collection[str]) -> bool:
    """Whether an event names one of ``names`` (as its person, unknown label, or any value)."""
    return not mentioned(event).isdisjoint(names)


def rewrite_events(
    path: str | Path, keep: Callable[[dict[str, Any]], bool], names: Collection[str] = ()
) -> int:
    """Rewrite a JSONL event file keeping only the events ``keep`` accepts; how many went.

    Atomic (a private temp file renamed over the old one) and under the file's lock, so a
    running recorder neither loses a line nor writes into the replaced file. A line that is not
    an event (not JSON, not UTF-8: a torn or damaged line) is kept as it is, unless it contains
    one of ``names``: an erasure must not leave a name behind in a damaged line either.
    """
    p = Path(path).expanduser()
    needles = [n.encode() for n in names if n]
    with open(p, "rb") as f, locked(f):
        kept, removed = [], 0
        for line in f:
            try:
                event = json.loads(line)
            except ValueError:  # UnicodeDecodeError included
                if any(n in line for n in needles):
                    removed += 1
                else:
                    kept.append(line)  # not ours to judge: kept as it is
                continue
            if isinstance(event, dict) and not keep(event):
                removed += 1
            else:
                kept.append(line)
        if removed:
            write_private(p, b"".join(kept))
    return removed


def _fsync(file: IO[str]) -> None:
    try:
        os.fsync(file.fileno())
    except OSError as exc:  # e.g. a pipe or /dev/stdout
        log.debug("fsync of %s failed: %s", file.name, exc)


def sink_name(sink: object) -> str:
    return str(getattr(sink, "name", None) or type(sink).__name__)


class FanoutSink:
    """Writes every event to several sinks; a failing sink does not stop the others.

    Failures are logged once per burst (the first one, then "recovered after N failures"), and
    counted per sink for ``/health`` and the metrics (:meth:`health`).
    """

    def __init__(self, sinks: list[EventSink]) -> None:
        self.sinks = list(sinks)
        self.errors = [0] * len(self.sinks)
        self._failing: list[str | None] = [None] * len(self.sinks)  # the burst's first error
        self._reason: list[str | None] = [None] * len(self.sinks)  # the last error, kept

    def write(self, event: Event) -> None:
        for i, sink in enumerate(self.sinks):
            try:
                sink.write(event)
            except Exception as exc:
                self.errors[i] += 1
                self._reason[i] = str(exc)
                if self._failing[i] is None:
                    self._failing[i] = str(exc)
                    log.error(
                        "event sink %s failed: %s (further failures are counted until it recovers)",
                        sink_name(sink),
                        exc,
                        exc_info=not isinstance(exc, (OSError, SinkError)),
                    )
                continue
            if self._failing[i] is not None:
                self._failing[i] = None
                log.warning("event sink %s recovered", sink_name(sink))

    def forget(self, name: str) -> None:
        """Erase a person from every sink that keeps state of them (retained MQTT topics; event
        files are rewritten by ``streamrec erase``); a failure is logged, the others forget."""
        for sink in self.sinks:
            if isinstance(sink, Forgetting):
                try:
                    sink.forget(name)
                except Exception as exc:
                    log.error("event sink %s could not erase a person: %s", sink_name(sink), exc)

    def announce(self, names: list[str]) -> None:
        """Tell the sinks that announce people who is enrolled (a failure is logged)."""
        for sink in self.sinks:
            if isinstance(sink, Announcing):
                try:
                    sink.announce(names)
                except Exception as exc:
                    log.error("event sink %s could not announce people: %s", sink_name(sink), exc)

    def health(self) -> dict[str, dict[str, Any]]:
        """Per sink: ``ok``, ``errors`` (events lost so far: failed writes, plus what a sink
        that delivers later counts itself, e.g. a webhook's events given up), ``error`` (the
        current burst's first), and what the sink reports of itself (a broker not connected,
        events pending)."""
        out: dict[str, dict[str, Any]] = {}
        for i, sink in enumerate(self.sinks):
            own: dict[str, Any] = sink.health() if isinstance(sink, HealthReporting) else {}
            out[sink_name(sink)] = {
                **own,
                "ok": self._failing[i] is None and bool(own.get("ok", True)),
                "errors": self.errors[i] + int(own.get("errors", 0)),
                "error": self._failing[i] or own.get("error"),
            }
        return out

    def failures(self) -> list[str]:
        """Per sink that lost events so far, how many and why (empty when none did)."""
        out = []
        for i, sink in enumerate(self.sinks):
            own: dict[str, Any] = sink.health() if isinstance(sink, HealthReporting) else {}
            lost = self.errors[i] + int(own.get("errors", 0))
            why = self._reason[i] or own.get("error")
            if lost:
                out.append(
                    f"event sink {sink_name(sink)}: {lost} event(s) lost" + (f": {why}" * bool(why))
                )
        return out

    def close(self) -> None:
        for sink in self.sinks:
            try:
                sink.close()
            except Exception:
                log.exception("closing event sink %s failed", sink_name(sink))

    def __enter__(self) -> FanoutSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SinkErasure(Observer):
    """People who leave the gallery (erased by any process, renamed, merged) leave what keeps
    their names too: the sinks (events still waiting in a buffer are dropped, retained MQTT
    topics cleared) or a Frigate bridge (objects it follows lose the name). ``streamrec erase``
    rewrites the event files once every pipeline has done this."""

    def __init__(self, keeper: Forgetting) -> None:
        self.keeper = keeper

    def erased(self, name: str) -> None:
        self.keeper.forget(name)
