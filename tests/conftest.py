"""Shared fixtures: real models and media from ../shared (via STREAMREC_MODELS/STREAMREC_MEDIA)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SMALL_MODELS = {"models.detector": "det_500m.onnx", "models.recognizer": "mobilefacenet_128d.onnx"}
#: FP32 everywhere: ``runtime.precision: auto`` would pick BF16 on a CPU that has it, after a
#: timing made under whatever load there is, and results compared with FP32 references would
#: then depend on the machine (the precision choice has its own tests in test_models)
FP32 = {"runtime.precision": "FP32"}
MEDIA_VARS = ("STREAMREC_MODELS", "STREAMREC_MEDIA")


def _absolute_media_vars() -> None:
    """README's quick loop exports ``../shared/models``: made absolute once, here, so that every
    command a test starts elsewhere (another working directory) finds the same folders."""
    for var in MEDIA_VARS:
        value = os.environ.get(var)
        if value:
            os.environ[var] = str(Path(value).expanduser().resolve())


_absolute_media_vars()


def _env_dir(var: str) -> Path | None:
    value = os.environ.get(var)
    return Path(value) if value and Path(value).is_dir() else None


@pytest.fixture(autouse=True)
def _no_registered_secrets() -> None:
    """Secrets registered by one test (from its URLs and configs) are masked process-wide by
    design; each test starts without the others'."""
    from streamrec.redact import forget_registered

    forget_registered()


@pytest.fixture(scope="session")
def models_dir() -> Path:
    d = _env_dir("STREAMREC_MODELS")
    if d is None:
        pytest.skip("real models not available: set STREAMREC_MODELS to ../shared/models")
    return d


@pytest.fixture(scope="session")
def media_dir() -> Path:
    d = _env_dir("STREAMREC_MEDIA")
    if d is None:
        pytest.skip("real media not available: set STREAMREC_MEDIA to ../shared/media")
    return d


@pytest.fixture(scope="session")
def small_config(models_dir: Path):
    """Config with the small real models (det_500m + MobileFaceNet)."""
    from streamrec import load_config

    return load_config(None, {**SMALL_MODELS, **FP32, "models.download": False})


@pytest.fixture(scope="session")
def analyzer(small_config):
    from streamrec import FaceAnalyzer

    return FaceAnalyzer.from_config(small_config)
