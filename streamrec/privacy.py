"""Erasure and retention: a person erased is erased everywhere streamrec keeps something.

:func:`erase` removes a person (or an ``unknown-N``) from the gallery (samples, faces, their
lineage, and for a label a tombstone so nothing brings it back) with their review crop folders,
waits until every running pipeline of the gallery has taken the erasure in (their open tracks no
longer carry the name and their sinks dropped the events still waiting), then erases their face
history (sightings, crops, rejected faces), rewrites the event files without any label the
person ever had (``unknown-N`` before they were named, names before a rename or merge) and
clears their retained MQTT topics — only theirs: never the bridge status nor anyone else's
presence. :func:`erase_files` is the part a running daemon does itself when a
person is erased through its API. :func:`purge_events` drops events older than a number of days.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from streamrec.config import Config
from streamrec.errors import StreamrecError
from streamrec.gallery.crops import CropFolders, label_number
from streamrec.gallery.store import (
    Gallery,
    GalleryPolicy,
    NoSuchPerson,
    Removed,
    Watcher,
    open_existing,
    validate_name,
)
from streamrec.history.feed import existing_history
from streamrec.sinks.events import mentions, rewrite_events

#: how long ``erase`` waits for running pipelines to take the erasure in (they poll every second)
TAKE_IN_TIMEOUT = 30.0


@dataclass
class Erasure:
    """What :func:`erase` removed, where (one line each)."""

    name: str
    lines: list[str] = field(default_factory=list)
    found: bool = False
    #: the labels erased: the name and every other label the person had
    labels: list[str] = field(default_factory=list)

    def add(self, line: str, found: bool = True) -> None:
        self.lines.append(line)
        self.found = self.found or found


def event_files(cfg: Config, extra: list[str]) -> list[Path]:
    """The JSONL event files of the config, plus the ones named on the command line."""
    paths = [cfg.events.jsonl] if cfg.events.jsonl else []
    return [Path(p).expanduser() for p in dict.fromkeys([*paths, *extra])]


def erase(
    cfg: Config,
    name: str,
    extra_events: list[str],
    mqtt: bool = True,
    mqtt_timeout: float = 10.0,
    take_in_timeout: float = TAKE_IN_TIMEOUT,
) -> Erasure:
    """Erase ``name`` (a person's exact name, or an ``unknown-N``) everywhere; see the module.

    A name no gallery holds must pass :func:`validate_name` (a path-like name is refused, exit
    2); one a gallery holds is erased whatever it is (galleries of older versions may hold
    names the rule refuses now). StreamrecError when a running pipeline does not confirm.
    """
    report = Erasure(name, labels=[name])
    running = False
    removed: Removed | None = None
    if cfg.gallery and Path(cfg.gallery).is_file():
        with open_existing(cfg.gallery, GalleryPolicy.from_config(cfg)) as gallery:
            try:
                removed = gallery.remove(name)
            except NoSuchPerson:
                report.add(f"gallery {cfg.gallery}: not there", found=False)
            if removed is not None:
                report.labels = list(removed.labels)
                report.add(
                    f"gallery {cfg.gallery}: removed {removed.samples} sample(s) and "
                    f"{removed.faces} face image(s)"
                )
                if removed.crops:
                    report.add(f"review crops: deleted {removed.crops} folder(s)")
                running = _taken_in(gallery, name, take_in_timeout)
            else:
                running = bool(gallery.running())
    if removed is None:
        validate_name(name, label=label_number(name) is not None)
        if cfg.unknowns.crops_dir:
            crops = CropFolders(cfg.unknowns.crops_dir, cfg.unknowns.max_crops)
            if crops.remove([name]):
                report.add("review crops: deleted 1 folder")
    erase_files(cfg, report.labels, extra_events, report)
    if mqtt and cfg.events.mqtt is not None:
        from streamrec.sinks.mqtt.erase import clear_retained

        cleared = clear_retained(
            cfg.events.mqtt, report.labels, mqtt_timeout, unowned_snapshots=not running
        )
        host = cfg.events.mqtt.host
        report.add(f"MQTT {host}: retained topics cleared of them ({cleared})", found=False)
    return report


def _taken_in(gallery: Gallery, name: str, timeout: float) -> bool:
    """Wait until every running pipeline has taken the erasure in; whether any is running."""
    revision = gallery.revision
    deadline = time.monotonic() + timeout
    running = bool(gallery.running())
    lagging: list[Watcher] = gallery.lagging(revision)
    while lagging and time.monotonic() < deadline:
        time.sleep(0.1)
        lagging = gallery.lagging(revision)
    if lagging:
        who = ", ".join(w.describe() for w in lagging)
        raise StreamrecError(
            f"{name} is removed from the gallery, but {who} has not taken the erasure in "
            f"within {timeout:g} s, so the event files and MQTT were left as they are (it "
            f"could write the name again): run 'streamrec erase' again once it answers, or "
            "stop it first"
        )
    return running


def erase_files(
    cfg: Config, labels: Sequence[str], extra_events: Sequence[str], report: Erasure | None = None
) -> Erasure:
    """Rewrite the event files of ``cfg`` (and ``extra_events``) without any event naming one
    of ``labels``; what was done goes to ``report``."""
    report = report if report is not None else Erasure(labels[0] if labels else "")
    history = existing_history(cfg)
    if history is not None:
        with history:
            gone = history.erase(labels)
        report.add(
            f"face history: removed {gone.sightings} sighting(s), {gone.crops} crop(s) and "
            f"{gone.negatives} rejected face(s)",
            found=gone.sightings + gone.negatives > 0,
        )
    wanted = set(labels)
    for path in event_files(cfg, list(extra_events)):
        if not path.is_file():
            report.add(f"events {path}: no such file", found=False)
            continue
        count = rewrite_events(path, lambda e: not mentions(e, wanted), wanted)
        report.add(f"events {path}: removed {count} event(s)", found=count > 0)
    return report


def purge_events(paths: list[Path], days: float) -> dict[Path, int]:
    """Drop the events captured more than ``days`` days ago; how many went, per file."""
    if days <= 0:
        raise StreamrecError("events purge: --days must be greater than 0")
    cutoff = time.time() - days * 86400.0

    def recent(event: dict[str, object]) -> bool:
        captured = event.get("captured")
        return not isinstance(captured, (int, float)) or captured >= cutoff

    return {p: rewrite_events(p, recent) for p in paths if p.is_file()}
