"""recall@10 of the approximate vector index against exact search, on a synthetic index
(bench/synthetic.py) of real BBC News sentence vectors plus noise.

Queries: 500 by default, half BBC News titles and half SQuAD dev questions (bench/_common.py),
embedded by the index's model. Exact top 10: a full inner-product scan of every stored vector.

    .venv/bin/python bench/recall.py [--size 1000000]
        the index as built (its manifest's parameters), through IndexReader.nearest asked for
        the engine's 200 candidates, as a search asks: recall@10 and the time of the call.
    .venv/bin/python bench/recall.py --sweep [--size 1000000]
        one line per (factory, nprobe, rescore depth): recall@10 after exact re-scoring, the
        FAISS time per query, the index's bytes per vector; what index/vectors.py was chosen by.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import faiss
from _common import emit, queries
from sift.index.embed import Embedder
from sift.index.store import connect
from sift.index.vectors import TRAIN_PER_LIST
from sift.search.reader import IndexReader
from synthetic import build as synthetic_index

K = 10
CANDIDATES = 200  # Settings.candidates: what a search asks of the vector index


def stored_matrix(directory: Path) -> np.ndarray:
    """Every stored vector, row i holding sentence id i + 1 (as the synthetic index numbers)."""
    conn = connect(directory)
    rows = conn.execute("SELECT vector FROM sentences ORDER BY id").fetchall()
    conn.close()
    return np.frombuffer(b"".join(r[0] for r in rows), dtype=np.float32).reshape(len(rows), -1)


def exact_top(matrix: np.ndarray, vectors: np.ndarray, k: int) -> np.ndarray:
    flat = faiss.IndexFlatIP(matrix.shape[1])
    flat.add(matrix)
    _, rows = flat.search(vectors, k)
    return rows + 1  # ids


def recall(found: list[np.ndarray], truth: np.ndarray) -> float:
    return float(
        np.mean(
            [
                len(set(f[:K].tolist()) & set(t.tolist())) / K
                for f, t in zip(found, truth, strict=True)
            ]
        )
    )


def measure_built(directory: Path, vectors: np.ndarray, truth: np.ndarray) -> dict:
    reader = IndexReader(directory)
    found, times = [], []
    for v in vectors:
        started = time.perf_counter()
        _, ids = reader.nearest(v, CANDIDATES)
        times.append(time.perf_counter() - started)
        found.append(ids)
    ms = np.array(times) * 1000
    half = len(vectors) // 2  # queries(): BBC titles, then SQuAD questions
    return {
        "vectors": reader.manifest.vectors.model_dump(exclude={"file", "built"}),
        "recall@10": round(recall(found, truth), 4),
        "recall@10_bbc_titles": round(recall(found[:half], truth[:half]), 4),
        "recall@10_squad": round(recall(found[half:], truth[half:]), 4),
        "nearest_ms_p50": round(float(np.percentile(ms, 50)), 2),
        "nearest_ms_p99": round(float(np.percentile(ms, 99)), 2),
    }


def sweep(
    matrix: np.ndarray,
    vectors: np.ndarray,
    truth: np.ndarray,
    kinds: list[str],
    nprobes: list[int],
    depths: list[int],
) -> None:
    ids = np.arange(1, len(matrix) + 1, dtype=np.int64)
    rng = np.random.default_rng(1234)
    half = len(vectors) // 2  # queries(): BBC titles, then SQuAD questions
    for factory in kinds:
        nlist = int(factory.split(",")[0].removeprefix("IVF"))
        started = time.perf_counter()
        index = faiss.index_factory(matrix.shape[1], factory, faiss.METRIC_INNER_PRODUCT)
        sample = rng.choice(len(matrix), min(len(matrix), nlist * TRAIN_PER_LIST), replace=False)
        index.train(matrix[np.sort(sample)])
        for i in range(0, len(matrix), 100_000):
            index.add_with_ids(matrix[i : i + 100_000], ids[i : i + 100_000])
        build_s = time.perf_counter() - started
        size = faiss.serialize_index(index).nbytes
        for nprobe in nprobes:
            params = faiss.SearchParametersIVF(nprobe=nprobe)
            times, lists = [], []
            for v in vectors:
                started = time.perf_counter()
                _, found = index.search(v.reshape(1, -1), max(depths), params=params)
                times.append(time.perf_counter() - started)
                lists.append(found[0])
            for depth in depths:
                rescored = []
                for v, cand in zip(vectors, lists, strict=True):
                    cand = cand[:depth][cand[:depth] >= 0]
                    scores = matrix[cand - 1] @ v
                    rescored.append(cand[np.argsort(-scores)])
                emit(
                    {
                        "bench": "recall_sweep",
                        "sentences": len(matrix),
                        "factory": factory,
                        "nprobe": nprobe,
                        "rescore": depth,
                        "recall@10": round(recall(rescored, truth), 4),
                        "recall@10_bbc_titles": round(recall(rescored[:half], truth[:half]), 4),
                        "recall@10_squad": round(recall(rescored[half:], truth[half:]), 4),
                        "recall@10_no_rescore": round(recall(lists, truth), 4),
                        "faiss_k": max(depths),
                        "faiss_ms_p50": round(float(np.median(times)) * 1000, 3),
                        "index_bytes_per_vector": round(size / len(matrix), 1),
                        "build_s": round(build_s, 1),
                    }
                )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--sweep", action="store_true")
    parser.add_argument(
        "--kinds",
        default="IVF1024,PQ96x4fs;IVF1024,PQ48x4fs;IVF1024,SQ8;IVF2048,PQ96x4fs",
        help="FAISS factory strings for --sweep, ';'-separated.",
    )
    parser.add_argument("--nprobes", default="8,16,32,64", help="For --sweep.")
    parser.add_argument("--depths", default="10,50,100,200,400", help="For --sweep.")
    args = parser.parse_args()
    directory = synthetic_index(args.size)
    asked = queries(args.queries)
    embedder = Embedder()
    vectors = embedder.encode([q for _, q in asked])
    matrix = stored_matrix(directory)
    truth = exact_top(matrix, vectors, K)
    if args.sweep:
        nprobes = [int(x) for x in args.nprobes.split(",")]
        depths = [int(x) for x in args.depths.split(",")]
        sweep(matrix, vectors, truth, args.kinds.split(";"), nprobes, depths)
        return
    del matrix
    result = measure_built(directory, vectors, truth)
    emit(
        {
            "bench": "recall",
            "index": f"synthetic {args.size:,} sentences (bench/synthetic.py)",
            "queries": len(asked),
            "precision": embedder.precision,
            "candidates": CANDIDATES,
            **result,
        }
    )


if __name__ == "__main__":
    main()
