"""Run summary: counts, people seen, speed."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any


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


@dataclass
class Summary:
    cameras: dict[str, CameraSummary] = field(default_factory=dict)
    wall_time: float = 0.0
    embed_calls: int = 0
    #: busy seconds per stage step (read, detect, track, align, embed, match, annotate, encode)
    stage_seconds: dict[str, float] = field(default_factory=dict)
    interrupted: bool = False
    error: str | None = None

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
            f"{self.embed_calls} embedder calls{state}"
        )
        return "\n".join(lines)


@contextmanager
def timed(totals: dict[str, float], step: str) -> Iterator[None]:
    """Add the wall time of the block to ``totals[step]`` (each step is timed by one thread)."""
    t0 = time.perf_counter()
    try:
        yield
    finally:
        totals[step] = totals.get(step, 0.0) + time.perf_counter() - t0
