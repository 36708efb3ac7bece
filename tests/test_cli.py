"""The CLI end to end: enrol, list, recognize, and one clear line for every user mistake."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from cli_helpers import SMALL, assert_one_clear_line, streamrec


@pytest.fixture(scope="module")
def knn_gallery(
    models_dir: Path, media_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    gallery = tmp_path_factory.mktemp("g") / "gallery.db"
    out = streamrec(
        "gallery",
        "import",
        str(media_dir / "face_recognition/knn_examples/train"),
        "--gallery",
        str(gallery),
        *SMALL,
    ).stdout
    for person in ("alex_lacamoire", "biden", "kit_harington", "obama", "rose_leslie"):
        assert f"{person}: enrolled" in out
    return gallery


def test_gallery_list(knn_gallery: Path) -> None:
    people = json.loads(
        streamrec("gallery", "list", "--gallery", str(knn_gallery), "--json").stdout
    )
    assert sorted(p["name"] for p in people) == [
        "alex_lacamoire",
        "biden",
        "kit_harington",
        "obama",
        "rose_leslie",
    ]
    with sqlite3.connect(knn_gallery) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        meta = dict(db.execute("SELECT key, value FROM meta"))
    assert meta["recognizer_name"] == "mobilefacenet_128d.onnx" and meta["schema_version"] == "4"


def _recognize(gallery: Path, *images: Path, extra: tuple[str, ...] = ()) -> list[dict]:
    out = streamrec(
        "recognize", *map(str, images), "--gallery", str(gallery), "--json", *SMALL, *extra
    )
    return json.loads(out.stdout)


def test_knn_test_images_are_named_correctly(knn_gallery: Path, media_dir: Path, tmp_path: Path):
    test = media_dir / "face_recognition/knn_examples/test"
    expected = {
        "alex_lacamoire1.jpg": ["alex_lacamoire"],
        "johnsnow_test1.jpg": ["kit_harington"],
        "kit_with_rose.jpg": ["kit_harington", "rose_leslie"],
        "obama1.jpg": ["obama"],
        "obama_and_biden.jpg": ["biden", "obama"],
    }
    results = _recognize(
        knn_gallery, *(test / f for f in expected), extra=("--output", str(tmp_path))
    )
    for res in results:
        file = Path(res["image"]).name
        # every enrolled person is named; other faces (a child in the background) stay unknown
        names = sorted(f["name"] for f in res["faces"] if f["name"] is not None)
        assert names == expected[file], (file, res["faces"])
        assert (tmp_path / (Path(file).stem + ".jpg")).is_file()


def test_no_face_and_strangers(knn_gallery: Path, media_dir: Path) -> None:
    results = _recognize(
        knn_gallery,
        media_dir / "insightface/view.jpg",
        media_dir / "face_recognition/lin-manuel-miranda.png",
        media_dir / "openface_examples/lennon-1.jpg",
        media_dir / "openface_examples/clapton-1.jpg",
        media_dir / "insightface/Rob_Lowe_0001.jpg",
    )
    assert results[0]["faces"] == []
    for res in results[1:]:
        assert res["faces"], res
        assert all(f["name"] is None for f in res["faces"]), res


def test_enrol_skips_bad_files_with_a_message(models_dir: Path, media_dir: Path, tmp_path: Path):
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    proc = streamrec(
        "gallery",
        "add",
        "Barack Obama",
        str(media_dir / "face_recognition/obama.jpg"),
        str(media_dir / "insightface/view.jpg"),
        str(media_dir / "face_recognition/two_people.jpg"),
        str(corrupt),
        str(tmp_path / "missing.jpg"),
        "--gallery",
        str(tmp_path / "g.db"),
        *SMALL,
    )
    out = proc.stdout
    assert "view.jpg: No face is found in the given image" in out
    assert "two_people.jpg: 2 faces found" in out
    assert "corrupt.jpg: not an image or corrupt" in out
    assert "missing.jpg" in out
    assert "Barack Obama: enrolled 1 photo(s)" in out
    streamrec("gallery", "remove", "Barack Obama", "--gallery", str(tmp_path / "g.db"))
    assert "0 people" in streamrec("gallery", "list", "--gallery", str(tmp_path / "g.db")).stdout


def test_bad_inputs_give_one_clear_line(
    models_dir: Path, media_dir: Path, knn_gallery: Path, tmp_path: Path
) -> None:
    proc = streamrec("recognize", str(tmp_path / "nope.jpg"), *SMALL, check=False)
    assert_one_clear_line(proc, "image not found")
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"garbage")
    assert_one_clear_line(streamrec("recognize", str(bad), *SMALL, check=False), "corrupt")

    offline = {
        "XDG_CACHE_HOME": str(tmp_path / "c"),
        "STREAMREC_MODELS": str(tmp_path / "none"),
        "STREAMREC_MODEL_MIRROR": "http://127.0.0.1:9",
    }
    img = str(media_dir / "face_recognition/obama.jpg")
    assert_one_clear_line(streamrec("recognize", img, env=offline, check=False), "det_10g.onnx")

    fake = tmp_path / "m"
    fake.mkdir()
    shutil.copy(models_dir / "det_500m.onnx", fake / "det_500m.onnx")
    (fake / "mobilefacenet_128d.onnx").write_bytes(b"x" * 100)
    env = {"STREAMREC_MODELS": str(fake), "XDG_CACHE_HOME": str(tmp_path / "c")}
    assert_one_clear_line(streamrec("recognize", img, *SMALL, env=env, check=False), "sha256")

    other = [
        "--set",
        "models.detector=det_500m.onnx",
        "--set",
        "models.recognizer=mobilefacenet_128d_b1.onnx",
    ]
    proc = streamrec("recognize", img, "--gallery", str(knn_gallery), *other, check=False)
    assert_one_clear_line(proc, "was made with recognizer mobilefacenet_128d.onnx")

    assert_one_clear_line(
        streamrec("recognize", img, "--set", "detector.treshold=0.3", check=False),
        "unknown key 'detector.treshold'",
        "threshold",
    )
    assert_one_clear_line(
        streamrec("recognize", img, "--set", "runtime.provider=tpu", check=False),
        "runtime.provider",
    )
    cfg = tmp_path / "c.yaml"
    cfg.write_text("recognition:\n  batch_size: many\n")
    assert_one_clear_line(
        streamrec("recognize", img, "--config", str(cfg), check=False),
        str(cfg),
        "recognition.batch_size",
    )
    assert_one_clear_line(
        streamrec("gallery", "list", "--gallery", str(tmp_path / "none.db"), check=False),
        "not found",
    )


def test_console_script_is_the_same_cli() -> None:
    exe = shutil.which("streamrec", path=str(Path(sys.executable).parent))
    assert exe, "the streamrec console script is installed"
    out = subprocess.run([exe, "--help"], capture_output=True, text=True, check=True).stdout
    assert out == streamrec("--help").stdout.replace("run.py", "streamrec")
