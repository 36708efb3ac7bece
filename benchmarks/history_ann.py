"""Which approximate index for a very large face history: recall@10 and cost of hnswlib, usearch
and faiss-cpu on real embeddings plus generated distractors.

Real faces: every face on every 3rd frame of the media's clips and the labelled photos, embedded
by the real MobileFaceNet (128-d). The database is the video faces plus distractors up to
``--size`` rows: each distractor mixes two random real faces and noise (normalised), so the
database has the structure of face embeddings rather than of random vectors (on which every
index looks good or bad for the wrong reasons). Queries: the photos and 300 video faces held out
of the database. Truth: exact top-10 (float32). Each index is timed building (2 threads) and
answering one query at a time (1 thread).

    python -m benchmarks.history_ann [--size 200000] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.history_media import media_dirs, photo_faces, small_config, video_faces
from benchmarks.history_search import cpu_name

K = 10


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def distractors(real: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    out = np.empty((n, real.shape[1]), np.float32)
    for a in range(0, n, 50_000):
        m = min(50_000, n - a)
        i, j = rng.integers(0, len(real), m), rng.integers(0, len(real), m)
        w = rng.random((m, 1), dtype=np.float32)
        noise = rng.standard_normal((m, real.shape[1]), dtype=np.float32) * 0.06
        out[a : a + m] = unit(w * real[i] + (1 - w) * real[j] + noise)
    return out


def exact(db: np.ndarray, q: np.ndarray) -> np.ndarray:
    sims = q @ db.T
    return np.argsort(-sims, axis=1)[:, :K]


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(
        np.mean(
            [len(set(f.tolist()) & set(t.tolist())) / K for f, t in zip(found, truth, strict=True)]
        )
    )


Index = tuple[Callable[[np.ndarray], np.ndarray], int]  # (query one -> ids, bytes)


def hnswlib_index(db: np.ndarray, m: int, ef: int) -> Index:
    import hnswlib

    index = hnswlib.Index(space="ip", dim=db.shape[1])
    index.init_index(max_elements=len(db), ef_construction=200, M=m)
    index.add_items(db, np.arange(len(db)), num_threads=2)
    index.set_ef(ef)
    index.set_num_threads(1)

    def query(q: np.ndarray) -> np.ndarray:
        labels, _ = index.knn_query(q, k=K)
        return labels[0]

    size = len(db) * (db.shape[1] * 4 + m * 2 * 4 + 8)
    return query, size


def usearch_index(db: np.ndarray, m: int, ef: int, dtype: str) -> Index:
    from usearch.index import Index as UIndex

    index = UIndex(
        ndim=db.shape[1],
        metric="ip",
        dtype=dtype,
        connectivity=m,
        expansion_add=200,
        expansion_search=ef,
    )
    index.add(np.arange(len(db)), db, threads=2)

    def query(q: np.ndarray) -> np.ndarray:
        return np.asarray(index.search(q, K, threads=1).keys)

    return query, int(index.memory_usage)


def faiss_hnsw(db: np.ndarray, m: int, ef: int) -> Index:
    import faiss

    faiss.omp_set_num_threads(2)
    index = faiss.IndexHNSWFlat(db.shape[1], m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = 200
    index.add(db)
    index.hnsw.efSearch = ef

    def query(q: np.ndarray) -> np.ndarray:
        faiss.omp_set_num_threads(1)
        return index.search(q[None], K)[1][0]

    return query, len(db) * (db.shape[1] * 4 + m * 2 * 4)


def faiss_ivf(db: np.ndarray, nprobe: int) -> Index:
    import faiss

    faiss.omp_set_num_threads(2)
    nlist = int(4 * np.sqrt(len(db)))
    quant = faiss.IndexFlatIP(db.shape[1])
    index = faiss.IndexIVFFlat(quant, db.shape[1], nlist, faiss.METRIC_INNER_PRODUCT)
    index.train(db[np.random.default_rng(0).choice(len(db), min(len(db), 40 * nlist), False)])
    index.add(db)
    index.nprobe = nprobe

    def query(q: np.ndarray) -> np.ndarray:
        faiss.omp_set_num_threads(1)
        return index.search(q[None], K)[1][0]

    return query, len(db) * (db.shape[1] * 4 + 8)


def history_index(db: np.ndarray) -> Index:
    """What the face history runs: :class:`streamrec.history.ann.AnnIndex` as built by a store."""
    from streamrec.history.ann import AnnIndex

    index = AnnIndex(db.shape[1])
    index.sync(np.arange(1, len(db) + 1), db)  # slot i holds sighting i + 1

    def query(q: np.ndarray) -> np.ndarray:
        return index.candidates(q, K)

    return query, len(db) * (db.shape[1] * 4 + 8)


def measure(
    name: str, build: Callable[[], Index], queries: np.ndarray, truth: np.ndarray
) -> dict[str, Any]:
    load0 = os.getloadavg()[0]
    t = time.perf_counter()
    try:
        query, size = build()
    except ImportError as exc:
        return {"index": name, "skipped": f"not installed: {exc}"}
    build_s = time.perf_counter() - t
    found, times = [], []
    for q in queries:
        t = time.perf_counter()
        found.append(query(q))
        times.append(time.perf_counter() - t)
    return {
        "index": name,
        "recall@10": recall(np.stack(found), truth),
        "build_s": build_s,
        "query_ms_p50": 1e3 * float(np.median(times)),
        "query_ms_p95": 1e3 * float(np.percentile(times, 95)),
        "mb": size / 1e6,
        "load": [load0, os.getloadavg()[0]],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=200_000)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--only", default=None, help="only the indexes whose name matches this regex")
    args = ap.parse_args()
    import streamrec

    _, media = media_dirs()
    analyzer = streamrec.FaceAnalyzer(small_config())
    rng = np.random.default_rng(0)
    video = video_faces(analyzer, media)
    photos = np.stack([p.embedding for p in photo_faces(analyzer, media)])
    held = rng.choice(len(video), min(300, len(video) // 3), replace=False)
    keep = np.setdiff1d(np.arange(len(video)), held)
    real = video[keep]
    db = np.concatenate(
        [real, distractors(np.concatenate([real, photos]), args.size - len(real), rng)]
    )
    queries = np.concatenate([photos, video[held]])
    truth = exact(db, queries)
    print(
        f"{len(video)} video faces, {len(photos)} photos; "
        f"database {len(db):,}, {len(queries)} queries",
        flush=True,
    )
    cases: list[tuple[str, Callable[[], Index]]] = []
    for m, ef in ((16, 64), (16, 128), (32, 128)):
        cases.append((f"hnswlib M={m} ef={ef}", partial(hnswlib_index, db, m, ef)))
        cases.append((f"usearch f16 M={m} ef={ef}", partial(usearch_index, db, m, ef, "f16")))
        cases.append((f"faiss HNSW M={m} ef={ef}", partial(faiss_hnsw, db, m, ef)))
    for nprobe in (16, 64):
        cases.append((f"faiss IVF-Flat nprobe={nprobe}", partial(faiss_ivf, db, nprobe)))
    cases.append(("streamrec AnnIndex: faiss IVF-Flat, 2 % of lists", partial(history_index, db)))
    if args.only:
        cases = [c for c in cases if re.search(args.only, c[0])]
    rows = []
    lines = [
        f"CPU: {cpu_name()}, {os.cpu_count()} cores; database {len(db):,} × {db.shape[1]} "
        f"({len(real)} real video faces + distractors), {len(queries)} real queries",
        "",
        "| index | recall@10 | build s (2 threads) | query ms p50 / p95 (1 thread) | MB "
        "| load 1m |",
        "|---|---|---|---|---|---|",
    ]
    for name, build in cases:
        r = measure(name, build, queries, truth)
        rows.append(r)
        if "skipped" in r:
            line = f"| {name} | skipped: {r['skipped']} | | | | |"
        else:
            line = (
                f"| {name} | {r['recall@10']:.4f} | {r['build_s']:.1f} | {r['query_ms_p50']:.2f} / "
                f"{r['query_ms_p95']:.2f} | {r['mb']:.0f} "
                f"| {r['load'][0]:.1f} → {r['load'][1]:.1f} |"
            )
        lines.append(line)
        print(line, flush=True)
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "history_ann.md").write_text(text)
        (args.out / "history_ann.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
