"""Output: annotated frames to the camera's outputs (video file, window); frames counted done."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

import numpy as np

from streamrec.pipeline.stage import Stage
from streamrec.records import EndOfStream, Frame, FrameWork, Work
from streamrec.telemetry import Latency, Observer

log = logging.getLogger("streamrec.pipeline")


class FrameOutput(Protocol):
    """Receives the annotated frames of one camera."""

    def write(self, image: np.ndarray, frame: Frame) -> None:
        """``image``: the annotated copy of ``frame`` (its index and media time)."""
        ...

    def close(self) -> None: ...


#: makes a camera's output from its first frame (the size is known then)
OutputFactory = Callable[[Frame], FrameOutput]


class OutputStage(Stage):
    name = "output"
    joins_previous = True

    def __init__(self, factories: dict[str, list[OutputFactory]], observer: Observer) -> None:
        self.factories = factories
        self.observer = observer
        self.outputs: dict[str, list[FrameOutput]] = {}
        self._done = 0
        self._lock = threading.Lock()

    @property
    def done(self) -> int:
        """Frames that have left the graph."""
        with self._lock:
            return self._done

    def process(self, work: Work) -> None:
        if isinstance(work, EndOfStream):
            self.close(work.camera)
            return
        if not isinstance(work, FrameWork):
            return
        with self._lock:
            self._done += 1
        if work.frame.captured:
            self.observer.latency(work.camera, Latency.FRAME, time.time() - work.frame.captured)
        self.observer.frame_done(work.camera, work.image)
        if work.image is None or not self.factories.get(work.camera):
            return
        t0 = time.perf_counter()
        outs = self.outputs.get(work.camera)
        if outs is None:
            outs = self.outputs[work.camera] = [
                make(work.frame) for make in self.factories[work.camera]
            ]
        for out in outs:
            out.write(work.image, work.frame)
        self.observer.busy("encode", time.perf_counter() - t0)

    def close(self, camera: str) -> None:
        for out in self.outputs.pop(camera, []):
            try:
                out.close()
            except Exception:
                log.exception("closing an output of %s failed", camera)

    def finish(self) -> None:
        for camera in list(self.outputs):
            self.close(camera)
