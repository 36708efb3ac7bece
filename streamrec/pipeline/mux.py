"""Frame queues from many cameras into one consumer.

Each camera gets its own bounded queue. Files block their reader when the queue is full
(backpressure: nothing is dropped); live cameras drop their oldest queued frame instead, so the
consumer always gets recent frames and latency stays bounded.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass
class _Lane(Generic[T]):
    live: bool
    capacity: int
    items: deque[tuple[T, bool]] = field(default_factory=deque)  # (item, droppable)
    closed: bool = False
    dropped: int = 0


class FrameMux(Generic[T]):
    """Per-camera bounded queues with round-robin ``get``; only droppable items are dropped."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._lanes: dict[str, _Lane[T]] = {}
        self._order: list[str] = []
        self._next = 0
        self._stopped = False

    def add(self, camera: str, live: bool, capacity: int) -> None:
        with self._cond:
            self._lanes[camera] = _Lane(live, max(1, capacity))
            self._order.append(camera)

    def put(self, camera: str, item: T, droppable: bool = True) -> bool:
        """Queue an item; False if the mux was stopped. Live lanes drop their oldest frame."""
        with self._cond:
            lane = self._lanes[camera]
            while len(lane.items) >= lane.capacity and not self._stopped:
                if lane.live and droppable:
                    victim = next((i for i, (_, d) in enumerate(lane.items) if d), None)
                    if victim is not None:
                        del lane.items[victim]
                        lane.dropped += 1
                        break
                self._cond.wait(0.5)
            if self._stopped:
                return False
            lane.items.append((item, droppable))
            self._cond.notify_all()
            return True

    def close(self, camera: str) -> None:
        """No more items from ``camera``."""
        with self._cond:
            self._lanes[camera].closed = True
            self._cond.notify_all()

    def stop(self) -> None:
        """Unblock every producer; ``get`` still returns what is queued."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()

    def dropped(self, camera: str) -> int:
        with self._cond:
            return self._lanes[camera].dropped

    def get(self, timeout: float = 0.5) -> tuple[str, T] | None:
        """Next item round-robin over the cameras; None on timeout or when all are done."""
        with self._cond:
            while True:
                n = len(self._order)
                for k in range(n):
                    camera = self._order[(self._next + k) % n]
                    lane = self._lanes[camera]
                    if lane.items:
                        self._next = (self._next + k + 1) % n
                        item, _ = lane.items.popleft()
                        self._cond.notify_all()
                        return camera, item
                if self.finished_locked() or not self._cond.wait(timeout):
                    return None

    def finished_locked(self) -> bool:
        return all(lane.closed and not lane.items for lane in self._lanes.values())
