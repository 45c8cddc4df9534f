"""Load: 64 concurrent clients for 60 s against a real `sift serve` on 127.0.0.1, mixed searches
and writes (POST /articles, DELETE /articles), after a few warm-up writes and searches (the first
write loads the model). Prints requests/s, latency percentiles by kind, the error count (which
must be 0), and what the server process wrote and its peak RSS (with `--workers 2` these are the
parent's only).

    .venv/bin/python bench/load.py [--clients 64] [--seconds 60] [--write-share 0.1] [--workers 1]
    .venv/bin/python bench/load.py --size 1000000     # on a copy of the synthetic 1M index

With `--workers 2`, two server processes share the index: writes arriving at both take turns at
the write lock (SIFT_WRITE_WAIT, 30 s in a server) instead of failing as busy.

The index is a fresh copy of seeds/ plus BBC News when ../shared/eval is there (else seeds/
alone). Traffic never leaves the loopback interface; the run is bounded in time and count.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from _common import EVAL, bbc_articles, emit
from _server import ROOT, serve
from sift.search.engine import Sift
from sift.settings import Settings
from synthetic import CACHE
from synthetic import build as synthetic_index

QUERIES = [
    "casualty estimates",
    "who signed the defence pact",
    "interest rates rise",
    "mobile phone sales",
    "election campaign promises",
    "film awards ceremony",
    "football transfer fee",
    "oil prices",
    "broadband internet users",
    "court ruling appeal",
    "drone warfare",
    "unemployment figures",
]


async def client(base: str, deadline: float, share: float, seed: int, log: list) -> None:  # type: ignore[type-arg]
    rng = random.Random(seed)
    async with httpx.AsyncClient(base_url=base, timeout=120) as http:
        n = 0
        while time.monotonic() < deadline and n < 100_000:
            n += 1
            kind = "write" if rng.random() < share else "search"
            started = time.perf_counter()
            if kind == "search":
                params = {
                    "q": rng.choice(QUERIES),
                    "k": 10,
                    "mode": rng.choice(["hybrid", "dense"]),
                }
                response = await http.get("/search", params=params)
            elif rng.random() < 0.8:
                doc = {
                    "id": f"load-{seed}-{n}",
                    "title": f"Load test {n}",
                    "text": f"Client {seed} wrote article {n}. Markets rose {n % 9} points.",
                }
                response = await http.post("/articles", json=doc)
            else:
                response = await http.delete(f"/articles/load-{seed}-{rng.randint(1, n)}")
                if response.status_code == 404:  # never written, or already deleted: fine
                    response.status_code = 200
            log.append((kind, time.perf_counter() - started, response.status_code))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--write-share", type=float, default=0.1)
    parser.add_argument("--workers", type=int, default=1, help="sift serve --workers")
    parser.add_argument(
        "--size", type=int, default=None, help="A copy of the synthetic index of N sentences."
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=CACHE if args.size else None) as tmp:
        index = Path(tmp) / "index"
        engine = Sift(Settings(index=index))
        corpus = "seeds"
        if args.size:
            shutil.copytree(synthetic_index(args.size), index)
            corpus = f"synthetic {args.size:,} (bench/synthetic.py)"
        else:
            engine.index_paths([ROOT / "seeds"])
        if EVAL.exists() and not args.size:
            from sift.index.records import Article

            engine.index_articles(
                Article(id=a["id"], title=a["title"], text=a["text"]) for a in bbc_articles()
            )
            corpus = "seeds + bbc_news"
        sentences = engine.stats().sentences
        log: list = []  # type: ignore[type-arg]
        env = {"SIFT_WORKERS": str(args.workers)}
        with serve(index, Path(tmp) / "server.log", env) as server:
            # Warm up as a running server is: the first write loads the model (seconds), the
            # first searches the query encoder and the index pages. Each worker, as requests
            # fall to them.
            with httpx.Client(base_url=server.url, timeout=120) as http:
                for n in range(2 * args.workers):
                    doc = {"id": f"warm-{n}", "text": "Warm up the server's writer."}
                    http.post("/articles", json=doc).raise_for_status()
                    http.get("/search", params={"q": QUERIES[n % len(QUERIES)]})
            written = server.written_bytes()
            deadline = time.monotonic() + args.seconds
            started = time.perf_counter()

            async def run() -> None:
                await asyncio.gather(
                    *(
                        client(server.url, deadline, args.write_share, i, log)
                        for i in range(args.clients)
                    )
                )

            asyncio.run(run())
            elapsed = time.perf_counter() - started
            written = server.written_bytes() - written
            memory = server.memory_kb()
    result: dict[str, object] = {
        "bench": "load",
        "corpus": corpus,
        "sentences": sentences,
        "clients": args.clients,
        "workers": args.workers,
        "seconds": round(elapsed, 1),
        "requests": len(log),
        "requests_per_s": round(len(log) / elapsed, 1),
        "errors": sum(1 for _, _, status in log if status >= 400),
        "server_written_mb": round(written / 1e6, 1),
        "server_peak_rss_mb": round(memory["VmHWM"] / 1024, 1),
    }
    for kind in ("search", "write"):
        times = np.array([t for k, t, _ in log if k == kind]) * 1000
        if len(times):
            result[kind] = {
                "count": len(times),
                "p50_ms": round(float(np.percentile(times, 50)), 1),
                "p99_ms": round(float(np.percentile(times, 99)), 1),
            }
    emit(result)


if __name__ == "__main__":
    main()
