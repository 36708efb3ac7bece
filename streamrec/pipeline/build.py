"""The composition root: the one place where a pipeline is wired from a config.

``build_pipeline`` builds the stages (detect/track -> align+embed -> match -> annotate -> output),
each with only what it needs, and joins them in a :class:`~streamrec.pipeline.graph.Graph`. The
``run`` command, the daemon, the cluster's camera actors and the benchmarks all call it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence

import numpy as np

from streamrec.config import CameraConfig, Config
from streamrec.errors import ConfigError, StreamrecError
from streamrec.gallery.session import GallerySession, PipelineGallery
from streamrec.gallery.store import Recognizer
from streamrec.gallery.unknowns import UnknownBook
from streamrec.models.runtime import default_threads
from streamrec.pipeline.annotate import AnnotateStage
from streamrec.pipeline.budget import EmbedBudget
from streamrec.pipeline.detect import (
    CameraSettings,
    DegradationSettings,
    DetectStage,
    TrackerSettings,
)
from streamrec.pipeline.embed import EmbedStage
from streamrec.pipeline.graph import Camera, Graph
from streamrec.pipeline.identity import CameraIdentities, IdentityPolicy
from streamrec.pipeline.match import EventWriter, MatchStage
from streamrec.pipeline.motion import MotionSettings
from streamrec.pipeline.output import OutputStage
from streamrec.pipeline.small_faces import SmallFaceSettings
from streamrec.pipeline.stage import Stage
from streamrec.pipeline.summary import CameraSummary, Summary
from streamrec.recognition import GalleryChange, Recognition
from streamrec.sources import Source, SourceOptions, open_source
from streamrec.telemetry import EventTee, Observer, Observers

log = logging.getLogger("streamrec.pipeline")


class Pipeline:
    """A wired pipeline: run it, stop it, count its progress; it takes in every change of the
    gallery that its Recognition service hands it."""

    def __init__(
        self,
        graph: Graph,
        match: MatchStage,
        output: OutputStage,
        summary: Summary,
        observer: Observer,
        recognition: Recognition,
        gallery: PipelineGallery,
        unknowns: UnknownBook | None,
        gallery_poll: float,
    ) -> None:
        self.graph = graph
        self.summary = summary
        self.recognition = recognition
        self.gallery = gallery
        self.unknowns = unknowns
        self.gallery_poll = gallery_poll
        self._observer = observer
        self._match = match
        self._output = output
        self._revision = recognition.revision  # the revision taken in
        self._unsubscribe = recognition.subscribe(self._take_in)

    @property
    def cameras(self) -> dict[str, Camera]:
        return self.graph.cameras

    @property
    def progress(self) -> int:
        """Frames that have left the pipeline."""
        return self._output.done

    @property
    def stopping(self) -> bool:
        return self.graph.stopping

    def stop(self, drain: float | None = None) -> None:
        """Finish the frames in flight, end every track, return from ``run()`` (signal-safe).

        With ``drain``, in-flight frames still unfinished after that many seconds are given up
        (every track still ends).
        """
        self.graph.stop(drain)

    def _take_in(self, change: GalleryChange) -> None:
        """A change of the gallery: its people for matching, the unknown people it erased,
        merged or named."""
        dead = self.gallery.sync(self.unknowns) if self.unknowns is not None else set()
        self._match.set_matcher(change.matcher, dead)
        for name in sorted(change.left | dead):
            self._observer.erased(name)
        people = self.gallery.people()
        self._observer.gallery_loaded(people)
        self._revision = change.revision
        # nothing of this pipeline names them any more: an erasure may complete
        self.gallery.confirm(change.revision)
        # the run's own unknown people move the revision about once a second: only a change
        # of who is matched or an erased label is worth a line
        level = logging.INFO if change.changed or dead else logging.DEBUG
        log.log(level, "gallery revision %d loaded: %d people", change.revision, people)

    def _watch(self, done: threading.Event) -> None:
        """The safety net for changes made by other processes: the revision, checked every
        ``gallery_poll`` seconds (changes made in this process arrive at once)."""
        while not done.wait(self.gallery_poll):
            try:
                self.recognition.refresh()
                self.gallery.confirm(self._revision)  # alive (at most every few seconds)
            except Exception as exc:  # a busy or briefly unreadable file: next time
                log.warning("gallery check failed: %s", exc)

    def dropped(self, camera: str) -> int:
        """Frames of a camera dropped anywhere (by its source or in the pipeline)."""
        return self.graph.cameras[camera].source.stats.dropped + self.graph.dropped(camera)

    def run(self) -> Summary:
        """Process every camera until its stream ends, ``stop()`` or an error.

        Meanwhile the gallery is checked every ``gallery_poll`` seconds. An error that stopped
        the graph is raised once the summary is complete.
        """
        start = time.monotonic()
        graph, summary = self.graph, self.summary
        self._observer.gallery_loaded(self.gallery.people())
        try:  # known as running from now on: an erasure waits until this run has taken it in
            self.gallery.confirm(self._revision)
        except StreamrecError as exc:
            log.warning("cannot register with the gallery: %s", exc)
        done = threading.Event()
        watcher = threading.Thread(target=self._watch, args=(done,), name="gallery", daemon=True)
        watcher.start()
        try:
            graph.run()
        finally:
            self._unsubscribe()
            done.set()
            watcher.join(5.0)
            for name, cam in graph.cameras.items():
                summary.cameras[name].damage = list(cam.source.stats.damage)
                summary.cameras[name].dropped = self.dropped(name)
            summary.wall_time = time.monotonic() - start
            summary.interrupted = graph.interrupted or (graph.stopping and graph.error is None)
            if graph.error is not None:
                summary.error = f"{graph.error_where}: {graph.error}"
        return summary


def build_pipeline(
    cfg: Config,
    cameras: list[Camera],
    events: EventWriter,
    recognition: Recognition,
    gallery: PipelineGallery | None = None,
    observers: Sequence[Observer] = (),
    gallery_poll: float = 1.0,
    taps: Sequence[Stage] = (),
) -> Pipeline:
    """Wire ``cameras`` through the stages; events go to ``events`` (and the run's summary),
    telemetry to ``observers``.

    ``recognition``: the process's Recognition service (the models, the people to match and
    their changes, taken in at once; another process's within ``gallery_poll`` seconds).
    ``gallery``: the run's unknown people and its record as a running pipeline (default: none;
    the unknown people are grouped within the run only). ``taps``: stages run after the output
    stage, which see every finished frame (tracks, labels): evaluations use them.
    """
    rec = cfg.recognition
    models = recognition.models
    if models is None:
        raise StreamrecError("a pipeline needs face models")
    embedder = models.embedder
    if gallery is None:
        gallery = GallerySession(cfg, Recognizer("", "", embedder.dim))
    summary = Summary(cameras={c.name: CameraSummary() for c in cameras})
    observer = Observers([summary, *observers])
    policy = IdentityPolicy(
        threshold=recognition.threshold,
        min_embeddings=rec.min_embeddings,
        single_face_margin=rec.single_face_margin,
        confident_after=rec.confident_after,
        refresh_interval=rec.refresh_interval,
        max_refresh_interval=rec.max_refresh_interval,
        recheck_gain=rec.recheck_gain,
        relink_frames=rec.relink_frames,
        unknown_min_quality=cfg.unknowns.min_quality,
    )
    identities = {c.name: CameraIdentities(policy) for c in cameras}
    unknowns = gallery.unknown_book(recognition.threshold)
    t, d, g = cfg.tracker, cfg.detector, cfg.degradation
    budget = EmbedBudget()
    detect = DetectStage(
        models.detector,
        {c.name: camera_settings(cfg, c) for c in cameras},
        identities,
        observer,
        TrackerSettings(t.iou_threshold, t.max_missed, t.scene_cut, t.flow),
        SmallFaceSettings(d.small_faces, float(d.small_face_size)),
        d.nms_threshold,
        max_skip=d.max_skip,
        embeddings_per_frame=cfg.pipeline.embeddings_per_frame,
        degradation=DegradationSettings(
            g.enabled,
            g.max_interval_factor,
            g.min_input_size,
            d.input_size,
            g.window,
            g.recover_after,
        ),
        budget=budget,
    )
    match = MatchStage(
        identities,
        recognition.matcher(),
        EventTee(events, summary),
        {c.name: c.source.name for c in cameras},
        observer,
        unknowns,
    )
    output = OutputStage({c.name: list(c.outputs) for c in cameras}, observer)
    stages = [
        detect,
        EmbedStage(embedder, rec.batch_size, observer, budget),
        match,
        AnnotateStage({c.name for c in cameras if c.outputs}, observer),
        output,
        *taps,
    ]
    graph = Graph(cameras, stages, cfg.pipeline.queue_size)
    return Pipeline(
        graph, match, output, summary, observer, recognition, gallery, unknowns, gallery_poll
    )


def camera_settings(cfg: Config, cam: Camera) -> CameraSettings:
    """What the detect stage needs of a camera: its interval, zones and motion gating (on live
    sources with ``motion.enabled: auto``); motion in its ignore zones does not count."""
    m = cam.motion or cfg.motion
    masks = [np.asarray(z, np.float32) for z in (*m.mask, *cam.ignore_zones)]
    motion = MotionSettings(m.threshold, m.contour_area, m.frame_height, m.lightning_threshold,
                            masks)  # fmt: skip
    gated = m.enabled is True or (m.enabled == "auto" and cam.source.live)
    return CameraSettings(cam.interval, cam.ignore_zones, motion, gated, cam.source.live)


def source_options(cfg: Config, transport: str | None = None) -> SourceOptions:
    """How sources are opened and kept alive: the ``live`` section (and a camera's transport)."""
    live = cfg.live
    return SourceOptions(
        rtsp_transport=transport or live.rtsp_transport,
        open_timeout=live.open_timeout,
        stall_timeout=live.stall_timeout,
        reconnect_initial=live.reconnect_initial,
        reconnect_max=live.reconnect_max,
        decoder_threads=cfg.pipeline.decoder_threads or default_threads(),
    )


def enabled_cameras(cfg: Config) -> list[CameraConfig]:
    """The enabled ``cameras:`` entries; ConfigError when there are none or names repeat."""
    cams = [c for c in cfg.cameras if c.enabled]
    where = cfg.source_file or "the config"
    if not cams:
        raise ConfigError(
            f"no cameras configured in {where}: add a 'cameras:' list with name and source "
            "(start from: streamrec config example cameras > config.yaml)"
        )
    seen: set[str] = set()
    for c in cams:
        if not c.name.strip():
            raise ConfigError(f"{where}: a camera has an empty name")
        if c.name in seen:
            raise ConfigError(f"{where}: camera name '{c.name}' is used twice")
        seen.add(c.name)
    return cams


def open_camera(cfg: Config, cam: CameraConfig, source: Source | None = None) -> Camera:
    """A configured camera with its source opened (or ``source``, already opened)."""
    if source is None:
        if cam.source is None:
            raise ConfigError(f"camera '{cam.name}' is a Frigate bridge, not a video source")
        try:
            options = source_options(cfg, cam.rtsp_transport)
            source = open_source(cam.source, options, live_http=cam.live)
        except StreamrecError as exc:
            raise type(exc)(f"camera '{cam.name}': {exc}") from None
    interval = cam.interval or cfg.detector.interval
    return Camera(cam.name, source, interval, cam.ignore_zones, cfg.camera_motion(cam))


def open_cameras(cfg: Config, cams: list[CameraConfig]) -> list[Camera]:
    """Open every camera's source; a bad one closes the others and raises naming the camera."""
    opened: list[Camera] = []
    try:
        for c in cams:
            opened.append(open_camera(cfg, c))
    except BaseException:
        for cam in opened:
            cam.source.close()
        raise
    return opened
