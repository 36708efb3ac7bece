"""INT8 models made by ``streamrec models optimize`` (NNCF) on the real small models and media.

No timing is asserted: the speed figures are printed by the command, not tested.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from streamrec import FaceAnalyzer, load_config, read_image
from streamrec.enrolment import enroll_images
from streamrec.errors import GalleryError, ModelError
from streamrec.models import registry
from streamrec.models.runtime import open_session
from streamrec.optimize import Bounds, Report, optimize
from streamrec.recognition import Recognition
from tests.cli_helpers import SMALL, streamrec

pytest.importorskip("nncf", reason="models optimize needs the optimize extra (nncf)")
pytestmark = pytest.mark.slow

#: photos and clips the INT8 models are calibrated on; deepface/ is kept for the --pairs
CALIBRATION = [
    "face_recognition",
    "facenet_pytorch/test_images",
    "openface_examples",
    "insightface",
    "group_photos/ultralight_imgs",
    "face_recognition/short_hamilton_clip.mp4",
    "webcam_clips/multi_face.avi",
]


SMALL_B1 = {"models.detector": "det_500m.onnx", "models.recognizer": "mobilefacenet_128d_b1.onnx"}
#: calibration samples: a third of the command's default (300), which the bounds still hold
#: with, at well under half the time (NNCF's statistics cost about 0.1 s a sample on 2 cores)
SAMPLES = 100


def _sources(media_dir: Path) -> list[Path]:
    return [media_dir / c for c in CALIBRATION]


@pytest.fixture(scope="module")
def int8_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("int8")


@pytest.fixture(scope="module")
def recognizer_report(small_config, media_dir: Path, int8_dir: Path) -> Report:
    report = optimize(
        small_config,
        "mobilefacenet_128d.onnx",
        _sources(media_dir),
        pairs=media_dir / "deepface" / "master.csv",
        output=int8_dir / "mobilefacenet_128d_int8.onnx",
        max_samples=SAMPLES,
    )
    print(report.format())
    return report


def test_int8_mobilefacenet_within_bounds(recognizer_report: Report, int8_dir: Path) -> None:
    r = recognizer_report
    assert not r.failures, r.failures
    assert r.samples["calibration"] >= SAMPLES and r.samples["held_aside"] >= 30
    cosine = r.metrics["cosine to FP32 (held-aside faces)"]
    assert cosine["mean"] >= 0.98
    fp32 = next(v for k, v in r.metrics.items() if k.startswith("verification accuracy on"))
    int8 = r.metrics["verification accuracy, INT8 (%)"]
    assert "300 held-aside pairs" in next(k for k in r.metrics if k.startswith("verification"))
    for key in fp32:
        assert int8[key] >= fp32[key] - 0.5, (key, fp32, int8)
    assert r.embedding_compatible
    model = int8_dir / "mobilefacenet_128d_int8.onnx"
    assert r.output == str(model) and model.is_file()


def test_sidecar_and_registry(recognizer_report: Report, int8_dir: Path, models_dir: Path):
    model = int8_dir / "mobilefacenet_128d_int8.onnx"
    record = json.loads(registry.sidecar_path(model).read_text())
    assert record["sha256"] == registry.sha256_of(model)
    assert record["parent"] == {
        "file": "mobilefacenet_128d.onnx",
        "sha256": registry.MODELS["mobilefacenet_128d.onnx"].sha256,
    }
    assert record["embedding_compatible"] is True and record["kind"] == "recognizer"
    # a file name resolves (models.dir), verified against its record
    found = registry.resolve(model.name, "recognizer", str(int8_dir), download=False)
    assert found.path == model and found.derived is not None
    assert found.compatible == (registry.MODELS["mobilefacenet_128d.onnx"].sha256,)
    assert registry.recognizer_threshold(found) == 0.40  # the parent's calibrated threshold
    listed = {s.info.file: s for s in registry.list_models(str(int8_dir))}
    assert listed[model.name].verified and listed[model.name].derived is not None
    _, info = open_session(model, load_config().runtime)
    assert info.quantized and "INT8" in info.describe()
    # a changed file no longer matches its record
    other = int8_dir / "tampered"
    other.mkdir()
    shutil.copy(model, other / model.name)
    shutil.copy(registry.sidecar_path(model), other)
    with (other / model.name).open("ab") as f:
        f.write(b"\0")
    with pytest.raises(ModelError, match="changed after 'streamrec models optimize'"):
        registry.resolve(model.name, "recognizer", str(other), download=False)


def test_gallery_of_the_parent_stays_valid_for_a_compatible_child(
    recognizer_report: Report, small_config, media_dir: Path, int8_dir: Path, tmp_path: Path
) -> None:
    photos = media_dir / "face_recognition"
    parent = FaceAnalyzer.from_config(small_config)
    with parent.open_gallery(tmp_path / "parent.db") as gallery:
        enroll_images(Recognition(parent, gallery), "obama", [photos / "obama.jpg"])
        enroll_images(Recognition(parent, gallery), "biden", [photos / "biden.jpg"])
    int8_cfg = load_config(
        None,
        {
            "models.detector": "det_500m.onnx",
            "models.recognizer": "mobilefacenet_128d_int8.onnx",
            "models.dir": str(int8_dir),
            "models.download": False,
        },
    )
    child = FaceAnalyzer.from_config(int8_cfg)
    with child.open_gallery(tmp_path / "parent.db") as gallery:
        faces = child.analyze(read_image(photos / "obama-720p.jpg"), gallery.matcher())
    assert [f.name for f in faces] == ["obama"]
    # a gallery made with the INT8 model is not opened by the parent (one direction only)
    with child.open_gallery(tmp_path / "child.db") as gallery:
        enroll_images(Recognition(child, gallery), "obama", [photos / "obama.jpg"])
    with pytest.raises(GalleryError, match="made with recognizer mobilefacenet_128d_int8"):
        parent.open_gallery(tmp_path / "child.db")
    # nor does the INT8 model open a gallery of an unrelated recognizer
    other = FaceAnalyzer.from_config(load_config(None, {**SMALL_B1, "models.download": False}))
    with other.open_gallery(tmp_path / "other.db"):
        pass
    with pytest.raises(GalleryError, match="made with recognizer mobilefacenet_128d_b1"):
        child.open_gallery(tmp_path / "other.db")


def test_int8_det_500m_within_bounds(small_config, media_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "det_500m_int8.onnx"
    report = optimize(
        small_config, "det_500m.onnx", _sources(media_dir), output=out, max_samples=SAMPLES
    )
    print(report.format())
    assert not report.failures, report.failures
    iou = report.metrics["IoU of FP32 faces >= 32 px with INT8"]
    assert iou["mean"] >= 0.9
    assert report.metrics["faces >= 32 px lost"].endswith(": 0")
    record = json.loads(registry.sidecar_path(out).read_text())
    assert record["kind"] == "detector" and record["parent"]["file"] == "det_500m.onnx"
    assert record["embedding_compatible"] is False
    # the INT8 detector runs in the analyzer and finds the same faces
    cfg = load_config(
        None,
        {
            "models.detector": str(out),
            "models.recognizer": "mobilefacenet_128d.onnx",
            "models.download": False,
        },
    )
    image = read_image(media_dir / "insightface/t1.jpg")
    fp32 = FaceAnalyzer.from_config(small_config).detect(image)
    int8 = FaceAnalyzer.from_config(cfg).detect(image)
    assert len(int8) == len(fp32) == 6
    assert np.abs(np.sort(int8.boxes[:, 0]) - np.sort(fp32.boxes[:, 0])).max() < 8


def test_a_model_over_the_bound_is_not_written(
    models_dir: Path, media_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "strict_int8.onnx"
    proc = streamrec(
        "models", "optimize", "mobilefacenet_128d.onnx",
        "--calibration", str(media_dir / "insightface"),
        "--calibration", str(media_dir / "face_recognition" / "knn_examples"),
        "--samples", "24", "--min-cosine", "0.99999", "--output", str(out), *SMALL,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "mean cosine" in proc.stdout and "over the bound" in proc.stdout
    error = [ln for ln in proc.stderr.splitlines() if ln.startswith("streamrec: error:")]
    assert len(error) == 1 and "was not written" in error[0] and "Traceback" not in proc.stderr
    assert not out.exists() and not registry.sidecar_path(out).exists()
    assert not list(tmp_path.iterdir())


def test_bounds_defaults_are_the_targets() -> None:
    b = Bounds()
    assert (b.min_cosine, b.max_accuracy_drop, b.min_iou, b.min_face) == (0.98, 0.5, 0.9, 32)
