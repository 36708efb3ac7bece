"""``streamrec run``: one video file, URL or camera through the pipeline, with its outputs."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from streamrec.analyzer import FaceAnalyzer
from streamrec.config import Config
from streamrec.gallery.session import GallerySession
from streamrec.pipeline import Camera, Pipeline, Summary, build_pipeline
from streamrec.pipeline.build import source_options
from streamrec.pipeline.output import OutputFactory
from streamrec.pipeline.tracking import preload_solver
from streamrec.sinks import FanoutSink, event_sinks
from streamrec.sinks.video import video_output
from streamrec.sinks.window import window_output
from streamrec.sources import Source, open_source


@contextmanager
def stop_on_sigterm(pipeline: Pipeline, drain: float) -> Iterator[None]:
    """SIGTERM stops the pipeline like Ctrl-C: frames in flight finish (within ``drain`` s),
    tracks end, files close."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, lambda *_: pipeline.stop(drain))
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


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


def run_video(
    cfg: Config,
    uri: str,
    output: str | None = None,
    events: str | None = None,
    display: bool = False,
    progress: bool = True,
    live_http: bool = False,
) -> Summary:
    """Process one video source; returns the run's Summary. ``live_http``: an http(s) URL is a
    live camera (newest frame wins, reconnects) rather than a recording read every frame."""
    preload_solver()
    analyzer = FaceAnalyzer.from_config(cfg)
    with ExitStack() as stack:
        gallery = stack.enter_context(GallerySession(cfg, analyzer.recognizer))
        source = stack.enter_context(open_source(uri, source_options(cfg), live_http=live_http))
        outputs: list[OutputFactory] = []
        if output:
            outputs.append(video_output(output, source.fps))
        if display:
            outputs.append(window_output(source.name))
        sink = stack.enter_context(FanoutSink(event_sinks(cfg, events)))
        camera = Camera(source.name, source, cfg.detector.interval, outputs=outputs)
        pipeline = build_pipeline(cfg, [camera], sink, analyzer, gallery)
        drain = cfg.pipeline.stop_timeout
        with stop_on_sigterm(pipeline, drain), _progress(pipeline, source, progress):
            summary = pipeline.run()
    return summary
