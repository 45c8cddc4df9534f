"""Indexing rate on Ray (`sift index --ray local`) next to a local run, on the same corpus, in one
run: BBC News (2,225 articles), or its first N.

    .venv/bin/python bench/cluster_rate.py [--limit N] [--copies N] [--actors N]

Both rates are end to end, as a user waits for them: the local run from its first article to its
commit (the model already loaded), the Ray run from starting the cluster (`ray.init`, the actors
loading the model) to its commit. On a machine with the CPUs to spare, the difference is Ray's
overhead; the ratio is quoted within one run since the machine is noisy. With a GPU the Ray actors
take it at fp16 (for BBC News x 50: `--copies 50`, each copy's articles end with a line naming
it, so none is a duplicate that sift would store once).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from _common import bbc_articles, emit
from sift.search.engine import Sift
from sift.settings import Settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--limit", type=int, default=None, help="Only the first N articles.")
    parser.add_argument("--copies", type=int, default=1, help="Index the corpus N times over.")
    parser.add_argument("--actors", type=int, default=None, help="SIFT_RAY_ACTORS")
    args = parser.parse_args()
    articles = bbc_articles()[: args.limit]
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "bbc.jsonl"
        with corpus.open("w", encoding="utf-8") as out:
            for copy in range(args.copies):
                for a in articles:
                    if copy:
                        a = {**a, "id": f"{a['id']}~{copy}", "text": f"{a['text']}\n\nCopy {copy}."}
                    out.write(json.dumps(a) + "\n")
        local = Sift(Settings(index=Path(tmp) / "local"))
        local.embedder.encode(["warm up the model before timing"])
        started = time.perf_counter()
        local_summary = local.index_paths([corpus])
        local_seconds = time.perf_counter() - started

        on_ray = Sift(
            Settings(index=Path(tmp) / "ray", ray_address="local", ray_actors=args.actors)
        )
        on_ray.embedder.encode(["warm up the model before timing"])  # the driver's, as above
        started = time.perf_counter()
        ray_summary = on_ray.index_paths([corpus])
        ray_seconds = time.perf_counter() - started
        assert ray_summary.counts() == local_summary.counts(), (ray_summary, local_summary)
        assert not ray_summary.failed, ray_summary.failed[:3]
        gpus = _gpus()

    local_rate = local_summary.sentences / local_seconds
    ray_rate = ray_summary.sentences / ray_seconds
    emit(
        {
            "bench": "cluster_rate",
            "corpus": "bbc_news",
            "articles": len(articles) * args.copies,
            "copies": args.copies,
            "sentences": ray_summary.sentences,
            "local_seconds": round(local_seconds, 1),
            "local_sentences_per_s": round(local_rate, 1),
            "ray_seconds": round(ray_seconds, 1),
            "ray_sentences_per_s": round(ray_rate, 1),
            "ratio": round(ray_rate / local_rate, 3),
            "ray_gpus": gpus,
            "driver_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        }
    )


def _gpus() -> int:
    try:
        import torch
    except ImportError:  # pragma: no cover
        return 0
    return torch.cuda.device_count()


if __name__ == "__main__":
    main()
