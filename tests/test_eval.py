"""`streamrec eval`: verification metrics on deepface pairs vs an InsightFace reference."""

from __future__ import annotations

import csv
import json
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest

from streamrec.analyzer import FaceAnalyzer
from streamrec.cli import main
from streamrec.evaluation import (
    EvalError,
    best_accuracy,
    evaluate,
    folder_pairs,
    read_pairs,
    roc_auc,
    roc_curve,
    tar_at_far,
)
from streamrec.media import read_image

SMALL = [
    "--set=models.detector=det_500m.onnx",
    "--set=models.recognizer=mobilefacenet_128d.onnx",
    "--set=models.download=false",
    "--set=runtime.precision=FP32",  # as the InsightFace reference (see conftest.FP32)
]
PAIR_FILES = ["master.csv", "face-recognition-pivot.csv"]


def _reference_best_accuracy(scores: np.ndarray, same: np.ndarray) -> float:
    """Independent of streamrec.evaluation: try every score as the threshold."""
    return max(float(np.mean((scores >= t) == same)) for t in [*scores.tolist(), np.inf])


@pytest.fixture(scope="module")
def reference_embeddings(models_dir: Path, media_dir: Path) -> dict[str, np.ndarray]:
    """InsightFace package: SCRFD det_500m + norm_crop + ArcFaceONNX, largest face per image."""
    pytest.importorskip("insightface", reason="insightface oracle not installed")
    import onnxruntime as ort
    from insightface.model_zoo.arcface_onnx import ArcFaceONNX
    from insightface.model_zoo.scrfd import SCRFD
    from insightface.utils.face_align import norm_crop

    cpu = ["CPUExecutionProvider"]
    det_path, rec_path = models_dir / "det_500m.onnx", models_dir / "mobilefacenet_128d.onnx"
    det = SCRFD(str(det_path), ort.InferenceSession(str(det_path), providers=cpu))
    det.prepare(-1, input_size=(640, 640), det_thresh=0.5)
    rec = ArcFaceONNX(str(rec_path), ort.InferenceSession(str(rec_path), providers=cpu))
    rec.input_mean, rec.input_std = 127.5, 127.5
    out = {}
    for path in sorted((media_dir / "deepface").glob("img*.jpg")):
        img = read_image(path)
        boxes, kps = det.detect(img, max_num=0)
        if len(boxes) == 0:
            continue
        i = int(np.argmax((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])))
        feat = rec.get_feat(norm_crop(img, landmark=kps[i])).reshape(-1)
        out[path.name] = feat / np.linalg.norm(feat)
    return out


@pytest.fixture(scope="module")
def reports(
    analyzer: FaceAnalyzer, media_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    """Reports on both deepface pair files: master.csv through the CLI (with a plot), the
    other through the API (it shares the session's analyzer; every image is embedded once)."""
    out = tmp_path_factory.mktemp("eval")
    d = media_dir / "deepface"
    args = ["eval", str(d), "--pairs", str(d / "master.csv"), "--report", str(out / "master.json")]
    assert main([*args, "--plot", str(out / "master.png"), *SMALL]) == 0
    pivot = evaluate(analyzer, d, d / "face-recognition-pivot.csv")
    (out / "pivot.json").write_text(json.dumps(pivot.report))
    return {"master.csv": out / "master.json", "face-recognition-pivot.csv": out / "pivot.json"}


@pytest.mark.parametrize("pairs_file", PAIR_FILES)
def test_eval_at_least_as_accurate_as_insightface(
    reports: dict[str, Path],
    reference_embeddings: dict[str, np.ndarray],
    pairs_file: str,
) -> None:
    report = json.loads(reports[pairs_file].read_text())
    assert report["pairs"]["skipped"] == 0
    assert report["pairs"]["same"] >= 38 and report["pairs"]["different"] >= 140
    rows = report["scores"]
    same = np.array([r["same"] for r in rows])
    ref = np.array([reference_embeddings[r["a"]] @ reference_embeddings[r["b"]] for r in rows])
    ours = np.array([r["score"] for r in rows])
    reference_accuracy = _reference_best_accuracy(ref, same)
    assert report["accuracy"]["best"]["accuracy"] >= reference_accuracy
    assert report["accuracy"]["best"]["accuracy"] == pytest.approx(
        _reference_best_accuracy(ours, same)
    )
    # same models, same pipeline: pair scores agree closely with the reference
    assert float(np.abs(ours - ref).max()) < 0.02


def test_report_fields_and_plot(reports: dict[str, Path]) -> None:
    report = json.loads(reports["master.csv"].read_text())
    assert report["model"]["recognizer"] == "mobilefacenet_128d.onnx"
    assert report["pairs"] == {
        "total": 300,
        "used": 300,
        "same": 38,
        "different": 262,
        "skipped": 0,
    }
    assert report["images"]["total"] == 25 and report["images"]["problems"] == {}
    assert 0.9 <= report["roc_auc"] <= 1.0
    assert -1.0 <= report["accuracy"]["configured"]["threshold"] <= 1.0
    assert 0.0 <= report["accuracy"]["configured"]["far"] <= 1.0
    assert set(report["tar_at_far"]) == {"1e-2", "1e-3"}
    assert report["tar_at_far"]["1e-3"] == "n/a (needs 1000 negative pairs)"
    t = report["tar_at_far"]["1e-2"]
    assert 0.5 <= t["tar"] <= 1.0 and -1.0 <= t["threshold"] <= 1.0
    png = reports["master.csv"].with_suffix(".png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = read_image(png)
    assert img.shape[0] >= 300 and img.shape[1] >= 400


@pytest.fixture(scope="module")
def people_dir(media_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """deepface photos in LFW layout (person/person_0001.jpg), three people from identities.csv."""
    root = tmp_path_factory.mktemp("lfw")
    rows = list(csv.reader((media_dir / "deepface" / "identities.csv").open()))[1:]
    by_cluster: dict[str, list[str]] = {}
    for file, cluster, _ in rows:
        by_cluster.setdefault(cluster, []).append(file)
    for cluster in sorted(by_cluster)[:3]:
        (root / cluster).mkdir()
        for i, file in enumerate(by_cluster[cluster][:4], start=1):
            target = root / cluster / f"{cluster}_{i:04d}.jpg"
            target.symlink_to(media_dir / "deepface" / file)
    return root


def test_lfw_pairs_file(analyzer: FaceAnalyzer, people_dir: Path, tmp_path: Path) -> None:
    a, b, c = sorted(p.name for p in people_dir.iterdir())
    pairs = tmp_path / "pairs.txt"
    pairs.write_text(f"1 3\n{a} 1 2\n{b} 1 3\n{c} 2 4\n{a} 1 {b} 2\n{b} 4 {c} 1\n{a} 3 {c} 3\n")
    result = evaluate(analyzer, people_dir, pairs)
    assert result.report["pairs"]["same"] == 3 and result.report["pairs"]["different"] == 3
    first = result.report["scores"][0]
    assert (first["a"], first["b"]) == (f"{a}/{a}_0001.jpg", f"{a}/{a}_0002.jpg")
    assert result.report["accuracy"]["best"]["accuracy"] == 1.0


def test_folder_mode_pairs(analyzer: FaceAnalyzer, people_dir: Path) -> None:
    counts = [len(list(d.iterdir())) for d in people_dir.iterdir()]
    same = sum(n * (n - 1) // 2 for n in counts)
    pairs = folder_pairs(people_dir, seed=1)
    assert sum(p.same for p in pairs) == same and sum(not p.same for p in pairs) == same
    assert pairs == folder_pairs(people_dir, seed=1)
    for p in pairs:
        assert (p.a.split("/")[0] == p.b.split("/")[0]) == p.same
    result = evaluate(analyzer, people_dir, negatives=1000)
    cross = sum(x * y for x, y in combinations(counts, 2))
    assert result.report["pairs"]["different"] == cross


def test_metrics_small_example() -> None:
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.55, 0.4, 0.3, 0.2])
    same = np.array([1, 1, 0, 1, 0, 0, 1, 0], bool)
    roc = roc_curve(scores, same)
    # pairs above each threshold: 1 pos, 2 pos, +1 neg, +1 pos, +1 neg, +1 neg, +1 pos, +1 neg
    np.testing.assert_allclose(roc.tpr, [0, 0.25, 0.5, 0.5, 0.75, 0.75, 0.75, 1, 1])
    np.testing.assert_allclose(roc.fpr, [0, 0, 0, 0.25, 0.25, 0.5, 0.75, 0.75, 1])
    # AUC = P(score_pos > score_neg): 16 pos/neg pairs, 12 ordered correctly
    assert roc_auc(roc) == pytest.approx(12 / 16)
    acc, threshold = best_accuracy(roc)
    assert acc == pytest.approx(6 / 8)
    assert np.mean((scores >= threshold) == same) == pytest.approx(acc)
    assert tar_at_far(roc, 1e-2) is None  # 4 negatives cannot measure a 1% FAR
    tar, t = tar_at_far(roc, 0.25) or (0.0, 0.0)
    assert tar == pytest.approx(0.75) and np.mean(scores[~same] >= t) <= 0.25
    with pytest.raises(EvalError, match="both same-person and different-person"):
        roc_curve(scores[same], same[same])


def test_bad_inputs_give_one_line(
    tmp_path: Path, people_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope"
    assert main(["eval", str(missing), *SMALL]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"streamrec: error: not a folder: {missing}"
    bad = tmp_path / "pairs.txt"
    bad.write_text("1 2\nalice 1 2\nbob one 2\n")
    assert main(["eval", str(people_dir), "--pairs", str(bad), *SMALL]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{bad}:3: expected 'name idx1 idx2'" in err
    with pytest.raises(EvalError, match="header"):
        read_pairs(_write(tmp_path / "h.txt", "pairs\nalice 1 2\n"), people_dir)
    with pytest.raises(EvalError, match="label column"):
        read_pairs(_write(tmp_path / "p.csv", "file_x,file_y\na.jpg,b.jpg\n"), people_dir)
    with pytest.raises(EvalError, match=r"p2\.csv:3: expected two paths and a yes/no"):
        read_pairs(_write(tmp_path / "p2.csv", "a,b,Decision\nx,y,Yes\nx,y,maybe\n"), people_dir)


@pytest.mark.parametrize(
    "labels, extra, message",
    [
        ("clip,people\nmissing.mp4,Alice\n", [], "labels.csv:2: clip not found"),
        ("video,who\nx.mp4,\n", [], "labels.csv:1: the header must be 'clip,people'"),
        ("clip,people\nx.mp4,a,b\n", [], "labels.csv:2: expected 'clip,people', got 3 columns"),
        ("clip,people\n", [], "lists no clip"),
        ("clip,people\nx.mp4,\n", ["--plot", "roc.png"], "--plot is for photo pairs"),
        ("clip,people\nx.mp4,\n", ["DIR"], "not both"),
    ],
)
def test_bad_video_labels_give_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], labels: str, extra: list, message: str
) -> None:
    """Mistakes in ``eval --video`` are found before any model is loaded."""
    (tmp_path / "x.mp4").write_bytes(b"")
    path = _write(tmp_path / "labels.csv", labels)
    gallery = ["--gallery", str(tmp_path / "g.db")]
    args = [*(["eval", str(tmp_path)] if extra == ["DIR"] else ["eval"]), "--video", str(path)]
    assert main([*args, *gallery, *(e for e in extra if e != "DIR"), *SMALL]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert main(["eval", "--video", str(path), *SMALL]) == 2  # no gallery
    assert "needs the gallery" in capsys.readouterr().err


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_template_index_exact_and_faiss() -> None:
    from streamrec.gallery.index import TemplateIndex
    from streamrec.gallery.matcher import Matcher

    rng = np.random.default_rng(0)
    templates = rng.standard_normal((3000, 64)).astype(np.float32)
    templates /= np.linalg.norm(templates, axis=1, keepdims=True)
    owners = np.repeat(np.arange(1000), 3)
    queries = templates[rng.integers(0, 3000, 50)] + 0.05 * rng.standard_normal((50, 64))
    queries = (queries / np.linalg.norm(queries, axis=1, keepdims=True)).astype(np.float32)
    exact = TemplateIndex(templates)  # below the size threshold: exact NumPy
    assert not exact.approximate
    idx, scores = exact.search(queries)
    person, person_score = Matcher([str(i) for i in range(1000)], templates, owners).best(queries)
    np.testing.assert_array_equal(owners[idx], person)
    np.testing.assert_allclose(scores, person_score, atol=1e-5)
    empty_idx, _ = TemplateIndex(np.zeros((0, 64), np.float32)).search(queries)
    assert (empty_idx == -1).all()
    pytest.importorskip("faiss", reason="faiss (the index extra) not installed")
    ivf = TemplateIndex(templates, min_size=1000, nprobe=55)  # 55 lists: every one scanned
    assert ivf.approximate and ivf.nprobe == 55
    found, found_scores = ivf.search(queries)
    np.testing.assert_array_equal(found, idx)
    np.testing.assert_allclose(found_scores, scores, atol=1e-4)
