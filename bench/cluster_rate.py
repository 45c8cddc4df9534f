"""Indexing rate on Ray (`sift index --ray local`) next to a local run, on the same corpus, in one
run: BBC News (2,225 articles), or its first N.

    .venv/bin/python bench/cluster_rate.py [--limit N] [--copies N] [--actors N] [--rounds 2]
                                           [--tokenize auto|cpu|actor]

Both rates are end to end, as a user waits for them: the local run from its first article to its
commit (the model already loaded), the Ray run from starting the cluster (`ray.init`, the actors
loading the model) to its commit. On a machine with the CPUs to spare, the difference is Ray's
overhead; the ratio is quoted within one run since the machine is noisy. With a GPU the Ray actors
take it at fp16 (for BBC News x 50: `--copies 50`, each copy's articles end with a line naming
it, so none is a duplicate that sift would store once).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from _common import bbc_articles, emit, write_corpus
from sift.search.engine import Sift
from sift.settings import Settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--limit", type=int, default=None, help="Only the first N articles.")
    parser.add_argument("--copies", type=int, default=1, help="Index the corpus N times over.")
    parser.add_argument("--actors", type=int, default=None, help="SIFT_RAY_ACTORS")
    parser.add_argument("--rounds", type=int, default=2, help="Runs of each, alternating.")
    parser.add_argument(
        "--tokenize", default="auto", choices=["auto", "cpu", "actor"], help="SIFT_RAY_TOKENIZE"
    )
    args = parser.parse_args()
    articles = bbc_articles()[: args.limit]
    with tempfile.TemporaryDirectory() as tmp:
        corpus = write_corpus(Path(tmp) / "bbc.jsonl", articles, args.copies)
        # Local and Ray runs alternate (local, ray, ray, local, ...): a machine whose load
        # drifts during the run weighs on both alike.
        order = [m for r in range(args.rounds) for m in (("local", "ray"), ("ray", "local"))[r % 2]]
        seconds = {"local": 0.0, "ray": 0.0}
        sentences = {"local": 0, "ray": 0}
        counts = {}
        for number, mode in enumerate(order):
            settings = Settings(index=Path(tmp) / f"{mode}-{number}")
            if mode == "ray":
                settings = settings.model_copy(
                    update={
                        "ray_address": "local",
                        "ray_actors": args.actors,
                        "ray_tokenize": args.tokenize,
                    }
                )
            engine = Sift(settings)
            if mode == "local":  # loaded before timing; a Ray driver loads no model
                engine.embedder.encode(["warm up the model before timing"])
            started = time.perf_counter()
            summary = engine.index_paths([corpus])
            seconds[mode] += time.perf_counter() - started
            sentences[mode] += summary.sentences
            assert not summary.failed, summary.failed[:3]
            counts.setdefault(mode, summary.counts())
        assert counts["ray"] == counts["local"], counts
        gpus = _gpus()

    local_rate = sentences["local"] / seconds["local"]
    ray_rate = sentences["ray"] / seconds["ray"]
    emit(
        {
            "bench": "cluster_rate",
            "corpus": "bbc_news",
            "articles": len(articles) * args.copies,
            "copies": args.copies,
            "sentences": counts["ray"]["sentences"],
            "rounds": args.rounds,
            "order": order,
            "local_seconds": round(seconds["local"], 1),
            "local_sentences_per_s": round(local_rate, 1),
            "ray_seconds": round(seconds["ray"], 1),
            "ray_sentences_per_s": round(ray_rate, 1),
            "ratio": round(ray_rate / local_rate, 3),
            "ray_gpus": gpus,
            "ray_tokenize": args.tokenize,
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
