"""Installing on every platform: the right onnxruntime per platform, a complete wheel.

pip evaluates environment markers against the interpreter it runs in, not against
``--platform`` (``pip install --dry-run --platform manylinux2014_aarch64 .`` on x86-64 still
asks for onnxruntime-openvino), so the markers are resolved for each target by ``uv pip
compile --python-platform`` and the pinned result is then checked with ``pip install --dry-run
--only-binary=:all: --platform ... --python-version 3.11 --report``: every package has a wheel
there. Both need PyPI; the tests skip with the reason when it cannot be reached.
"""

from __future__ import annotations

import importlib.metadata
import json
import re
import shutil
import subprocess
import sys
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
OPENVINO = "onnxruntime-openvino"


def _manylinux(arch: str) -> list[str]:
    """pip takes --platform literally (no older glibc tags implied): list the usual ones."""
    return [f"manylinux_2_{v}_{arch}" for v in (28, 27, 17)] + [f"manylinux2014_{arch}"]


#: (uv's --python-platform, pip's --platform tags, whether onnxruntime-openvino is expected)
TARGETS = {
    "linux-aarch64": ("aarch64-manylinux_2_28", _manylinux("aarch64"), False),
    "macos-arm64": (
        "aarch64-apple-darwin", ["macosx_14_0_arm64", "macosx_14_0_universal2"], False
    ),
    "linux-x86_64": ("x86_64-manylinux_2_28", _manylinux("x86_64"), True),
    "windows-x86_64": ("x86_64-pc-windows-msvc", ["win_amd64"], True),
}


def _run(cmd: list[str], timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def _skip_if_offline(proc: subprocess.CompletedProcess, what: str) -> None:
    text = proc.stderr.lower()
    offline = ("connect", "network", "resolve host", "timed out", "dns", "unreachable")
    if proc.returncode != 0 and any(word in text for word in offline):
        pytest.skip(f"PyPI cannot be reached for {what}: {proc.stderr.strip()[-200:]}")


def test_openvino_execution_provider_is_installed_here() -> None:
    """The suite runs on x86-64 Linux with onnxruntime-openvino (not a shadowing onnxruntime)."""
    import onnxruntime as ort

    from streamrec.models.runtime import openvino_expected

    assert openvino_expected()
    assert "OpenVINOExecutionProvider" in ort.get_available_providers()
    # the extras (nncf for models optimize among them) brought no shadowing package
    for shadow in ("onnxruntime", "opencv-python"):
        with pytest.raises(importlib.metadata.PackageNotFoundError):
            importlib.metadata.distribution(shadow)
    assert importlib.metadata.distribution("opencv-python-headless")


def _check_platform(target: str, tmp_path: Path) -> None:
    uv_platform, pip_platforms, openvino = TARGETS[target]
    uv = shutil.which("uv") or str(Path(sys.executable).parent / "uv")
    if not Path(uv).exists():
        pytest.skip("uv is not installed (pip install uv; it is in the dev extra)")
    compiled = tmp_path / "requirements.txt"
    proc = _run(
        [
            uv, "pip", "compile", "--quiet", "--no-header", "--no-annotate",
            "--python-platform", uv_platform, "--python-version", "3.11",
            "pyproject.toml", "-o", str(compiled),
        ]
    )
    _skip_if_offline(proc, f"resolving for {target}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    pins = {
        line.split("==")[0].strip().lower(): line.split("==")[1].strip()
        for line in compiled.read_text().splitlines()
        if "==" in line
    }
    assert (OPENVINO in pins) is openvino, pins
    assert ("onnxruntime" in pins) is not openvino, pins
    assert "opencv-python-headless" in pins and "opencv-python" not in pins
    # every pinned package has a wheel for the target (pip, given the resolved pins)
    report = tmp_path / "report.json"
    proc = _run(
        [
            sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed",
            "--no-deps", "--only-binary=:all:", *(f"--platform={p}" for p in pip_platforms),
            "--python-version", "3.11", "--target", str(tmp_path / "target"),
            "--report", str(report), "-r", str(compiled),
        ]
    )
    _skip_if_offline(proc, f"pip on {target}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    installed = {
        re.sub(r"[-_.]+", "-", item["metadata"]["name"]).lower()
        for item in json.loads(report.read_text())["install"]
    }
    assert (OPENVINO if openvino else "onnxruntime") in installed
    assert set(pins) <= installed


@pytest.fixture(scope="module")
def platform_outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, BaseException | None]:
    """Every target checked at once (each waits on PyPI): what each check raised, if anything."""

    def outcome(target: str) -> BaseException | None:
        try:
            _check_platform(target, tmp_path_factory.mktemp(target))
        except BaseException as exc:  # pytest.skip and assertion failures, re-raised per test
            return exc
        return None

    with ThreadPoolExecutor(len(TARGETS)) as pool:
        return dict(zip(TARGETS, pool.map(outcome, TARGETS), strict=True))


@pytest.mark.parametrize("target", list(TARGETS))
def test_each_platform_gets_an_installable_onnxruntime(
    target: str, platform_outcomes: dict[str, BaseException | None]
) -> None:
    error = platform_outcomes[target]
    if error is not None:
        raise error


@pytest.mark.slow
def test_the_wheel_has_everything_it_needs(tmp_path: Path) -> None:
    """Build the wheel, check its files and markers, install it and load the defaults."""
    src = tmp_path / "src"  # a copy: setuptools writes build/ and *.egg-info into the tree
    shutil.copytree(
        ROOT,
        src,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", ".cache", "build", "dist", "*.egg-info", "__pycache__", ".*_cache",
            "out",
        ),
    )
    proc = _run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(tmp_path / "dist"), str(src)]
    )
    _skip_if_offline(proc, "the build backend")
    assert proc.returncode == 0, proc.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("streamrec-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        metadata = next(zf.read(n).decode() for n in names if n.endswith(".dist-info/METADATA"))
    sources = {p.relative_to(ROOT).as_posix() for p in (ROOT / "streamrec").rglob("*.py")}
    assert sources <= names, sorted(sources - names)
    assert {"streamrec/py.typed", "streamrec/service/web/index.html"} <= names
    assert any(n.endswith(".dist-info/entry_points.txt") for n in names)
    requires = [ln for ln in metadata.splitlines() if ln.startswith("Requires-Dist:")]
    ov = next(r for r in requires if r.startswith(f"Requires-Dist: {OPENVINO}"))
    plain = next(r for r in requires if r.startswith("Requires-Dist: onnxruntime>"))
    assert "platform_machine == \"x86_64\"" in ov and "platform_machine != \"x86_64\"" in plain
    assert any("nncf" in r and 'extra == "optimize"' in r for r in requires)
    # installed elsewhere (no checkout around it) it imports and loads its default config
    site = tmp_path / "site"
    proc = _run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(site), str(wheel)]
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    code = (
        "import json, streamrec; from streamrec.config import config_to_dict; "
        "print(json.dumps([streamrec.__file__, config_to_dict(streamrec.load_config())]))"
    )
    proc = subprocess.run(
        [sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(site)!r}); {code}"],
        capture_output=True, text=True, cwd=tmp_path, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    where, installed_defaults = json.loads(proc.stdout)
    assert where.startswith(str(site))
    from streamrec.config import config_to_dict, load_config

    assert installed_defaults == config_to_dict(load_config(ROOT / "configs" / "default.yaml"))
