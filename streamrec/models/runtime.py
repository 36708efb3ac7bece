"""ONNX Runtime session factory: OpenVINO EP by default, CPU EP as the fallback."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import onnxruntime as ort

from ..config import RuntimeConfig
from ..errors import ModelError

log = logging.getLogger("streamrec.runtime")

OPENVINO = "OpenVINOExecutionProvider"
CPU = "CPUExecutionProvider"
_warned_fallback = False


def cores() -> int:
    """CPU cores this process may run on."""
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)


def default_threads() -> int:
    """Inference threads per model when the config says 0: half the cores.

    The detector and the recognizer run at the same time in their own pipeline stages; giving
    each all the cores oversubscribes them (measured: 1080p went from 13 to 26 fps on 2 cores).
    """
    return max(1, cores() // 2)


def openvino_available() -> bool:
    return OPENVINO in ort.get_available_providers()


def create_session(path: str | Path, cfg: RuntimeConfig) -> ort.InferenceSession:
    """Create an inference session for ``path`` with the provider and options from ``cfg``.

    If OpenVINO is asked for but not available, warn once and use the CPU EP.
    """
    global _warned_fallback
    threads = cfg.threads or default_threads()
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    providers: list[str | tuple[str, dict[str, str]]] = [CPU]
    if cfg.provider == "openvino":
        if openvino_available():
            options = {
                "device_type": cfg.device,
                "precision": cfg.precision,
                "num_of_threads": str(threads),
                "load_config": json.dumps(
                    {cfg.device.split(":")[0]: {"PERFORMANCE_HINT": cfg.performance_hint}}
                ),
            }
            if cfg.cache_dir:
                cache = Path(cfg.cache_dir).expanduser()
                cache.mkdir(parents=True, exist_ok=True)
                options["cache_dir"] = str(cache)
            providers = [(OPENVINO, options), CPU]
        elif not _warned_fallback:
            _warned_fallback = True
            log.warning(
                "OpenVINO execution provider is not available (is onnxruntime installed over "
                "onnxruntime-openvino?); falling back to the CPU execution provider"
            )
    try:
        return ort.InferenceSession(str(path), so, providers=providers)
    except Exception as exc:  # onnxruntime raises its own exception types
        first = exc
    if "OpenVINO" in str(first) and isinstance(providers[0], tuple) and cfg.cache_dir:
        # Another process writing the same compiled-model cache entry can make OpenVINO fail
        # to load it; the model itself may be fine, so try once more without the cache.
        log.warning("loading %s with the OpenVINO model cache failed; retrying without it", path)
        options = dict(providers[0][1])
        options.pop("cache_dir", None)
        try:
            return ort.InferenceSession(str(path), so, providers=[(OPENVINO, options), CPU])
        except Exception as exc:
            first = exc
    msg = str(first).strip().splitlines()[-1] if str(first).strip() else type(first).__name__
    raise ModelError(f"cannot load model {path}: {msg[:300]}") from None
