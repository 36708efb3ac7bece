"""Run summary: counts, people seen, speed — an observer of the pipeline's stages and a
reader of its events (tracks, who they named)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from streamrec.records import Event
from streamrec.telemetry import Observer


@dataclass
class PersonSeen:
    first_time: float
    last_time: float
    tracks: int = 1


@dataclass
class CameraSummary:
    frames: int = 0
    detector_runs: int = 0
    faces: int = 0
    tracks: int = 0
    embeddings: int = 0
    dropped: int = 0
    damage: list[str] = field(default_factory=list)
    people: dict[str, PersonSeen] = field(default_factory=dict)

    def saw(self, name: str, first: float, last: float) -> None:
        seen = self.people.get(name)
        if seen is None:
            self.people[name] = PersonSeen(first, last)
        else:
            seen.first_time = min(seen.first_time, first)
            seen.last_time = max(seen.last_time, last)
            seen.tracks += 1


@dataclass(eq=False)
class Summary(Observer):
    """What a run did; filled in by the stages (each count by one stage thread), the events
    (:meth:`write`, under the match stage's lock) and the graph."""

    cameras: dict[str, CameraSummary] = field(default_factory=dict)
    wall_time: float = 0.0
    embed_calls: int = 0
    #: faces embedded (a few more than the embeddings used: see pipeline.identity)
    embedded_faces: int = 0
    #: busy seconds per stage step (read, detect, track, align, embed, match, annotate, encode)
    stage_seconds: dict[str, float] = field(default_factory=dict)
    interrupted: bool = False
    error: str | None = None
    #: media time of each open track's first frame (its track_start), by (camera, track)
    _started: dict[tuple[str, int], float] = field(default_factory=dict, repr=False)

    def frame_read(self, camera: str) -> None:
        self.cameras[camera].frames += 1

    def detected(self, camera: str, faces: int, seconds: float) -> None:
        c = self.cameras[camera]
        c.detector_runs += 1
        c.faces += faces

    def embedded(self, faces: int, seconds: float) -> None:
        self.embed_calls += 1
        self.embedded_faces += faces

    def evidence(self, camera: str) -> None:
        self.cameras[camera].embeddings += 1

    def write(self, event: Event) -> None:
        """Tracks started, and who an ended track named from its first to its last frame."""
        camera = event.camera or event.source
        key = (camera, event.track_id)
        if event.event == "track_start":
            self.cameras[camera].tracks += 1
            self._started[key] = event.time
        elif event.event == "track_end":
            first = self._started.pop(key, event.time)
            name = event.fields.get("name")
            if isinstance(name, str):
                self.cameras[camera].saw(name, first, event.time)

    def erased(self, name: str) -> None:
        """A person who left the gallery during the run (erased) leaves its summary too."""
        for c in self.cameras.values():
            c.people.pop(name, None)

    def busy(self, step: str, seconds: float) -> None:
        self.stage_seconds[step] = self.stage_seconds.get(step, 0.0) + seconds

    @property
    def frames(self) -> int:
        return sum(c.frames for c in self.cameras.values())

    @property
    def fps(self) -> float:
        return self.frames / self.wall_time if self.wall_time > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "frames": self.frames,
            "wall_time": round(self.wall_time, 3),
            "fps": round(self.fps, 2),
            "embed_calls": self.embed_calls,
            "embedded_faces": self.embedded_faces,
            "stage_seconds": {k: round(v, 3) for k, v in self.stage_seconds.items()},
            "interrupted": self.interrupted,
            "error": self.error,
            "cameras": {
                name: {
                    "frames": c.frames,
                    "detector_runs": c.detector_runs,
                    "faces": c.faces,
                    "tracks": c.tracks,
                    "embeddings": c.embeddings,
                    "embeddings_per_track": round(c.embeddings / c.tracks, 2) if c.tracks else 0,
                    "dropped": c.dropped,
                    "damage": c.damage,
                    "people": {
                        n: {
                            "first_time": round(p.first_time, 3),
                            "last_time": round(p.last_time, 3),
                            "tracks": p.tracks,
                        }
                        for n, p in sorted(c.people.items())
                    },
                }
                for name, c in self.cameras.items()
            },
        }

    def format(self) -> str:
        lines = []
        for name, c in self.cameras.items():
            lines.append(
                f"{name}: {c.frames} frames, detector on {c.detector_runs}, {c.faces} faces, "
                f"{c.tracks} tracks, {c.embeddings} embeddings"
                + (f" ({c.embeddings / c.tracks:.1f} per track)" if c.tracks else "")
                + (f", {c.dropped} frames dropped" if c.dropped else "")
            )
            for n, p in sorted(c.people.items(), key=lambda kv: kv[1].first_time):
                lines.append(
                    f"  {n}: {p.first_time:.2f}s - {p.last_time:.2f}s ({p.tracks} track(s))"
                )
            if not c.people:
                lines.append("  no known people seen")
            for d in c.damage[:5]:
                lines.append(f"  damage: {d}")
            if len(c.damage) > 5:
                lines.append(f"  ... {len(c.damage) - 5} more damage reports")
        state = " (interrupted)" if self.interrupted else ""
        lines.append(
            f"total: {self.frames} frames in {self.wall_time:.1f}s, {self.fps:.1f} fps, "
            f"{self.embedded_faces} faces embedded in {self.embed_calls} embedder calls{state}"
        )
        return "\n".join(lines)
