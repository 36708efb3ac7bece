"""Every program in samples/ runs on the real media with the small models (a --config file),
as a user runs it: a subprocess, with what it prints checked."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import rtsp_server
from cli_helpers import LIN, ROOT, lin_gallery, streamrec

SAMPLES = ROOT / "samples"
CLIP = "face_recognition/short_hamilton_clip.mp4"
KNN = "face_recognition/knn_examples"


def sample_env() -> dict[str, str]:
    """The checkout's streamrec, as an installed one would be importable."""
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def run_sample(name: str, *args: str, timeout: float = 600) -> str:
    """Run ``samples/NAME`` to its end; its stdout (it must succeed)."""
    proc = subprocess.run(
        [sys.executable, str(SAMPLES / name), *args],
        capture_output=True,
        text=True,
        env=sample_env(),
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    return proc.stdout


@pytest.fixture(scope="module")
def config(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The small real models, offline; live cameras over UDP (the test RTSP server's only)."""
    path = tmp_path_factory.mktemp("samples") / "small.yaml"
    path.write_text(
        "models: {detector: det_500m.onnx, recognizer: mobilefacenet_128d.onnx, download: false}\n"
        "live: {rtsp_transport: udp}\n"
    )
    return str(path)


@pytest.fixture(scope="module")
def knn_gallery(config: str, media_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Made by the enrolment sample."""
    gallery = tmp_path_factory.mktemp("knn") / "gallery.db"
    out = run_sample(
        "enroll_folder.py", str(media_dir / KNN / "train"), "--gallery", str(gallery), "--config",
        config,
    )  # fmt: skip
    for person in ("alex_lacamoire", "biden", "kit_harington", "obama", "rose_leslie"):
        assert f"{person}: " in out and f"{person}: 0 photo(s)" not in out, out
    assert f"5 people in {gallery}" in out
    return gallery


@pytest.fixture(scope="module")
def lin_db(models_dir: Path, media_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return lin_gallery(tmp_path_factory.mktemp("lin") / "gallery.db", media_dir)


def test_enroll_folder_makes_a_gallery_the_cli_reads(knn_gallery: Path) -> None:
    listed = streamrec("gallery", "list", "--gallery", str(knn_gallery)).stdout
    assert "5 people in" in listed and "obama\t2 sample(s)" in listed


def test_recognize_photo(knn_gallery: Path, config: str, media_dir: Path, tmp_path: Path) -> None:
    photo = media_dir / KNN / "test/obama_and_biden.jpg"
    annotated = tmp_path / "annotated.jpg"
    out = run_sample(
        "recognize_photo.py", str(photo), "--gallery", str(knn_gallery), "--config", config,
        "--output", str(annotated),
    )  # fmt: skip
    names = [line.split()[1] for line in out.splitlines() if line.startswith("  [")]
    assert {"obama", "biden"} <= set(names), out
    assert set(names) <= {"obama", "biden", "unknown"}, out
    assert annotated.read_bytes()[:2] == b"\xff\xd8"  # a JPEG
    assert annotated.stat().st_mode & 0o777 == 0o600


def test_video_events(lin_db: Path, config: str, media_dir: Path) -> None:
    out = run_sample("video_events.py", str(media_dir / CLIP), "--gallery", str(lin_db),
                     "--config", config)  # fmt: skip
    rows = [line.split() for line in out.splitlines() if line.lstrip()[:1].isdigit()]
    kinds = [row[3] for row in rows]
    assert {"track_start", "unknown", "identified", "track_end"} <= set(kinds), out
    assert f" identified  {LIN} (0." in out, out
    started = {row[2] for row in rows if row[3] == "track_start"}
    ended = {row[2] for row in rows if row[3] == "track_end"}
    assert started == ended
    assert f"{media_dir / CLIP}: 275 frames" in out  # the summary, at the end


def test_video_events_of_a_span(config: str, media_dir: Path) -> None:
    out = run_sample("video_events.py", str(media_dir / CLIP), "--config", config,
                     "--start", "4", "--end", "6")  # fmt: skip
    times = [float(line.split()[0].rstrip("s")) for line in out.splitlines()
             if line.lstrip()[:1].isdigit()]  # fmt: skip
    assert times and min(times) >= 4 and max(times) < 6, out
    assert ": 60 frames" in out  # 4.0 .. 5.99 s at 29.97 fps


def test_custom_sink(lin_db: Path, config: str, media_dir: Path) -> None:
    out = run_sample("custom_sink.py", str(media_dir / CLIP), "--gallery", str(lin_db),
                     "--config", config)  # fmt: skip
    lines = out.splitlines()
    pattern = re.compile(rf"{LIN}: ([\d.]+) s on screen in \d+ track\(s\)")
    rows = [m for line in lines if (m := pattern.fullmatch(line))]
    assert len(rows) == 1, out
    assert 0.5 < float(rows[0].group(1)) < 9.2, out  # on screen for part of the 9.2 s clip
    assert lines[-1].startswith("275 frames in"), out  # the sink was closed before the end


def arrivals_balanced(lines: list[str]) -> None:
    """Everyone who arrived has left, in order (no one leaves who had not arrived)."""
    present: set[str] = set()
    for line in lines:
        who, _, what = line.partition("  ")[2].rpartition(" ")
        if what == "arrived":
            assert who not in present, lines
            present.add(who)
        elif what == "left":
            assert who in present, lines
            present.remove(who)
    assert not present, lines


def test_watch_a_file(lin_db: Path, config: str, media_dir: Path) -> None:
    out = run_sample("watch.py", str(media_dir / CLIP), "--gallery", str(lin_db),
                     "--config", config, "--seconds", "600")  # fmt: skip
    lines = out.splitlines()
    assert f"  {LIN} arrived" in out and f"  {LIN} left" in out, out
    assert lines[-1] == "stopped"
    arrivals_balanced(lines[1:-1])


def test_watch_an_rtsp_camera_until_sigterm(lin_db: Path, config: str, media_dir: Path):
    """A live camera (the clip published in a loop): Lin arrives; SIGTERM ends the run
    gracefully, every arrival with its departure."""
    reason = rtsp_server.unavailable()
    if reason:
        pytest.skip(reason)
    with rtsp_server.RtspStream(media_dir / CLIP) as cam:
        proc = subprocess.Popen(
            [sys.executable, str(SAMPLES / "watch.py"), cam.url, "--gallery", str(lin_db),
             "--config", config, "--seconds", "300"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=sample_env(),
        )  # fmt: skip
        lines: queue.Queue[str] = queue.Queue()

        def read() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.put(line.rstrip("\n"))

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        seen: list[str] = []
        try:
            deadline = time.monotonic() + 180
            while f"{LIN} arrived" not in " ".join(seen):
                assert time.monotonic() < deadline and proc.poll() is None, (seen, proc.poll())
                try:
                    seen.append(lines.get(timeout=1))
                except queue.Empty:
                    continue
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(60) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        url = cam.url
    reader.join(10)
    while not lines.empty():
        seen.append(lines.get())
    assert seen[0] == f"watching {url}" and seen[-1] == "stopped", seen
    arrivals_balanced(seen[1:-1])


@pytest.mark.parametrize(
    "sample", ["recognize_photo.py", "video_events.py", "custom_sink.py", "watch.py",
               "enroll_folder.py"],
)  # fmt: skip
def test_a_sample_without_its_models_says_so_without_a_traceback(
    sample: str, media_dir: Path, tmp_path: Path
) -> None:
    source = {
        "recognize_photo.py": [str(media_dir / "face_recognition/obama.jpg")],
        "enroll_folder.py": [str(media_dir / KNN / "train"), "--gallery", str(tmp_path / "g.db")],
    }.get(sample, [str(media_dir / CLIP)])
    offline = {
        "HOME": str(tmp_path / "home"),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "STREAMREC_MODELS": str(tmp_path / "no-models"),
        "STREAMREC_MODEL_MIRROR": "http://127.0.0.1:9",
    }
    proc = subprocess.run(
        [sys.executable, str(SAMPLES / sample), *source],
        capture_output=True,
        text=True,
        env={**sample_env(), **offline},
        timeout=600,
    )
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "error: model(s) not found" in proc.stderr, proc.stderr
