"""Command-line interface: ``streamrec`` (and ``python run.py``)."""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import cli_history
from .config import MAX_SECONDS, Config, load_config
from .errors import MediaError, StreamrecError
from .files import private_dir, write_private
from .logs import configure_logging, setup_logging
from .redact import redact
from .version import __version__

if TYPE_CHECKING:
    from .analyzer import FaceAnalyzer
    from .gallery.store import Gallery, GalleryPolicy
    from .recognition import Recognition

log = logging.getLogger("streamrec")


def _common(p: argparse.ArgumentParser, gallery: bool = True) -> None:
    p.add_argument(
        "--config",
        metavar="FILE",
        help="YAML config file with the keys to change (default: none, the built-in defaults; "
        "'streamrec config example default' prints every key)",
    )
    p.add_argument(
        "--set",
        dest="overrides",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="override a config key, e.g. --set detector.interval=5 (repeatable)",
    )
    if gallery:
        p.add_argument("--gallery", metavar="FILE", help="gallery file (SQLite)")


#: the most days --days accepts (a century, as unknowns.retention_days)
MAX_DAYS = 36_500.0


def _seconds(text: str) -> float:
    """A time in a file: seconds (``90``, ``12.5``) or ``[H:]M:S`` (``1:30``)."""
    try:
        parts = [float(p) for p in text.split(":")]
        if len(parts) > 3 or not all(0 <= p <= MAX_SECONDS for p in parts):  # nan, inf, -1
            raise ValueError
        if any(p >= 60 for p in parts[1:]):
            raise ValueError
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text[:40]!r} is not a time: give seconds (90, 12.5) or [H:]M:S (1:30), at most "
            f"{MAX_SECONDS:.0e} s"
        ) from None
    seconds = 0.0
    for part in parts:
        seconds = seconds * 60 + part
    if seconds > MAX_SECONDS:
        raise argparse.ArgumentTypeError(f"{text[:40]!r}: at most {MAX_SECONDS:.0e} s")
    return seconds


def _days(text: str) -> float:
    """A number of days, 0 to :data:`MAX_DAYS` (never nan, inf or negative)."""
    try:
        days = float(text)
    except ValueError:
        days = math.nan
    if not 0 <= days <= MAX_DAYS:
        raise argparse.ArgumentTypeError(
            f"{text[:40]!r} is not a number of days: give 0 to {MAX_DAYS:g} (e.g. 30 or 0.5)"
        )
    return days


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="streamrec", description="Real-time face recognition for video streams."
    )
    parser.add_argument("--version", action="version", version=f"streamrec {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    _models_commands(sub)
    _gallery_commands(sub)
    _video_commands(sub)
    _config_commands(sub)
    _eval_command(sub)
    cli_history.add_parsers(sub, _common)
    return parser


def _models_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """models: list, pull, optimize."""
    p = sub.add_parser("models", help="list, download and optimize models")
    msub = p.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    p = msub.add_parser(
        "list", help="each model: where it was found, verified sha256, provider and precision"
    )
    _common(p, gallery=False)
    p = msub.add_parser("pull", help="download model packs (each once) and verify every file")
    p.add_argument(
        "packs",
        metavar="PACK",
        nargs="*",
        help="buffalo_l, buffalo_m, buffalo_s, buffalo_sc "
        "(default: the packs of the configured models)",
    )
    p.add_argument("--dir", metavar="DIR", help="extract here (default: the user model cache)")
    _common(p, gallery=False)
    p = msub.add_parser(
        "optimize", help="INT8 quantization (NNCF) calibrated on your photos or clips"
    )
    p.add_argument("model", metavar="MODEL", help="detector or recognizer: file name or path")
    p.add_argument(
        "--calibration",
        metavar="DIR_OR_VIDEO",
        action="append",
        required=True,
        help="photos (folders are searched recursively) or clips (repeatable)",
    )
    p.add_argument(
        "--pairs",
        metavar="FILE",
        help="recognizer: verification pairs (CSV or LFW pairs.txt, "
        "paths relative to the file); held aside from calibration",
    )
    p.add_argument("--output", metavar="FILE", help="default: MODEL_int8.onnx beside MODEL")
    p.add_argument("--min-cosine", type=float, default=0.98, help="recognizer (default 0.98)")
    p.add_argument(
        "--max-accuracy-drop", type=float, default=0.5, help="recognizer, points (default 0.5)"
    )
    p.add_argument("--min-iou", type=float, default=0.9, help="detector (default 0.9)")
    p.add_argument(
        "--min-face", type=int, default=32, help="detector: no face this tall may be lost (32)"
    )
    p.add_argument(
        "--score-margin",
        type=float,
        default=0.1,
        help="detector: faces scored within this of detector.threshold may flip (0.1)",
    )
    p.add_argument("--samples", type=int, default=300, help="calibration samples (default 300)")
    _common(p, gallery=False)


def _gallery_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """gallery and unknowns: the people and the unknown people."""
    p = sub.add_parser("gallery", help="manage the gallery of enrolled people")
    gsub = p.add_subparsers(dest="gallery_command", required=True, metavar="ACTION")
    p = gsub.add_parser("import", help="enrol every sub-folder of DIR as one person")
    p.add_argument("dir", metavar="DIR")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    _common(p)
    p = gsub.add_parser("add", help="enrol NAME from photos or from a video clip")
    p.add_argument("name", metavar="NAME")
    p.add_argument("images", metavar="IMAGE", nargs="*")
    p.add_argument(
        "--from-video",
        metavar="FILE",
        help="enrol the main person of a clip (enrollment.video_faces best, varied faces)",
    )
    _common(p)
    p = gsub.add_parser("list", help="list enrolled people")
    p.add_argument("--json", action="store_true")
    _common(p)
    p = gsub.add_parser("remove", help="remove a person from the gallery (erase: from everywhere)")
    p.add_argument("name", metavar="NAME")
    _common(p)
    p = gsub.add_parser(
        "merge",
        help="fold SOURCE (a person or unknown-N) into TARGET: its samples become TARGET's",
    )
    p.add_argument("source", metavar="SOURCE")
    p.add_argument("target", metavar="TARGET")
    _common(p)

    p = sub.add_parser("unknowns", help="review unknown people saved by runs (unknowns.persist)")
    usub = p.add_subparsers(dest="unknowns_command", required=True, metavar="ACTION")
    p = usub.add_parser("list", help="unconfirmed people: embeddings, crops, first/last seen")
    p.add_argument("--json", action="store_true")
    _common(p)
    p = usub.add_parser("name", help="confirm LABEL as NAME")
    p.add_argument("label", metavar="LABEL", help="e.g. unknown-3")
    p.add_argument("name", metavar="NAME")
    p.add_argument(
        "--merge",
        action="store_true",
        help="NAME is enrolled: fold LABEL into them (their enrolled photos are never dropped)",
    )
    _common(p)
    p = usub.add_parser("purge", help="delete unconfirmed people not seen for N days")
    p.add_argument(
        "--days", type=_days, metavar="N", help="default: unknowns.retention_days (0 = never)"
    )
    _common(p)


def _video_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """recognize, run and serve: photos, a video, the cameras."""
    p = sub.add_parser("recognize", help="find and name the faces in images")
    p.add_argument("images", metavar="IMAGE", nargs="+")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--output", metavar="DIR", help="write annotated copies into DIR")
    _common(p)

    p = sub.add_parser("run", help="recognize people in a video file, URL or camera")
    p.add_argument(
        "source", nargs="?", metavar="SOURCE", help="video file, http(s)/rtsp URL or webcam (0)"
    )
    p.add_argument("--source", dest="source_option", metavar="URI", help=argparse.SUPPRESS)
    p.add_argument(
        "--live",
        action="store_true",
        help="an http(s) URL is a live camera (MJPEG, HLS): newest frame wins, reconnects",
    )
    p.add_argument(
        "--output", metavar="FILE", help="write the annotated video (H.264, with the input's audio)"
    )
    p.add_argument("--events", metavar="FILE", help="append events as JSON lines")
    p.add_argument(
        "--start", type=_seconds, metavar="SECONDS", help="a file: begin this far into it (seek)"
    )
    p.add_argument("--end", type=_seconds, metavar="SECONDS", help="a file: stop this far into it")
    p.add_argument("--display", action="store_true", help="show the annotated video in a window")
    p.add_argument("--summary-json", metavar="FILE", help="write the run summary as JSON")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    _common(p)

    p = sub.add_parser("serve", help="run the configured cameras as a daemon (until SIGTERM)")
    _common(p)


def _config_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """config, erase and events: configuration and privacy."""
    p = sub.add_parser("config", help="print the effective config or an example config")
    csub = p.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    p = csub.add_parser("show", help="the effective config as YAML (secrets masked)")
    _common(p, gallery=False)
    p = csub.add_parser(
        "example", help="list the example configs, or print one: config example NAME > my.yaml"
    )
    p.add_argument("name", metavar="NAME", nargs="?", help="e.g. default, cameras")

    p = sub.add_parser(
        "erase",
        help="erase a person or unknown-N everywhere: gallery, crops, event files, MQTT",
    )
    p.add_argument("name", metavar="NAME")
    p.add_argument(
        "--events",
        metavar="FILE",
        action="append",
        default=[],
        help="also rewrite this JSONL event file (besides events.jsonl of the config; repeatable)",
    )
    _common(p)

    p = sub.add_parser("events", help="event files: retention")
    esub = p.add_subparsers(dest="events_command", required=True, metavar="ACTION")
    p = esub.add_parser("purge", help="drop events captured more than N days ago")
    p.add_argument("--days", type=_days, required=True, metavar="N")
    p.add_argument(
        "--events",
        metavar="FILE",
        action="append",
        default=[],
        help="a JSONL event file (besides events.jsonl of the config; repeatable)",
    )
    _common(p, gallery=False)


def _eval_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """eval: accuracy on photo pairs or labelled clips."""
    p = sub.add_parser(
        "eval",
        help="verification accuracy, ROC and thresholds on photo pairs; with --video, naming "
        "on labelled clips against per-frame matching",
    )
    p.add_argument(
        "dir", metavar="DIR", nargs="?", help="one sub-folder per person, or the --pairs images"
    )
    p.add_argument(
        "--video",
        metavar="LABELS",
        help="CSV 'clip,people' (people: gallery names separated by ';'): share of frames named "
        "right / wrong / unnamed per clip, streamrec beside per-frame matching (needs --gallery)",
    )
    p.add_argument("--gallery", metavar="FILE", help="gallery file (SQLite), for --video")
    p.add_argument("--pairs", metavar="FILE", help="LFW pairs.txt or CSV (path, path, yes/no)")
    p.add_argument("--negatives", type=int, metavar="N", help="different-person pairs to draw")
    p.add_argument("--seed", type=int, default=0, help="seed for drawing different pairs")
    p.add_argument("--report", metavar="FILE", help="write the JSON report")
    p.add_argument("--plot", metavar="FILE", help="write the ROC curve as PNG (needs matplotlib)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    _common(p, gallery=False)


def _config(args: argparse.Namespace) -> Config:
    cfg = load_config(args.config, list(args.overrides))
    configure_logging(cfg.logging, args.verbose)
    if getattr(args, "gallery", None):
        cfg.gallery = args.gallery
    return cfg


def _gallery_path(cfg: Config) -> str:
    if not cfg.gallery:
        raise StreamrecError(
            "no gallery given: use --gallery FILE (or set 'gallery' in the config)"
        )
    return cfg.gallery


def cmd_models(args: argparse.Namespace) -> int:
    from .models import registry

    cfg = _config(args)
    if args.models_command == "pull":
        return _models_pull(cfg, args)
    if args.models_command == "optimize":
        return _models_optimize(cfg, args)
    from .models.runtime import (
        choose_precision,
        device_info,
        openvino_available,
        precision_candidate,
    )

    rt = cfg.runtime
    if rt.provider == "openvino" and openvino_available():
        dev = device_info(rt.device)
        caps = " ".join(sorted(dev.capabilities)) if dev else "unknown"
        print(
            f"runtime: OpenVINOExecutionProvider on {rt.device} "
            f"({dev.full_name if dev else '?'}; capabilities {caps}), precision {rt.precision}"
        )
        if rt.precision == "auto":
            candidate, why = precision_candidate(rt.device)
            print(
                f"  auto: {why}"
                + (
                    ""
                    if candidate is None
                    else f"; {candidate} is checked once per model against FP32 (speed, cosine)"
                )
            )
    else:
        print(
            "runtime: CPUExecutionProvider ("
            + (
                "runtime.provider is cpu"
                if rt.provider == "cpu"
                else "the OpenVINO execution provider is not installed"
            )
            + ")"
        )
    print(f"{'model':30} {'kind':10} {'packs':22} {'status':9} {'runs as':9} location / sha256")
    for st in registry.list_models(cfg.models.dir):
        packs = ",".join(st.packs) or ("from " + st.derived.parent_file if st.derived else "-")
        runs = "-"
        if st.path is None:
            status, where = "missing", "-"
        else:
            status = "ok" if st.verified else "MISMATCH"
            where = f"{st.path}  sha256 {st.sha256}"
            if rt.provider == "openvino" and openvino_available() and st.sha256:
                prec = (
                    choose_precision(st.path, rt, st.sha256, measure=False).precision
                    if rt.precision == "auto"
                    else rt.precision
                )
                runs = f"INT8+{prec}" if st.derived else prec
            else:
                runs = "INT8+FP32" if st.derived else "FP32"
        print(f"{st.info.file:30} {st.info.kind:10} {packs:22} {status:9} {runs:9} {where}")
    print(
        "packs: "
        + "; ".join(f"{p.name} = {p.detector} + {p.recognizer}" for p in registry.PACKS.values())
    )
    return 0


def _models_pull(cfg: Config, args: argparse.Namespace) -> int:
    from .models import registry

    names = list(args.packs) or sorted(
        {n for n in (cfg.models.detector, cfg.models.recognizer) if n in registry.PACKS}
        or {
            p.name
            for p in registry.PACKS.values()
            if {cfg.models.detector, cfg.models.recognizer} & {p.detector, p.recognizer}
        }
    )
    if not names:
        raise StreamrecError(
            "models pull: the configured models are not from a pack; name one: "
            + ", ".join(registry.PACKS)
        )
    unknown = [n for n in names if n not in registry.PACKS]
    if unknown:
        raise StreamrecError(
            f"models pull: unknown pack {', '.join(unknown)}; packs: {', '.join(registry.PACKS)}"
        )
    dest = Path(args.dir).expanduser() if args.dir else None
    for name in names:
        for path in registry.pull_pack(registry.PACKS[name], dest):
            print(f"{name}: {path}  sha256 verified")
    return 0


def _models_optimize(cfg: Config, args: argparse.Namespace) -> int:
    from .optimize import Bounds, optimize

    bounds = Bounds(
        args.min_cosine, args.max_accuracy_drop, args.min_iou, args.min_face, args.score_margin
    )
    report = optimize(
        cfg,
        args.model,
        [Path(c).expanduser() for c in args.calibration],
        pairs=Path(args.pairs).expanduser() if args.pairs else None,
        output=Path(args.output).expanduser() if args.output else None,
        bounds=bounds,
        max_samples=args.samples,
    )
    print(report.format())
    if report.failures:
        raise StreamrecError(
            f"the INT8 model of {args.model} was not written: it loses more than the bounds "
            f"allow ({'; '.join(report.failures)})"
        )
    return 0


def _analyzer(cfg: Config) -> FaceAnalyzer:
    from .analyzer import FaceAnalyzer

    return FaceAnalyzer.from_config(cfg)


@contextmanager
def _recognition(cfg: Config) -> Iterator[Recognition]:
    """The models of ``cfg`` and its gallery, if it has one (closed after)."""
    from .recognition import Recognition

    analyzer = _analyzer(cfg)
    store = analyzer.open_gallery(cfg.gallery) if cfg.gallery else None
    try:
        yield Recognition(analyzer, store)
    finally:
        if store is not None:
            store.close()


def _print_reports(reports: Sequence[Any]) -> int:
    """Print what enrolment did; 1 when some person got nothing usable (0 if all was there)."""
    ok = 0
    for r in reports:
        for file, reason in r.skipped:
            print(f"skipped {file}: {reason}")
        for stray in r.dropped:
            print(stray.describe())
        if r.duplicates:
            print(f"{r.name}: {len(r.duplicates)} photo(s) already enrolled")
        if r.added:
            print(f"{r.name}: enrolled {len(r.added)} photo(s), {r.total} embedding(s) in total")
        elif not r.duplicates:
            print(f"{r.name}: nothing enrolled (no usable photo)")
        ok += bool(r.added or r.duplicates)
    return 0 if ok else 1


@contextmanager
def _gallery_for_enrolment(
    path: str, analyzer: FaceAnalyzer, policy: GalleryPolicy
) -> Iterator[Gallery]:
    """The gallery, created when it does not exist; one created here is deleted again when
    nothing went in (a failed enrolment leaves no empty gallery file behind)."""
    from streamrec.gallery.store import Gallery

    created = not Path(path).exists()
    gallery = Gallery(path, analyzer.recognizer, policy)
    try:
        yield gallery
    finally:
        empty = created and not gallery.people() and not gallery.unknowns()
        gallery.close()
        if empty:
            for suffix in ("", "-wal", "-shm", "-journal"):
                Path(path + suffix).unlink(missing_ok=True)


def _existing(gallery: Gallery, name: str) -> None:
    """A person the command names must exist; a name no one has must also pass the name rule
    (a gallery may hold names older versions accepted: those can still be addressed)."""
    from streamrec.gallery.crops import label_number
    from streamrec.gallery.store import NoSuchPerson, validate_name

    try:
        gallery.person(name)
    except NoSuchPerson:
        validate_name(name, label=label_number(name) is not None)
        raise


def _check_enrolment_inputs(args: argparse.Namespace) -> None:
    """Inputs checked before the models are fetched and the gallery is created."""
    if args.gallery_command == "add":
        from streamrec.gallery.store import validate_name

        validate_name(args.name)
    if args.gallery_command == "import":
        from streamrec.enrolment import person_folders

        person_folders(Path(args.dir))
    elif args.from_video:
        if "://" not in args.from_video and not Path(args.from_video).is_file():
            raise StreamrecError(f"video file not found: {args.from_video}")
    elif not any(Path(image).is_file() for image in args.images):
        raise StreamrecError(f"gallery add: no such photo: {', '.join(args.images)}")


def cmd_gallery(args: argparse.Namespace) -> int:
    from streamrec.enrolment import enroll_images, enroll_video, import_folder
    from streamrec.gallery.store import GalleryPolicy, open_existing
    from streamrec.recognition import Recognition

    cfg = _config(args)
    path = _gallery_path(cfg)
    action = args.gallery_command
    policy = GalleryPolicy.from_config(cfg)
    if action == "add" and bool(args.images) == bool(args.from_video):
        raise StreamrecError("gallery add: give IMAGE files or --from-video FILE (not both)")
    if action in ("list", "remove", "merge"):
        with open_existing(path, policy) as gallery:
            if action == "remove":
                _existing(gallery, args.name)
                gallery.remove(args.name)
                print(f"removed {args.name}")
                return 0
            if action == "merge":
                _existing(gallery, args.source)
                _existing(gallery, args.target)
                result = gallery.merge(args.source, args.target)
                for stray in result.strays:
                    print(stray.describe())
                print(f"{args.source} merged into {args.target} ({result.total} embedding(s))")
                cli_history.name_back_in_time(cfg)
                return 0
            people = gallery.people()
            if args.json:
                print(json.dumps([p.__dict__ for p in people], indent=2))
            else:
                for person in people:
                    print(
                        f"{person.name}\t{person.embeddings} sample(s), "
                        f"{person.subcenters} sub-center(s)"
                    )
                print(f"{len(people)} people in {path}")
            return 0
    _check_enrolment_inputs(args)
    analyzer = _analyzer(cfg)
    with _gallery_for_enrolment(path, analyzer, policy) as gallery:
        recognition = Recognition(analyzer, gallery)
        if action == "import":
            reports = import_folder(recognition, Path(args.dir), progress=not args.no_progress)
        elif args.from_video:
            count = cfg.enrollment.video_faces
            report, pick = enroll_video(recognition, args.name, args.from_video, count)
            print(pick.describe(args.name))
            reports = [report]
        else:
            reports = [enroll_images(recognition, args.name, map(Path, args.images))]
        code = _print_reports(reports)
    enrolled = [r.name for r in reports if r.total]
    cli_history.name_back_in_time(cfg, enrolled, analyzer.threshold)
    return code


def cmd_unknowns(args: argparse.Namespace) -> int:
    import time

    from streamrec.gallery.store import GalleryPolicy, NameConflict, open_existing

    cfg = _config(args)
    path = _gallery_path(cfg)
    action = args.unknowns_command
    with open_existing(path, GalleryPolicy.from_config(cfg)) as gallery:
        if action == "name":
            try:
                result = gallery.promote(args.label, args.name, merge=args.merge)
            except NameConflict as exc:
                raise StreamrecError(f"{exc} (add --merge)") from None
            for stray in result.strays:
                print(stray.describe())
            print(f"{args.label} is now {args.name} ({result.total} embedding(s))")
            cli_history.name_back_in_time(cfg)
            return 0
        if action == "purge":
            days = args.days if args.days is not None else cfg.unknowns.retention_days
            purged = gallery.purge(days)
            print(f"purged {purged} unconfirmed people not seen for {days:g} day(s)")
            return 0
        unknowns = gallery.unknowns()
        if args.json:
            print(json.dumps([u.__dict__ for u in unknowns], indent=2))
            return 0

        def when(t: float) -> str:
            return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))

        for u in unknowns:
            print(
                f"{u.label}\t{u.embeddings} embedding(s)\t{u.faces} face(s)\t"
                f"first seen {when(u.first_seen)}\tlast seen {when(u.last_seen)}"
            )
        print(f"{len(unknowns)} unconfirmed people in {path}")
        return 0


def cmd_recognize(args: argparse.Namespace) -> int:
    import cv2

    from streamrec.sinks.draw import draw_face

    from .media import read_image

    cfg = _config(args)
    missing = [name for name in args.images if not Path(name).is_file()]
    if missing:  # a user mistake: said before the models load
        raise MediaError(f"image{'s' * (len(missing) > 1)} not found: {', '.join(missing)}")
    with _recognition(cfg) as recognition:
        out_dir = Path(args.output) if args.output else None
        if out_dir is not None:
            private_dir(out_dir)
        results, failed = [], 0
        for name in args.images:
            try:
                image = read_image(name)
            except StreamrecError as exc:  # unreadable: the others are still recognized
                failed += 1
                _print_error(str(exc))
                continue
            found = recognition.faces(image)
            faces = list(zip(found, recognition.identify(found), strict=True))
            results.append(
                {
                    "image": name,
                    "faces": [
                        {
                            "bbox": [round(float(v), 1) for v in f.box],
                            "kps": [[round(float(v), 1) for v in p] for p in f.kps],
                            "det_score": round(f.det_score, 4),
                            "name": who,
                            "score": None if score is None else round(score, 4),
                        }
                        for f, (who, score) in faces
                    ],
                }
            )
            if not args.json:
                print(f"{name}: {len(faces)} face(s)")
                for f, (who, score) in faces:
                    box = ",".join(f"{v:.0f}" for v in f.box)
                    shown = "-" if score is None else f"{score:.3f}"
                    print(f"  [{box}] {who or 'unknown'} {shown}")
            if out_dir is not None:
                for f, (who, score) in faces:
                    draw_face(image, f.box, who, score)
                target = out_dir / (Path(name).stem + ".jpg")
                write_private(target, cv2.imencode(".jpg", image)[1].tobytes())
    if args.json:
        print(json.dumps(results, indent=2))
    return MediaError.exit_code if failed else 0


def _run_source(args: argparse.Namespace) -> str:
    """SOURCE (or the older ``--source URI``), exactly one of them."""
    given = [s for s in (args.source, args.source_option) if s]
    if len(given) != 1:
        raise StreamrecError(
            "run: give the video to process: streamrec run VIDEO (a file, an http(s)/rtsp URL "
            "or a webcam index)"
        )
    return given[0]


def cmd_run(args: argparse.Namespace) -> int:
    from streamrec.pipeline import Summary
    from streamrec.runner import LostEvents, run_video

    def report(summary: Summary) -> None:
        print(summary.format())
        if args.summary_json:
            write_private(args.summary_json, json.dumps(summary.to_dict(), indent=2))

    cfg = _config(args)
    try:
        summary = run_video(
            cfg,
            _run_source(args),
            output=args.output,
            events=args.events,
            display=args.display,
            progress=not args.no_progress,
            live_http=args.live,
            start=args.start,
            end=args.end,
        )
    except LostEvents as exc:  # the rest of the run is done: show it, then fail
        report(exc.summary)
        raise
    report(summary)
    return 130 if summary.interrupted else 0


def cmd_serve(args: argparse.Namespace) -> int:
    from .service.signals import Signals

    signals = Signals()
    signals.install()  # first: SIGHUP during start-up must not kill the daemon
    try:
        cfg = _config(args)
        if cfg.cluster.address:
            from streamrec.cluster.driver import run_cluster

            return run_cluster(cfg, signals)
        from streamrec.service.daemon import serve

        return serve(cfg, signals)
    finally:
        signals.restore()


def cmd_config(args: argparse.Namespace) -> int:
    from .config import example_summary, examples, show_config

    if args.config_command == "show":
        print(show_config(_config(args)), end="")
        return 0
    shipped = examples()
    if args.name is None:
        for name, path in shipped.items():
            print(f"{name:10} {example_summary(path)}")
        print("print one with: streamrec config example NAME > my.yaml")
        return 0
    if args.name not in shipped:
        raise StreamrecError(
            f"no example config named '{args.name}' (there are: {', '.join(shipped)})"
        )
    print(shipped[args.name].read_text(encoding="utf-8"), end="")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from .evaluation import evaluate, plot_roc

    if (args.dir is None) == (args.video is None):
        raise StreamrecError("eval: give a folder of photos (DIR) or --video LABELS.csv, not both")
    if args.video is not None:
        return _eval_video(args)
    analyzer = _analyzer(_config(args))
    result = evaluate(
        analyzer,
        Path(args.dir),
        Path(args.pairs) if args.pairs else None,
        negatives=args.negatives,
        seed=args.seed,
        progress=not args.no_progress,
    )
    for image, reason in sorted(result.report["images"]["problems"].items()):
        print(f"skipped {image}: {reason}")
    print(result.format_table())
    if args.report:
        write_private(args.report, json.dumps(result.report, indent=2))
    if args.plot:
        plot_roc(result, Path(args.plot))
    return 0


def _eval_video(args: argparse.Namespace) -> int:
    from .evaluation_video import evaluate_videos, read_labels

    for option in ("pairs", "plot", "negatives"):
        if getattr(args, option) is not None:
            raise StreamrecError(f"eval --video: --{option} is for photo pairs (DIR), not videos")
    cfg = _config(args)
    if not cfg.gallery:
        raise StreamrecError("eval --video needs the gallery of the people: add --gallery FILE")
    clips = read_labels(Path(args.video))
    result = evaluate_videos(cfg, _analyzer(cfg), clips)
    print(result.format_table())
    if args.report:
        write_private(args.report, json.dumps(result.report, indent=2))
    return 0


def cmd_erase(args: argparse.Namespace) -> int:
    from .privacy import erase

    report = erase(_config(args), args.name, args.events)
    for line in report.lines:
        print(line)
    if not report.found:
        print(f"{report.name}: nothing found to erase")
        return 1
    others = [label for label in report.labels if label != report.name]
    also = f" (also as {', '.join(others)})" if others else ""
    print(f"{report.name} erased{also}: nothing running will write them again")
    return 0


def cmd_events(args: argparse.Namespace) -> int:
    from .privacy import event_files, purge_events

    paths = event_files(_config(args), args.events)
    if not paths:
        raise StreamrecError("events purge: no event file (set events.jsonl or give --events)")
    for path, count in purge_events(paths, args.days).items():
        print(f"{path}: removed {count} event(s) older than {args.days:g} day(s)")
    return 0


COMMANDS = {
    "run": cmd_run,
    "serve": cmd_serve,
    "models": cmd_models,
    "gallery": cmd_gallery,
    "unknowns": cmd_unknowns,
    "recognize": cmd_recognize,
    "eval": cmd_eval,
    "config": cmd_config,
    "erase": cmd_erase,
    "events": cmd_events,
    "search": lambda args: cli_history.cmd_search(args, _config(args)),
    "history": lambda args: cli_history.cmd_history(args, _config(args)),
}


def _print_error(message: str) -> None:
    """``streamrec: error: ...`` on stderr, a line per problem (a config error lists each)."""
    for line in message.splitlines() or [""]:
        print(f"streamrec: error: {redact(line)}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    try:
        return COMMANDS[args.command](args)
    except StreamrecError as exc:
        _print_error(str(exc))
        return exc.exit_code
    except KeyboardInterrupt:
        print("streamrec: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (| head): end quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except Exception:  # a bug, not a user mistake: the traceback goes through the redacting log
        log.critical("unexpected error (please report it)", exc_info=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
