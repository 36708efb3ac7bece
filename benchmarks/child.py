"""One workload in a fresh process: ``python -m benchmarks.child RESULT.json < SPEC.json``.

Writes ``{"measured": ..., "cpu_percent": ...}`` (or ``{"skipped": reason}`` or
``{"error": ...}``) to RESULT.json. CPU use is this process's user + system time (its children
included) over the whole workload, model loading included, in percent of one core. Peak RSS is
this process's ``VmHWM`` (``ru_maxrss`` is no use here: Linux carries the parent's high-water
mark over fork and exec).
"""

from __future__ import annotations

import json
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import psutil

from .cases import Measured, Skipped, Spec


def _workload(kind: str) -> Callable[[Spec], Measured]:
    from . import cases, live, peers

    table: dict[str, Callable[[Spec], Measured]] = {
        "decode": cases.decode,
        "streamrec": cases.streamrec,
        "detector": cases.detector,
        "startup": cases.startup,
        "whole_run": cases.whole_run,
        "insightface": peers.insightface,
        "face_recognition": peers.face_recognition,
        "live": live.live,
        "live_decode": live.live_decode,
    }
    return table[kind]


def _cpu_seconds(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return t.user + t.system + t.children_user + t.children_system


def measure(spec: Spec) -> dict[str, Any]:
    proc = psutil.Process()
    cpu0, wall0 = _cpu_seconds(proc), time.perf_counter()
    try:
        measured = _workload(spec["kind"])(spec)
    except Skipped as exc:
        return {"skipped": str(exc)}
    except Exception as exc:  # the row says what failed; the traceback goes to stderr
        traceback.print_exc()
        return {"error": f"{type(exc).__name__}: {exc}"}
    cpu, wall = _cpu_seconds(proc) - cpu0, time.perf_counter() - wall0
    # The workload's own window excludes model loading; CPU is over the whole call.
    return {
        "measured": asdict(measured),
        "cpu_percent": 100 * cpu / wall if wall > 0 else None,
        "peak_rss_mb": _peak_rss_kib() / 1024,
    }


def _peak_rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status")


def main() -> int:
    spec = json.load(sys.stdin)
    with open(sys.argv[1], "w") as f:
        json.dump(measure(spec), f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
