"""Erasure and retention: a person erased is erased everywhere streamrec keeps something.

:func:`erase` removes a person (or an ``unknown-N``) from the gallery (samples, faces, and for a
label a tombstone so nothing brings it back), deletes their review crops, rewrites the event
files without them and clears their retained MQTT topics; a running ``serve`` notices the change
of the gallery within a second and forgets them too (recent recognitions, metric series, its own
MQTT state and event file). :func:`purge_events` drops events older than a number of days.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from streamrec.config import Config
from streamrec.errors import GalleryError, StreamrecError
from streamrec.gallery.store import GalleryPolicy, open_existing, validate_name
from streamrec.sinks.events import mentions, rewrite_events


@dataclass
class Erasure:
    """What :func:`erase` removed, where (one line each)."""

    name: str
    lines: list[str] = field(default_factory=list)
    found: bool = False

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
) -> Erasure:
    """Erase ``name`` from the gallery, the review crops, the event files and (``mqtt``) the
    broker's retained topics (a running daemon clears those itself)."""
    name = validate_name(name)
    report = Erasure(name)
    if cfg.gallery and Path(cfg.gallery).is_file():
        with open_existing(cfg.gallery, GalleryPolicy.from_config(cfg)) as gallery:
            try:
                removed = gallery.remove(name)
                report.add(
                    f"gallery {cfg.gallery}: removed {removed.samples} sample(s) and "
                    f"{removed.faces} face image(s)"
                )
            except GalleryError as exc:
                if "no person named" not in str(exc):
                    raise
                report.add(f"gallery {cfg.gallery}: not there", found=False)
    crops = cfg.unknowns.crops_dir
    if crops and (Path(crops).expanduser() / name).is_dir():
        shutil.rmtree(Path(crops).expanduser() / name)
        report.add(f"review crops {Path(crops) / name}: deleted")
    for path in event_files(cfg, extra_events):
        if not path.is_file():
            report.add(f"events {path}: no such file", found=False)
            continue
        count = rewrite_events(path, lambda e: not mentions(e, name))
        report.add(f"events {path}: removed {count} event(s)", found=count > 0)
    if mqtt and cfg.events.mqtt is not None:
        from streamrec.sinks.mqtt import MqttEventSink

        sink = MqttEventSink.from_config(cfg.events.mqtt)
        try:
            sink.forget(name)
            done = sink.sync(mqtt_timeout)
        finally:
            sink.close(timeout=mqtt_timeout)
        if not done:
            raise StreamrecError(
                f"MQTT broker {cfg.events.mqtt.host}:{cfg.events.mqtt.port} did not confirm "
                f"clearing the retained topics of {name} within {mqtt_timeout:g} s: run erase "
                "again when the broker is up"
            )
        report.add(f"MQTT {cfg.events.mqtt.host}: retained topics cleared", found=False)
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
