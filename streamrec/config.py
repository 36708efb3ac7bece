"""Configuration: YAML files loaded into typed, validated dataclasses.

Unknown keys and wrong types are rejected; the error names the file, the key and what is
allowed. ``--set key=value`` overrides are parsed as YAML scalars (``5`` is an int, ``null``
is None).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import ConfigDict, Field, TypeAdapter, ValidationError
from pydantic.dataclasses import dataclass

from .errors import ConfigError

_STRICT = ConfigDict(extra="forbid")

#: ``configs/`` of the source checkout (present for editable installs and in the repo).
CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
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
    threshold: float = Field(default=0.5, ge=0.0, le=1.0)
    nms_threshold: float = Field(default=0.4, ge=0.0, le=1.0)
    #: keep at most this many faces per image (largest first); 0 = no limit
    max_faces: int = Field(default=0, ge=0)
    #: run the detector every N frames in video; the tracker carries faces in between
    interval: int = Field(default=5, ge=1)


@dataclass(config=_STRICT)
class EmbedderConfig:
    #: channel order the recognizer expects
    color: Literal["rgb", "bgr"] = "rgb"
    mean: float = 127.5
    std: float = Field(default=127.5, gt=0.0)


@dataclass(config=_STRICT)
class RecognitionConfig:
    #: cosine similarity needed to name a face; null = the calibrated default of the recognizer
    threshold: float | None = Field(default=None, ge=-1.0, le=1.0)
    #: most aligned crops per embedder call
    batch_size: int = Field(default=16, ge=1, le=256)
    #: frames between embeddings of a track until its identity is confident
    refresh_interval: int = Field(default=10, ge=1)
    #: embeddings a track needs before it is given a name
    min_embeddings: int = Field(default=2, ge=1)
    #: embeddings of a track after which its identity is considered settled
    confident_after: int = Field(default=3, ge=1)
    #: galleries with at least this many templates are searched with an approximate faiss
    #: index (the ``index`` extra); null = always exact
    index_min_size: int | None = Field(default=None, ge=1)
    #: minimum face height in pixels to be embedded
    min_face_size: int = Field(default=20, ge=0)
    #: faces whose quality (size x pose x detector score, 0..1) is below this are not embedded
    min_quality: float = Field(default=0.05, ge=0.0, le=1.0)
    #: a confidently named track is re-checked when a face this many times better than the
    #: best one embedded so far arrives (0 = never)
    recheck_gain: float = Field(default=1.5, ge=0.0)
    #: a track that is still unknown after confident_after embeddings is re-checked (on a
    #: better face) at most this many frames apart
    unknown_refresh_interval: int = Field(default=15, ge=1)


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
    #: keep unknown people in the gallery file across runs (as unconfirmed people)
    persist: bool = False
    #: folder for the best crops of unknown people (null = no crops)
    crops_dir: str | None = None
    #: best crops kept per unknown person
    max_crops: int = Field(default=5, ge=1, le=100)
    #: crops and unconfirmed people older than this many days are purged (0 = keep forever)
    retention_days: float = Field(default=30.0, ge=0.0)


@dataclass(config=_STRICT)
class ClusterConfig:
    #: Ray cluster address: "auto", "ray://host:port", "host:port"; null = single process
    address: str | None = None
    #: CPUs requested by each camera actor
    cpus_per_camera: float = Field(default=1.0, gt=0.0)
    #: how often Ray restarts a camera actor that died (-1 = forever)
    max_restarts: int = Field(default=-1, ge=-1)
    #: Ray namespace of the actors
    namespace: str = "streamrec"
    #: seconds between checks of the shared gallery's revision
    gallery_poll: float = Field(default=2.0, gt=0.0)


@dataclass(config=_STRICT)
class TrackerConfig:
    iou_threshold: float = Field(default=0.3, gt=0.0, le=1.0)
    #: detection rounds a track may miss before it ends
    max_missed: int = Field(default=2, ge=0)
    #: mean grey-level change between frames that counts as a scene cut (ends all tracks; 0 = off)
    scene_cut: float = Field(default=24.0, ge=0.0)


@dataclass(config=_STRICT)
class RuntimeConfig:
    provider: Literal["openvino", "cpu"] = "openvino"
    #: OpenVINO device: CPU, GPU, NPU, AUTO, or e.g. AUTO:GPU,CPU
    device: str = "CPU"
    #: OpenVINO inference precision: auto = BF16 (CPU) / FP16 (GPU) where the device has it
    #: and a one-time check finds it faster and as accurate as FP32, else FP32
    precision: Literal["auto", "FP32", "BF16", "FP16", "ACCURACY"] = "auto"
    performance_hint: Literal["LATENCY", "THROUGHPUT"] = "LATENCY"
    #: compiled-model cache (speeds up start-up); null disables it
    cache_dir: str | None = "~/.cache/streamrec/ov_cache"
    #: inference threads per model; 0 = half the cores (detector and recognizer run concurrently)
    threads: int = Field(default=0, ge=0)


@dataclass(config=_STRICT)
class PipelineConfig:
    #: bound of the queues between pipeline stages (frames); files block, live sources drop
    queue_size: int = Field(default=8, ge=1)
    #: decoder threads; 0 = derived from the cores
    decoder_threads: int = Field(default=0, ge=0)


@dataclass(config=_STRICT)
class LiveConfig:
    rtsp_transport: Literal["tcp", "udp"] = "tcp"
    open_timeout: float = Field(default=10.0, gt=0)
    #: no frame for this long on a live source = stall, the stream is reopened
    stall_timeout: float = Field(default=5.0, gt=0)
    reconnect_initial: float = Field(default=0.5, gt=0)
    reconnect_max: float = Field(default=30.0, gt=0)


@dataclass(config=_STRICT)
class CameraConfig:
    name: str
    source: str
    enabled: bool = True
    #: per-camera detection interval (overrides detector.interval)
    interval: int | None = Field(default=None, ge=1)
    #: polygons (lists of [x, y] pixel points) whose faces are ignored
    ignore_zones: list[list[list[float]]] = dataclasses.field(default_factory=list)
    rtsp_transport: Literal["tcp", "udp"] | None = None


@dataclass(config=_STRICT)
class MqttConfig:
    host: str
    port: int = Field(default=1883, ge=1, le=65535)
    username: str | None = None
    password: str | None = None
    topic_prefix: str = "streamrec"
    qos: int = Field(default=1, ge=0, le=2)
    ha_discovery: bool = False
    tls: bool = False


@dataclass(config=_STRICT)
class WebhookConfig:
    url: str
    headers: dict[str, str] = dataclasses.field(default_factory=dict)
    timeout: float = Field(default=5.0, gt=0)
    retries: int = Field(default=5, ge=0)


@dataclass(config=_STRICT)
class EventsConfig:
    #: JSONL file the events are appended to (null = none)
    jsonl: str | None = None
    mqtt: MqttConfig | None = None
    webhook: WebhookConfig | None = None


@dataclass(config=_STRICT)
class HttpConfig:
    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    #: bearer token; required when host is not a loopback address
    token: str | None = None


@dataclass(config=_STRICT)
class Config:
    models: ModelsConfig = dataclasses.field(default_factory=ModelsConfig)
    detector: DetectorConfig = dataclasses.field(default_factory=DetectorConfig)
    embedder: EmbedderConfig = dataclasses.field(default_factory=EmbedderConfig)
    recognition: RecognitionConfig = dataclasses.field(default_factory=RecognitionConfig)
    enrollment: EnrollmentConfig = dataclasses.field(default_factory=EnrollmentConfig)
    unknowns: UnknownsConfig = dataclasses.field(default_factory=UnknownsConfig)
    tracker: TrackerConfig = dataclasses.field(default_factory=TrackerConfig)
    runtime: RuntimeConfig = dataclasses.field(default_factory=RuntimeConfig)
    pipeline: PipelineConfig = dataclasses.field(default_factory=PipelineConfig)
    live: LiveConfig = dataclasses.field(default_factory=LiveConfig)
    #: gallery file (SQLite)
    gallery: str | None = None
    cameras: list[CameraConfig] = dataclasses.field(default_factory=list)
    events: EventsConfig = dataclasses.field(default_factory=EventsConfig)
    http: HttpConfig = dataclasses.field(default_factory=HttpConfig)
    cluster: ClusterConfig = dataclasses.field(default_factory=ClusterConfig)
    #: file the config was loaded from (set by load_config, not a YAML key)
    source_file: str | None = Field(default=None, exclude=True)


_ADAPTER = TypeAdapter(Config)


def _format_error(where: str, err: dict[str, Any]) -> str:
    key = ".".join(str(p) for p in err["loc"])
    if err["type"] in ("extra_forbidden", "unexpected_keyword_argument"):
        parent: Any = Config
        for part in err["loc"][:-1]:
            if isinstance(part, int):
                continue
            fields = {f.name: f for f in dataclasses.fields(parent)}
            parent = _dataclass_of(fields[str(part)].type) if str(part) in fields else None
            if parent is None:
                break
        allowed = (
            ", ".join(f.name for f in dataclasses.fields(parent) if f.name != "source_file")
            if parent is not None
            else "?"
        )
        return f"{where}: unknown key '{key}' (allowed here: {allowed})"
    value = err.get("input")
    shown = "" if isinstance(value, dict) else f" (got {value!r})"
    return f"{where}: bad value for '{key}'{shown}: {err['msg']}"


def _dataclass_of(annotation: Any) -> Any:
    """The config dataclass a (possibly optional / list) field annotation refers to."""
    if isinstance(annotation, str):
        return next(
            (
                cls
                for name, cls in globals().items()
                if name.endswith("Config") and name in annotation and isinstance(cls, type)
            ),
            None,
        )
    return annotation if dataclasses.is_dataclass(annotation) else None


def _set_key(data: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
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
    """Split ``key=value`` and parse the value as a YAML scalar."""
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected key=value, e.g. detector.interval=5")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"--set {item!r}: empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key, value


def load_config(
    path: str | Path | None = None,
    overrides: dict[str, Any] | list[str] | None = None,
) -> Config:
    """Load a YAML config (``configs/default.yaml`` when ``path`` is None) plus overrides.

    ``overrides`` is a mapping of dotted keys to values, or a list of ``key=value`` strings.
    """
    data: dict[str, Any] = {}
    file = (
        Path(path) if path is not None else (DEFAULT_CONFIG if DEFAULT_CONFIG.is_file() else None)
    )
    where = str(file) if file is not None else "built-in defaults"
    if file is not None:
        try:
            loaded = yaml.safe_load(file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {file}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read config file {file}: {exc}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"{file}: not valid YAML: {exc}".replace("\n", " ")) from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{file}: the top level must be a mapping of sections")
        data = loaded
    items = (
        overrides.items() if isinstance(overrides, dict) else map(parse_override, overrides or [])
    )
    for key, value in items:
        _set_key(data, key, value)
    if overrides:
        where += " with --set overrides"
    try:
        cfg = _ADAPTER.validate_python(data)
    except ValidationError as exc:
        raise ConfigError(_format_error(where, dict(exc.errors()[0]))) from None
    cfg.source_file = str(file) if file is not None else None
    return cfg


def config_to_dict(cfg: Config) -> dict[str, Any]:
    """Plain-data view of a config (for printing and for shipping to workers)."""
    out = dataclasses.asdict(cfg)
    out.pop("source_file", None)
    return out
