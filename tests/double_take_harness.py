"""The optional cross-check of ``double_take_port`` against Double Take's real JavaScript
(v1.13.1, 8e2728d) run under node by ``tests/double_take/harness.js``.

No Double Take file is in this repository. ``STREAMREC_DOUBLE_TAKE_SRC`` names either a source
tree of Double Take at v1.13.1 (with ``api/src``) or a git directory holding that commit (e.g.
the bare mirror ``/work/.mirror/jakowenko+double-take/repo``), which is archived into a
temporary directory on first use. ``STREAMREC_DOUBLE_TAKE_NODE_PATH`` names a ``node_modules``
made from ``tests/double_take/package.json`` (``.ci/run`` installs it into a temporary
directory). ``missing()`` says what is missing, for a skip.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from double_take_port import COMMIT

HARNESS = Path(__file__).resolve().parent / "double_take" / "harness.js"
#: the files of Double Take the harness loads (the mirror may lack others' objects)
FILES = ["LICENSE", "api/package.json"] + [
    f"api/src/{name}.js"
    for name in (
        "constants/config",
        "constants/defaults",
        "constants/index",
        "constants/system",
        "util/detectors/actions/index",
        "util/detectors/compreface",
        "util/detectors/factory",
        "util/detectors/index",
        "util/mqtt.util",
        "util/object.util",
        "util/process.util",
        "util/recognize.util",
        "util/sleep.util",
        "util/time.util",
        "util/yaml-types.util",
    )
]
NODE = shutil.which("node")
_extracted: list[Path] = []


def _source() -> Path | None:
    value = os.environ.get("STREAMREC_DOUBLE_TAKE_SRC")
    return Path(value) if value else None


def _node_path() -> Path | None:
    value = os.environ.get("STREAMREC_DOUBLE_TAKE_NODE_PATH")
    return Path(value) if value else None


def missing() -> str | None:
    """Why the real Double Take cannot run here, or None."""
    source, modules = _source(), _node_path()
    if source is None:
        return "STREAMREC_DOUBLE_TAKE_SRC is not set (Double Take v1.13.1's source or git dir)"
    if not (source / "api" / "src").is_dir() and not (source / "HEAD").is_file():
        return f"STREAMREC_DOUBLE_TAKE_SRC={source} is neither Double Take's tree nor a git dir"
    if NODE is None:
        return "node is not installed (Debian package nodejs)"
    if modules is None or not (modules / "mqtt").is_dir():
        return (
            "STREAMREC_DOUBLE_TAKE_NODE_PATH does not name a node_modules with "
            "tests/double_take/package.json installed (.ci/run makes one)"
        )
    return None


def source_tree() -> Path:
    """Double Take's tree at v1.13.1: the given one, or the commit archived from a git dir."""
    source = _source()
    assert source is not None, missing()
    if (source / "api" / "src").is_dir():
        return source
    if not _extracted:
        target = Path(tempfile.mkdtemp(prefix="double-take-"))
        atexit.register(shutil.rmtree, target, True)
        archive = subprocess.run(
            ["git", "--git-dir", str(source), "archive", COMMIT, *FILES],
            capture_output=True,
            check=True,
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
        _extracted.append(target)
    return _extracted[0]


def run(command: dict[str, Any], timeout: float = 60.0) -> dict[str, Any]:
    """One harness command (see COMMANDS in harness.js); its answer as JSON (AssertionError with
    node's stderr on failure)."""
    assert NODE is not None, missing()
    env = {
        **os.environ,
        "DOUBLE_TAKE_SRC": str(source_tree()),
        "NODE_PATH": str(_node_path()),
    }
    done = subprocess.run(
        [NODE, str(HARNESS)],
        input=json.dumps(command).encode(),
        capture_output=True,
        timeout=timeout,
        check=False,
        env=env,
    )
    if done.returncode != 0:
        raise AssertionError(f"Double Take harness failed:\n{done.stderr.decode(errors='replace')}")
    answer: dict[str, Any] = json.loads(done.stdout)
    return answer
