"""Where an IVF starts to pay: per-query time of exact search and of the IVF (with its exact
re-scoring from SQLite) on the first N sentences of the 1M synthetic index (bench/synthetic.py),
with the IVF's recall@10 against exact; the numbers behind index/vectors.EXACT_MAX.

    .venv/bin/python bench/exact_vs_ivf.py [--sizes 25000,50000,100000,200000] [--queries 200]
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
from recall import K, recall, stored_matrix
from sift.index.embed import Embedder
from sift.index.store import connect
from sift.index.vectors import TRAIN_PER_LIST, nearest, new_flat, plan
from synthetic import build as synthetic_index

CANDIDATES = 200


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="25000,50000,100000,200000")
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    directory = synthetic_index(1_000_000)
    vectors = Embedder().encode([q for _, q in queries(args.queries, seed=3)])
    matrix = stored_matrix(directory)
    conn = connect(directory)
    for size in [int(s) for s in args.sizes.split(",")]:
        part = matrix[:size]
        ids = np.arange(1, size + 1, dtype=np.int64)
        flat = new_flat(part.shape[1])
        flat.add_with_ids(part, ids)
        info = plan(size, part.shape[1], threshold=0)
        ivf = faiss.index_factory(part.shape[1], info.factory, faiss.METRIC_INNER_PRODUCT)
        rng = np.random.default_rng(0)
        ivf.train(part[rng.choice(size, min(size, (info.nlist or 1) * TRAIN_PER_LIST), False)])
        ivf.add_with_ids(part, ids)
        exact_ms, ivf_ms, truth, found = [], [], [], []
        for v in vectors:
            started = time.perf_counter()
            _, top = nearest(flat, info, conn, v, CANDIDATES)
            exact_ms.append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            _, approx = nearest(ivf, info, conn, v, CANDIDATES)
            ivf_ms.append((time.perf_counter() - started) * 1000)
            truth.append(top[:K])
            found.append(approx)
        emit(
            {
                "bench": "exact_vs_ivf",
                "sentences": size,
                "ivf": info.factory,
                "nprobe": info.nprobe,
                "rescore": info.rescore,
                "exact_ms_p50": round(float(np.median(exact_ms)), 2),
                "ivf_ms_p50": round(float(np.median(ivf_ms)), 2),
                "ivf_recall@10": round(recall(found, np.array(truth)), 4),
            }
        )


if __name__ == "__main__":
    main()
