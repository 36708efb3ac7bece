"""Logging of the command line: ISO timestamps, text or JSON lines, every secret redacted."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import TYPE_CHECKING, Any

from streamrec.redact import RedactingFilter, register_config

if TYPE_CHECKING:
    from streamrec.config import Config, LoggingConfig

_TEXT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class _IsoFormatter(logging.Formatter):
    """``2026-12-01T22:17:13.123+00:00``: a date and a zone, as ``docker logs`` readers need."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        t = time.localtime(record.created)
        zone = time.strftime("%z", t)
        return (
            time.strftime("%Y-%m-%dT%H:%M:%S", t) + f".{int(record.msecs):03d}{zone[:3]}:{zone[3:]}"
        )


class _JsonFormatter(_IsoFormatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_text:
            out["exception"] = record.exc_text
        return json.dumps(out, ensure_ascii=False)


class _Handler(logging.StreamHandler):
    """streamrec's own handler (replaced on the next setup, other handlers are left alone)."""


def setup_logging(verbose: bool = False) -> None:
    """Log to stderr at INFO (DEBUG with ``-v``), ISO timestamps, secrets redacted."""
    handler = _Handler(sys.stderr)
    handler.setFormatter(_IsoFormatter(_TEXT))
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)


def configure_logging(cfg: LoggingConfig, verbose: bool = False) -> None:
    """Apply the config's ``logging`` section (``-v`` still forces DEBUG)."""
    root = logging.getLogger()
    root.setLevel(logging.DEBUG if verbose else cfg.level)
    for name, level in cfg.modules.items():
        logging.getLogger(name).setLevel(level)
    formatter = _JsonFormatter() if cfg.format == "json" else _IsoFormatter(_TEXT)
    for handler in root.handlers:
        if isinstance(handler, _Handler):
            handler.setFormatter(formatter)


def setup_worker_logging(cfg: Config) -> None:
    """The daemon's logging in a process of its own (a Ray worker, which logs on its own and
    whose output Ray forwards to the head): the config's secrets remembered, streamrec's
    handler with its redacting filter on the root logger, and that filter on every handler
    already there."""
    register_config(cfg)
    root = logging.getLogger()
    if not any(isinstance(h, _Handler) for h in root.handlers):
        setup_logging()
    configure_logging(cfg.logging)
    for handler in root.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())


class Burst:
    """One log line per burst of like events (refused connections, failed deliveries): the
    first is logged, the next ones are counted until ``quiet`` seconds pass without one; the
    first line of the next burst says how many the last one had."""

    def __init__(self, logger: logging.Logger, level: int, quiet: float = 60.0) -> None:
        self._log, self._level, self._quiet = logger, level, quiet
        self._last = float("-inf")
        self.count = 0  # events of the current burst after the logged one

    def hit(self, message: str, *args: Any) -> None:
        now = time.monotonic()
        if now - self._last >= self._quiet:
            before = f" ({self.count} more in the last burst)" if self.count else ""
            self._log.log(self._level, message + "; more are counted, not logged" + before, *args)
            self.count = 0
        else:
            self.count += 1
        self._last = now
