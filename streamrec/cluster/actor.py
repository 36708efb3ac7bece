"""One camera's pipeline inside a Ray actor (made remote by the driver).

The actor buffers the events its pipeline emits, numbered per incarnation, and hands the
driver only the events of frames that have left its pipeline (plus track ends); a recreated
actor of a file camera resumes right after the last frame whose events were written. With the
events go the unknown people's sightings and the camera's telemetry. Its gallery is the
snapshot the head sent last (:mod:`streamrec.cluster.snapshot`): an actor never opens the
gallery file, and its config has no ``gallery``.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from typing import Any

from streamrec.analyzer import FaceAnalyzer
from streamrec.cluster.snapshot import FedGallery, GallerySnapshot
from streamrec.cluster.telemetry import Recorder
from streamrec.config import CameraConfig, Config
from streamrec.errors import StreamrecError
from streamrec.logs import setup_worker_logging
from streamrec.pipeline import Pipeline, build_pipeline
from streamrec.pipeline.build import open_camera, source_options
from streamrec.recognition import Recognition
from streamrec.records import Event, Frame
from streamrec.service.monitor import SourceCounters
from streamrec.sources import Gap, Source, open_source
from streamrec.telemetry import CameraState

log = logging.getLogger("streamrec.cluster")

#: events an actor holds for the driver; past it the pipeline waits (a live source drops frames)
MAX_EVENTS = 10_000
#: events handed out by one drain
DRAIN_EVENTS = 1000
#: seconds between the pipeline's checks for a new gallery snapshot (a read of a number)
SNAPSHOT_POLL = 0.2


class ResumedSource(Source):
    """A file source that decodes but skips the frames before ``start`` (resume after restart)."""

    def __init__(self, inner: Source, start: int) -> None:
        super().__init__(inner.name, inner.options)
        self.inner, self.start = inner, start
        self.live = inner.live
        self.fps, self.total_frames = inner.fps, inner.total_frames
        self.width, self.height = inner.width, inner.height
        self.stats = inner.stats
        self._items = iter(inner)

    def _next_item(self) -> Frame | Gap | None:
        for item in self._items:
            if isinstance(item, Frame) and item.index < self.start:
                continue
            return item
        return None

    def _wake(self) -> None:
        self.inner.close()


class CameraActor:
    """One camera's pipeline inside a Ray actor (made remote by :func:`run_cluster`).

    ``start(resume, snapshot)`` loads the models and runs the pipeline in a thread;
    ``drain(epoch, after, watched)`` hands the events after sequence number ``after`` to the
    driver; ``load_gallery(snapshot)`` takes in a new gallery snapshot. A new process (after a
    restart) has a new ``epoch``, which tells the driver to start it again and renumber.
    ``slot`` of ``slots``: the camera's place among the cluster's cameras (its unknown labels'
    numbers, see :class:`~streamrec.cluster.snapshot.SlotBook`).
    """

    def __init__(self, cfg: Config, camera: CameraConfig, slot: int = 0, slots: int = 1) -> None:
        setup_worker_logging(cfg)  # first: nothing this process logs may carry a secret
        self.cfg, self.camera = cfg, camera
        self.gallery = FedGallery(cfg, slot, slots)
        self.recorder = Recorder()
        self.epoch = uuid.uuid4().hex
        self.state: CameraState | None = None  # None until start()
        self.error: str | None = None
        self.start_frame = 0
        self.started_at = 0.0
        self.live = False
        self._events: list[tuple[int, Event]] = []
        self._seq = 0
        self._lock = threading.Lock()
        self._drained = threading.Condition(self._lock)
        self._pipeline: Pipeline | None = None
        self._source: Source | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def pid(self) -> int:
        return os.getpid()

    def node(self) -> str:
        """The address of the node the actor runs on."""
        import ray

        return str(ray.util.get_node_ip_address())

    def load_gallery(self, snapshot: GallerySnapshot) -> None:
        """A new gallery snapshot from the head (the pipeline takes it in within 0.2 s)."""
        self.gallery.load(snapshot)

    def start(self, resume: int, snapshot: GallerySnapshot) -> str:
        """Start processing (file cameras from frame ``resume``) with the head's gallery
        ``snapshot``; idempotent."""
        self.gallery.load(snapshot)
        with self._lock:
            if self._thread is None and not self._stop.is_set():
                self.start_frame, self.state = resume, CameraState.STARTING
                self._thread = threading.Thread(target=self._run, name="camera", daemon=True)
                self._thread.start()
        return self.epoch

    def stop(self) -> None:
        """Finish the frames in flight and end every track (``drain`` then reports the end)."""
        with self._lock:
            self._stop.set()
            pipeline, source = self._pipeline, self._source
            if self._thread is None:
                self.state = CameraState.STOPPED
        if pipeline is not None:
            pipeline.stop()
        if source is not None:  # a camera that is down blocks its reader until closed
            threading.Thread(target=source.close, daemon=True).start()

    def write(self, event: Event) -> None:
        """The pipeline's event writer: buffer with the next sequence number (waits while
        ``MAX_EVENTS`` are not yet taken by the driver)."""
        with self._lock:
            while len(self._events) >= MAX_EVENTS:
                self._drained.wait(1.0)
            self._seq += 1
            self._events.append((self._seq, event))

    def drain(self, epoch: str | None, after: int, watched: bool = False) -> dict[str, Any]:
        """Events after sequence ``after`` whose frames are done, the camera's state, the
        unknown people's sightings and the telemetry since the last drain.

        ``after`` acknowledges (drops) the events up to it, unless ``epoch`` is not this
        incarnation's (a driver that has not seen the restart yet). ``watched``: someone on
        the head wants the camera's annotated frames.
        """
        if watched:
            self.recorder.watch()
        after = after if epoch == self.epoch else 0
        state, pipeline = self.state, self._pipeline
        frames = pipeline.progress if pipeline is not None else 0  # read before the events
        done = self.start_frame + frames - 1
        source = SourceCounters()
        if pipeline is not None:
            stats = pipeline.cameras[self.camera.name].source.stats
            source = SourceCounters.of(stats, pipeline.dropped(self.camera.name))
            if state is CameraState.RUNNING and source.state in _LIVE_TROUBLE:
                state = source.state  # the actor runs, its camera does not (yet)
        with self._lock:
            self._events = [(s, e) for s, e in self._events if s > after]
            self._drained.notify_all()
            # the match stage runs ahead of the last stage: hold back newer frames' events
            hold = not (state is not None and state.final) and not self.live
            events = []
            for s, e in self._events[:DRAIN_EVENTS]:
                if hold and e.event != "track_end" and e.frame > done:
                    break
                events.append((s, e))
        elapsed = time.monotonic() - self.started_at if self.started_at else 0.0
        return {
            "epoch": self.epoch,
            "state": state,
            "error": self.error,
            "events": events,
            "frames": frames,
            "fps": frames / elapsed if elapsed > 0 else 0.0,
            "done_frame": None if self.live else done,
            "sightings": self.gallery.take_sightings(),
            "telemetry": self.recorder.take(source),
        }

    def _run(self) -> None:
        cfg, cam = self.cfg, self.camera
        try:
            analyzer = FaceAnalyzer.from_config(cfg)
            self.gallery.check(analyzer.recognizer)
            recognition = Recognition(analyzer, people=self.gallery)
            assert cam.source is not None  # the driver refuses Frigate bridges
            options = source_options(cfg, cam.rtsp_transport)
            source = open_source(cam.source, options, live_http=cam.live)
            self.live = source.live
            if not source.live and self.start_frame > 0:
                source = ResumedSource(source, self.start_frame)
            camera = open_camera(cfg, cam, source)
            pipeline = build_pipeline(
                cfg,
                [camera],
                self,
                recognition,
                self.gallery,
                [self.recorder],
                gallery_poll=SNAPSHOT_POLL,
            )
            with self._lock:
                self._pipeline, self._source = pipeline, source
                self.started_at, self.state = time.monotonic(), CameraState.RUNNING
            if self._stop.is_set():
                pipeline.stop()
            try:
                pipeline.run()
            finally:
                source.close()
            self.state = CameraState.STOPPED if self._stop.is_set() else CameraState.FINISHED
        except Exception as exc:
            if not isinstance(exc, StreamrecError):
                log.exception("camera %s failed", cam.name)
            self.error, self.state = f"{type(exc).__name__}: {exc}", CameraState.FAILED


_LIVE_TROUBLE = (CameraState.CONNECTING, CameraState.RECONNECTING)
