"""A new user's first commands: the quick start offline, mistakes before downloads, no empty
gallery left by a failed enrolment, progress bars on a terminal (and only there)."""

from __future__ import annotations

import fcntl
import os
import pty
import shutil
import struct
import subprocess
import sys
import termios
import threading
from pathlib import Path

import pytest
from cli_helpers import LIN, ROOT, SMALL, assert_one_clear_line, lin_gallery, streamrec

CLIP = "face_recognition/short_hamilton_clip.mp4"


@pytest.fixture
def offline(tmp_path: Path) -> dict[str, str]:
    """No model anywhere and no way to download one."""
    return {
        "HOME": str(tmp_path / "home"),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "STREAMREC_MODELS": str(tmp_path / "no-models"),
        "STREAMREC_MODEL_MIRROR": "http://127.0.0.1:9",
    }


def test_quick_start_offline_is_one_line_with_the_ways_out(
    offline: dict[str, str], media_dir: Path, tmp_path: Path
) -> None:
    out, events = tmp_path / "annotated.mp4", tmp_path / "events.jsonl"
    proc = streamrec("run", str(media_dir / CLIP), "--output", str(out), "--events", str(events),
                     env=offline, check=False)  # fmt: skip
    assert_one_clear_line(
        proc, "det_10g.onnx", "w600k_r50.onnx", "streamrec models pull buffalo_l",
        "STREAMREC_MODELS", "buffalo_s",
    )  # fmt: skip
    assert proc.returncode == 2
    assert not out.exists() and not events.exists()


def test_a_missing_video_is_reported_before_the_models(
    offline: dict[str, str], tmp_path: Path
) -> None:
    proc = streamrec("run", str(tmp_path / "video.mp4"), env=offline, check=False)
    assert_one_clear_line(proc, "video file not found")
    assert "downloading" not in proc.stderr


def _no_face_folder(root: Path, media_dir: Path) -> Path:
    (root / "someone").mkdir(parents=True)
    shutil.copy(media_dir / "insightface/view.jpg", root / "someone")
    return root


@pytest.mark.parametrize(
    "case", ["import a missing folder", "import photos without a face", "add a missing photo",
             "add from a missing video", "import offline"],
)  # fmt: skip
def test_a_failed_enrolment_leaves_no_gallery(
    case: str, models_dir: Path, media_dir: Path, offline: dict[str, str], tmp_path: Path
) -> None:
    gallery = tmp_path / "gallery.db"
    people = media_dir / "face_recognition/knn_examples/train"
    args, env = {
        "import a missing folder": (["import", str(tmp_path / "people")], {}),
        "import photos without a face": (
            ["import", str(_no_face_folder(tmp_path / "p", media_dir))], {}
        ),
        "add a missing photo": (["add", LIN, str(tmp_path / "lin.png")], {}),
        "add from a missing video": (["add", LIN, "--from-video", str(tmp_path / "x.mp4")], {}),
        "import offline": (["import", str(people)], offline),
    }[case]
    proc = streamrec("gallery", *args, "--gallery", str(gallery), *SMALL, env=env, check=False)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert not list(tmp_path.glob("gallery.db*"))


def test_a_failed_enrolment_keeps_an_existing_gallery(media_dir: Path, tmp_path: Path) -> None:
    gallery = lin_gallery(tmp_path / "gallery.db", media_dir)
    no_face = _no_face_folder(tmp_path / "p", media_dir)
    proc = streamrec("gallery", "import", str(no_face), "--gallery", str(gallery), *SMALL,
                     check=False)  # fmt: skip
    assert proc.returncode == 1
    assert LIN in streamrec("gallery", "list", "--gallery", str(gallery)).stdout


def on_a_terminal(*args: str) -> str:
    """Run ``streamrec ARGS`` with stderr on a pseudo-terminal; what it wrote there."""
    parent, child = pty.openpty()
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # 100 columns
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "run.py"), *args],
        stdout=subprocess.DEVNULL,
        stderr=child,
        stdin=subprocess.DEVNULL,
    )
    os.close(child)
    chunks: list[bytes] = []

    def read() -> None:
        while True:
            try:
                data = os.read(parent, 4096)
            except OSError:  # the terminal's other side closed
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    assert proc.wait(600) == 0
    reader.join(30)
    os.close(parent)
    return b"".join(chunks).decode(errors="replace")


@pytest.mark.parametrize("command", ["gallery import", "eval", "run"])
def test_long_commands_show_progress_on_a_terminal_only(
    command: str, models_dir: Path, media_dir: Path, tmp_path: Path
) -> None:
    people = str(media_dir / "face_recognition/knn_examples/train")
    args, unit = {
        "gallery import": (["gallery", "import", people, "--gallery", str(tmp_path / "g.db")],
                           "photo/s"),
        "eval": (["eval", people], "pair/s"),
        "run": (["run", str(media_dir / CLIP), "--end", "2"], "frame/s"),
    }[command]  # fmt: skip
    shown = on_a_terminal(*args, *SMALL)
    assert unit in shown, shown
    if command == "gallery import":
        (tmp_path / "g.db").unlink()
    piped = streamrec(*args, *SMALL).stderr  # not a terminal: no bar
    assert unit not in piped
