"""Wiring of a run: sources, sinks and the pipeline from a config (``run`` and ``serve``)."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from streamrec.gallery.store import Matcher
from streamrec.gallery.unknowns import save_crops
from streamrec.pipeline.tracking import preload_solver

from .analyzer import FaceAnalyzer
from .config import Config
from .errors import StreamrecError
from .models.runtime import default_threads
from .pipeline import Camera, Pipeline
from .records import Frame
from .sinks import FanoutSink, JsonlEventSink, VideoWriter
from .sinks.events import EventSink
from .sources import Source, SourceOptions, open_source

log = logging.getLogger("streamrec")


def source_options(cfg: Config, transport: str | None = None) -> SourceOptions:
    live = cfg.live
    threads = cfg.pipeline.decoder_threads or default_threads()
    return SourceOptions(
        rtsp_transport=transport or live.rtsp_transport,
        open_timeout=live.open_timeout,
        stall_timeout=live.stall_timeout,
        reconnect_initial=live.reconnect_initial,
        reconnect_max=live.reconnect_max,
        decoder_threads=threads,
    )


def load_matcher(analyzer: FaceAnalyzer, gallery: str | None) -> Matcher | None:
    if not gallery:
        return None
    if not Path(gallery).is_file():
        raise StreamrecError(
            f"gallery not found: {gallery} (enrol people with 'streamrec gallery')"
        )
    with analyzer.open_gallery(gallery) as g:
        return g.matcher()


def event_sinks(cfg: Config, jsonl: str | None = None) -> list[EventSink]:
    """The event sinks the config (and command line) ask for."""
    sinks: list[EventSink] = []
    path = jsonl or cfg.events.jsonl
    if path:
        sinks.append(JsonlEventSink(path))
    if cfg.events.mqtt is not None:
        from .sinks.mqtt import MqttEventSink

        sinks.append(MqttEventSink.from_config(cfg.events.mqtt))
    if cfg.events.webhook is not None:
        from .sinks.webhook import WebhookEventSink

        w = cfg.events.webhook
        sinks.append(
            WebhookEventSink(w.url, headers=w.headers, timeout=w.timeout, retries=w.retries)
        )
    return sinks


def video_output(path: str, source: Source) -> Any:
    """Factory of the annotated-video writer, opened at the first frame (size known then)."""

    # the source's rate as the container states it (e.g. 2997/100 stays 2997/100)
    rate = Fraction(source.fps or 25.0).limit_denominator(1001)

    def make(frame: Frame) -> VideoWriter:
        return VideoWriter(path, frame.width, frame.height, rate, threads=1)

    return make


class _Window:
    """The optional ``--display`` window (needs a desktop OpenCV build and a display)."""

    def __init__(self, title: str) -> None:
        import cv2

        self.title = title
        try:
            cv2.namedWindow(title, cv2.WINDOW_NORMAL)
        except cv2.error:
            raise StreamrecError(
                "--display needs a display and a desktop OpenCV build (pip install "
                "opencv-python); run without --display on a headless machine"
            ) from None

    def write(self, image: Any) -> None:
        import cv2

        cv2.imshow(self.title, image)
        cv2.waitKey(1)

    def close(self) -> None:
        import cv2

        cv2.destroyWindow(self.title)


def display_output(title: str) -> Any:
    if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        raise StreamrecError("--display needs a display (DISPLAY is not set); run without it")
    return lambda frame: _Window(title)


@contextmanager
def stop_on_sigterm(pipeline: Pipeline) -> Iterator[None]:
    """SIGTERM stops the pipeline like Ctrl-C: frames in flight finish, tracks end, files close."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, lambda *_: pipeline.stop())
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_video(
    cfg: Config,
    uri: str,
    output: str | None = None,
    events: str | None = None,
    display: bool = False,
    progress: bool = True,
) -> Any:
    """Process one video source; returns the run's Summary."""
    preload_solver()
    analyzer = FaceAnalyzer.from_config(cfg)
    matcher = load_matcher(analyzer, cfg.gallery)
    source = open_source(uri, source_options(cfg))
    sinks: list[EventSink] = []
    try:
        outputs = []
        if output:
            outputs.append(video_output(output, source))
        if display:
            outputs.append(display_output(source.name))
        sinks = event_sinks(cfg, events)
        camera = Camera(source.name, source, cfg.detector.interval, outputs=outputs)
        fan = FanoutSink(sinks)
        pipeline = Pipeline(cfg, analyzer, [camera], fan, matcher)
        seed_unknowns(pipeline, cfg)
        try:
            with stop_on_sigterm(pipeline), _progress(pipeline, source, progress):
                summary = pipeline.run()
        finally:
            save_unknowns(pipeline, cfg)
    finally:
        source.close()
        for sink in sinks:
            sink.close()
    return summary


@contextmanager
def _progress(pipeline: Pipeline, source: Source, enabled: bool) -> Iterator[None]:
    """A progress bar (frames done / total, fps, ETA) fed from the pipeline's counter."""
    if not enabled:
        yield
        return
    from tqdm import tqdm

    bar = tqdm(total=source.total_frames, unit="frame", desc=source.name[-40:], disable=None)
    done = threading.Event()

    def pump() -> None:
        while not done.wait(0.5):
            bar.update(pipeline.progress - bar.n)
        bar.update(pipeline.progress - bar.n)

    t = threading.Thread(target=pump, daemon=True)
    t.start()
    try:
        yield
    finally:
        done.set()
        t.join(2)
        bar.close()


def seed_unknowns(pipeline: Pipeline, cfg: Config) -> None:
    """Continue the unknown-N identities of earlier runs (``unknowns.persist``)."""
    book = pipeline.unknowns
    if book is None or not cfg.unknowns.persist or not cfg.gallery:
        return
    with pipeline.analyzer.open_gallery(cfg.gallery) as gallery:
        if cfg.unknowns.retention_days:
            purged = gallery.purge(cfg.unknowns.retention_days)
            if purged:
                log.info("purged %d unconfirmed people past retention", purged)
        known = gallery.unknown_matcher()
        book.next_index = gallery.next_unknown_index()
    for label in known.names:
        rows = known.templates[known.owners == known.names.index(label)]
        book.seed(label, rows.sum(axis=0))


def save_unknowns(pipeline: Pipeline, cfg: Config) -> None:
    """Write the best crops of this run's unknown people and keep them in the gallery."""
    book = pipeline.unknowns
    if book is None:
        return
    crops: dict[str, list[str]] = {}
    if cfg.unknowns.crops_dir:
        crops = save_crops(book, cfg.unknowns.crops_dir, time.strftime("%Y%m%d-%H%M%S"))
    if not cfg.unknowns.persist or not cfg.gallery:
        return
    with pipeline.analyzer.open_gallery(cfg.gallery) as gallery:
        for label, ident in book.identities.items():
            if ident.means:
                qualities = [q for _, q in ident.crops][: len(crops.get(label, []))]
                gallery.add_unknown(
                    label, np.stack(ident.means), crops.get(label, []), qualities or None
                )
