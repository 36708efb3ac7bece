"""The OpenVINO compiled-model cache is shared safely between processes, and used only where
OpenVINO can read it back.

Two processes loading the same model into one cache folder (two cameras' actors of a cluster, a
``streamrec run`` beside the daemon) must both load it: OpenVINO writes a cache entry in place
and removes an entry it cannot read, so a process must never see another's half-written entry,
nor fail because another removed the entry it was writing. The onnxruntime-openvino wheels
cannot read their entries back (no IR frontend, :func:`cache_readable`): streamrec then uses no
cache, so the sharing tests force it on, as a build that can read it would have it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

#: loads a model with the cache folder of argv[1] (used whether OpenVINO can read it or not when
#: argv[3] is "force") and prints the provider that runs it
LOAD = """
import logging, sys
logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
from streamrec import load_config
from streamrec.models import runtime
if sys.argv[3] == "force":
    runtime._use_cache = lambda: True
cfg = load_config(None, {"runtime.cache_dir": sys.argv[1], "runtime.precision": "FP32"})
session, info = runtime.open_session(sys.argv[2], cfg.runtime)
print("provider", info.provider)
"""


def _load(cache: Path, model: Path, use: str = "force") -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", LOAD, str(cache), str(model), use],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _loaded_with_the_cache(proc: subprocess.Popen[str]) -> str:
    """The load's log, once it has succeeded without a warning."""
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    assert "provider OpenVINOExecutionProvider" in out, out + err
    assert "WARNING" not in err and "Traceback" not in err, err[-3000:]
    return err


@pytest.fixture
def model(models_dir: Path) -> Path:
    from streamrec.models.runtime import openvino_available

    if not openvino_available():
        pytest.skip("the OpenVINO execution provider is not installed")
    return models_dir / "det_500m.onnx"


def test_a_load_survives_another_process_removing_the_entry(model: Path, tmp_path: Path) -> None:
    """What another process's OpenVINO does to an entry it found half-written (it removes it),
    done here all through the load: the load still succeeds, with the cache."""
    cache = tmp_path / "ov_cache"
    cache.mkdir()
    done = threading.Event()

    def remove_entries() -> None:
        while not done.is_set():
            for entry in os.scandir(cache):
                if entry.is_file(follow_symlinks=False):
                    Path(entry.path).unlink(missing_ok=True)

    remover = threading.Thread(target=remove_entries, daemon=True)
    remover.start()
    try:
        _loaded_with_the_cache(_load(cache, model))
    finally:
        done.set()
        remover.join()
    # with the folder left alone, the entry stays (the next load reads it where OpenVINO can)
    _loaded_with_the_cache(_load(cache, model))
    _loaded_with_the_cache(_load(cache, model))
    assert [p.name for p in cache.iterdir() if p.suffix == ".blob"], list(cache.iterdir())


def test_processes_loading_together_share_one_folder(model: Path, tmp_path: Path) -> None:
    cache = tmp_path / "ov_cache"
    for proc in [_load(cache, model) for _ in range(3)]:
        _loaded_with_the_cache(proc)
    entries = sorted(p.name for p in cache.iterdir())
    assert entries and all(name.endswith(".blob") for name in entries), entries


def test_the_cache_is_used_only_where_openvino_can_read_it(model: Path, tmp_path: Path) -> None:
    from streamrec.models.runtime import cache_readable

    cache = tmp_path / "ov_cache"
    log = _loaded_with_the_cache(_load(cache, model, use="auto"))
    readable, why = cache_readable()
    blobs = [p.name for p in cache.glob("*.blob")]
    if readable:
        assert blobs, list(cache.iterdir())
    else:
        assert not blobs, blobs
        assert f"OpenVINO model cache not used: {why}" in log, log


def test_openvino_reads_its_cache_with_its_ir_frontend(tmp_path: Path) -> None:
    """The check looks for the IR frontend beside the OpenVINO that onnxruntime bundles."""
    from streamrec.models.runtime import cache_readable

    assert cache_readable(tmp_path) == (True, "")  # OpenVINO not bundled: cannot tell, used
    (tmp_path / "libopenvino.so.2541").touch()
    (tmp_path / "libopenvino_onnx_frontend.so.2541").touch()
    readable, why = cache_readable(tmp_path)
    assert not readable and "without its IR frontend" in why, why
    (tmp_path / "libopenvino_ir_frontend.so.2541").touch()
    assert cache_readable(tmp_path) == (True, "")
