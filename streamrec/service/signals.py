"""How a serving process stops: its signals, installed before anything slow, and closing
everything at the end within a deadline (a light module: no heavy imports)."""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("streamrec.daemon")


class Signals:
    """SIGTERM/SIGINT stop, SIGHUP reloads; installed before anything slow, so a signal during
    start-up neither kills the daemon (SIGHUP's default) nor is lost (a stop is remembered)."""

    def __init__(self) -> None:
        self.stop_requested = threading.Event()
        self.on_stop: Callable[[], None] | None = None
        self.on_reload: Callable[[], None] | None = None
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig, handler in (
            (signal.SIGTERM, self._stop),
            (signal.SIGINT, self._stop),
            (signal.SIGHUP, self._reload),
        ):
            self._previous[sig] = signal.signal(sig, handler)

    def restore(self) -> None:
        for sig, old in self._previous.items():
            signal.signal(sig, old)
        self._previous.clear()

    def _stop(self, *_: object) -> None:
        self.stop_requested.set()
        if self.on_stop is not None:
            self.on_stop()

    def _reload(self, *_: object) -> None:
        if self.on_reload is not None:
            self.on_reload()
        else:
            log.info("SIGHUP during start-up: the gallery is being loaded anyway")


def close_all(closers: list[tuple[str, Callable[[], None]]], deadline: float) -> None:
    """Run every close at once, each in its own thread, and wait for them until ``deadline``;
    a close that fails is logged, one that hangs is left behind (the process is ending)."""

    def run(name: str, close: Callable[[], None]) -> None:
        try:
            close()
        except Exception:
            log.exception("closing %s failed", name)

    threads = [
        threading.Thread(target=run, args=(n, c), name=f"close {n}", daemon=True)
        for n, c in closers
    ]
    for t in threads:
        t.start()
    for t, (name, _) in zip(threads, closers, strict=True):
        t.join(max(0.0, deadline - time.monotonic()))
        if t.is_alive():
            log.warning("%s did not close in time: given up", name)
