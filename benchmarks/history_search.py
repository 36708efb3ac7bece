"""Search by face on a large history: the exact float16 search of ``HistoryStore.search``.

Generates ``--rows`` sightings (default 1M) through the store's own ``add`` (SQLite rows and
float16 vectors; no crop files, so the figure is the search's), 20 cameras over 30 days, each
query a noisy copy of a stored face (cosine ~0.5 to it, like a photo against a video track).
Reports the time to write them, to open the store (the slot arrays are read from SQLite), and
search latency p50/p95 (k=20) unfiltered, for one camera and for one day, on 1 and 2 threads,
with the CPU and the 1-minute load beside the figures.

    python -m benchmarks.history_search [--rows 1000000] [--dim 128,512] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np

from streamrec.gallery.store import Recognizer
from streamrec.history import search as search_module
from streamrec.history.records import HistoryPolicy, TrackSighting
from streamrec.history.store import HistoryStore

QUERY_COSINE = 0.5
DAY = 86400.0


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def fill(store: HistoryStore, rows: int, rng: np.random.Generator, now: float) -> float:
    """``rows`` sightings through ``store.add``; seconds taken."""
    start = time.perf_counter()
    batch = 5000
    for a in range(0, rows, batch):
        n = min(batch, rows - a)
        vectors = unit(rng.standard_normal((n, store.dim), dtype=np.float32))
        times = now - rng.random(n) * 29 * DAY
        cams = rng.integers(0, 20, n)
        store.add(
            [
                TrackSighting(
                    f"camera-{int(c)}",
                    float(t),
                    float(t) + 5.0,
                    v,
                    None,
                    0.5,
                    f"unknown-{a + i}",
                    0.3,
                )
                for i, (v, t, c) in enumerate(zip(vectors, times, cams, strict=True))
            ]
        )
    return time.perf_counter() - start


def latency(fn: Any, queries: np.ndarray) -> tuple[float, float]:
    fn(queries[0])  # warm-up (pages the matrix in)
    times = []
    for q in queries[1:]:
        t = time.perf_counter()
        fn(q)
        times.append(time.perf_counter() - t)
    return float(np.percentile(times, 50)), float(np.percentile(times, 95))


def run(rows: int, dim: int, folder: Path, repeats: int) -> dict[str, Any]:
    rng = np.random.default_rng(dim)
    rec = Recognizer("generated", "0" * 64, dim)
    now = time.time()
    policy = HistoryPolicy(max_sightings=rows)
    with HistoryStore(folder, rec, policy) as store:
        write_s = fill(store, rows, rng, now)
    t = time.perf_counter()
    store = HistoryStore(folder, rec, policy)
    open_s = time.perf_counter() - t
    picks = store.embeddings(rng.integers(1, rows + 1, repeats + 1).tolist())
    noise = rng.standard_normal(picks.shape).astype(np.float32)
    noise *= math.sqrt(1 / QUERY_COSINE**2 - 1) / math.sqrt(dim)
    queries = unit(picks + noise)
    out: dict[str, Any] = {
        "rows": rows,
        "dim": dim,
        "write_s": write_s,
        "open_s": open_s,
        "vector_mb": store.vectors.slots * store.vectors.row_bytes / 1e6,
    }
    cases = {
        "all": lambda q: store.search(q, k=20),
        "one camera": lambda q: store.search(q, k=20, camera="camera-3"),
        "one day": lambda q: store.search(q, k=20, since=now - 2 * DAY, until=now - DAY),
    }
    real = search_module.top_k
    for threads in (1, 2):

        def pinned(*args: Any, _threads: int = threads, **kw: Any) -> Any:
            kw["threads"] = _threads
            return real(*args, **kw)

        with mock.patch("streamrec.history.search.top_k", pinned):
            for name, fn in cases.items():
                load0 = os.getloadavg()[0]
                p50, p95 = latency(fn, queries)
                out[f"{name} {threads}t"] = {
                    "p50_s": p50,
                    "p95_s": p95,
                    "load": [load0, os.getloadavg()[0]],
                }
    # recall of the exact search itself: the source sighting is the top hit
    top = [store.search(q, k=1)[0].similarity for q in queries[:20]]
    out["top_similarity_mean"] = float(np.mean(top))
    store.close()
    return out


def report(results: list[dict[str, Any]]) -> str:
    lines = [
        f"CPU: {cpu_name()}, {os.cpu_count()} cores; numpy {np.__version__}",
        "",
        "| rows | dim | write s | open s | vectors MB | case | threads | p50 ms | p95 ms "
        "| load 1m |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        for key, v in r.items():
            if not isinstance(v, dict):
                continue
            case, threads = key.rsplit(" ", 1)
            lines.append(
                f"| {r['rows']:,} | {r['dim']} | {r['write_s']:.0f} | {r['open_s']:.2f} "
                f"| {r['vector_mb']:.0f} | {case} | {threads[:-1]} | {v['p50_s'] * 1e3:.0f} "
                f"| {v['p95_s'] * 1e3:.0f} | {v['load'][0]:.1f} → {v['load'][1]:.1f} |"
            )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--dim", default="128,512", help="embedding sizes, comma-separated")
    ap.add_argument("--repeats", type=int, default=20, help="queries per case")
    ap.add_argument("--out", type=Path, default=None, help="folder for history_search.md/json")
    ap.add_argument("--keep", type=Path, default=None, help="build the history here and keep it")
    args = ap.parse_args()
    results = []
    for dim in [int(d) for d in args.dim.split(",")]:
        tmp = Path(tempfile.mkdtemp(prefix="history-bench-")) if args.keep is None else args.keep
        try:
            results.append(run(args.rows, dim, tmp / f"h{dim}", args.repeats))
        finally:
            if args.keep is None:
                shutil.rmtree(tmp, ignore_errors=True)
        print(report(results[-1:]), flush=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    text = report(results) + f"\n\npeak RSS {peak:.0f} MB\n"
    print(text)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "history_search.md").write_text(text)
        (args.out / "history_search.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
