"""Installing on every platform: the right onnxruntime per platform, a complete wheel.

Which ONNX Runtime distribution a platform gets is decided by the project's own markers
(pyproject.toml, and the built wheel's ``Requires-Dist``): they are evaluated here for each
platform and checked against a recorded, dated fact of which distribution publishes wheels
where, without asking a package index. A second check resolves the whole project for each
platform with uv from wheels only (``--only-binary :all: --python-platform``; nothing pinned to
what this machine has installed), so a release without wheels for a platform is stepped over as
pip would; it needs PyPI and skips with the reason when it cannot be reached.
"""

from __future__ import annotations

import importlib.metadata
import json
import platform
import shutil
import subprocess
import sys
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import tomllib
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
OPENVINO = "onnxruntime-openvino"
PLAIN = "onnxruntime"

#: Where each ONNX Runtime distribution publishes wheels, as PyPI listed them on 2026-12-06
#: (``pip index versions --only-binary=:all: --platform TAG --python-version 3.11 NAME``):
#: onnxruntime-openvino 1.24.1 for manylinux x86_64 and win_amd64 only (none for aarch64,
#: macOS or win_arm64); onnxruntime 1.32.0 for manylinux x86_64 and aarch64, macOS arm64,
#: win_amd64 and win_arm64, and up to 1.23.2 for macOS x86_64.
ORT_WHEELS = {
    OPENVINO: {"linux-x86_64", "windows-x86_64"},
    PLAIN: {
        "linux-x86_64", "linux-aarch64", "macos-arm64", "macos-x86_64", "windows-x86_64",
        "windows-arm64",
    },
}

#: marker variables of each platform (as CPython reports them there)
PLATFORMS = {
    "linux-x86_64": ("linux", "Linux", "x86_64"),
    "linux-aarch64": ("linux", "Linux", "aarch64"),
    "macos-arm64": ("darwin", "Darwin", "arm64"),
    "macos-x86_64": ("darwin", "Darwin", "x86_64"),
    "windows-x86_64": ("win32", "Windows", "AMD64"),
    "windows-arm64": ("win32", "Windows", "ARM64"),
}

#: uv's --python-platform of the platforms streamrec installs on from wheels alone (Windows on
#: ARM is left out: PyYAML publishes no wheel for it)
UV_TARGETS = {
    "linux-x86_64": "x86_64-manylinux_2_28",
    "linux-aarch64": "aarch64-manylinux_2_28",
    "macos-arm64": "aarch64-apple-darwin",
    "macos-x86_64": "x86_64-apple-darwin",
    "windows-x86_64": "x86_64-pc-windows-msvc",
}


def _run(cmd: list[str], timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def _skip_if_offline(proc: subprocess.CompletedProcess, what: str) -> None:
    text = proc.stderr.lower()
    offline = ("connect", "network", "resolve host", "timed out", "dns", "unreachable")
    if proc.returncode != 0 and any(word in text for word in offline):
        pytest.skip(f"PyPI cannot be reached for {what}: {proc.stderr.strip()[-200:]}")


def _selected(requirements: list[str], target: str) -> set[str]:
    """The distributions ``requirements`` (PEP 508 strings, no extras asked) install on
    ``target``, by their markers."""
    sys_platform, system, machine = PLATFORMS[target]
    env = {
        **default_environment(),
        "sys_platform": sys_platform,
        "platform_system": system,
        "platform_machine": machine,
        "os_name": "nt" if system == "Windows" else "posix",
        "python_version": "3.11",
        "python_full_version": "3.11.9",
        "extra": "",
    }
    chosen = set()
    for line in requirements:
        req = Requirement(line)
        if req.marker is None or req.marker.evaluate(env):
            chosen.add(canonicalize_name(req.name))
    return chosen


def _check_markers(requirements: list[str]) -> None:
    for target in PLATFORMS:
        chosen = _selected(requirements, target)
        runtimes = chosen & {OPENVINO, PLAIN}
        assert len(runtimes) == 1, (target, sorted(runtimes))
        (runtime,) = runtimes
        # it publishes wheels there, and OpenVINO is taken wherever it does
        assert target in ORT_WHEELS[runtime], (target, runtime)
        assert (runtime == OPENVINO) is (target in ORT_WHEELS[OPENVINO]), (target, runtime)
        assert "opencv-python-headless" in chosen and "opencv-python" not in chosen, target


def test_each_platform_gets_an_onnxruntime_that_publishes_wheels_for_it() -> None:
    """pyproject's markers against the recorded fact: one ONNX Runtime per platform, one with
    wheels there, the OpenVINO one wherever it has wheels."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    _check_markers(project["dependencies"])


@pytest.mark.parametrize("target", list(PLATFORMS))
def test_openvino_expected_agrees_with_the_markers(
    target: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The runtime warns about a missing OpenVINO provider exactly where pip installs it."""
    from streamrec.models.runtime import openvino_expected

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    _, system, machine = PLATFORMS[target]
    monkeypatch.setattr(platform, "system", lambda: system)
    monkeypatch.setattr(platform, "machine", lambda: machine)
    assert openvino_expected() is (OPENVINO in _selected(project["dependencies"], target))


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


def _resolve(target: str, tmp_path: Path) -> None:
    """The project resolves for ``target`` from wheels alone, with the ONNX Runtime its
    markers select."""
    uv = shutil.which("uv") or str(Path(sys.executable).parent / "uv")
    if not Path(uv).exists():
        pytest.skip("uv is not installed (pip install uv; it is in the dev extra)")
    compiled = tmp_path / "requirements.txt"
    proc = _run(
        [
            uv, "pip", "compile", "--quiet", "--no-header", "--no-annotate",
            "--only-binary", ":all:", "--python-platform", UV_TARGETS[target],
            "--python-version", "3.11", "pyproject.toml", "-o", str(compiled),
        ]
    )
    _skip_if_offline(proc, f"resolving for {target}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    resolved = {
        canonicalize_name(line.split("==")[0]) for line in compiled.read_text().splitlines()
        if "==" in line
    }
    openvino = target in ORT_WHEELS[OPENVINO]
    assert (OPENVINO in resolved) is openvino, sorted(resolved)
    assert (PLAIN in resolved) is not openvino, sorted(resolved)
    assert "opencv-python-headless" in resolved and "opencv-python" not in resolved


@pytest.fixture(scope="module")
def resolutions(tmp_path_factory: pytest.TempPathFactory) -> dict[str, BaseException | None]:
    """Every target resolved at once (each waits on PyPI): what each raised, if anything."""

    # made here: tmp_path_factory is not safe to call from several threads at once
    folders = {target: tmp_path_factory.mktemp(target) for target in UV_TARGETS}

    def outcome(target: str) -> BaseException | None:
        try:
            _resolve(target, folders[target])
        except BaseException as exc:  # pytest.skip and assertion failures, re-raised per test
            return exc
        return None

    with ThreadPoolExecutor(len(UV_TARGETS)) as pool:
        return dict(zip(UV_TARGETS, pool.map(outcome, UV_TARGETS), strict=True))


@pytest.mark.parametrize("target", list(UV_TARGETS))
def test_each_platform_resolves_from_wheels(
    target: str, resolutions: dict[str, BaseException | None]
) -> None:
    error = resolutions[target]
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
    requires = [
        ln.removeprefix("Requires-Dist:").strip()
        for ln in metadata.splitlines()
        if ln.startswith("Requires-Dist:")
    ]
    _check_markers(requires)  # the extras' requirements are not selected (no extra asked)
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
