"""The recognizer's budget for live cameras: faces go to it no faster than it can embed them.

Faces are embedded in the frames' path (each frame waits for the faces sent with it), so a
recognizer slower than the faces asked of it (the production-size ones: ~0.1 s a face on two
cores) would hold frames back until the cameras' lanes drop them. Live cameras therefore send
faces only while the recognizer's recent work stays under :data:`SHARE` of the wall time (its
seconds per face measured as it runs); the others wait in their camera's queue, so a burst of
new faces is spread over the next frames and names come a little later instead of frames being
lost. A small recognizer (a few ms a face) is never held back. Files are not budgeted: every
face asked for is embedded, whatever the timing, so a file gives the same evidence every run.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

#: the largest fraction of the wall time the recognizer spends on live cameras' faces
SHARE = 0.5
#: credit (seconds of recognizer work) kept at most: a burst of this much goes at once
BURST = 0.05
#: weight of the newest measurement in the seconds-per-face average
_NEWEST = 0.2


class EmbedBudget:
    """A token bucket in seconds of recognizer work, refilled at ``share`` of the wall time."""

    def __init__(self, share: float = SHARE, clock: Callable[[], float] = time.monotonic) -> None:
        self.share = share
        self.clock = clock
        self._per_face = 0.0  # seconds per face (0: not measured yet, no limit)
        self._credit = BURST
        self._last = clock()
        self._lock = threading.Lock()

    def took(self, faces: int, seconds: float) -> None:
        """The recognizer embedded ``faces`` faces in ``seconds``."""
        if faces <= 0:
            return
        per_face = seconds / faces
        with self._lock:
            old = self._per_face
            self._per_face = per_face if not old else (1 - _NEWEST) * old + _NEWEST * per_face

    def take(self) -> bool:
        """Whether one more face may go now (its cost is then spent)."""
        with self._lock:
            now = self.clock()
            cap = max(BURST, self._per_face)
            self._credit = min(cap, self._credit + (now - self._last) * self.share)
            self._last = now
            if self._credit < self._per_face:
                return False
            self._credit -= self._per_face
            return True
