"""INT8 models: NNCF post-training quantization calibrated on the user's own faces.

``streamrec models optimize MODEL --calibration DIR_OR_VIDEO`` runs the FP32 detector over the
photos and clips given and feeds NNCF what the model sees in use: for a recognizer the ALIGNED
112x112 crops of the faces found (unaligned crops calibrate badly), for a detector the
letterboxed frames. NNCF (``pip install 'streamrec[optimize]'``) writes a QDQ ONNX model, which
the OpenVINO execution provider runs with INT8 kernels.

The result is measured against FP32 on data kept out of the calibration and written only within
the :class:`Bounds`:

* recognizer: cosine of INT8 to FP32 embeddings on held-aside faces (every 4th face, plus the
  faces of the ``--pairs`` images, which are never used for calibration) and, with ``--pairs``,
  the verification accuracy on those pairs at the best and at the model's threshold;
* detector: on held-aside frames (every 4th), the IoU of each FP32 face with its INT8 match and
  the faces lost (no INT8 box with IoU >= 0.5).

Speed before/after is timed on the configured provider (ms per face / per frame).

The model is written beside the original as ``<name>_int8.onnx`` (in the user model cache when
that folder is read-only) with a sidecar ``<name>_int8.onnx.json`` recording its sha256, its
parent's file and sha256, and the measurements. A recognizer is declared
*embedding-compatible* with its parent when its mean cosine is >= :data:`COMPATIBLE_COSINE` and
its verification accuracy (when measured) is within :data:`COMPATIBLE_ACCURACY_DROP` points: a
gallery enrolled with the parent then opens with the INT8 model (see the gallery's recognizer
check). Loosened bounds can write a model that is not compatible; its galleries start anew.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from streamrec.assignment import linear_sum_assignment
from streamrec.config import Config
from streamrec.errors import StreamrecError
from streamrec.evaluation import Pair, accuracy_at, best_accuracy, read_pairs, roc_curve
from streamrec.geometry import box_areas, iou_matrix
from streamrec.media import IMAGE_SUFFIXES, VIDEO_SUFFIXES, read_image
from streamrec.models.alignment import align
from streamrec.models.detector import ScrfdDetector
from streamrec.models.embedder import ArcFaceEmbedder
from streamrec.models.registry import (
    Derived,
    ResolvedModel,
    cache_dir,
    recognizer_threshold,
    resolve,
    sha256_of,
    sidecar_path,
)

log = logging.getLogger("streamrec.optimize")

#: a recognizer this close to its parent keeps the parent's galleries valid
COMPATIBLE_COSINE = 0.98
COMPATIBLE_ACCURACY_DROP = 0.5
#: frames taken from each calibration clip (evenly spread)
FRAMES_PER_VIDEO = 48
#: IoU from which an INT8 box counts as the same face as an FP32 one
MATCH_IOU = 0.5


@dataclass(frozen=True)
class Bounds:
    """Most an INT8 model may lose and still be written."""

    #: recognizer: mean cosine to the FP32 embeddings on held-aside faces
    min_cosine: float = 0.98
    #: recognizer: verification accuracy drop on the --pairs, in points
    max_accuracy_drop: float = 0.5
    #: detector: mean IoU of FP32 faces with their INT8 match
    min_iou: float = 0.9
    #: detector: no FP32 face at least this tall (pixels) may be lost ...
    min_face: int = 32
    #: ... unless its FP32 score was within this margin of ``detector.threshold`` (such a face
    #: is reported: the INT8 score dipping under the threshold is a coin flip, not a loss)
    score_margin: float = 0.1


@dataclass
class Report:
    kind: Literal["detector", "recognizer"]
    parent: str
    samples: dict[str, int]
    speed: dict[str, float]
    metrics: dict[str, Any]
    failures: list[str] = field(default_factory=list)
    embedding_compatible: bool = False
    output: str | None = None

    def format(self) -> str:
        unit = "face" if self.kind == "recognizer" else "frame"
        lines = [
            f"{self.kind} {self.parent}: calibrated on {self.samples['calibration']} "
            f"{unit}s, measured on {self.samples['held_aside']} held-aside {unit}s",
            f"speed: FP32 {self.speed['fp32_ms']:.2f} ms/{unit}, INT8 "
            f"{self.speed['int8_ms']:.2f} ms/{unit} "
            f"({self.speed['fp32_ms'] / max(self.speed['int8_ms'], 1e-9):.2f}x)",
        ]
        lines += [f"{key}: {_fmt(value)}" for key, value in self.metrics.items()]
        if self.kind == "recognizer":
            lines.append(
                "embedding-compatible with the parent (its galleries stay valid): "
                + ("yes" if self.embedding_compatible else "no")
            )
        lines += [f"over the bound: {f}" for f in self.failures]
        if self.output:
            lines.append(f"written: {self.output} (+ {sidecar_path(Path(self.output)).name})")
        return "\n".join(lines)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, dict):
        return ", ".join(f"{k} {_fmt(v)}" for k, v in value.items())
    return str(value)


# --------------------------------------------------------------------------------- inputs


def _video_frames(path: Path, count: int) -> Iterator[np.ndarray]:
    """``count`` BGR frames spread evenly over a clip."""
    import av

    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            total = stream.frames or 0
            step = max(1, total // count) if total else 5
            taken = 0
            for i, frame in enumerate(container.decode(stream)):
                if i % step == 0:
                    yield frame.to_ndarray(format="bgr24")
                    taken += 1
                    if taken >= count:
                        return
    except (av.FFmpegError, IndexError) as exc:
        raise StreamrecError(f"calibration clip {path} cannot be read: {exc}") from None


def calibration_images(sources: list[Path], exclude: set[Path]) -> Iterator[tuple[str, np.ndarray]]:
    """(name, BGR image) for every photo (recursively) and sampled frame of the sources."""
    for src in sources:
        if src.is_dir():
            for f in sorted(src.rglob("*")):
                if f.suffix.lower() in IMAGE_SUFFIXES and f.resolve() not in exclude:
                    try:
                        yield str(f), read_image(f)
                    except StreamrecError as exc:
                        log.info("calibration: skipped %s: %s", f, exc)
                elif f.suffix.lower() in VIDEO_SUFFIXES:
                    for k, frame in enumerate(_video_frames(f, FRAMES_PER_VIDEO)):
                        yield f"{f}#{k}", frame
        elif src.is_file() and src.suffix.lower() in VIDEO_SUFFIXES:
            for k, frame in enumerate(_video_frames(src, FRAMES_PER_VIDEO)):
                yield f"{src}#{k}", frame
        elif src.is_file() and src.suffix.lower() in IMAGE_SUFFIXES:
            if src.resolve() not in exclude:
                yield str(src), read_image(src)
        else:
            raise StreamrecError(
                f"--calibration {src}: not a folder, photo or video clip (folders are searched "
                f"for {', '.join(sorted(IMAGE_SUFFIXES))} and clips)"
            )


# ------------------------------------------------------------------------------ quantization


def quantize(model: Path, samples: list[np.ndarray], output: Path, careful: bool = False) -> None:
    """NNCF post-training INT8 quantization of an ONNX model into a QDQ ONNX file.

    ``careful`` (detectors): asymmetric activations and full bias correction. Measured on
    det_500m (held-aside media frames): faces >= 32 px lost 11 -> 2 of 148, mean IoU 0.97 -> 0.98.
    """
    try:
        import nncf
        import onnx
    except ImportError:
        raise StreamrecError(
            "models optimize needs NNCF: pip install 'streamrec[optimize]' (or pip install nncf)"
        ) from None
    proto = onnx.load(str(model))
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < 13:  # per-channel weight scales need opset 13; older opsets get one per tensor
        proto = onnx.version_converter.convert_version(proto, 13)
    name = proto.graph.input[0].name
    dataset = nncf.Dataset(samples, lambda blob: {name: blob})
    log.info("quantizing %s on %d samples with NNCF %s", model.name, len(samples), nncf.__version__)
    options: dict[str, Any] = (
        {"preset": nncf.QuantizationPreset.MIXED, "fast_bias_correction": False} if careful else {}
    )
    quantized = nncf.quantize(proto, dataset, subset_size=len(samples), **options)
    onnx.save(quantized, str(output))


def _median_ms(fn: Callable[[], object], per: int, runs: int = 7) -> float:
    fn()  # warm-up
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times)) * 1000.0 / per


# ------------------------------------------------------------------------------ recognizer


def _largest(dets: Any) -> int:
    return int(np.argmax(box_areas(dets.boxes)))


def _recognizer(
    cfg: Config,
    parent: ResolvedModel,
    sources: list[Path],
    pairs_file: Path | None,
    bounds: Bounds,
    work: Path,
    max_samples: int,
) -> Report:
    m = cfg.models
    detector = ScrfdDetector(
        resolve(m.detector, "detector", m.dir, m.download).path, cfg.detector, cfg.runtime
    )
    fp32 = ArcFaceEmbedder(parent.path, cfg.embedder, cfg.runtime)
    size = fp32.input_size
    pairs = read_pairs(pairs_file, pairs_file.parent) if pairs_file else []
    pair_images = (
        {(pairs_file.parent / p).resolve() for q in pairs for p in (q.a, q.b)}
        if (pairs_file)
        else set()
    )
    calib: list[np.ndarray] = []
    held: list[np.ndarray] = []
    for _, image in calibration_images(sources, pair_images):
        dets = detector.detect(image)
        for k in range(len(dets)):
            box = dets.boxes[k]
            if box[3] - box[1] < bounds.min_face:
                continue
            crop = align(image, dets.kps[k], size)
            (held if (len(calib) + len(held)) % 4 == 3 else calib).append(crop)
        if len(calib) >= max_samples:
            break
    pair_crops: dict[Path, np.ndarray] = {}
    for path in sorted(pair_images):
        try:
            image = read_image(path)
        except StreamrecError:
            continue
        dets = detector.detect(image)
        if len(dets):
            pair_crops[path] = align(image, dets.kps[_largest(dets)], size)
    held += list(pair_crops.values())
    if len(calib) < 16 or not held:
        raise StreamrecError(
            f"only {len(calib)} faces of {bounds.min_face} px or more found for calibration "
            f"(need 16 or more, plus some held aside): give more photos or clips"
        )
    out = work / f"{parent.path.stem}_int8.onnx"
    quantize(parent.path, [fp32.preprocess([c]) for c in calib], out)
    int8 = ArcFaceEmbedder(out, cfg.embedder, cfg.runtime)
    a, b = fp32.embed(held), int8.embed(held)
    cos = np.sum(a * b, axis=1)
    metrics: dict[str, Any] = {
        "cosine to FP32 (held-aside faces)": {"mean": float(cos.mean()), "min": float(cos.min())}
    }
    failures = []
    if cos.mean() < bounds.min_cosine:
        failures.append(f"mean cosine {cos.mean():.4f} < {bounds.min_cosine}")
    drop = 0.0
    if pairs and pairs_file is not None:
        threshold = recognizer_threshold(parent)
        drop = _verification(pairs, pairs_file, pair_crops, fp32, int8, threshold, metrics)
        if drop > bounds.max_accuracy_drop:
            failures.append(
                f"verification accuracy drops {drop:.2f} points > {bounds.max_accuracy_drop}"
            )
    batch = held[:8]
    speed = {
        "fp32_ms": _median_ms(lambda: fp32.embed(batch), len(batch)),
        "int8_ms": _median_ms(lambda: int8.embed(batch), len(batch)),
    }
    return Report(
        "recognizer",
        parent.name,
        {"calibration": len(calib), "held_aside": len(held)},
        speed,
        metrics,
        failures,
        embedding_compatible=bool(
            cos.mean() >= COMPATIBLE_COSINE and drop <= COMPATIBLE_ACCURACY_DROP
        ),
    )


def _verification(
    pairs: list[Pair],
    pairs_file: Path,
    crops: dict[Path, np.ndarray],
    fp32: ArcFaceEmbedder,
    int8: ArcFaceEmbedder,
    threshold: float,
    metrics: dict[str, Any],
) -> float:
    """Verification accuracy of both models on the held-aside pairs (into ``metrics``); the
    points INT8 loses (at the best threshold or at the model's, whichever is more)."""
    index = {p: i for i, p in enumerate(crops)}
    ea, eb = fp32.embed(list(crops.values())), int8.embed(list(crops.values()))
    usable = [
        (index[pa], index[pb], q.same)
        for q in pairs
        if (pa := (pairs_file.parent / q.a).resolve()) in index
        and (pb := (pairs_file.parent / q.b).resolve()) in index
    ]
    same = np.array([s for _, _, s in usable])
    acc: dict[str, dict[str, float]] = {}
    for label, e in (("FP32", ea), ("INT8", eb)):
        scores = np.array([float(e[i] @ e[j]) for i, j, _ in usable])
        best, best_t = best_accuracy(roc_curve(scores, same))
        acc[label] = {
            "best": 100.0 * best,
            "best_threshold": best_t,
            "at_threshold": 100.0 * accuracy_at(scores, same, threshold),
        }
    metrics[f"verification accuracy on {len(usable)} held-aside pairs, FP32 (%)"] = {
        "best": acc["FP32"]["best"],
        f"at {threshold:.2f}": acc["FP32"]["at_threshold"],
    }
    metrics["verification accuracy, INT8 (%)"] = {
        "best": acc["INT8"]["best"],
        f"at {threshold:.2f}": acc["INT8"]["at_threshold"],
    }
    return max(
        acc["FP32"]["best"] - acc["INT8"]["best"],
        acc["FP32"]["at_threshold"] - acc["INT8"]["at_threshold"],
    )


# -------------------------------------------------------------------------------- detector


def _detector(
    cfg: Config,
    parent: ResolvedModel,
    sources: list[Path],
    bounds: Bounds,
    work: Path,
    max_samples: int,
) -> Report:
    fp32 = ScrfdDetector(parent.path, cfg.detector, cfg.runtime)
    calib: list[np.ndarray] = []
    held: list[np.ndarray] = []
    for i, (_, image) in enumerate(calibration_images(sources, set())):
        if i % 4 == 3:
            held.append(image)
        else:
            in_w, in_h = fp32.input_for(image.shape[1], image.shape[0])
            calib.append(fp32._letterbox(image, in_w, in_h)[0])
        if len(calib) >= max_samples:
            break
    if len(calib) < 8 or not held:
        raise StreamrecError(
            f"only {len(calib) + len(held)} frames for calibration (need 11 or more): give "
            f"more photos or clips"
        )
    out = work / f"{parent.path.stem}_int8.onnx"
    quantize(parent.path, calib, out, careful=True)
    int8 = ScrfdDetector(out, cfg.detector, cfg.runtime)
    ious: list[float] = []
    big_ious: list[float] = []
    faces = big = lost = big_lost = confident_lost = extra = 0
    confident = cfg.detector.threshold + bounds.score_margin
    for image in held:
        a, b = fp32.detect(image), int8.detect(image)
        tall = (a.boxes[:, 3] - a.boxes[:, 1]) >= bounds.min_face
        faces += len(a)
        big += int(tall.sum())
        iou = iou_matrix(a.boxes, b.boxes)
        best = np.zeros(len(a), np.float32)
        if len(a) and len(b):
            rows, cols = linear_sum_assignment(-iou)
            best[rows] = iou[rows, cols]
        matched = best >= MATCH_IOU
        lost += int((~matched).sum())
        big_lost += int((~matched & tall).sum())
        confident_lost += int((~matched & tall & (a.scores >= confident)).sum())
        extra += len(b) - int(matched.sum())
        ious += best[matched].tolist()
        big_ious += best[matched & tall].tolist()
    mean_big = float(np.mean(big_ious)) if big_ious else 1.0
    metrics = {
        f"FP32 faces (>= {bounds.min_face} px)": f"{faces} ({big})",
        f"IoU of FP32 faces >= {bounds.min_face} px with INT8": {
            "mean": mean_big,
            "min": float(np.min(big_ious)) if big_ious else 1.0,
        },
        "IoU of all matched faces": {"mean": float(np.mean(ious)) if ious else 1.0},
        "recall vs FP32": {
            f">= {bounds.min_face} px": 1.0 - big_lost / max(big, 1),
            "all": 1.0 - lost / max(faces, 1),
        },
        f"faces >= {bounds.min_face} px lost": f"{big_lost}, of them with an FP32 score >= "
        f"{confident:.2f}: {confident_lost}",
        "INT8 faces FP32 did not find": extra,
    }
    failures = []
    if mean_big < bounds.min_iou:
        failures.append(f"mean IoU {mean_big:.4f} < {bounds.min_iou}")
    if confident_lost:
        failures.append(
            f"{confident_lost} face(s) of {bounds.min_face} px or more with an FP32 score >= "
            f"{confident:.2f} lost"
        )
    frame = held[0]
    speed = {
        "fp32_ms": _median_ms(lambda: fp32.detect(frame), 1),
        "int8_ms": _median_ms(lambda: int8.detect(frame), 1),
    }
    return Report(
        "detector",
        parent.name,
        {"calibration": len(calib), "held_aside": len(held)},
        speed,
        metrics,
        failures,
    )


# ------------------------------------------------------------------------------------ entry


def _kind(path: Path) -> Literal["detector", "recognizer"]:
    import onnx

    outputs = onnx.load(str(path), load_external_data=False).graph.output
    return "detector" if len(outputs) >= 6 else "recognizer"


def default_output(parent: Path) -> Path:
    """``<stem>_int8.onnx`` beside the parent, or in the model cache when that is read-only."""
    name = f"{parent.stem}_int8.onnx"
    if os.access(parent.parent, os.W_OK):
        return parent.parent / name
    return cache_dir() / name


def optimize(
    cfg: Config,
    model: str,
    sources: list[Path],
    pairs: Path | None = None,
    output: Path | None = None,
    bounds: Bounds | None = None,
    max_samples: int = 300,
) -> Report:
    """Quantize ``model``, measure it against FP32 and write it (with its sidecar) if in bounds."""
    bounds = bounds or Bounds()
    for src in sources:
        if not src.exists():
            raise StreamrecError(f"--calibration {src}: no such file or folder")
    if pairs is not None and not pairs.is_file():
        raise StreamrecError(f"--pairs {pairs}: no such file")
    known = resolve(model, "recognizer", cfg.models.dir, cfg.models.download)
    if known.derived is not None:
        raise StreamrecError(
            f"{known.name} is already optimized (from {known.derived.parent_file}): optimize "
            f"{known.derived.parent_file} instead"
        )
    kind = known.info.kind if known.info is not None else _kind(known.path)
    target = output or default_output(known.path)
    with tempfile.TemporaryDirectory(prefix="streamrec-optimize-") as tmp:
        if kind == "recognizer":
            report = _recognizer(cfg, known, sources, pairs, bounds, Path(tmp), max_samples)
        else:
            if pairs is not None:
                raise StreamrecError("--pairs is for recognizers; a detector is measured on frames")
            report = _detector(cfg, known, sources, bounds, Path(tmp), max_samples)
        if report.failures:
            return report
        target.parent.mkdir(parents=True, exist_ok=True)
        staged = target.with_name(target.name + ".part")
        shutil.move(Path(tmp) / f"{known.path.stem}_int8.onnx", staged)
        staged.replace(target)
    record = {
        "file": target.name,
        "sha256": sha256_of(target),
        "kind": kind,
        "precision": "INT8",
        "parent": {"file": known.name, "sha256": known.sha256},
        "embedding_compatible": report.embedding_compatible,
        "method": "NNCF post-training quantization, QDQ ONNX",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "bounds": asdict(bounds),
        "measured": {"samples": report.samples, "speed": report.speed, **report.metrics},
    }
    side = sidecar_path(target)
    side.with_suffix(".part").write_text(json.dumps(record, indent=2))
    side.with_suffix(".part").replace(side)
    Derived.read(target)  # the record reads back
    report.output = str(target)
    return report
