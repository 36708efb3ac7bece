"""One video file, URL or camera through the pipeline with its outputs: ``streamrec run`` and the
Python video API (:mod:`streamrec.processing`) both run a :class:`VideoJob`."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import replace

from streamrec.analyzer import FaceAnalyzer
from streamrec.config import Config
from streamrec.errors import StreamrecError
from streamrec.gallery.session import GallerySession
from streamrec.history.feed import guarded_people, history_feed
from streamrec.pipeline import Camera, Pipeline, Summary, build_pipeline
from streamrec.pipeline.build import source_options
from streamrec.pipeline.output import OutputFactory
from streamrec.progress import progress_bar
from streamrec.recognition import Recognition
from streamrec.sinks import EventSink, FanoutSink, SinkErasure, SinkError, event_sinks
from streamrec.sinks.video import AudioInput, video_output
from streamrec.sinks.window import window_output
from streamrec.sources import FileSource, Source, open_source


class LostEvents(SinkError):
    """The run finished, but an event sink could not take every event (a full disk,
    ``/dev/full``, a webhook that gave up): the run failed. ``summary`` is what it did."""

    def __init__(self, summary: Summary, problems: Sequence[str]) -> None:
        super().__init__("; ".join(problems))
        self.summary = summary


class VideoJob:
    """A video source wired through the pipeline (:func:`build_pipeline`) with its outputs.

    Everything is set up here, in an order that lets a mistake fail before any output file
    exists: the video is opened first, then the models are resolved and loaded, then the
    gallery, the event sinks (the config's, ``events``, ``sinks``) and the annotated-frame
    consumers (``output`` video, ``display`` window, ``frames``). ``run()`` processes the video
    and closes everything, on every exit path.
    """

    def __init__(
        self,
        cfg: Config,
        uri: str,
        *,
        analyzer: FaceAnalyzer | None = None,
        output: str | None = None,
        events: str | None = None,
        sinks: Sequence[EventSink] = (),
        frames: Sequence[OutputFactory] = (),
        display: bool = False,
        live_http: bool = False,
        start: float | None = None,
        end: float | None = None,
    ) -> None:
        options = replace(source_options(cfg), start=start or 0.0, end=end)
        with ExitStack() as stack:
            self.source = source = stack.enter_context(
                open_source(uri, options, live_http=live_http)
            )
            if source.live and (start or end is not None):
                raise StreamrecError(
                    f"--start/--end need a video file or a recording, not a live camera "
                    f"({source.name})"
                )
            self.analyzer = analyzer if analyzer is not None else FaceAnalyzer(cfg)
            gallery = stack.enter_context(GallerySession(cfg, self.analyzer.recognizer))
            analyzer = self.analyzer
            history = history_feed(cfg, analyzer.recognizer, gallery.gallery, analyzer.threshold)
            for feed in history:  # closed by the fan-out too, first (closing is idempotent)
                stack.callback(feed.close)
            people = guarded_people(history, gallery.gallery)
            recognition = Recognition(self.analyzer, gallery.gallery, people=people)
            self.sink = sink = stack.enter_context(
                FanoutSink([*history, *event_sinks(cfg, events, self.analyzer.threshold), *sinks])
            )
            for feed in history:
                feed.emit = sink.write
            sink.announce(recognition.matcher().names)
            outputs = list(frames)
            if output:
                outputs.append(video_output(output, source.fps, _audio(source)))
            if display:
                outputs.append(window_output(source.name))
            camera = Camera(source.name, source, cfg.detector.interval, outputs=outputs)
            self.pipeline = build_pipeline(
                cfg,
                [camera],
                sink,
                recognition,
                gallery,
                [SinkErasure(sink)],
            )
            self._stack = stack.pop_all()

    def run(self) -> Summary:
        """Process the video until its end or ``pipeline.stop()``; everything is closed after.

        Raises the error that stopped the pipeline, once the summary is complete, and
        :class:`LostEvents` when an event sink lost events (once every output is closed).
        """
        with self._stack:
            summary = self.pipeline.run()
        lost = self.sink.failures()
        if lost:
            summary.error = "; ".join(lost)
            raise LostEvents(summary, lost)
        return summary


def _audio(source: Source) -> AudioInput | None:
    """The input's audio for the annotated video: files and recordings have one clock with it."""
    if not isinstance(source, FileSource):
        return None
    return AudioInput(source.uri, source.origin, dict(source.ffmpeg_options), source.timeout)


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
    bar = progress_bar(total=source.total_frames, unit="frame", desc=source.name[-40:])
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
    start: float | None = None,
    end: float | None = None,
) -> Summary:
    """``streamrec run``: process one video source; returns the run's Summary. ``live_http``: an
    http(s) URL is a live camera (newest frame wins, reconnects) rather than a recording read
    every frame. ``start``/``end``: the span of a file or recording, in seconds."""
    job = VideoJob(
        cfg,
        uri,
        output=output,
        events=events,
        display=display,
        live_http=live_http,
        start=start,
        end=end,
    )
    drain = cfg.pipeline.stop_timeout
    with stop_on_sigterm(job.pipeline, drain), _progress(job.pipeline, job.source, progress):
        return job.run()
