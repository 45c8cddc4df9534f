"""Search latency (p50, p99) and queries/s through the HTTP API: a real `sift serve` on
127.0.0.1 over a synthetic index (bench/synthetic.py: real BBC News sentences and vectors plus
noise, N sentences), at concurrency 1 and 16, for hybrid and dense searches (k=10, defaults).

The client (bench/_server.py: asyncio, one keep-alive HTTP/1.1 connection per client, in this
process) keeps `concurrency` requests in flight in a closed loop for `--seconds` per setting,
after a warm-up; queries are BBC titles and SQuAD questions (bench/_common.py), each asked once
per run. The settings one after the other meet different queries (the pool is titles first, then
questions, and the two kinds cost differently), so the ratio hybrid/dense at concurrency 1 is
also taken with the two modes in turns, request by request, over one shuffled mix of both kinds
(`turns_c1`): both meet the same moments of a noisy machine and the same kinds of query, and
every run asks the same queries. Read the target's ratio there. Client and server share the
machine's cores (and, on the dev machine, other people's test runs: the figures are noisy;
compare runs made close together).

    .venv/bin/python bench/api_latency.py --size 1000000 [--seconds 20] [--mode hybrid]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from _common import emit, queries
from _server import load, load_turns, serve
from synthetic import CACHE
from synthetic import build as synthetic_index


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--index", type=Path, default=None, help="Another index instead.")
    parser.add_argument("--mode", action="append", default=None, help="hybrid, dense (both).")
    parser.add_argument("--concurrency", type=int, action="append", default=None)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    directory = args.index or synthetic_index(args.size)
    manifest = json.loads((directory / "manifest.json").read_text())
    texts = [q for _, q in queries(4000, seed=1)]
    results: dict[str, dict[str, dict[str, float]]] = {}
    with serve(directory, CACHE / "api_latency_server.log") as server:
        load(server.url, texts[-50:], "hybrid", 4, 30, 50)  # warm-up: caches, pages, threads
        asked = 0
        for mode in args.mode or ["hybrid", "dense"]:
            for concurrency in args.concurrency or [1, 16]:
                # Fresh queries for each setting while they last; then round again.
                pool, start = texts[:-50], asked % len(texts[:-50])
                fresh = pool[start:] + pool[:start]
                figures = load(server.url, fresh, mode, concurrency, args.seconds, 10**9)
                asked += int(figures["queries"])
                results.setdefault(mode, {})[f"c{concurrency}"] = figures
        turns: dict[str, object] = {}
        if {"hybrid", "dense"} <= set(args.mode or ["hybrid", "dense"]):
            # Each mode a random half of a shuffled mix of titles and questions (distinct
            # texts: no mode reuses another's cached query vector), the same in every run.
            mix = texts[:-50]
            random.Random(2).shuffle(mix)
            both, together = load_turns(server.url, mix, ["hybrid", "dense"], 1, 2 * args.seconds)
            hybrid, dense = both["hybrid"], both["dense"]
            turns = {
                **both,
                "all_queries_per_s": together,
                "hybrid_over_dense_p50": round(hybrid["p50_ms"] / dense["p50_ms"], 2),
                "hybrid_over_dense_p99": round(hybrid["p99_ms"] / dense["p99_ms"], 2),
            }
        memory = server.memory_kb()
    emit(
        {
            "bench": "api_latency",
            "index": str(directory) if args.index else "synthetic (bench/synthetic.py)",
            "sentences": manifest["counts"]["sentences"],
            "vectors": manifest["vectors"].get("factory") or manifest["vectors"]["type"],
            "seconds_per_setting": args.seconds,
            "results": results,
            "turns_c1": turns,
            "server_peak_rss_mb": round(memory["VmHWM"] / 1024, 1),
        }
    )


if __name__ == "__main__":
    main()
