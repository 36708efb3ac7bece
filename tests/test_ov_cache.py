"""The OpenVINO compiled-model cache is shared safely between processes.

Two processes loading the same model into one cache folder (two cameras' actors of a cluster, a
``streamrec run`` beside the daemon) must both load it: OpenVINO writes a cache entry in place
and removes an entry it cannot read, so a process must never see another's half-written entry,
nor fail because another removed the entry it was writing.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

#: loads a model with the cache folder of argv[1] and prints the provider that runs it
LOAD = """
import logging, sys
logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
from streamrec import load_config
from streamrec.models.runtime import open_session
cfg = load_config(None, {"runtime.cache_dir": sys.argv[1], "runtime.precision": "FP32"})
session, info = open_session(sys.argv[2], cfg.runtime)
print("provider", info.provider)
"""


def _load(cache: Path, model: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", LOAD, str(cache), str(model)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _loaded_with_the_cache(proc: subprocess.Popen[str]) -> None:
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    assert "provider OpenVINOExecutionProvider" in out, out + err
    assert "WARNING" not in err and "Traceback" not in err, err[-3000:]


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
    # with the folder left alone, the entry stays: the next load reads it
    _loaded_with_the_cache(_load(cache, model))
    _loaded_with_the_cache(_load(cache, model))
    assert [p.name for p in cache.iterdir() if p.suffix == ".blob"], list(cache.iterdir())


def test_processes_loading_together_share_one_folder(model: Path, tmp_path: Path) -> None:
    cache = tmp_path / "ov_cache"
    for proc in [_load(cache, model) for _ in range(3)]:
        _loaded_with_the_cache(proc)
    entries = sorted(p.name for p in cache.iterdir())
    assert entries and all(name.endswith(".blob") for name in entries), entries
