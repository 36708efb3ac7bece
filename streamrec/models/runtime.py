"""ONNX Runtime sessions: which execution provider and precision each model runs with, and why.

The OpenVINO execution provider is used where it is installed (``onnxruntime-openvino`` on
x86-64 Linux and Windows); elsewhere plain ``onnxruntime`` brings only the CPU provider. Nothing
falls back silently: every model's provider, device and precision are logged once with the
reason and kept in :func:`loaded_models` (for ``/health`` and ``streamrec models list``).

Precision: ``runtime.precision: auto`` asks the OpenVINO device what it can do
(``OPTIMIZATION_CAPABILITIES`` through OpenVINO's C API, which onnxruntime-openvino ships) and
tries the faster type it offers — BF16 on a CPU with AVX512_BF16/AMX, FP16 on a GPU. The
candidate is kept only if a one-time check passes: on a fixed input its outputs match FP32
(cosine >= :data:`MIN_COSINE`) and it is at least :data:`MIN_SPEEDUP` times faster. The verdict
is cached per model sha256, device and onnxruntime version in ``precision.json`` beside the
OpenVINO model cache. The precision goes to OpenVINO as ``INFERENCE_PRECISION_HINT`` through
the provider's ``load_config``, since the provider's own ``precision`` option refuses BF16 on CPU
(and onnxruntime then drops to the CPU provider without a word).

The compiled-model cache is shared by every process of the machine (see :func:`_staged_cache`)
and used only where OpenVINO can read it back (see :func:`cache_readable`).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import json
import logging
import os
import platform
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import onnxruntime as ort

from ..config import RuntimeConfig
from ..errors import ModelError
from ..files import private_dir, write_private
from .registry import cache_dir

log = logging.getLogger("streamrec.runtime")

OPENVINO = "OpenVINOExecutionProvider"
CPU = "CPUExecutionProvider"
#: a faster precision is kept only when its outputs stay this close to FP32 (cosine)
MIN_COSINE = 0.995
#: ... and it takes at most this fraction of FP32's time
MIN_SPEEDUP = 1.1
#: OpenVINO's names of the precisions the config offers
_HINTS = {"FP32": "f32", "BF16": "bf16", "FP16": "f16"}
#: private folders of loads in progress inside the compiled-model cache
_STAGE_PREFIX = ".load-"
#: a load's folder older than this was left by a process that died: removed
_STALE_STAGE_S = 3600.0

_lock = threading.Lock()
_loaded: dict[str, RuntimeInfo] = {}
_logged: set[tuple[str, ...]] = set()


@dataclass(frozen=True)
class RuntimeInfo:
    """How one model runs: the provider that really runs it, device, precision and why."""

    model: str
    provider: str
    device: str | None
    precision: str
    #: the model's weights and activations are INT8 (a QDQ model made by ``models optimize``)
    quantized: bool
    reason: str

    def describe(self) -> str:
        where = f"{self.provider} on {self.device}" if self.device else self.provider
        prec = f"INT8 (QDQ) + {self.precision}" if self.quantized else self.precision
        return f"{self.model}: {where}, {prec} ({self.reason})"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def loaded_models() -> list[RuntimeInfo]:
    """Every model loaded by this process (the last session per file), for status pages."""
    with _lock:
        return list(_loaded.values())


def cores() -> int:
    """CPU cores this process may run on."""
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)


def default_threads() -> int:
    """Half the cores: the decoder threads' default."""
    return max(1, cores() // 2)


def model_threads(cfg: RuntimeConfig) -> int:
    """Inference threads of one model: ``runtime.threads``, or one on up to 4 cores and a quarter
    of the cores above.

    Measured on 2 cores (README: Performance): a second inference thread costs 40-50 % more CPU
    per call for a small wall-clock gain, and OpenVINO's extra threads spin for about a
    millisecond after every call, which no OpenVINO option stops; a single thread does not. The
    detector and the recognizer run at the same time in their own stages.
    """
    if cfg.threads:
        return cfg.threads
    n = cores()
    return 1 if n <= 4 else n // 4


def use_opencv_threads(cfg: RuntimeConfig) -> None:
    """OpenCV's thread count for the whole process: ``runtime.opencv_threads``.

    The pipeline's calls are small (a face's optical flow, a thumbnail, a resize): OpenCV's pool
    wakes for each and its threads spin-wait after it. Measured on a 2-core Xeon, one live 720p
    camera with people: the pool's threads took 1.6-2.5 % of a core (0.6-1 ms a frame of 11-14),
    with none the stage threads took no more. The cameras' parallelism comes from the stages'
    threads and the decoder's.
    """
    cv2.setNumThreads(cfg.opencv_threads or -1)  # OpenCV: 0 = none, -1 = its default


class Session:
    """An ONNX Runtime session that runs one inference at a time.

    Each model has its own turn (the detector and the recognizer run at the same time, each
    with :func:`model_threads` threads): callers from several threads (stages, the HTTP API)
    queue for it instead of running it twice at once and oversubscribing the cores.
    """

    def __init__(self, session: ort.InferenceSession) -> None:
        self.inner = session
        self._turn = threading.Lock()

    def run(self, outputs: list[str] | None, feed: dict[str, Any]) -> list[Any]:
        with self._turn:
            return list(self.inner.run(outputs, feed))

    def get_inputs(self) -> list[Any]:
        return list(self.inner.get_inputs())

    def get_outputs(self) -> list[Any]:
        return list(self.inner.get_outputs())

    def get_providers(self) -> list[str]:
        return list(self.inner.get_providers())


def openvino_available() -> bool:
    return OPENVINO in ort.get_available_providers()


def openvino_expected() -> bool:
    """Platforms where streamrec installs onnxruntime-openvino (see pyproject's markers)."""
    machine = platform.machine().lower()
    return platform.system() in ("Linux", "Windows") and machine in ("x86_64", "amd64")


# ------------------------------------------------------------------------ device capabilities


def _ort_libs() -> Path:
    """onnxruntime's folder of native libraries, where onnxruntime-openvino bundles OpenVINO."""
    return Path(ort.__file__).parent / "capi"


@functools.cache
def _openvino_c() -> ctypes.CDLL | None:
    """OpenVINO's C library as shipped inside onnxruntime-openvino (None where absent)."""
    capi = _ort_libs()
    for pattern in ("libopenvino_c.so*", "openvino_c.dll", "libopenvino_c*.dylib"):
        for candidate in sorted(capi.glob(pattern)):
            try:
                lib = ctypes.CDLL(str(candidate))
            except OSError:
                continue
            lib.ov_core_create.argtypes = [ctypes.POINTER(ctypes.c_void_p)]
            lib.ov_core_get_property.argtypes = [
                ctypes.c_void_p,
                ctypes.c_char_p,
                ctypes.c_char_p,
                ctypes.POINTER(ctypes.c_void_p),
            ]
            lib.ov_core_free.argtypes = [ctypes.c_void_p]
            lib.ov_free.argtypes = [ctypes.c_void_p]
            return lib
    return None


@dataclass(frozen=True)
class Device:
    name: str
    full_name: str
    #: OpenVINO's OPTIMIZATION_CAPABILITIES, e.g. FP32 BF16 FP16 INT8 (empty when unknown)
    capabilities: frozenset[str]

    def supports(self, precision: str) -> bool:
        return precision in ("FP32", "ACCURACY") or precision in self.capabilities


@functools.cache
def device_info(device: str) -> Device | None:
    """What an OpenVINO device is and can do; None when OpenVINO cannot be asked."""
    lib = _openvino_c()
    if lib is None:
        return None
    core = ctypes.c_void_p()
    if lib.ov_core_create(ctypes.byref(core)) != 0:
        return None

    def prop(key: str) -> str | None:
        out = ctypes.c_void_p()
        if lib.ov_core_get_property(core, device.encode(), key.encode(), ctypes.byref(out)):
            return None
        value = ctypes.string_at(out.value).decode(errors="replace") if out.value else ""
        lib.ov_free(out)
        return value

    try:
        caps = prop("OPTIMIZATION_CAPABILITIES")
        name = prop("FULL_DEVICE_NAME")
    finally:
        lib.ov_core_free(core)
    if caps is None:
        return None
    return Device(device, name or device, frozenset(caps.split()))


# ------------------------------------------------------------------------------- precision


@dataclass(frozen=True)
class PrecisionChoice:
    precision: str
    reason: str


def compiled_cache(cfg: RuntimeConfig) -> Path | None:
    """The OpenVINO compiled-model cache folder (``runtime.cache_dir``; None: no cache)."""
    if not cfg.cache_dir:
        return None
    if cfg.cache_dir == "auto":
        return cache_dir().parent / "ov_cache"
    return Path(cfg.cache_dir).expanduser()


def cache_readable(capi: Path | None = None) -> tuple[bool, str]:
    """Whether OpenVINO can read back the compiled models it caches, and why not.

    OpenVINO reads a cache entry (and an EPContext model) with its IR frontend. The
    onnxruntime-openvino wheels (1.24.1, OpenVINO 2025.4.1) bundle OpenVINO with its ONNX
    frontend only: every entry fails to read ("[ CORE ] Unable to read the model"), OpenVINO
    compiles the model again and rewrites the entry, ~25 ms a model more than no cache at all
    (measured on a 2-core Xeon). The ``openvino`` wheel's IR frontend cannot stand in: it is
    built for the other C++ ABI. Where OpenVINO is not bundled in ``capi`` (onnxruntime's own
    folder) its frontends cannot be seen from here: the cache is used.
    """
    capi = capi if capi is not None else _ort_libs()
    bundled = [*capi.glob("libopenvino.so*"), *capi.glob("openvino.dll")]
    if not bundled or [*capi.glob("*openvino_ir_frontend*")]:
        return True, ""
    return False, (
        f"onnxruntime-openvino {ort.__version__} ships OpenVINO without its IR frontend, so "
        "OpenVINO cannot read back the models it caches (every load compiles)"
    )


def _precision_cache(cfg: RuntimeConfig) -> Path:
    return (compiled_cache(cfg) or cache_dir().parent) / "precision.json"


_verdicts_lock = threading.Lock()


def _verdicts(cache: Path) -> dict[str, Any]:
    try:
        verdicts = json.loads(cache.read_text())
    except (OSError, ValueError):
        return {}
    return verdicts if isinstance(verdicts, dict) else {}


def precision_candidate(device: str) -> tuple[str | None, str]:
    """The faster precision worth trying on ``device``, or None with the reason."""
    if device.split(".")[0] not in ("CPU", "GPU"):
        return None, f"auto checks single CPU/GPU devices only, {device} runs FP32"
    info = device_info(device)
    if info is None:
        return None, f"capabilities of {device} unknown"
    want = "BF16" if device.startswith("CPU") else "FP16"
    caps = " ".join(sorted(info.capabilities))
    if want not in info.capabilities:
        return None, f"{info.full_name} has no {want} (capabilities: {caps})"
    return want, f"{info.full_name} offers {want}"


def choose_precision(
    path: str | Path, cfg: RuntimeConfig, sha256: str, measure: bool = True
) -> PrecisionChoice:
    """The precision ``runtime.precision: auto`` gives a model on the configured device.

    With ``measure=False`` an unmeasured candidate is reported as such instead of checked.
    """
    candidate, why = precision_candidate(cfg.device)
    if candidate is None:
        return PrecisionChoice("FP32", why)
    key = f"{sha256}|{cfg.device}|{ort.__version__}|{candidate}"
    cache = _precision_cache(cfg)
    verdict = _verdicts(cache).get(key)
    if verdict is None:
        if not measure:
            return PrecisionChoice("FP32", f"{why}; not checked yet (checked on first load)")
        log.info(
            "checking %s against FP32 for %s on %s (once)", candidate, Path(path).name, cfg.device
        )
        verdict = check_precision(path, cfg, candidate)
        # two loads checked at the same time (threads, processes): each adds its verdict to the
        # file as it is then, or the last one to finish would drop the other's
        with _verdicts_lock:
            verdicts = _verdicts(cache)
            verdicts[key] = verdict
            try:
                write_private(cache, json.dumps(verdicts, indent=1))  # atomic, per-process temp
            except OSError as exc:
                log.warning("cannot cache the precision check in %s: %s", cache, exc)
    if "error" in verdict:
        failed = f"OpenVINO failed at {candidate}: {verdict['error']}"
        return PrecisionChoice("FP32", f"{why}, but {failed}")
    measured = (
        f"{candidate} {verdict['candidate_ms']:.1f} ms vs FP32 {verdict['fp32_ms']:.1f} ms, "
        f"cosine {verdict['min_cosine']:.4f}"
    )
    if verdict["accepted"]:
        return PrecisionChoice(candidate, f"{why}: {measured}")
    return PrecisionChoice("FP32", f"{why}, but not kept: {measured}")


def _fixed_input(session: ort.InferenceSession) -> dict[str, np.ndarray]:
    """A seeded input for every model input (free dims: batch 8, spatial 640 or 112)."""
    rng = np.random.default_rng(0)
    feeds = {}
    for inp in session.get_inputs():
        dims = [d if isinstance(d, int) and d > 0 else None for d in inp.shape]
        if dims and dims[0] is None:
            dims[0] = 8 if all(isinstance(d, int) for d in dims[1:]) else 1
        shape = [d if d is not None else 640 for d in dims]
        feeds[inp.name] = rng.uniform(-1.0, 1.0, shape).astype(np.float32)
    return feeds


def _timed(session: ort.InferenceSession, feeds: dict[str, np.ndarray], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        session.run(None, feeds)
        times.append(time.perf_counter() - start)
    return float(np.median(times)) * 1000.0


def check_precision(path: str | Path, cfg: RuntimeConfig, candidate: str) -> dict[str, Any]:
    """Compare ``candidate`` with FP32 on a fixed input: output cosine and median time. A
    candidate OpenVINO cannot build or run for this model (BF16 of an INT8 model on an AMX CPU:
    "Check '!implementations.empty()' failed") is refused with its error."""
    ref, _ = _openvino_session(path, cfg, "FP32")
    feeds = _fixed_input(ref)
    a = ref.run(None, feeds)
    try:
        other, _ = _openvino_session(path, cfg, candidate)
        b = other.run(None, feeds)
    except Exception as exc:  # onnxruntime raises its own exception types
        error = _last_line(exc)
        checked = time.strftime("%Y-%m-%dT%H:%M:%S")
        return {"candidate": candidate, "accepted": False, "error": error, "checked": checked}
    cosines: list[float] = []
    for x, y in zip(a, b, strict=True):
        x = np.asarray(x, np.float64).reshape(x.shape[0] if x.ndim > 1 else 1, -1)
        y = np.asarray(y, np.float64).reshape(x.shape)
        den = np.linalg.norm(x, axis=1) * np.linalg.norm(y, axis=1)
        cosines.extend(np.where(den > 0, (x * y).sum(axis=1) / np.maximum(den, 1e-30), 1.0))
    fp32_ms = min(_timed(ref, feeds, 5), _timed(ref, feeds, 5))
    candidate_ms = min(_timed(other, feeds, 5), _timed(other, feeds, 5))
    min_cos = float(min(cosines))
    return {
        "candidate": candidate,
        "fp32_ms": fp32_ms,
        "candidate_ms": candidate_ms,
        "min_cosine": min_cos,
        "accepted": min_cos >= MIN_COSINE and candidate_ms * MIN_SPEEDUP <= fp32_ms,
        "checked": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


# -------------------------------------------------------------------------------- sessions


def _session_options(cfg: RuntimeConfig) -> ort.SessionOptions:
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.intra_op_num_threads = model_threads(cfg)
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # idle ONNX Runtime threads sleep instead of spinning (measured on the CPU provider: a
    # spinning second thread burns ~75 % of a core between calls)
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return so


def _openvino_session(
    path: str | Path, cfg: RuntimeConfig, precision: str, cache: bool = True
) -> tuple[ort.InferenceSession, str]:
    """An OpenVINO EP session at ``precision``; returns it and the provider really used."""
    threads = model_threads(cfg)
    device_config: dict[str, str] = {"PERFORMANCE_HINT": cfg.performance_hint}
    if precision in _HINTS:
        device_config["INFERENCE_PRECISION_HINT"] = _HINTS[precision]
    options = {
        "device_type": cfg.device,
        "precision": "ACCURACY" if precision == "ACCURACY" else "FP32",
        "num_of_threads": str(threads),
        "load_config": json.dumps({cfg.device.split(":")[0].split(".")[0]: device_config}),
    }
    folder = compiled_cache(cfg) if cache and _use_cache() else None
    with contextlib.ExitStack() as stack:
        if folder is not None:
            options["cache_dir"] = str(stack.enter_context(_staged_cache(folder)))
        session = ort.InferenceSession(
            str(path), _session_options(cfg), providers=[(OPENVINO, options), CPU]
        )
    return session, session.get_providers()[0]


@functools.cache
def _use_cache() -> bool:
    """:func:`cache_readable`, logged once: no compiled-model cache where it cannot be read."""
    readable, why = cache_readable()
    if not readable:
        log.info("OpenVINO model cache not used: %s", why)
    return readable


@contextlib.contextmanager
def _staged_cache(folder: Path) -> Iterator[Path]:
    """A private view of the shared compiled-model cache ``folder`` for one model load.

    OpenVINO writes a cache entry in place and removes one it cannot read, so two processes
    loading the same model into one folder (two cameras' actors, a run beside the daemon) can
    read a half-written entry, or fail when the other removes the entry they are writing. Each
    load therefore sees the folder's entries through hard links in a folder of its own, where
    OpenVINO reads and writes; a new entry enters the shared folder only once complete, by
    ``os.replace`` (readers see a whole entry or none; of two writers of one entry, the last
    wins, whole).
    """
    private_dir(folder)
    _remove_stale_stages(folder)
    stage = Path(tempfile.mkdtemp(prefix=_STAGE_PREFIX, dir=folder))
    try:
        shared: dict[str, int] = {}  # entry name -> inode, as linked into the stage
        for entry in _entries(folder):
            if entry.name.startswith(".") or not entry.is_file(follow_symlinks=False):
                continue
            with contextlib.suppress(OSError):  # gone meanwhile, or no hard links here
                os.link(entry.path, stage / entry.name)
                shared[entry.name] = os.stat(stage / entry.name).st_ino
        yield stage
        for entry in _entries(stage):
            if entry.is_file() and shared.get(entry.name) != entry.inode():
                with contextlib.suppress(OSError):  # the folder went away: uncached next time
                    os.replace(entry.path, folder / entry.name)
    finally:
        shutil.rmtree(stage, ignore_errors=True)  # an entry in use stays open (POSIX)


def _entries(folder: Path) -> list[os.DirEntry[str]]:
    with os.scandir(folder) as it:
        return list(it)


def _remove_stale_stages(folder: Path) -> None:
    """Remove the private folders of loads whose process died long ago."""
    now = time.time()
    for entry in _entries(folder):
        if entry.name.startswith(_STAGE_PREFIX) and entry.is_dir(follow_symlinks=False):
            with contextlib.suppress(OSError):
                if now - entry.stat().st_mtime > _STALE_STAGE_S:
                    shutil.rmtree(entry.path, ignore_errors=True)


def _load_error(path: str | Path, exc: Exception) -> ModelError:
    return ModelError(f"cannot load model {path}: {_last_line(exc, 300)}")


def _last_line(exc: Exception, limit: int = 200) -> str:
    """The last line of an error (onnxruntime's carry OpenVINO's whole trace before it)."""
    text = str(exc).strip()
    return (text.splitlines()[-1] if text else type(exc).__name__)[:limit]


def open_session(path: str | Path, cfg: RuntimeConfig) -> tuple[Session, RuntimeInfo]:
    """A session for ``path`` with the configured provider, device, precision and threads."""
    session, info = _open(path, cfg)
    return Session(session), info


def _open(path: str | Path, cfg: RuntimeConfig) -> tuple[ort.InferenceSession, RuntimeInfo]:
    from .registry import Derived, sha256_of

    name = Path(path).name
    quantized = Derived.read(Path(path)) is not None
    if cfg.provider == "cpu" or not openvino_available():
        if cfg.provider == "cpu":
            reason = "runtime.provider is cpu"
        elif openvino_expected():
            reason = (
                "the OpenVINO execution provider is missing (plain onnxruntime installed over "
                "onnxruntime-openvino? reinstall onnxruntime-openvino)"
            )
        else:
            reason = (
                f"onnxruntime-openvino has no build for {platform.system()} "
                f"{platform.machine()}; plain onnxruntime is installed here"
            )
        try:
            session = ort.InferenceSession(str(path), _session_options(cfg), providers=[CPU])
        except Exception as exc:  # onnxruntime raises its own exception types
            raise _load_error(path, exc) from None
        info = RuntimeInfo(name, CPU, None, "FP32", quantized, reason)
        warn = cfg.provider != "cpu" and openvino_expected()
        return session, _register(path, info, warn)

    device = device_info(cfg.device)
    if cfg.precision == "auto":
        choice = choose_precision(path, cfg, sha256_of(Path(path)))
    elif device is not None and not device.supports(cfg.precision):
        caps = " ".join(sorted(device.capabilities))
        raise ModelError(
            f"runtime.precision is {cfg.precision}, but OpenVINO device {cfg.device} "
            f"({device.full_name}) does not support it (capabilities: {caps}); allowed here: "
            f"auto, FP32, ACCURACY"
            + "".join(f", {p}" for p in ("BF16", "FP16") if p in device.capabilities)
        )
    else:
        choice = PrecisionChoice(cfg.precision, "runtime.precision")
    try:
        session, provider = _openvino_session(path, cfg, choice.precision)
    except Exception as exc:
        if compiled_cache(cfg) is None or not _use_cache():
            raise _load_error(path, exc) from None
        # A cache folder that cannot be written (read-only, full) must not stop the model:
        # try once more without the cache; a fault of the model itself shows again there.
        log.warning(
            "loading %s with the OpenVINO model cache failed (%s); retrying without it",
            path,
            _last_line(exc),
        )
        try:
            session, provider = _openvino_session(path, cfg, choice.precision, cache=False)
        except Exception as exc2:
            raise _load_error(path, exc2) from None
    if provider != OPENVINO:
        info = RuntimeInfo(
            name,
            provider,
            None,
            "FP32",
            quantized,
            f"onnxruntime could not create the OpenVINO provider for {cfg.device} "
            f"(precision {choice.precision}) and fell back to {provider}",
        )
        return session, _register(path, info, warn=True)
    info = RuntimeInfo(name, OPENVINO, cfg.device, choice.precision, quantized, choice.reason)
    return session, _register(path, info, warn=False)


def _register(path: str | Path, info: RuntimeInfo, warn: bool) -> RuntimeInfo:
    """Remember how a model runs and log it once per distinct outcome."""
    key = (info.model, info.provider, info.device or "", info.precision, str(info.quantized))
    with _lock:
        _loaded[str(Path(path).resolve())] = info
        first = key not in _logged
        _logged.add(key)
    if first:
        log.log(logging.WARNING if warn else logging.INFO, "%s", info.describe())
    return info
