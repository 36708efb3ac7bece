"""Face verification evaluation: labelled photo pairs -> ROC, accuracy, TAR@FAR and thresholds.

Every image is detected, aligned and embedded once by the Recognition service (the largest face
counts); a pair's score is the cosine similarity of its two embeddings, and "same person" is
predicted when score >= threshold.
Pairs come from a pairs file (LFW ``pairs.txt`` or a CSV with two paths and a yes/no label) or
are built from a folder with one sub-folder per person.
"""

from __future__ import annotations

import csv
import itertools
import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from streamrec.media import image_files, read_image
from streamrec.progress import progress_bar

from .analyzer import FaceAnalyzer
from .errors import StreamrecError
from .recognition import Recognition

#: false accept rates reported with their true accept rate
FARS = (1e-2, 1e-3)
_YES = {"yes", "y", "true", "1", "same", "match", "genuine", "positive"}
_NO = {"no", "n", "false", "0", "different", "diff", "impostor", "negative", "mismatch"}
_LABEL_COLUMNS = ("decision", "label", "same", "is_same", "issame", "match", "target", "y")


class EvalError(StreamrecError):
    """Unusable evaluation input: missing folder, malformed pairs file, no usable pairs."""


@dataclass(frozen=True)
class Pair:
    a: str  # image paths relative to the evaluation folder
    b: str
    same: bool


# ---------------------------------------------------------------------------- pairs


def read_pairs(path: Path, root: Path) -> list[Pair]:
    """Pairs from an LFW ``pairs.txt`` or a CSV (two path columns + a same/different label)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise EvalError(f"cannot read pairs file {path}: {exc}") from None
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        raise EvalError(f"pairs file {path} is empty")
    pairs = _csv_pairs(path, lines, root) if "," in lines[0] else _lfw_pairs(path, lines)
    if not pairs:
        raise EvalError(f"pairs file {path} has no pairs")
    return pairs


def _lfw_pairs(path: Path, lines: list[str]) -> list[Pair]:
    """LFW format: a header "N" or "folds N", then "name i j" (same) or "name1 i name2 j"."""
    header = lines[0].split()
    if not header or not all(t.isdigit() for t in header) or len(header) > 2:
        raise EvalError(
            f"{path}:1: expected the LFW header 'N' or 'folds N', got {lines[0].strip()!r}"
        )
    pairs = []
    for no, line in enumerate(lines[1:], start=2):
        t = line.split()
        try:
            if len(t) == 3:
                pairs.append(Pair(_lfw_file(t[0], t[1]), _lfw_file(t[0], t[2]), True))
                continue
            if len(t) == 4:
                pairs.append(Pair(_lfw_file(t[0], t[1]), _lfw_file(t[2], t[3]), False))
                continue
        except ValueError:
            pass
        raise EvalError(
            f"{path}:{no}: expected 'name idx1 idx2' or 'name1 idx1 name2 idx2', got "
            f"{line.strip()!r}"
        )
    return pairs


def _lfw_file(name: str, index: str) -> str:
    return f"{name}/{name}_{int(index):04d}.jpg"


def _csv_pairs(path: Path, lines: list[str], root: Path) -> list[Pair]:
    """A CSV with a header: the first two path-like columns and a same/different label."""
    rows = list(csv.reader(lines))
    header = [h.strip().lower() for h in rows[0]]
    label = next((header.index(c) for c in _LABEL_COLUMNS if c in header), None)
    files = [
        i
        for i, h in enumerate(header)
        if i != label and any(k in h for k in ("file", "path", "img", "image"))
    ]
    if len(files) < 2:
        files = [i for i in range(len(header)) if i != label][:2]
    if label is None or len(files) < 2:
        raise EvalError(
            f"{path}: a CSV pairs file needs two image-path columns and a label column "
            f"(one of {', '.join(_LABEL_COLUMNS)}); its header is {','.join(rows[0])}"
        )
    ia, ib = files[:2]
    pairs = []
    for no, row in enumerate(rows[1:], start=2):
        value = row[label].strip().lower() if len(row) > max(ia, ib, label) else ""
        if value not in _YES | _NO:
            raise EvalError(
                f"{path}:{no}: expected two paths and a yes/no label in columns "
                f"{rows[0][ia]}, {rows[0][ib]}, {rows[0][label]}, got {','.join(row)!r}"
            )
        pairs.append(Pair(_locate(root, row[ia]), _locate(root, row[ib]), value in _YES))
    return pairs


def _locate(root: Path, rel: str) -> str:
    """``rel`` under ``root``; leading folders that do not exist there are dropped.

    Pairs files of other projects often name images by their path in that project
    (``deepface/tests/dataset/img1.jpg``) while the folder given holds ``img1.jpg``.
    """
    parts = Path(rel.strip().replace("\\", "/")).parts
    for i in range(len(parts)):
        candidate = Path(*parts[i:])
        if (root / candidate).is_file():
            return candidate.as_posix()
    return Path(*parts).as_posix() if parts else rel


def folder_pairs(root: Path, negatives: int | None = None, seed: int = 0) -> list[Pair]:
    """All same-person pairs of a folder-per-person tree and a seeded sample of others.

    ``negatives`` different-person pairs are drawn (default: as many as same-person pairs;
    capped at the number that exist).
    """
    people = sorted(d for d in root.iterdir() if d.is_dir())
    photos = {d.name: [f"{d.name}/{f.name}" for f in image_files(d)] for d in people}
    photos = {k: v for k, v in photos.items() if v}
    if len(photos) < 2:
        raise EvalError(
            f"{root} needs at least two sub-folders of photos (one per person), or use --pairs"
        )
    same = [
        Pair(a, b, True) for files in photos.values() for a, b in itertools.combinations(files, 2)
    ]
    owners = [(f, name) for name, files in photos.items() for f in files]
    cross = [
        (i, j)
        for i, j in itertools.combinations(range(len(owners)), 2)
        if owners[i][1] != owners[j][1]
    ]
    wanted = min(len(same) if negatives is None else negatives, len(cross))
    picked = sorted(random.Random(seed).sample(range(len(cross)), wanted))
    diff = [Pair(owners[cross[k][0]][0], owners[cross[k][1]][0], False) for k in picked]
    return same + diff


# ---------------------------------------------------------------------------- embeddings


class EmbeddingCache:
    """The largest face's embedding of each image, computed once per run.

    ``problems`` maps the images that yield no embedding to the reason (not found, unreadable,
    no face); ``multi_face`` lists images where the largest of several faces was used.
    """

    def __init__(self, recognition: Recognition, root: Path) -> None:
        self.recognition = recognition
        self.root = root
        self.embeddings: dict[str, np.ndarray | None] = {}
        self.problems: dict[str, str] = {}
        self.multi_face: list[str] = []

    def get(self, rel: str) -> np.ndarray | None:
        if rel not in self.embeddings:
            self.embeddings[rel] = self._compute(rel)
        return self.embeddings[rel]

    def _compute(self, rel: str) -> np.ndarray | None:
        try:
            image = read_image(self.root / rel)
        except StreamrecError as exc:
            self.problems[rel] = "not found" if "not found" in str(exc) else "unreadable"
            return None
        faces = self.recognition.faces(image)
        if not faces:
            self.problems[rel] = "no face"
            return None
        if len(faces) > 1:
            self.multi_face.append(rel)
        return max(faces, key=lambda f: f.area).embedding


# ---------------------------------------------------------------------------- metrics


@dataclass
class Roc:
    """ROC over every distinct score: at ``thresholds[i]`` (score >= t is "same"), the
    false and true accept rates are ``fpr[i]`` and ``tpr[i]``; thresholds descend from +inf.
    ``lower[i]`` is the next lower score, so any threshold in (lower[i], thresholds[i]]
    gives the same decisions."""

    thresholds: np.ndarray
    lower: np.ndarray
    fpr: np.ndarray
    tpr: np.ndarray
    positives: int
    negatives: int

    def threshold(self, i: int) -> float:
        """A representative threshold for operating point ``i``: mid-way to the next score."""
        hi, lo = float(self.thresholds[i]), float(self.lower[i])
        if math.isinf(hi):
            return lo + 1e-6
        if math.isinf(lo):
            return hi
        return (hi + lo) / 2


def roc_curve(scores: np.ndarray, same: np.ndarray) -> Roc:
    scores = np.asarray(scores, np.float64)
    same = np.asarray(same, bool)
    positives, negatives = int(same.sum()), int((~same).sum())
    if positives == 0 or negatives == 0:
        raise EvalError(
            f"need both same-person and different-person pairs (have {positives} same, "
            f"{negatives} different)"
        )
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], same[order]
    last = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]  # last index of each distinct score
    tps = np.r_[0, np.cumsum(y)[last]]
    fps = np.r_[0, np.cumsum(~y)[last]]
    thresholds = np.r_[np.inf, s[last]]
    lower = np.r_[s[last], -np.inf]
    return Roc(thresholds, lower, fps / negatives, tps / positives, positives, negatives)


def roc_auc(roc: Roc) -> float:
    fpr, tpr = np.r_[roc.fpr, 1.0], np.r_[roc.tpr, 1.0]
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))


def best_accuracy(roc: Roc) -> tuple[float, float]:
    """(accuracy, threshold) at the threshold with the highest verification accuracy."""
    correct = roc.tpr * roc.positives + (1 - roc.fpr) * roc.negatives
    i = int(np.argmax(correct))
    return float(correct[i] / (roc.positives + roc.negatives)), roc.threshold(i)


def accuracy_at(scores: np.ndarray, same: np.ndarray, threshold: float) -> float:
    return float(np.mean((np.asarray(scores) >= threshold) == np.asarray(same, bool)))


def tar_at_far(roc: Roc, far: float) -> tuple[float, float] | None:
    """(TAR, threshold) at the lowest threshold whose FAR <= ``far``; None with fewer than
    1/far different-person pairs (the FAR could not be measured)."""
    if roc.negatives < needed_negatives(far):
        return None
    i = int(np.nonzero(roc.fpr <= far + 1e-12)[0][-1])
    return float(roc.tpr[i]), roc.threshold(i)


def needed_negatives(far: float) -> int:
    return math.ceil(1 / far - 1e-9)


def far_label(far: float) -> str:
    return f"{far:.0e}".replace("e-0", "e-")


# ---------------------------------------------------------------------------- evaluation


@dataclass
class EvalResult:
    report: dict[str, Any]
    roc: Roc
    details: list[tuple[Pair, float]] = field(default_factory=list)

    def format_table(self) -> str:
        r = self.report
        p = r["pairs"]
        lines = [
            f"model: {r['model']['detector']} + {r['model']['recognizer']}",
            f"images: {r['images']['total']}, without an embedding: "
            f"{len(r['images']['problems'])}, several faces (largest used): "
            f"{len(r['images']['multi_face'])}",
            f"pairs: {p['used']} used (same {p['same']}, different {p['different']}), "
            f"{p['skipped']} skipped",
            f"{'metric':28} {'value':>10}  threshold",
            f"{'ROC AUC':28} {r['roc_auc']:>10.4f}  -",
        ]
        for key, label in (
            ("best", "accuracy (best threshold)"),
            ("configured", "accuracy (configured)"),
        ):
            a = r["accuracy"][key]
            lines.append(f"{label:28} {a['accuracy']:>10.2%}  {a['threshold']:.3f}")
        for far, v in r["tar_at_far"].items():
            label = f"TAR @ FAR={far}"
            if isinstance(v, str):
                lines.append(f"{label:28} {v}")
            else:
                lines.append(f"{label:28} {v['tar']:>10.2%}  {v['threshold']:.3f}")
        return "\n".join(lines)


def evaluate(
    analyzer: FaceAnalyzer,
    root: Path,
    pairs_file: Path | None = None,
    negatives: int | None = None,
    seed: int = 0,
    progress: bool = False,
) -> EvalResult:
    """Score every pair of ``root`` (from ``pairs_file`` or its person sub-folders);
    ``progress``: a progress bar over the pairs (when stderr is a terminal)."""
    if not root.is_dir():
        raise EvalError(f"not a folder: {root}")
    if pairs_file is not None and not pairs_file.is_file():
        raise EvalError(f"pairs file not found: {pairs_file}")
    pairs = read_pairs(pairs_file, root) if pairs_file else folder_pairs(root, negatives, seed)
    cache = EmbeddingCache(Recognition(analyzer), root)  # pairs of photos: no gallery
    details = []
    for pair in progress_bar(progress, iterable=pairs, unit="pair"):
        ea, eb = cache.get(pair.a), cache.get(pair.b)
        if ea is not None and eb is not None:
            details.append((pair, float(ea @ eb)))
    if not details:
        problems = ", ".join(f"{k} ({v})" for k, v in list(cache.problems.items())[:3])
        raise EvalError(f"no usable pair in {root}: no embedding for {problems} ...")
    scores = np.array([s for _, s in details])
    same = np.array([p.same for p, _ in details])
    roc = roc_curve(scores, same)
    acc, best_t = best_accuracy(roc)
    configured = float(analyzer.threshold)
    tars: dict[str, Any] = {}
    for far in FARS:
        tar = tar_at_far(roc, far)
        tars[far_label(far)] = (
            f"n/a (needs {needed_negatives(far)} negative pairs)"
            if tar is None
            else {"tar": tar[0], "threshold": tar[1]}
        )
    report: dict[str, Any] = {
        "dir": str(root),
        "pairs_file": str(pairs_file) if pairs_file else None,
        "model": {
            "detector": analyzer.detector_model.name,
            "recognizer": analyzer.recognizer_model.name,
            "recognizer_sha256": analyzer.recognizer_model.sha256,
        },
        "images": {
            "total": len(cache.embeddings),
            "problems": cache.problems,
            "multi_face": sorted(cache.multi_face),
        },
        "pairs": {
            "total": len(pairs),
            "used": len(details),
            "same": int(same.sum()),
            "different": int((~same).sum()),
            "skipped": len(pairs) - len(details),
        },
        "roc_auc": roc_auc(roc),
        "accuracy": {
            "best": {"accuracy": acc, "threshold": best_t},
            "configured": {
                "accuracy": accuracy_at(scores, same, configured),
                "threshold": configured,
                "tar": float(np.mean(scores[same] >= configured)),
                "far": float(np.mean(scores[~same] >= configured)),
            },
        },
        "tar_at_far": tars,
        "scores": [{"a": p.a, "b": p.b, "same": p.same, "score": round(s, 6)} for p, s in details],
    }
    return EvalResult(report, roc, details)


def plot_roc(result: EvalResult, path: Path) -> None:
    """ROC curve (log-scale FAR) as a PNG; needs matplotlib (the ``eval`` extra)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise EvalError(
            "--plot needs matplotlib: pip install 'streamrec[eval]' (or pip install matplotlib)"
        ) from None
    roc, r = result.roc, result.report
    floor = 1.0 / (roc.negatives * 10)
    fig, ax = plt.subplots(figsize=(6, 4.5), dpi=100)
    ax.step(np.maximum(roc.fpr, floor), roc.tpr, where="post", label=f"AUC {r['roc_auc']:.4f}")
    t = r["accuracy"]["configured"]
    ax.plot(
        [max(t["far"], floor)], [t["tar"]], "o", label=f"configured threshold {t['threshold']:.2f}"
    )
    ax.set_xscale("log")
    ax.set_xlim(floor, 1.0)
    ax.set_ylim(0.0, 1.01)
    ax.set_xlabel("false accept rate (different-person pairs accepted)")
    ax.set_ylabel("true accept rate")
    ax.set_title(
        f"{r['model']['recognizer']}: {r['pairs']['same']} same / "
        f"{r['pairs']['different']} different pairs",
        fontsize=10,
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    try:
        fig.savefig(path, format="png")
    except OSError as exc:
        raise EvalError(f"cannot write plot {path}: {exc}") from None
    finally:
        plt.close(fig)
