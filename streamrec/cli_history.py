"""The face history's commands: ``streamrec search PHOTO`` (when was this person here?) and
``streamrec history list|reject|purge`` (see :mod:`streamrec.history`)."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import Config
from .errors import MediaError, StreamrecError

if TYPE_CHECKING:
    from .history.records import Hit, StoredSighting
    from .history.store import HistoryStore

#: most results one search prints
MAX_LIMIT = 1000


def _when(text: str) -> float:
    """A time: ISO 8601 (``2026-12-07``, ``2026-12-07T08:30``) or ``N[dhm]`` ago (``2d``)."""
    units = {"d": 86400.0, "h": 3600.0, "m": 60.0}
    try:
        if text and text[-1] in units:
            ago = float(text[:-1])
            if not 0 <= ago <= 1e7:
                raise ValueError
            return time.time() - ago * units[text[-1]]
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a time: {text!r} (ISO 8601 like 2026-12-07T08:30, or 2d / 6h / 30m ago)"
        ) from None


def _limit(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_LIMIT:
        raise argparse.ArgumentTypeError(f"--limit: a whole number from 1 to {MAX_LIMIT}")
    return value


def add_parsers(sub: Any, common: Callable[[argparse.ArgumentParser], None]) -> None:
    """The ``search`` and ``history`` commands (``common``: --config, --set, --gallery)."""
    p = sub.add_parser("search", help="find a person in the face history by a photo of them")
    p.add_argument("photo", metavar="PHOTO", help="a photo showing exactly one face")
    p.add_argument("--since", type=_when, metavar="TIME", help="seen at or after TIME")
    p.add_argument("--until", type=_when, metavar="TIME", help="seen at or before TIME")
    p.add_argument("--camera", metavar="NAME", help="only this camera's sightings")
    p.add_argument("--limit", type=_limit, default=20, help="most results (default 20)")
    p.add_argument(
        "--min-similarity",
        type=float,
        metavar="S",
        help="only faces at least this similar (default: the recognition threshold)",
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    common(p)
    p = sub.add_parser("history", help="the face history: list sightings, reject a naming")
    hsub = p.add_subparsers(dest="history_command", required=True, metavar="ACTION")
    p = hsub.add_parser("list", help="sightings, newest first")
    p.add_argument("--label", metavar="LABEL", help="only this name or unknown-N")
    p.add_argument("--limit", type=_limit, default=50, help="most sightings (default 50)")
    p.add_argument("--json", action="store_true", help="print JSON")
    common(p)
    p = hsub.add_parser(
        "reject", help="not this person: sighting ID was named wrongly (never named so again)"
    )
    p.add_argument("id", type=int, metavar="ID", help="the sighting's id (history list, search)")
    common(p)
    p = hsub.add_parser("purge", help="apply history.retention_days and the caps now")
    common(p)


def _history(cfg: Config) -> HistoryStore:
    from .history.feed import existing_history

    if not cfg.gallery:
        raise StreamrecError(
            "no gallery given: use --gallery FILE (or set 'gallery' in the config)"
        )
    store = existing_history(cfg)
    if store is None:
        raise StreamrecError(
            f"no face history beside {cfg.gallery} yet: it is written by 'streamrec run' and "
            "'streamrec serve' (history.enabled)"
        )
    return store


def _row(h: StoredSighting | Hit) -> dict[str, Any]:
    from .history.records import Hit, StoredSighting

    out: dict[str, Any] = {
        "id": h.id if isinstance(h, StoredSighting) else h.sighting,
        "first_seen": round(h.first_seen, 3),
        "last_seen": round(h.last_seen, 3),
        "camera": h.camera,
        "label": h.label,
        "score": None if h.score is None else round(h.score, 4),
        "crop": h.crop,
    }
    if isinstance(h, Hit):
        out["similarity"] = round(h.similarity, 4)
    return out


def _print(rows: list[dict[str, Any]], as_json: bool, what: str) -> None:
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    for r in rows:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r["first_seen"]))
        sim = f"\tsimilarity {r['similarity']:.3f}" if "similarity" in r else ""
        print(f"#{r['id']}\t{when}\t{r['camera']}\t{r['label'] or '-'}{sim}")
    print(f"{len(rows)} {what}")


def cmd_search(args: argparse.Namespace, cfg: Config) -> int:
    from .analyzer import FaceAnalyzer
    from .media import read_image

    if not Path(args.photo).is_file():
        raise MediaError(f"image not found: {args.photo}")
    image = read_image(args.photo)
    with _history(cfg) as store:
        analyzer = FaceAnalyzer(cfg)
        faces = analyzer.analyze(image)
        if len(faces) != 1:
            raise StreamrecError(
                f"{args.photo}: {'no face' if not faces else f'{len(faces)} faces'} found; "
                "a search needs a photo with exactly one face"
            )
        if store.dim != len(faces[0].embedding):
            raise StreamrecError(
                f"the history holds {store.dim}-d faces, this recognizer makes "
                f"{len(faces[0].embedding)}-d ones: use the models the history was made with"
            )
        floor = analyzer.threshold if args.min_similarity is None else args.min_similarity
        hits = store.search(
            faces[0].embedding, args.limit, args.since, args.until, args.camera, floor
        )
    _print([_row(h) for h in hits], args.json, "sighting(s) found")
    return 0


def cmd_history(args: argparse.Namespace, cfg: Config) -> int:
    from .history.negatives import NegativeStore

    with _history(cfg) as store:
        action = args.history_command
        if action == "list":
            rows = [_row(s) for s in store.sightings(args.label, args.limit)]
            _print(rows, args.json, "sighting(s)")
            return 0
        if action == "purge":
            print(f"purged {store.purge()} sighting(s) past retention or the caps")
            return 0
        label = NegativeStore(store).reject(args.id)
    if label is None:
        print(f"sighting {args.id} carried no name: nothing to reject")
        return 1
    _touch_gallery(cfg)
    print(f"sighting {args.id} is not {label}: faces like it will not be named {label} again")
    return 0


def _touch_gallery(cfg: Config) -> None:
    """Running matchers take the new negative in (they follow the gallery's revision)."""
    from .gallery.store import open_existing

    if cfg.gallery and Path(cfg.gallery).is_file():
        with open_existing(cfg.gallery) as gallery:
            gallery.touch()


def name_back_in_time(
    cfg: Config, enrolled: Sequence[str] = (), threshold: float | None = None
) -> None:
    """After a naming, merge or enrolment by the CLI: the history follows (retroactive events
    to the config's sinks; a running daemon would do it within a second otherwise); the
    unknown identities whose sightings match a person ``enrolled`` are named too."""
    from .gallery.store import open_existing
    from .history.feed import existing_history, follow_gallery
    from .sinks import FanoutSink, event_sinks

    store = existing_history(cfg)
    if store is None or not cfg.gallery:
        return
    with store, open_existing(cfg.gallery) as gallery, FanoutSink(event_sinks(cfg)) as sinks:
        count = follow_gallery(store, gallery, sinks.write, enrolled, threshold)
    if count:
        print(f"face history: {count} identity(ies) named back in time")
