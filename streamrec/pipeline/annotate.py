"""Draw every present track (detected or carried by the tracker) with its name, for a consumer."""

from __future__ import annotations

import time

from streamrec.pipeline.stage import Stage
from streamrec.records import FrameWork, Label, Work
from streamrec.sinks.draw import draw_face
from streamrec.telemetry import Observer

_UNLABELLED = Label(None, None, False)


class AnnotateStage(Stage):
    name = "annotate"
    joins_previous = True

    def __init__(self, outputs: set[str], observer: Observer) -> None:
        """``outputs``: cameras whose every frame is consumed (video file, window); the others
        are drawn only when the observer wants a frame (a live-view watcher)."""
        self.outputs = outputs
        self.observer = observer

    def process(self, work: Work) -> None:
        if not isinstance(work, FrameWork):
            return
        if work.camera not in self.outputs and not self.observer.frame_wanted(work.camera):
            return
        t0 = time.perf_counter()
        image = work.frame.image.copy()
        for t in work.tracks:
            label = work.labels.get(t.track_id, _UNLABELLED)
            draw_face(image, t.box, label.text, label.score if label.known else None, label.known)
        work.image = image
        self.observer.busy("annotate", time.perf_counter() - t0)
