"""Calibrate face quality and the naming rule on the media (a tool, not a test; 2-5 minutes).

    export STREAMREC_MODELS=../shared/models STREAMREC_MEDIA=../shared/media
    PYTHONPATH=. python tests/calibrate_quality.py   # from the project folder

1. Every video of the media at its own size and scaled to 50, 30, 20 and 15% (H.264 CRF 32, as
   a far camera sees it): faces detected every 3rd frame at full resolution, tracked, aligned,
   embedded, with their cues (height, detector score, pose, sharpness of the aligned crop).
2. Who each face is: the webcam man (template: his full-size faces in ``default.wmv``), the
   woman of the phone clip (her first 60 frames), the three people of ``multi_face.avi``
   (k-means of their full-size faces), Lin-Manuel Miranda in the Hamilton clip (similarity to
   his photo >= 0.35); a scaled face is the full-size face at the same place; pedestrians are
   nobody.
3. Quality: ``cap * sigmoid(w . cues + b)`` fitted by least squares to each face's similarity
   to its person's template, with and without sharpness; leave-one-clip-out Spearman.
4. The naming rule: tracks against 35 people they are not (29 photo identities of the media,
   the 6 people above): how high strangers' faces and the quality-weighted means of strangers'
   tracks (2 to 40 embeddings) reach, per number of embeddings and quality.

It prints the constants of ``streamrec/models/quality.py`` and the tables behind the defaults
of ``recognition.single_face_margin`` (see ``streamrec/pipeline/identity.py``).
"""

from __future__ import annotations

import collections
import csv
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
from scipy.optimize import least_squares
from scipy.stats import spearmanr

from streamrec import FaceAnalyzer, load_config, read_image
from streamrec.geometry import iou_matrix
from streamrec.media import image_files
from streamrec.models.alignment import align
from streamrec.models.quality import evidence_weight, pose_factor, sharpness
from streamrec.pipeline.tracking import IoUTracker
from streamrec.sources import open_source

MEDIA = Path(os.environ.get("STREAMREC_MEDIA", "../shared/media"))
CLIPS = {  # name: (path, frames used)
    "default": ("webcam_clips/default.wmv", 150),
    "changeLighting": ("webcam_clips/changeLighting.wmv", 150),
    "video14": ("webcam_clips/Video_14.wmv", 171),
    "inspire": ("insightface/inspireface_810_1684206192.mp4", 345),
    "multi": ("webcam_clips/multi_face.avi", 300),
    "hamilton": ("face_recognition/short_hamilton_clip.mp4", 275),
    "ped": ("facenet_pytorch/video.mp4", 105),
}
SCALES = (100, 50, 30, 20, 15)  # percent (the 1080p pedestrians: half of it)


def analyzer(size: int) -> FaceAnalyzer:
    overrides = {
        "models.detector": "det_500m.onnx",
        "models.recognizer": "mobilefacenet_128d.onnx",
        "models.download": False,
        "detector.input_size": size,
    }
    return FaceAnalyzer.from_config(load_config(None, overrides))


def scaled(src: Path, out: Path, percent: int, frames: int, halve: bool) -> None:
    s = percent / (200 if halve else 100)
    vf = (
        f"scale=trunc(iw*{s}/2)*2:trunc(ih*{s}/2)*2:flags=area,"
        "pad=ceil(iw/32)*32+64:ceil(ih/32)*32+64:32:32:color=0x303030,format=yuv420p"
    )
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-i", str(src), "-frames:v", str(frames), "-vf", vf,
         "-c:v", "libx264", "-crf", "32", "-preset", "veryfast", "-an", str(out)],
        check=True,
    )  # fmt: skip


def collect(tmp: Path) -> list[dict]:
    """Every 3rd frame's faces of every clip and scale, with cues, tracks and embeddings."""
    models: dict[int, FaceAnalyzer] = {}
    faces = []
    for name, (rel, limit) in CLIPS.items():
        for percent in SCALES:
            path = MEDIA / rel
            if percent != 100:
                path = tmp / f"{name}_{percent}.mp4"
                scaled(MEDIA / rel, path, percent, limit, name == "ped")
            tracker = IoUTracker(0.3, 2)
            with open_source(str(path)) as source:
                for frame in source:
                    if frame.index >= limit:
                        break
                    if frame.index % 3:
                        tracker.update(frame.index, None)
                        continue
                    image = frame.image
                    size = min(1280, -(-max(image.shape[:2]) // 32) * 32)
                    if size not in models:
                        models[size] = analyzer(size)
                    a = models[size]
                    dets = a.detect(image)
                    for t in tracker.update(frame.index, dets).active:
                        if t.det_index < 0:
                            continue
                        crop = align(image, t.kps, 112)
                        faces.append(
                            {
                                "clip": name, "scale": percent, "frame": frame.index,
                                "track": t.track_id, "box": t.box.copy(),
                                "height": float(t.box[3] - t.box[1]), "score": t.det_score,
                                "pose": pose_factor(t.kps), "sharp": sharpness(crop),
                                **dict(zip(("e", "norm"),
                                           (v[0] for v in a.embedder.embed_with_norms([crop])),
                                           strict=True)),
                            }
                        )  # fmt: skip
            count = sum(f["clip"] == name and f["scale"] == percent for f in faces)
            print(f"{name} {percent}%: {count} faces", flush=True)
    return faces


def photo_people(a: FaceAnalyzer) -> dict[str, np.ndarray]:
    """The media's labelled photos: each person's embeddings (largest face per photo)."""
    photos: dict[str, list[Path]] = collections.defaultdict(list)
    with open(MEDIA / "deepface/identities.csv") as f:
        for row in csv.reader(f):
            if row[0].endswith(".jpg"):
                photos[f"deepface {row[1]}"].append(MEDIA / "deepface" / row[0])
    for d in sorted((MEDIA / "face_recognition/knn_examples/train").iterdir()):
        photos[f"knn {d.name}"] += image_files(d)
    for d in sorted((MEDIA / "facenet_pytorch/test_images").iterdir()):
        photos[f"facenet {d.name}"] += image_files(d)
    for person in ("lennon", "clapton", "adams", "carell"):
        photos[person] += sorted((MEDIA / "openface_examples").glob(f"{person}*"))
    for person, pattern in (("rob lowe", "Rob_Lowe*"), ("tom hanks", "Tom_Hanks*"),
                            ("nathalie baye", "Nathalie_Baye*"), ("kun", "kun.jpg")):  # fmt: skip
        photos[person] += sorted((MEDIA / "insightface").glob(pattern))
    people = {}
    for person, paths in photos.items():
        found = []
        for p in paths:
            image = read_image(p)
            dets = a.detect(image)
            if len(dets):
                area = (dets.boxes[:, 2] - dets.boxes[:, 0]) * (dets.boxes[:, 3] - dets.boxes[:, 1])
                found.append(a.embed(image, dets[int(np.argmax(area))])[0])
        if found:
            people[person] = np.array(found)
    return people


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def label(faces: list[dict], lin: np.ndarray) -> dict[str, np.ndarray]:
    """Who each face is (``id``), and the templates of the clips' people."""
    full = [f for f in faces if f["scale"] == 100]
    templates = {
        "webcam man": unit(np.mean([f["e"] for f in full if f["clip"] == "default"], axis=0)),
        "woman": unit(
            np.mean([f["e"] for f in full if f["clip"] == "inspire" and f["frame"] < 60], axis=0)
        ),
        "lin": lin,
    }
    multi = [f for f in full if f["clip"] == "multi"]
    x = np.array([f["e"] for f in multi], np.float32)
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 100, 1e-4)
    cv2.setRNGSeed(0)
    _, groups, _ = cv2.kmeans(x, 3, None, criteria, 10, cv2.KMEANS_PP_CENTERS)
    for g in range(3):
        templates[f"multi {g}"] = unit(x[groups.ravel() == g].mean(axis=0))
    for f, g in zip(multi, groups.ravel(), strict=True):
        f["id"] = f"multi {g}"
    for f in full:
        if f["clip"] in ("default", "changeLighting", "video14"):
            f["id"] = "webcam man"
        elif f["clip"] == "inspire":
            f["id"] = "woman"
        elif f["clip"] == "hamilton":
            f["id"] = "lin" if float(f["e"] @ lin) >= 0.35 else None
        elif f["clip"] == "ped":
            f["id"] = None
    at = collections.defaultdict(list)
    for f in full:
        at[f["clip"], f["frame"]].append(f)
    for f in faces:
        if f["scale"] == 100:
            continue
        s = f["scale"] / (200 if f["clip"] == "ped" else 100)
        same = at[f["clip"], f["frame"]]
        f["id"] = None
        if same:
            overlap = iou_matrix(((f["box"] - 32) / s)[None], np.array([g["box"] for g in same]))[0]
            if overlap.max() > 0.3:
                f["id"] = same[int(overlap.argmax())].get("id")
    return templates


def cues(f: dict, with_sharpness: bool, norm: bool = False) -> list[float]:
    out = [np.log(max(f["height"], 1.0)), f["score"], f["pose"]]
    out = [*out, np.log1p(f["sharp"])] if with_sharpness else out
    return [*out, f["norm"]] if norm else out


def fit_quality(faces: list[dict], templates: dict[str, np.ndarray]) -> None:
    # the full-size faces the templates were made of are left out (their similarity is inflated)
    full_size = ("default", "inspire", "multi")
    known = [f for f in faces if f.get("id") and not (f["scale"] == 100 and f["clip"] in full_size)]
    y = np.array([float(f["e"] @ templates[f["id"]]) for f in known])
    clips = np.array([f["clip"] for f in known])

    def model(p: np.ndarray, x: np.ndarray) -> np.ndarray:
        return p[0] / (1 + np.exp(-(x @ p[1:-1] + p[-1])))

    def fit(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        start = np.r_[0.9, np.zeros(x.shape[1]), 0.0]
        return least_squares(lambda q: model(q, x) - y, start).x

    def held_out(x: np.ndarray) -> float:
        held = np.zeros(len(y))
        for clip in set(clips):
            train = clips != clip
            held[~train] = model(fit(x[train], y[train]), x[~train])
        return float(spearmanr(held, y)[0])

    for with_sharpness in (False, True):
        x = np.array([cues(f, with_sharpness) for f in known])
        p = fit(x, y)
        names = ["cap", "w_height", "w_score", "w_pose", *(["w_sharp"] * with_sharpness), "bias"]
        constants = dict(zip(names, np.round(p, 3).tolist(), strict=True))
        print(
            "ALIGNED" if with_sharpness else "BEFORE_ALIGNMENT",
            constants,
            f"leave-one-clip-out Spearman {held_out(x):.3f} on {len(y)} faces",
        )
        for f in faces:
            q = model(p, np.array([cues(f, with_sharpness)]))[0]
            f["q" if with_sharpness else "q0"] = float(np.clip(q, 0.01, 0.95))
    # the norm of the un-normalised feature (MagFace): alone, and beside the other cues
    norm = held_out(np.array([[f["norm"]] for f in known]))
    height = held_out(np.array([[np.log(max(f["height"], 1.0))] for f in known]))
    both = held_out(np.array([cues(f, True, norm=True) for f in known]))
    print(f"feature norm alone: Spearman {norm:.3f} (face height alone {height:.3f}); all cues "
          f"and the norm {both:.3f}")  # fmt: skip


def strangers(faces: list[dict], people: dict[str, np.ndarray]) -> None:
    """How close strangers come: single faces, and quality-weighted means of their tracks."""
    names = list(people)
    rows = np.concatenate([people[n] for n in names])
    owner = np.concatenate([[i] * len(people[n]) for i, n in enumerate(names)])

    def scores(e: np.ndarray) -> np.ndarray:
        out = np.full(len(names), -1.0)
        np.maximum.at(out, owner, rows @ e)
        return out

    def not_them(clip: str, person: str | None, other: str) -> bool:
        same = {  # the clips' own people, and the photos of people in the Hamilton clip
            "default": {"webcam man"}, "changeLighting": {"webcam man"},
            "video14": {"webcam man"}, "inspire": {"woman"},
            "multi": {"multi 0", "multi 1", "multi 2"},
            "hamilton": {"lin", "knn obama", "knn alex_lacamoire"},
        }.get(clip, set())  # fmt: skip
        return other not in same and other != person

    tracks = collections.defaultdict(list)
    for f in faces:
        tracks[f["clip"], f["scale"], f["track"]].append(f)
    single, means = [], []
    for (clip, _, _), fs in tracks.items():
        fs = sorted(fs, key=lambda f: f["frame"])[:40]
        person = collections.Counter(f.get("id") for f in fs).most_common(1)[0][0]
        allowed = np.array([not_them(clip, person, n) for n in names])
        total, weights = 0.0, []
        for k, f in enumerate(fs, start=1):
            w = evidence_weight(f["q"])
            total = total + w * f["e"]
            weights.append(w)
            mean_scores = np.where(allowed, scores(unit(total)), -1)
            best = int(np.argmax(mean_scores))
            single.append((f["q"], float(np.where(allowed, scores(f["e"]), -1)[best])))
            if k >= 2:
                means.append((k, np.mean([g["q"] for g in fs[:k]]), float(mean_scores[best])))
    s = np.array(single)
    print(f"strangers' single faces, at the person their track's mean is closest to: "
          f"max {s[:, 1].max():.3f}, 99.9th percentile {np.percentile(s[:, 1], 99.9):.3f} "
          f"({len(s)} faces)")  # fmt: skip
    m = np.array(means)
    print(f"strangers' track means (2 to 40 embeddings): max {m[:, 2].max():.3f} "
          f"({len(m)} track prefixes)")  # fmt: skip
    for lo, hi in ((2, 3), (4, 8), (9, 40)):
        for qlo, qhi in ((0, 0.3), (0.3, 0.5), (0.5, 1)):
            sel = (m[:, 0] >= lo) & (m[:, 0] <= hi) & (m[:, 1] >= qlo) & (m[:, 1] < qhi)
            if sel.any():
                print(f"  {lo}-{hi} embeddings, mean quality {qlo}-{qhi}: max "
                      f"{m[sel, 2].max():.3f} ({sel.sum()})")  # fmt: skip


def main() -> int:
    a = analyzer(640)
    with tempfile.TemporaryDirectory() as tmp:
        faces = collect(Path(tmp))
    lin_photo = read_image(MEDIA / "face_recognition/lin-manuel-miranda.png")
    lin = a.analyze(lin_photo)[0].embedding
    templates = label(faces, lin)
    fit_quality(faces, templates)
    people = photo_people(a)
    people.update({n: t[None] for n, t in templates.items()})
    strangers(faces, people)
    return 0


if __name__ == "__main__":
    sys.exit(main())
