"""Gallery matching time against gallery size: streamrec's Matcher vs a faiss IVF index.

Synthetic L2-normalised 512-d float32 templates (1k ... 1M identities, 1 or 3 sub-centers each);
each query is a noisy copy of a random identity's template (cosine ~0.5 to it, ~0 to others),
like a genuine face. Reports milliseconds per face for query batches of 1 and 32, and the
recall@1 of the approximate index against exact search.

    python -m benchmarks.match_scale [--sizes 1000,10000,100000,1000000] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from streamrec.gallery.index import TemplateIndex
from streamrec.gallery.matcher import Matcher

DIM = 512
BATCHES = (1, 32)
NPROBES = (8, 32)
QUERY_COSINE = 0.5


def unit_rows(rng: np.random.Generator, n: int) -> np.ndarray:
    out = np.empty((n, DIM), np.float32)
    for start in range(0, n, 100_000):  # chunks: bounded temporary memory
        block = rng.standard_normal((min(100_000, n - start), DIM), dtype=np.float32)
        out[start : start + len(block)] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def queries(rng: np.random.Generator, templates: np.ndarray, n: int) -> np.ndarray:
    """Noisy copies of random templates, at cosine ~QUERY_COSINE to their source."""
    src = templates[rng.integers(0, len(templates), n)]
    noise = rng.standard_normal((n, DIM), dtype=np.float32)
    noise *= math.sqrt(1 / QUERY_COSINE**2 - 1) / math.sqrt(DIM)
    q = src + noise
    return q / np.linalg.norm(q, axis=1, keepdims=True)


def ms_per_face(fn: Callable[[np.ndarray], Any], q: np.ndarray, batch: int, budget: float) -> float:
    """Median time per face over repeated calls (at least 3, for about ``budget`` seconds)."""
    fn(q[:batch])  # warm-up
    times: list[float] = []
    start = time.perf_counter()
    i = 0
    while len(times) < 3 or (time.perf_counter() - start < budget and len(times) < 200):
        b = q[(i * batch) % (len(q) - batch) :][:batch]
        t = time.perf_counter()
        fn(b)
        times.append(time.perf_counter() - t)
        i += 1
    return 1000 * float(np.median(times)) / batch


def run(sizes: list[int], budget: float, seed: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    rows = []
    for n in sizes:
        for subcenters in (1, 3) if n <= 100_000 else (1,):
            templates = unit_rows(rng, n * subcenters)
            owners = np.repeat(np.arange(n), subcenters)
            matcher = Matcher([f"p{i}" for i in range(n)], templates, owners)
            q = queries(rng, templates, 256)
            row: dict[str, Any] = {"identities": n, "subcenters": subcenters}
            for b in BATCHES:
                row[f"matcher_ms_b{b}"] = ms_per_face(matcher.best, q, b, budget)
            exact = TemplateIndex(templates, min_size=len(templates) + 1)
            for b in BATCHES:
                row[f"argmax_ms_b{b}"] = ms_per_face(exact.search, q, b, budget)
            if subcenters == 1 and n >= 10_000:
                t = time.perf_counter()
                ivf = TemplateIndex(templates, min_size=0)
                row["ivf_build_s"] = time.perf_counter() - t
                truth, _ = exact.search(q)
                for nprobe in NPROBES:
                    ivf.nprobe = nprobe
                    for b in BATCHES:
                        row[f"ivf{nprobe}_ms_b{b}"] = ms_per_face(ivf.search, q, b, budget)
                    found, _ = ivf.search(q)
                    row[f"ivf{nprobe}_recall_at_1"] = float(np.mean(found == truth))
            print(
                json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()})
            )
            rows.append(row)
            del matcher, templates
    return rows


def markdown(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    def cell(row: dict[str, Any], key: str, fmt: str = "{:.3f}") -> str:
        return fmt.format(row[key]) if key in row else "-"

    lines = [
        "# Gallery matching time vs gallery size",
        "",
        f"`python -m benchmarks.match_scale` on {meta['machine']}; numpy {meta['numpy']}, "
        f"faiss {meta['faiss']}. Synthetic L2-normalised {DIM}-d float32 templates; queries are "
        f"noisy copies of a random template (cosine ~{QUERY_COSINE}). Times are milliseconds "
        "per face (median), for a query batch of 1 and of 32 faces.",
        "",
        "- **Matcher.best**: `streamrec.gallery.Matcher` as it is (per-person max via "
        "`np.maximum.at`, then argmax).",
        "- **argmax**: exact NumPy search over templates (`TemplateIndex` below its size "
        "threshold): argmax of `q @ T.T`, owner of the best template.",
        "- **faiss IVF nprobe P**: `faiss.IndexIVFFlat` (inner product, sqrt(M) lists; P lists "
        "scanned per query; `streamrec.index.TemplateIndex` defaults to 32); recall@1 = same "
        "top template as exact search.",
        f"- load average while running: {meta['loadavg']} (other jobs shared the 2 cores).",
        "",
        "| identities | sub-centers | Matcher.best b1 | Matcher.best b32 | argmax b1 | argmax b32 "
        + "".join(f"| IVF{p} b1 | IVF{p} b32 | IVF{p} recall@1 " for p in NPROBES)
        + "| IVF build (s) |",
        "|---:|---:|---:|---:|---:|---:|" + "---:|---:|---:|" * len(NPROBES) + "---:|",
    ]
    for r in rows:
        ivf = "".join(
            f" {cell(r, f'ivf{p}_ms_b1')} | {cell(r, f'ivf{p}_ms_b32')} | "
            f"{cell(r, f'ivf{p}_recall_at_1')} |"
            for p in NPROBES
        )
        lines.append(
            f"| {r['identities']:,} | {r['subcenters']} | {cell(r, 'matcher_ms_b1')} | "
            f"{cell(r, 'matcher_ms_b32')} | {cell(r, 'argmax_ms_b1')} | "
            f"{cell(r, 'argmax_ms_b32')} |{ivf} {cell(r, 'ivf_build_s', '{:.1f}')} |"
        )
    return "\n".join(lines) + "\n"


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=100)
    for key, label in (
        ("matcher_ms", "Matcher.best"),
        ("argmax_ms", "exact argmax"),
        (f"ivf{NPROBES[-1]}_ms", f"faiss IVF nprobe {NPROBES[-1]}"),
    ):
        for b, style in zip(BATCHES, ("-o", "--s"), strict=True):
            k = f"{key}_b{b}"
            pts = [(r["identities"], r[k]) for r in rows if r["subcenters"] == 1 and k in r]
            if pts:
                xs, ys = zip(*pts, strict=True)
                ax.plot(xs, ys, style, label=f"{label}, batch {b}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("identities in the gallery (1 template each)")
    ax.set_ylabel("ms per face")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000,10000,100000,1000000")
    ap.add_argument("--budget", type=float, default=2.0, help="seconds per timing")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = ap.parse_args()
    import faiss

    meta = {
        "machine": f"{platform.processor() or platform.machine()}, 2 cores",
        "numpy": np.__version__,
        "faiss": faiss.__version__,
        "loadavg": " ".join(f"{x:.1f}" for x in os.getloadavg()),
    }
    rows = run([int(s) for s in args.sizes.split(",")], args.budget, args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "match_scale.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    (out / "match_scale.md").write_text(markdown(rows, meta))
    plot(rows, out / "match_scale.png")
    print(markdown(rows, meta))


if __name__ == "__main__":
    main()
