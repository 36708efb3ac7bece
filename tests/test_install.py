"""The built wheel, installed into a fresh venv and run from another directory, behaves like the
checkout: README's quick start works, same effective config, the example configs there, no
missing file in --help, same events on a clip."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import pytest
from cli_helpers import (
    LIN,
    ROOT,
    SMALL,
    probe_streams,
    read_events,
    same_values,
    streamrec,
    without_capture_times,
)

pytestmark = pytest.mark.slow

CLIP = "face_recognition/short_hamilton_clip.mp4"


@dataclass
class Installed:
    wheel: Path
    venv: Path
    #: a directory outside the checkout, the working directory of every command
    elsewhere: Path

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """Run the venv's ``streamrec`` console script from ``elsewhere``."""
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        env["PATH"] = f"{self.venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        proc = subprocess.run(
            [str(self.venv / "bin" / "streamrec"), *args],
            cwd=self.elsewhere,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        if check:
            assert proc.returncode == 0, proc.stderr[-3000:]
        return proc


def _pip(*args: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", *args],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """The wheel built from a copy of the checkout, installed with ``pip install --no-deps`` into
    a fresh venv whose dependencies come from this environment's site-packages (a ``.pth``: no
    download; ``.pth`` files in an added directory are not run, so this environment's editable
    streamrec is not importable there)."""
    tmp = tmp_path_factory.mktemp("install")
    src, dist, venv, elsewhere = (tmp / d for d in ("src", "dist", "venv", "elsewhere"))
    ignore = shutil.ignore_patterns(
        ".git", ".venv", "__pycache__", "*.egg-info", "build", "dist", ".*cache", "out"
    )
    shutil.copytree(ROOT, src, ignore=ignore)
    # with a recent enough setuptools here, build offline; else pip fetches it (build isolation)
    offline = int(version("setuptools").split(".")[0]) >= 77
    _pip("wheel", "--no-deps", *(["--no-build-isolation"] * offline), "-w", str(dist), str(src))
    (wheel,) = dist.glob("streamrec-*.whl")

    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    deps = dict.fromkeys(sysconfig.get_paths()[k] for k in ("purelib", "platlib"))
    Path(site, "streamrec_test_deps.pth").write_text("".join(f"{d}\n" for d in deps))
    _pip("--python", str(python), "install", "--no-deps", "--no-index", str(wheel))
    elsewhere.mkdir()
    return Installed(wheel, venv, elsewhere)


def test_the_wheel_carries_every_file(installed: Installed) -> None:
    names = set(zipfile.ZipFile(installed.wheel).namelist())
    wanted = {
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / "streamrec").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    wanted |= {f"streamrec/configs/{p.name}" for p in (ROOT / "configs").glob("*.yaml")}
    assert not wanted - names, (
        f"missing from the wheel: {sorted(wanted - names)} "
        "(add new packages to [tool.setuptools] packages in pyproject.toml)"
    )


def test_installed_copy_is_imported_from_the_venv(installed: Installed) -> None:
    proc = subprocess.run(
        [
            str(installed.venv / "bin" / "python"),
            "-c",
            "import streamrec; print(streamrec.__file__)",
        ],
        cwd=installed.elsewhere,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert Path(proc.stdout.strip()).is_relative_to(installed.venv), proc.stdout


def test_config_show_and_examples_match_the_checkout(installed: Installed) -> None:
    assert installed.run("config", "show").stdout == streamrec("config", "show").stdout
    listing = installed.run("config", "example").stdout
    assert listing == streamrec("config", "example").stdout
    for name, file in (("cameras", "example-cameras.yaml"), ("default", "default.yaml")):
        text = installed.run("config", "example", name).stdout
        assert text == (ROOT / "configs" / file).read_text(encoding="utf-8")
        mine = installed.elsewhere / f"{name}.yaml"
        mine.write_text(text)
        shown = installed.run("config", "show", "--config", str(mine)).stdout
        assert shown == streamrec("config", "show", "--config", str(mine)).stdout


def test_help_names_no_missing_file(installed: Installed) -> None:
    for args in ([], ["run"], ["serve"], ["config", "show"]):
        text = installed.run(*args, "--help").stdout
        for token in re.findall(r"[\w./~-]+\.ya?ml\b", text):
            assert (installed.elsewhere / token).expanduser().exists(), (args, token)
        assert "configs/" not in text, args


def test_run_gives_the_same_events_as_the_checkout(
    installed: Installed, models_dir: Path, media_dir: Path, tmp_path: Path
) -> None:
    clip = str(media_dir / CLIP)
    args = ["run", "--source", clip, "--no-progress", *SMALL, "--set", "models.download=false"]
    streamrec(*args, "--events", str(tmp_path / "checkout.jsonl"))
    installed.run(*args, "--events", str(tmp_path / "wheel.jsonl"))
    checkout = without_capture_times(read_events(tmp_path / "checkout.jsonl"))
    wheel = without_capture_times(read_events(tmp_path / "wheel.jsonl"))
    assert {e["event"] for e in checkout} >= {"track_start", "track_end"}
    assert len(wheel) == len(checkout)
    for a, b in zip(checkout, wheel, strict=True):
        assert same_values(a, b), (a, b)


def test_quick_start_from_the_wheel(installed: Installed, models_dir: Path, media_dir: Path):
    """README's quick start with the installed wheel, from another directory (the small models
    from STREAMREC_MODELS): an annotated video with the clip's audio and events; then the
    enrolment that comes next, and the same run names the person."""
    here = installed.elsewhere
    clip = str(media_dir / CLIP)
    proc = installed.run(
        "run", clip, "--output", "annotated.mp4", "--events", "events.jsonl", *SMALL
    )
    assert "275 frames" in proc.stdout
    streams = probe_streams(here / "annotated.mp4")
    assert streams["video"]["codec_name"] == "h264"
    assert int(streams["video"]["nb_read_frames"]) == 275
    assert streams["audio"]["codec_name"] == "aac"
    events = read_events(here / "events.jsonl")
    assert {e["event"] for e in events} >= {"track_start", "unknown", "track_end"}
    assert not [e for e in events if e["event"] == "identified"]  # no gallery: all unknown
    for name in ("annotated.mp4", "events.jsonl"):
        assert (here / name).stat().st_mode & 0o777 == 0o600, name

    person = here / "people" / LIN
    person.mkdir(parents=True)
    shutil.copy(media_dir / "face_recognition/lin-manuel-miranda.png", person)
    installed.run("gallery", "import", "people", "--gallery", "gallery.db", *SMALL)
    installed.run(
        "run", clip, "--gallery", "gallery.db", "--events", "named.jsonl", "--no-progress", *SMALL
    )
    named = {e.get("name") for e in read_events(here / "named.jsonl") if e["event"] == "identified"}
    assert named == {LIN}
