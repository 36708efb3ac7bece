"""Graceful degradation: what a live camera gives up, in a declared order, when the machine cannot
keep up, and takes back when it can.

The signal is the frames a live camera lost before the detect stage took them (its frame indices
count every frame the camera sent, so a gap is a frame dropped by the source or in its lane)
while the frames it did take had waited in its lane: every stage behind the detect stage blocks
when it falls behind, so any bottleneck of the pipeline shows there. (Frames lost while the
others are taken at once are the machine's doing, a reader thread not scheduled in time: giving
up detection would not bring them back.) A ``window`` of seconds is overloaded when more than
:data:`DROP_LIMIT` of the frames were lost and the frames taken had waited at least
:data:`WAITED` of a frame interval (median); each overloaded window takes the camera one step
down (more steps at once for heavy losses); after ``recover_after`` seconds without an
overloaded window it goes one step back up. The first window of a stream, from its first frame
(at start-up or after a reconnect), is not judged: the frames lost then are the backlog of the
stream's first seconds (the models' first runs, the first key frame), not a lack of CPU, and
judging them took every camera of a starting daemon four levels down for 40 s. A step back
that has to be given up again within :data:`RELAPSE` seconds doubles the wait before the next
one (up to :data:`MAX_WAIT_FACTOR` times), so a machine at the edge settles instead of
oscillating.

The levels (:func:`levels`), in order: normal; the extras off (small-face tiles and regions,
optical flow: boxes coast on their velocity); the detection interval stretched, one camera
interval at a time, up to ``max_interval_factor`` times; the whole-frame detection pass smaller,
a quarter at a time, down to ``min_input_size``. Past the last level the camera's lane drops
frames, as before.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

#: lost frames (a fraction of those the camera sent) that make a window overloaded ...
DROP_LIMIT = 0.01
#: ... when the frames taken had waited this fraction of a frame interval (median)
WAITED = 0.5
#: a step back given up again within this many seconds doubles the next wait
RELAPSE = 60.0
#: the wait before a step back grows at most to this many times ``recover_after``
MAX_WAIT_FACTOR = 32


@dataclass(frozen=True)
class Level:
    """What a camera spends per frame at one degradation level."""

    number: int
    #: small-face passes and optical flow
    extras: bool = True
    #: the detection interval is this many times the camera's
    interval_factor: int = 1
    #: long side (px) of the whole-frame detection pass; None = the detector's input size
    input_size: int | None = None

    def describe(self) -> str:
        if self.number == 0:
            return "normal"
        parts = ["extras off"]
        if self.interval_factor > 1:
            parts.append(f"interval ×{self.interval_factor}")
        if self.input_size is not None:
            parts.append(f"detection at {self.input_size} px")
        return ", ".join(parts)


def levels(input_size: int, max_interval_factor: int, min_input_size: int) -> list[Level]:
    """Every level in order, from normal to the cheapest."""
    out = [Level(0), Level(1, extras=False)]
    for factor in range(2, max_interval_factor + 1):
        out.append(Level(len(out), False, factor))
    size = input_size
    while True:
        size = -(-round(size * 0.75) // 32) * 32
        if size < min_input_size or size >= input_size:
            break
        out.append(Level(len(out), False, max_interval_factor, size))
    return out


class Degradation:
    """One live camera's level, from the gaps in its frame indices (see the module docstring).

    ``on_change(level)`` is called (from the detect stage's thread) whenever the level moves.
    """

    def __init__(
        self,
        steps: list[Level],
        window: float,
        recover_after: float,
        on_change: Callable[[Level], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.steps = steps
        self.window = window
        self.recover_after = recover_after
        self.on_change = on_change
        self.clock = clock
        self.level = steps[0]
        self._last: tuple[int, float] | None = None  # the last frame's index and capture time
        self._warming = True  # the window that starts with the stream's first frame is not judged
        self._received = self._lost = 0
        self._waits: list[float] = []  # seconds each frame waited before it was taken
        self._intervals: list[float] = []  # seconds between two frames the camera sent
        now = clock()
        self._window_start = now
        self._last_overload = now
        self._last_step_back: float | None = None
        self._wait = recover_after

    def restart(self) -> None:
        """The camera's stream restarted (a reconnect): its frame indices may jump."""
        self._last = None
        self._warming = True

    def frame(self, index: int, captured: float, waited: float) -> Level:
        """Count the frame with this index, captured at ``captured`` (wall clock), taken
        ``waited`` seconds later (and the frames lost before it); the level to use."""
        now = self.clock()
        if self._warming and self._last is None:  # the stream's first frame opens the window
            self._open_window(now)
        last, self._last = self._last, (index, captured)
        if last is not None and index > last[0]:
            self._lost += index - last[0] - 1
            self._intervals.append((captured - last[1]) / (index - last[0]))
        self._received += 1
        self._waits.append(waited)
        if now - self._window_start >= self.window:
            self._judge(now)
        return self.level

    def _judge(self, now: float) -> None:
        sent = self._received + self._lost
        lost = self._lost / sent if sent else 0.0
        waited = _median(self._waits) >= WAITED * _median(self._intervals)
        self._open_window(now)
        if self._warming:
            self._warming = False
            return
        number = self.level.number
        if lost > DROP_LIMIT and waited:
            if self._last_step_back is not None and now - self._last_step_back < RELAPSE:
                self._wait = min(self._wait * 2, self.recover_after * MAX_WAIT_FACTOR)
                self._last_step_back = None  # one doubling per step back given up
            self._last_overload = now
            number += 1 + int(lost / 0.25)  # a heavy loss takes several steps at once
        elif number and now - self._last_overload >= self._wait:
            number -= 1
            self._last_overload = self._last_step_back = now
        elif now - self._last_overload > 5 * RELAPSE:
            self._wait = self.recover_after  # settled: the next step back comes sooner again
        number = max(0, min(number, len(self.steps) - 1))
        if number != self.level.number:
            self.level = self.steps[number]
            self.on_change(self.level)

    def _open_window(self, now: float) -> None:
        self._received = self._lost = 0
        self._waits, self._intervals = [], []
        self._window_start = now


def _median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2] if values else 0.0
