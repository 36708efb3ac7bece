"""Configuration: YAML files loaded into typed, validated dataclasses.

The schema below is the one source of the defaults: ``load_config()`` without a file uses it,
and ``configs/default.yaml`` is generated from it (values, ``#:`` comments and bounds); a test
fails when the two disagree. The top-level ``configs/`` folder is shipped in the wheel as
``streamrec/configs`` (package data), so every install has the examples.

Every problem of a config is reported at once, each on its own line naming the file (or the
``--set`` key), the key and what is allowed, with a suggestion for a misspelt key. Values of
secret-bearing keys are never echoed, in errors or by ``config show``. Absurd input (huge files,
huge numbers, deep nesting) is refused the same way, never with a traceback. ``--set key=value``
overrides are parsed as YAML scalars (``5`` is an int, ``null`` is None).
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import math
import os
import re
import reprlib
import textwrap
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin, get_type_hints
from urllib.parse import SplitResult, urlsplit

import yaml
from pydantic import (
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.dataclasses import dataclass

from .errors import ConfigError
from .redact import MASK, is_secret_key, redact_url, register_config

_STRICT = ConfigDict(extra="forbid", allow_inf_nan=False, coerce_numbers_to_str=True)

#: the longest time into a video a span (``--start``, ``--end``) may name: about 31 years
MAX_SECONDS = 1e9
#: a config file is a few KiB; anything larger is refused before it is parsed
MAX_FILE_BYTES = 1 << 20
#: YAML nesting levels (the deepest key, cameras[].ignore_zones, needs 5)
MAX_DEPTH = 20
#: characters of a YAML integer (Python refuses to convert more than 4300 digits)
MAX_NUMBER_CHARS = 100
#: problems listed per config; the rest are counted
MAX_PROBLEMS = 20


def _find_config_dir() -> Path:
    here = Path(__file__).resolve().parent
    wheel, checkout = here / "configs", here.parent / "configs"
    if not (wheel / "default.yaml").is_file() and (checkout / "default.yaml").is_file():
        return checkout
    return wheel


#: the shipped configs: ``streamrec/configs`` in a wheel (built from the top-level ``configs/``),
#: ``configs/`` itself in a checkout or an editable install
CONFIG_DIR = _find_config_dir()
#: every key with its default, generated from the schema (documentation; the schema is the source)
DEFAULT_CONFIG = CONFIG_DIR / "default.yaml"


@dataclass(config=_STRICT)
class ModelsConfig:
    #: detector: a file name (looked up in the model dirs), a path, or a pack name (``buffalo_l``)
    detector: str = "buffalo_l"
    #: recognizer: a file name, a path, or a pack name
    recognizer: str = "buffalo_l"
    #: extra directory searched before ``$STREAMREC_MODELS`` and the user cache
    dir: str | None = None
    #: allow downloading missing pack models from their official URLs
    download: bool = True


@dataclass(config=_STRICT)
class DetectorConfig:
    #: square letterbox size the detector runs at (multiple of 32)
    input_size: int = Field(default=640, ge=32, le=4096, multiple_of=32)
    #: detection score a face needs to be kept
    threshold: float = Field(default=0.5, ge=0.0, le=1.0)
    #: overlap (IoU) above which two detections are merged (non-maximum suppression)
    nms_threshold: float = Field(default=0.4, ge=0.0, le=1.0)
    #: keep at most this many faces per image (largest first); 0 = no limit
    max_faces: int = Field(default=0, ge=0, le=10_000)
    #: run the detector every N frames in video; the tracker carries faces in between
    interval: int = Field(default=5, ge=1, le=1000)
    #: small faces in video: one full-resolution tile of a frame larger than input_size per
    #: detection round, and tracked faces below small_face_size re-detected around their box
    small_faces: bool = True
    #: height (px, in the whole-frame pass at input_size) below which a tracked face is small
    small_face_size: int = Field(default=24, ge=1, le=4096)
    #: with motion gating (`motion.enabled`), the whole frame is still detected at least every
    #: this many seconds, so that a person standing perfectly still is not missed
    max_skip: float = Field(default=5.0, gt=0.0, le=3600.0)


@dataclass(config=_STRICT)
class EmbedderConfig:
    #: channel order the recognizer expects
    color: Literal["rgb", "bgr"] = "rgb"
    #: pixel normalisation of the recognizer's input: (x - mean) / std
    mean: float = Field(default=127.5, ge=-255.0, le=255.0)
    std: float = Field(default=127.5, gt=0.0, le=1000.0)


@dataclass(config=_STRICT)
class RecognitionConfig:
    #: cosine similarity needed to name a face; null = the calibrated default of the recognizer
    threshold: float | None = Field(default=None, ge=-1.0, le=1.0)
    #: most aligned crops per embedder call
    batch_size: int = Field(default=16, ge=1, le=256)
    #: frames between a track's first two embeddings; the spacing doubles with each one (up to
    #: max_refresh_interval) while the track is not confidently named, and a due embedding
    #: waits for one of the track's better faces
    refresh_interval: int = Field(default=10, ge=1, le=10_000)
    #: the longest spacing between embeddings of a track that is not confidently named
    max_refresh_interval: int = Field(default=80, ge=1, le=100_000)
    #: embeddings whose mean must reach the threshold to name a track ...
    min_embeddings: int = Field(default=2, ge=1, le=1000)
    #: ... or one face must reach the threshold plus this (calibrated: strangers' faces reached
    #: the threshold, strangers' means of 2 or more did not)
    single_face_margin: float = Field(default=0.05, ge=0.0, le=1.0)
    #: embeddings of a named track after which its identity is settled (no more embeddings
    #: but rechecks)
    confident_after: int = Field(default=3, ge=1, le=1000)
    #: galleries with at least this many templates are searched with an approximate faiss
    #: index (the ``index`` extra); null = always exact
    index_min_size: int | None = Field(default=None, ge=1, le=1_000_000_000)
    #: a face this many times better (expected similarity) than the best one embedded so far
    #: is always embedded, also on a settled track (0 = never)
    recheck_gain: float = Field(default=1.5, ge=0.0, le=1000.0)
    #: a new track continues the evidence of a track that ended or was lost at most this many
    #: frames before, near it, when their embeddings match (0 = never)
    relink_frames: int = Field(default=50, ge=0, le=100_000)


@dataclass(config=_STRICT)
class EnrollmentConfig:
    #: most templates (sub-centers) a person keeps; their embeddings are clustered into them
    subcenters: int = Field(default=3, ge=1, le=32)
    #: photos whose embedding is further than this angle (degrees) from the dominant
    #: sub-center are dropped as strays
    outlier_angle: float = Field(default=75.0, gt=0.0, le=180.0)
    #: faces picked from a video by ``gallery add NAME --from-video``
    video_faces: int = Field(default=8, ge=1, le=100)


@dataclass(config=_STRICT)
class UnknownsConfig:
    #: group unknown tracks into stable ``unknown-N`` identities
    enabled: bool = True
    #: cosine similarity for an unknown track to join an existing unknown-N; null = the
    #: recognition threshold
    threshold: float | None = Field(default=None, ge=-1.0, le=1.0)
    #: keep unknown people in the gallery file (as unconfirmed people with their best faces,
    #: written as they are seen) for review, naming and recognition across runs
    persist: bool = True
    #: folder for the best crops of unknown people (null = no crops)
    crops_dir: str | None = None
    #: best crops kept per unknown person
    max_crops: int = Field(default=5, ge=1, le=100)
    #: crops and unconfirmed people older than this many days are purged (0 = keep forever)
    retention_days: float = Field(default=30.0, ge=0.0, le=36_500.0)
    #: most unknown identities kept (the least recently seen are forgotten first)
    max_identities: int = Field(default=1000, ge=1, le=1_000_000)
    #: a track whose best face is below this quality (0..1, the expected similarity to the
    #: person's own template) gets no unknown-N label: poor faces of different people look
    #: alike, and would share one (measured on the media: docs/history.md)
    min_quality: float = Field(default=0.3, ge=0.0, le=1.0)


@dataclass(config=_STRICT)
class HistoryConfig:
    #: keep every track's face in a searchable history beside the gallery (NAME.history/);
    #: needs a gallery
    enabled: bool = True
    #: sightings last seen more than this many days ago are purged (0 = keep forever)
    retention_days: float = Field(default=30.0, ge=0.0, le=36_500.0)
    #: most sightings kept (the oldest go first)
    max_sightings: int = Field(default=1_000_000, ge=1, le=100_000_000)
    #: most bytes of crops and vectors (the oldest sightings go first); null = no cap
    max_bytes: int | None = Field(default=None, ge=1_000_000)
    #: sightings waiting to be written (when full, the worst face is dropped)
    queue_size: int = Field(default=256, ge=1, le=100_000)
    #: from this many sightings on, search uses the approximate index (faiss, if installed)
    ann_min_size: int = Field(default=2_000_000, ge=1_000, le=1_000_000_000)


@dataclass(config=_STRICT)
class ClusterConfig:
    #: Ray cluster address: "auto", "ray://host:port", "host:port"; null = single process
    address: str | None = None
    #: CPUs requested by each camera actor
    cpus_per_camera: float = Field(default=1.0, gt=0.0, le=1024.0)
    #: how often Ray restarts a camera actor that died (-1 = forever)
    max_restarts: int = Field(default=-1, ge=-1, le=1_000_000)
    #: Ray namespace of the actors
    namespace: str = "streamrec"
    #: seconds between the head's checks of the gallery for changes (it sends them to the actors)
    gallery_poll: float = Field(default=1.0, gt=0.0, le=3600.0)


@dataclass(config=_STRICT)
class TrackerConfig:
    #: overlap (IoU) a detection needs with a track's predicted box to continue the track
    iou_threshold: float = Field(default=0.3, gt=0.0, le=1.0)
    #: detection rounds a track may miss before it ends
    max_missed: int = Field(default=2, ge=0, le=1000)
    #: mean grey-level change between frames that counts as a scene cut (ends all tracks; 0 = off)
    scene_cut: float = Field(default=24.0, ge=0.0, le=255.0)
    #: between detections, follow each face by optical flow (Lucas-Kanade on a few points of
    #: its box; a few tenths of a millisecond per face and frame); false: by its velocity only
    flow: bool = True


#: an ignore zone: 3 to 1000 [x, y] points
_Polygon = Annotated[
    list[Annotated[list[float], Field(min_length=2, max_length=2)]],
    Field(min_length=3, max_length=1000),
]


@dataclass(config=_STRICT)
class MotionConfig:
    #: detect faces only when something moved, a face is tracked, or every detector.max_skip
    #: seconds: auto = on live cameras (files are detected every interval), true, false
    enabled: Literal[True, False, "auto"] = "auto"
    #: grey levels (0-255) a pixel of the motion thumbnail must differ from the learnt
    #: background (and beyond its own noise) to count as moving
    threshold: float = Field(default=15.0, gt=0.0, le=255.0)
    #: moving thumbnail pixels (after a 3x3 dilation) that make a moving region
    contour_area: int = Field(default=10, ge=1, le=1_000_000)
    #: rows of the grey thumbnail that motion is judged on (made from the decoder's luma)
    frame_height: int = Field(default=100, ge=16, le=1080)
    #: this fraction of the picture moving at once is a change of light (IR switch, clouds,
    #: headlights): the background is learnt anew and the frame is detected once
    lightning_threshold: float = Field(default=0.8, gt=0.0, le=1.0)
    #: polygons (lists of [x, y] pixel points) where motion is ignored (swaying trees, a TV);
    #: the camera's ignore_zones are masked too
    mask: list[_Polygon] = Field(default_factory=list, max_length=100)


@dataclass(config=_STRICT)
class DegradationConfig:
    #: when a live camera falls behind (frames dropped), spend less per frame, in this order:
    #: the extras (small-face passes, optical flow) off, the detection interval longer, the
    #: detection pass smaller; one step back after recover_after seconds without drops. Frames
    #: are dropped only past the last step
    enabled: bool = True
    #: the longest detection interval, as a multiple of the camera's interval
    max_interval_factor: int = Field(default=4, ge=1, le=100)
    #: the smallest long side (px) of the whole-frame detection pass
    min_input_size: int = Field(default=320, ge=32, le=4096, multiple_of=32)
    #: seconds of dropped frames that make one step (the evidence is gathered this long)
    window: float = Field(default=1.0, gt=0.0, le=3600.0)
    #: seconds without dropped frames before one step back (doubled each time the step back
    #: had to be taken again within a minute)
    recover_after: float = Field(default=10.0, gt=0.0, le=86_400.0)


@dataclass(config=_STRICT)
class RuntimeConfig:
    provider: Literal["openvino", "cpu"] = "openvino"
    #: OpenVINO device: CPU, GPU, NPU, AUTO, or e.g. AUTO:GPU,CPU
    device: str = "CPU"
    #: OpenVINO inference precision: auto = BF16 (CPU) / FP16 (GPU) where the device has it
    #: and a one-time check finds it faster and as accurate as FP32, else FP32
    precision: Literal["auto", "FP32", "BF16", "FP16", "ACCURACY"] = "auto"
    performance_hint: Literal["LATENCY", "THROUGHPUT"] = "LATENCY"
    #: the precision checks' verdicts and OpenVINO's compiled models (these speed up start-up only
    #: where OpenVINO can read them back, not with onnxruntime-openvino's wheels: docs/models.md):
    #: a folder, auto ($XDG_CACHE_HOME or ~/.cache, then streamrec/ov_cache), or null (no cache)
    cache_dir: str | None = "auto"
    #: inference threads per model (each model runs one inference at a time; the detector and
    #: the recognizer run at the same time); 0 = one on up to 4 cores, a quarter of the cores
    #: above (a second thread costs more CPU than it saves time on small machines)
    threads: int = Field(default=0, ge=0, le=256)
    #: OpenCV's threads for the image work (resizing, colours, optical flow, motion); 1 = each
    #: call in its caller's thread. OpenCV's pool wakes for every call however small and spins
    #: while waiting (on 2 cores ~2 % of a core per live camera, for no gain); 0 = OpenCV's
    #: default (every core)
    opencv_threads: int = Field(default=1, ge=0, le=256)


@dataclass(config=_STRICT)
class PipelineConfig:
    #: bound of each camera's queue and of those between stages (frames); files block,
    #: live cameras drop their oldest (8: 0.32 s at 25 fps, a loaded machine's stalls)
    queue_size: int = Field(default=8, ge=1, le=1024)
    #: faces sent to the recognizer with one frame at most; a burst (a crowd walks in, a
    #: scene cut) is spread over the next frames, so no frame waits for all of them
    embeddings_per_frame: int = Field(default=2, ge=1, le=256)
    #: decoder threads; 0 = derived from the cores
    decoder_threads: int = Field(default=0, ge=0, le=256)
    #: seconds a stopping run or daemon may take to finish the frames in flight and flush every
    #: sink; past it the rest is given up (systemd's TimeoutStopSec must be larger)
    stop_timeout: float = Field(default=8.0, gt=0.0, le=3600.0)


@dataclass(config=_STRICT)
class LoggingConfig:
    #: level of every logger: DEBUG, INFO, WARNING, ERROR
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    #: levels of single loggers, e.g. {streamrec.sources: DEBUG, uvicorn: WARNING}
    modules: dict[str, Literal["DEBUG", "INFO", "WARNING", "ERROR"]] = Field(
        default_factory=dict, max_length=100
    )
    #: text (ISO timestamps) or json (one object per line, for log collectors)
    format: Literal["text", "json"] = "text"
    #: seconds between two one-line stats summaries per camera in `serve` (0 = none)
    stats_interval: float = Field(default=60.0, ge=0.0, le=86_400.0)


@dataclass(config=_STRICT)
class LiveConfig:
    #: RTSP transport of live cameras (a camera's own rtsp_transport overrides it)
    rtsp_transport: Literal["tcp", "udp"] = "tcp"
    #: seconds to wait for a live source to open
    open_timeout: float = Field(default=10.0, gt=0, le=3600)
    #: no frame for this long on a live source = stall, the stream is reopened
    stall_timeout: float = Field(default=5.0, gt=0, le=3600)
    #: first reconnect delay (s); it doubles per failed attempt (with jitter) up to reconnect_max
    reconnect_initial: float = Field(default=0.5, gt=0, le=3600)
    reconnect_max: float = Field(default=30.0, gt=0, le=86_400)


def _http_address(value: str) -> SplitResult | None:
    """``value`` split, when it is an http(s) address with a host (and a valid port, if any)
    and neither a query nor a fragment; else None."""
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 -- raises ValueError on a bad port
    except ValueError:
        return None
    valid = parts.scheme.lower() in ("http", "https") and parts.hostname
    return parts if valid and not parts.query and not parts.fragment else None


def _time_zone(value: str) -> str:
    """An IANA time zone name (``UTC``, ``Europe/Paris``) known to this system."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {value!r}: use an IANA name such as UTC or Europe/Paris"
        ) from None
    return value


def _topic_levels(value: str) -> str:
    """An MQTT topic prefix: one or more levels, no wildcards."""
    if not value.strip("/") or "+" in value or "#" in value:
        raise ValueError("expected MQTT topic levels without + or #, e.g. 'streamrec'")
    return value


@dataclass(config=_STRICT)
class FrigateMqttConfig:
    #: Frigate's broker; null = the broker of events.mqtt (with its port, user and TLS settings)
    host: str | None = None
    port: int = Field(default=1883, ge=1, le=65535)
    username: str | None = None
    password: str | None = None
    #: Frigate's mqtt.topic_prefix: its events arrive on <topic_prefix>/events
    topic_prefix: str = "frigate"

    @field_validator("topic_prefix")
    @classmethod
    def _topic(cls, value: str) -> str:
        return _topic_levels(value)


@dataclass(config=_STRICT)
class FrigateConfig:
    #: Frigate's API, e.g. http://frigate:5000 (the plain API port, not the authenticated 8971)
    url: str
    #: extra HTTP headers sent to Frigate's API, e.g. {Authorization: Bearer ...}
    headers: dict[str, str] = Field(default_factory=dict, max_length=64)
    #: the broker Frigate publishes its events on
    mqtt: FrigateMqttConfig = dataclasses.field(default_factory=FrigateMqttConfig)
    #: Frigate camera names to follow; empty = all
    cameras: list[str] = Field(default_factory=list, max_length=1000)
    #: Frigate object labels whose snapshots are checked for faces
    labels: list[str] = Field(default_factory=lambda: ["person"], min_length=1, max_length=100)
    #: write the recognised name back to Frigate as the event's sub label
    sub_label: bool = False
    #: similarity a face needs to be named; null = recognition.threshold
    min_score: float | None = Field(default=None, ge=-1.0, le=1.0)
    #: overwrite a sub label someone else set (Frigate's own face recognition, Double Take);
    #: false: such an event keeps its sub label
    overwrite: bool = False
    #: the Frigate user to log in as on Frigate's authenticated port (8971); null = the
    #: environment's STREAMREC_FRIGATE_USER, else no login (port 5000)
    user: str | None = Field(default=None, min_length=1, max_length=256)
    #: that user's password; null = the environment's STREAMREC_FRIGATE_PASSWORD
    password: str | None = Field(default=None, max_length=1024)
    #: fetch the snapshot cropped to the object instead of the full frame (in progress only)
    crop: bool = False
    #: frames checked per Frigate object at most: its snapshots, or its camera's latest frame
    #: while it has none (Double Take's attempts)
    attempts: int = Field(default=10, ge=1, le=100)
    #: seconds between two latest frames of one object
    delay: float = Field(default=0.5, ge=0.0, le=60.0)
    #: stop checking an object after a confident match: the threshold plus
    #: recognition.single_face_margin (Double Take's stop_on_match)
    stop_on_match: bool = True
    #: seconds per request to Frigate's API
    timeout: float = Field(default=10.0, gt=0, le=600)
    #: retries of a request that failed (no connection, timeout, 5xx, 429), with backoff
    retries: int = Field(default=3, ge=0, le=100)
    #: Frigate events waiting to be checked; beyond, the oldest is dropped (and counted)
    queue_size: int = Field(default=64, ge=1, le=100_000)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if _http_address(value) is None:
            raise ValueError(
                "expected Frigate's API address without query, e.g. http://frigate:5000"
            )
        return value.rstrip("/")


@dataclass(config=_STRICT)
class CameraConfig:
    #: unique name (events, metrics, MQTT topics); a Frigate bridge's name is its events' source
    name: str
    #: rtsp(s)://, http(s)://, a file, webcam:0 or /dev/video0 (or frigate: instead)
    source: str | None = None
    enabled: bool = True
    #: per-camera detection interval (overrides detector.interval)
    interval: int | None = Field(default=None, ge=1, le=1000)
    #: polygons (lists of [x, y] pixel points) whose faces are ignored
    ignore_zones: list[_Polygon] = Field(default_factory=list, max_length=100)
    #: this camera's motion gating (its mask, its threshold); keys not given come from the
    #: top-level motion section
    motion: MotionConfig | None = None
    rtsp_transport: Literal["tcp", "udp"] | None = None
    #: an http(s) source is a live camera (MJPEG, HLS: newest frame wins, reconnects); false
    #: reads it as a recording, every frame. RTSP and webcams are always live, files never
    live: bool = True
    #: instead of a source: recognise the people in Frigate's snapshots (README: Frigate)
    frigate: FrigateConfig | None = None

    @model_validator(mode="after")
    def _kind(self) -> CameraConfig:
        if (self.source is None) == (self.frigate is None):
            raise ValueError("give either 'source' (a video source) or 'frigate' (a Frigate NVR)")
        if self.frigate is not None and (
            self.interval is not None
            or self.ignore_zones
            or self.rtsp_transport is not None
            or self.motion is not None
        ):
            raise ValueError("interval, ignore_zones, motion and rtsp_transport are for a 'source'")
        http = (self.source or "").strip().lower().startswith(("http://", "https://"))
        if not self.live and not http:
            raise ValueError(
                "'live: false' reads an http(s) recording every frame; RTSP cameras and webcams "
                "are always live, files and Frigate never"
            )
        return self


@dataclass(config=_STRICT)
class MqttConfig:
    host: str
    port: int = Field(default=1883, ge=1, le=65535)
    username: str | None = None
    password: str | None = None
    topic_prefix: str = "streamrec"
    qos: int = Field(default=1, ge=0, le=2)
    #: events kept while the broker is away (the oldest are dropped beyond)
    buffer_max: int = Field(default=10000, ge=1, le=10_000_000)
    #: Home Assistant MQTT discovery, under discovery_prefix
    ha_discovery: bool = False
    discovery_prefix: str = "homeassistant"
    #: seconds after a person's last track ended until they are not_home
    presence_timeout: float = Field(default=120.0, gt=0, le=86400 * 365)
    #: the location a person's Home Assistant device_tracker shows while they are seen on a
    #: camera (camera name -> a zone name of Home Assistant); cameras not listed show home
    tracker_zones: dict[str, str] = Field(default_factory=dict, max_length=1000)
    #: JPEG of each identification on <prefix>/<camera>/snapshot
    snapshots: bool = True
    snapshot_max_width: int = Field(default=640, ge=16, le=8192)
    snapshot_quality: int = Field(default=80, ge=1, le=100)
    #: also publish Double Take's topics (double-take/matches/<name>, /matches/unknown,
    #: /cameras/<camera>, /cameras/<camera>/person, /available), as Double Take v1.13.1 does
    double_take_topics: bool = False
    #: Double Take's time.timezone: the zone of its payloads' timestamp (an IANA name)
    double_take_timezone: str = "UTC"
    tls: bool = False
    #: PEM files: CA to verify the broker (null = the system's), client certificate and key
    ca_certs: str | None = None
    certfile: str | None = None
    keyfile: str | None = None
    #: skip the check of the broker's host name against its certificate
    tls_insecure: bool = False

    @field_validator("topic_prefix", "discovery_prefix")
    @classmethod
    def _topic(cls, value: str) -> str:
        return _topic_levels(value)

    @field_validator("tracker_zones")
    @classmethod
    def _zones(cls, value: dict[str, str]) -> dict[str, str]:
        for camera, zone in value.items():
            if not zone.strip() or zone in ("not_home", "None") or len(zone) > 255:
                raise ValueError(
                    f"camera {camera!r}: a zone name (1 to 255 characters, not 'not_home' "
                    f"or 'None': those mean away and unknown to Home Assistant), got {zone!r}"
                )
        return value

    @field_validator("double_take_timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        return _time_zone(value)

    @model_validator(mode="after")
    def _tls_files(self) -> MqttConfig:
        if not self.tls and (self.ca_certs or self.certfile or self.keyfile or self.tls_insecure):
            raise ValueError("ca_certs, certfile, keyfile and tls_insecure need tls: true")
        if self.keyfile and not self.certfile:
            raise ValueError("keyfile needs certfile (the client certificate)")
        return self


@dataclass(config=_STRICT)
class WebhookConfig:
    url: str
    headers: dict[str, str] = Field(default_factory=dict, max_length=64)
    timeout: float = Field(default=5.0, gt=0, le=600)
    retries: int = Field(default=5, ge=0, le=100)


@dataclass(config=_STRICT)
class EventsConfig:
    #: JSONL file the events are appended to (null = none)
    jsonl: str | None = None
    #: MQTT broker the events are published to (null = none)
    mqtt: MqttConfig | None = None
    #: URL every event is POSTed to as JSON (null = none)
    webhook: WebhookConfig | None = None


@dataclass(config=_STRICT)
class HttpConfig:
    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    #: bearer token; required (at least 16 characters) when host is not a loopback address
    token: str | None = None
    #: Host header names accepted besides the loopback names and the bound address
    #: (``nvr.lan``, ``*.lan``; ``*`` accepts any and needs a token)
    allowed_hosts: list[str] = dataclasses.field(default_factory=list)
    #: web pages of other sites allowed to change things (POST, PATCH, DELETE), e.g.
    #: ``https://ha.lan:8123``; browsers' requests from any other site are refused
    allowed_origins: list[str] = Field(default_factory=list, max_length=100)
    #: open connections at most; past it the one idle or slow the longest (else the oldest busy
    #: one) is closed
    max_connections: int = Field(default=100, ge=1, le=10_000)
    #: concurrent MJPEG live streams at most; more get 503
    max_streams: int = Field(default=8, ge=1, le=1000)
    #: largest request body in bytes; larger ones get 413
    max_body: int = Field(default=8 * 1024 * 1024, ge=0, le=1024**3)
    #: seconds a connection has to send a request's headers (also the idle keep-alive time)
    header_timeout: float = Field(default=5.0, gt=0, le=300)
    #: seconds a request has to send its body once the headers arrived
    body_timeout: float = Field(default=30.0, gt=0, le=3600)

    @field_validator("allowed_origins")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        for origin in value:
            parts = _http_address(origin)
            if parts is None or parts.path.strip("/") or parts.username is not None:
                raise ValueError(
                    f"{_brief(origin)} is not a web origin: give scheme://host[:port], "
                    "e.g. https://ha.lan:8123"
                )
        return value


@dataclass(config=_STRICT)
class Config:
    #: which detector and recognizer (README: Models)
    models: ModelsConfig = dataclasses.field(default_factory=ModelsConfig)
    #: face detector (SCRFD)
    detector: DetectorConfig = dataclasses.field(default_factory=DetectorConfig)
    #: recognizer preprocessing
    embedder: EmbedderConfig = dataclasses.field(default_factory=EmbedderConfig)
    #: matching against the gallery, and when a video track is (re-)embedded
    recognition: RecognitionConfig = dataclasses.field(default_factory=RecognitionConfig)
    #: enrolment of people into the gallery
    enrollment: EnrollmentConfig = dataclasses.field(default_factory=EnrollmentConfig)
    #: people who are not in the gallery
    unknowns: UnknownsConfig = dataclasses.field(default_factory=UnknownsConfig)
    #: the face history: sightings of every track, search by face, "not this person"
    history: HistoryConfig = dataclasses.field(default_factory=HistoryConfig)
    #: tracker that carries faces between detector runs
    tracker: TrackerConfig = dataclasses.field(default_factory=TrackerConfig)
    #: ONNX Runtime / OpenVINO
    runtime: RuntimeConfig = dataclasses.field(default_factory=RuntimeConfig)
    #: video pipeline
    pipeline: PipelineConfig = dataclasses.field(default_factory=PipelineConfig)
    #: motion gating of face detection on live cameras (each camera may have its own, with
    #: masks)
    motion: MotionConfig = dataclasses.field(default_factory=MotionConfig)
    #: what a live camera gives up, in order, when the machine cannot keep up
    degradation: DegradationConfig = dataclasses.field(default_factory=DegradationConfig)
    #: live sources (cameras, streams): opening, stalls, reconnects
    live: LiveConfig = dataclasses.field(default_factory=LiveConfig)
    #: gallery file (SQLite)
    gallery: str | None = None
    #: cameras run by `streamrec serve` (`streamrec config example cameras`)
    cameras: list[CameraConfig] = Field(default_factory=list, max_length=1000)
    #: where events go, besides --events of `streamrec run`
    events: EventsConfig = dataclasses.field(default_factory=EventsConfig)
    #: HTTP server of `streamrec serve`: /health, /metrics, live view
    http: HttpConfig = dataclasses.field(default_factory=HttpConfig)
    #: spread the cameras of `streamrec serve` over a Ray cluster (README: Cluster)
    cluster: ClusterConfig = dataclasses.field(default_factory=ClusterConfig)
    #: log level (overall and per module), format, periodic stats lines
    logging: LoggingConfig = dataclasses.field(default_factory=LoggingConfig)
    #: file the config was loaded from (set by load_config, not a YAML key)
    source_file: str | None = Field(default=None, exclude=True)

    @model_validator(mode="before")
    @classmethod
    def _camera_motion(cls, data: Any) -> Any:
        """The keys a camera's ``motion:`` does not give come from the top-level ``motion:``."""
        if not isinstance(data, dict):
            return data
        top, cameras = data.get("motion"), data.get("cameras")
        if not isinstance(top, dict) or not isinstance(cameras, list):
            return data
        merged = [
            {**c, "motion": {**top, **c["motion"]}}
            if isinstance(c, dict) and isinstance(c.get("motion"), dict)
            else c
            for c in cameras
        ]
        return {**data, "cameras": merged}

    def camera_motion(self, camera: CameraConfig) -> MotionConfig:
        """The motion gating of a camera: its own section, or the top-level one."""
        return camera.motion if camera.motion is not None else self.motion


_ADAPTER = TypeAdapter(Config)

# --- secrets -----------------------------------------------------------------------------------

_QUOTED = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"")


def _masked(value: Any, secret: bool = False) -> Any:
    """Plain config data with secret values replaced by ``***`` (null stays null)."""
    if isinstance(value, dict):
        return {k: _masked(v, secret or is_secret_key(str(k))) for k, v in value.items()}
    if isinstance(value, list):
        return [_masked(v, secret) for v in value]
    if value is None or not secret:
        return redact_url(value) if isinstance(value, str) else value
    return MASK


_BRIEF = reprlib.Repr()
_BRIEF.maxstring = _BRIEF.maxother = 60
_BRIEF.maxlevel = 3


def _brief(value: Any) -> str:
    """A short, credential-free repr of an input value for an error message."""
    if isinstance(value, int) and value.bit_length() > 256:
        return f"a number of {math.floor(value.bit_length() * math.log10(2))}+ digits"
    return _BRIEF.repr(redact_url(value) if isinstance(value, str) else value)


# --- YAML --------------------------------------------------------------------------------------


class _Refused(yaml.MarkedYAMLError):
    """Valid YAML that is refused: a key given twice, nested too deeply, or an absurdly long
    number."""


class _Loader(yaml.SafeLoader):
    """``yaml.SafeLoader`` with bounds on nesting (the composer recurses) and integer length,
    and no key given twice in a mapping (YAML forbids it; PyYAML would keep the last one,
    silently dropping the first: a second ``token:`` or ``http:`` section)."""

    depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        if self.depth >= MAX_DEPTH:
            mark = self.peek_event().start_mark
            raise _Refused(problem=f"nested deeper than {MAX_DEPTH} levels", problem_mark=mark)
        self.depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        if len(node.value) > MAX_NUMBER_CHARS:
            raise _Refused(
                problem=f"a number of {len(node.value)} characters (at most {MAX_NUMBER_CHARS})",
                problem_mark=node.start_mark,
            )
        return super().construct_yaml_int(node)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # ``<<: *defaults``: later keys override merged ones, as intended
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:  # an unhashable key: the base class says so
                break
            if duplicate:
                raise _Refused(
                    problem=f"key {_brief(key)} given twice in the same section",
                    problem_mark=key_node.start_mark,
                )
        return super().construct_mapping(node, deep)


_Loader.add_constructor("tag:yaml.org,2002:int", _Loader.construct_yaml_int)


def _parse_yaml(text: str) -> Any:
    loader = _Loader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def _yaml_problem(where: str, exc: yaml.YAMLError, text: str) -> str:
    """One line: where, line and column, what is wrong; no snippet, no secret."""
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark, context = exc.problem_mark, exc.context_mark
        what = exc.problem or "syntax error"
        if exc.context:
            at = f" at line {context.line + 1}, column {context.column + 1}" if context else ""
            what += f" ({exc.context}{at})"
        lines = text.splitlines()[(context or mark).line : mark.line + 1]
        refused = isinstance(exc, _Refused)  # our words: a key's name, a number's length
        if not refused and any(is_secret_key(line) or "@" in line for line in lines):
            what = _QUOTED.sub(f"'{MASK}'", what)
        what = " ".join(what.split())
        if not refused:
            what = f"not valid YAML: {what}"
        return f"{where}, line {mark.line + 1}, column {mark.column + 1}: {what}"
    if isinstance(exc, yaml.reader.ReaderError):
        line = text[: exc.position].count("\n") + 1
        code = exc.character if isinstance(exc.character, int) else ord(exc.character)
        return f"{where}, line {line}: not valid YAML: {exc.reason} (character #x{code:04x})"
    return f"{where}: not valid YAML"


def _read_file(file: Path) -> dict[str, Any]:
    try:
        with file.open("rb") as fh:
            raw = fh.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {file}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {file}: {exc.strerror}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise ConfigError(
            f"{file}: larger than {MAX_FILE_BYTES >> 10} KiB, too large for a config file"
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{file}: not UTF-8 text (byte {exc.start})") from None
    try:
        loaded = _parse_yaml(text)
    except yaml.YAMLError as exc:
        raise ConfigError(_yaml_problem(str(file), exc, text)) from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{file}: the top level must be a mapping of sections (models:, ...)")
    return loaded


# --- validation errors -------------------------------------------------------------------------


def _dataclass_in(hint: Any) -> Any:
    """The config dataclass a field annotation refers to (also inside ``X | None``, ``list[X]``)."""
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return hint
    return next((c for c in map(_dataclass_in, get_args(hint)) if c is not None), None)


def _keys(cls: Any) -> list[str]:
    return [f.name for f in dataclasses.fields(cls) if f.name != "source_file"]


def _section_at(loc: tuple[int | str, ...]) -> Any:
    """The dataclass of the section at ``loc`` (list indices skipped), or None."""
    cls: Any = Config
    for part in loc:
        if isinstance(part, str):
            cls = _dataclass_in(get_type_hints(cls).get(part))
            if cls is None:
                return None
    return cls


#: keys an earlier release had, and what replaced them (a config written for it says so)
RENAMED = {
    "max_snapshots": "'attempts' (frames checked per Frigate object)",
    "sharing": "nothing: each model has its own inference thread (runtime.threads)",
}


def _describe(err: Any) -> str:
    loc = tuple(err["loc"])
    key = ".".join(map(str, loc))
    if err["type"] in ("extra_forbidden", "unexpected_keyword_argument"):
        section = _section_at(loc[:-1])
        allowed = _keys(section) if section is not None else []
        guess = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        hint = f"did you mean '{guess[0]}'? " if guess else ""
        if str(loc[-1]) in RENAMED:
            hint = f"replaced by {RENAMED[str(loc[-1])]} in this release; "
        return f"unknown key '{key}' ({hint}allowed here: {', '.join(allowed)})"
    if err["type"] in ("missing", "missing_argument"):
        return f"missing key '{key}' (required)"
    value = err.get("input")
    if any(is_secret_key(str(part)) for part in loc):
        shown = " (value not shown: a secret)"
    else:
        shown = "" if isinstance(value, dict) else f" (got {_brief(value)})"
    return f"bad value for '{key}'{shown}: {err['msg']}"


def _problems(exc: ValidationError, file: Path | None, overridden: list[str]) -> list[str]:
    """One line per problem, each naming where it comes from: the file or the --set key."""
    default = str(file) if file is not None else "built-in defaults"
    errors = exc.errors()
    lines = []
    for err in errors[:MAX_PROBLEMS]:
        key = ".".join(map(str, err["loc"]))
        where = next(  # the --set at the key, below it (a misspelt section) or above it
            (
                f"--set {k}"
                for k in overridden
                if key == k or key.startswith(k + ".") or k.startswith(key + ".")
            ),
            default,
        )
        lines.append(f"{where}: {_describe(err)}")
    if len(errors) > MAX_PROBLEMS:
        lines.append(f"{default}: {len(errors) - MAX_PROBLEMS} more problem(s) not shown")
    return lines


# --- loading -----------------------------------------------------------------------------------


def _set_key(data: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    if len(parts) > MAX_DEPTH:
        raise ConfigError(f"--set {key[:60]}...: more than {MAX_DEPTH} levels of keys")
    node = data
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"--set {key}: '{part}' is not a section")
        node = child
    node[parts[-1]] = value


def parse_override(item: str) -> tuple[str, Any]:
    """Split ``key=value`` and parse the value as a YAML scalar (refusing absurd values)."""
    if "=" not in item:
        shown = "" if is_secret_key(item) else f" {item[:60]!r}"
        raise ConfigError(f"--set{shown}: expected key=value, e.g. detector.interval=5")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError("--set: empty key in key=value")
    try:
        value = _parse_yaml(raw) if raw.strip() else ""
    except _Refused as exc:
        raise ConfigError(_yaml_problem(f"--set {key}", exc, raw)) from None
    except yaml.YAMLError:
        value = raw
    return key, value


def as_config(config: Config | str | os.PathLike[str] | None) -> Config:
    """A Config as it is, a YAML file loaded, None the built-in defaults (ConfigError on a bad
    file; TypeError on anything else)."""
    if config is None:
        return load_config()
    if isinstance(config, Config):
        return config
    if isinstance(config, (str, os.PathLike)):
        return load_config(Path(config))
    raise TypeError(
        f"config must be a streamrec Config or the path of a YAML config file, "
        f"not {type(config).__name__}"
    )


def load_config(
    path: str | Path | None = None,
    overrides: dict[str, Any] | list[str] | None = None,
) -> Config:
    """Load a YAML config (the built-in defaults when ``path`` is None) plus overrides.

    ``overrides`` is a mapping of dotted keys to values, or a list of ``key=value`` strings.
    Raises ConfigError listing every problem, one per line.
    """
    file = Path(path) if path is not None else None
    data = _read_file(file) if file is not None else {}
    items = (
        list(overrides.items())
        if isinstance(overrides, dict)
        else [parse_override(item) for item in overrides or []]
    )
    for key, value in items:
        _set_key(data, key, value)
    try:
        cfg = _ADAPTER.validate_python(data)
    except ValidationError as exc:
        raise ConfigError("\n".join(_problems(exc, file, [k for k, _ in items]))) from None
    cfg.source_file = str(file) if file is not None else None
    register_config(cfg)  # its secrets are masked in every log line and message from now on
    return cfg


def config_to_dict(cfg: Config) -> dict[str, Any]:
    """Plain-data view of a config (for printing and for shipping to workers)."""
    out = dataclasses.asdict(cfg)
    out.pop("source_file", None)
    return out


def show_config(cfg: Config) -> str:
    """The effective config as YAML with every secret masked (``streamrec config show``)."""
    return yaml.safe_dump(_masked(config_to_dict(cfg)), sort_keys=False, allow_unicode=True)


# --- shipped configs ---------------------------------------------------------------------------


def examples() -> dict[str, Path]:
    """The shipped configs by name: ``default`` (every key) and ``example-NAME.yaml`` as NAME."""
    return {f.stem.removeprefix("example-"): f for f in sorted(CONFIG_DIR.glob("*.yaml"))}


def example_summary(path: Path) -> str:
    """The first line of a shipped config's header comment."""
    first = path.read_text(encoding="utf-8").split("\n", 1)[0]
    return first.removeprefix("#").strip()


_HEADER = """\
# streamrec: every configuration key with its default value.
# A config file needs only the keys it changes; `--set section.key=value` overrides one key and
# `streamrec config show` prints the effective configuration.
# Generated from the schema in streamrec/config.py, do not edit; after changing the schema run:
#   python -c 'import streamrec.config as c; print(c.default_yaml(), end="")' > configs/default.yaml
"""


def _field_docs() -> dict[tuple[str, str], str]:
    """The ``#:`` comments above the schema's fields, by (class name, field name)."""
    source = Path(__file__).read_text(encoding="utf-8")
    lines = source.splitlines()
    docs = {}
    for cls in ast.parse(source).body:
        if not isinstance(cls, ast.ClassDef):
            continue
        for stmt in cls.body:
            if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
                above = stmt.lineno - 2
                comment: list[str] = []
                while above >= 0 and lines[above].strip().startswith("#:"):
                    comment.insert(0, lines[above].strip()[2:].strip())
                    above -= 1
                if comment:
                    docs[cls.name, stmt.target.id] = " ".join(comment).replace("``", "`")
    return docs


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _allowed(cls: Any, name: str) -> str:
    """What a field accepts, from its type and bounds: ``rgb | bgr``, ``1..1000``."""
    hint = get_type_hints(cls)[name]
    literal = next((get_args(h) for h in (hint, *get_args(hint)) if get_origin(h) is Literal), None)
    if literal:
        return " | ".join(_scalar(v) for v in literal)
    bounds: dict[str, Any] = {}
    for meta in cls.__pydantic_fields__[name].metadata:
        for attr in ("ge", "gt", "le", "lt", "multiple_of", "max_length"):
            if getattr(meta, attr, None) is not None:
                bounds[attr] = getattr(meta, attr)
    parts = []
    if "ge" in bounds and "le" in bounds:
        parts.append(f"{_number(bounds['ge'])}..{_number(bounds['le'])}")
    else:
        for attr, sign in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            if attr in bounds:
                parts.append(f"{sign} {_number(bounds[attr])}")
    if "multiple_of" in bounds:
        parts.append(f"a multiple of {bounds['multiple_of']}")
    if "max_length" in bounds:
        parts.append(f"at most {bounds['max_length']} items")
    return ", ".join(parts)


def _scalar(value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, width=1 << 20).strip()
    return text.removesuffix("\n...").strip()


def _emit(obj: Any, indent: int, docs: dict[tuple[str, str], str], out: list[str]) -> None:
    cls = type(obj)
    hints = get_type_hints(cls)
    pad = " " * indent
    for name in _keys(cls):
        value = getattr(obj, name)
        text = docs.get((cls.__name__, name), "")
        inner = _dataclass_in(hints[name])
        if inner is not None and not dataclasses.is_dataclass(value):
            required = {n for n, f in inner.__pydantic_fields__.items() if f.is_required()}
            keys = ", ".join(f"{k} (required)" if k in required else k for k in _keys(inner))
            text += f"; keys: {keys}"
        if indent == 0:
            out.append("")
        out += textwrap.wrap(text, 100, initial_indent=f"{pad}# ", subsequent_indent=f"{pad}#   ")
        if dataclasses.is_dataclass(value):
            out.append(f"{pad}{name}:")
            _emit(value, indent + 2, docs, out)
        else:
            allowed = _allowed(cls, name)
            out.append(f"{pad}{name}: {_scalar(value)}" + (f"  # {allowed}" if allowed else ""))


def default_yaml() -> str:
    """``configs/default.yaml``: every key with its default, documented, made from the schema."""
    out = [_HEADER.rstrip("\n")]
    _emit(Config(), 0, _field_docs(), out)
    return "\n".join(out) + "\n"
