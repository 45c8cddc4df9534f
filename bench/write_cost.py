"""What one write costs in a large index: `POST /articles` of one short article, one after the
other, into a copy of the synthetic index of N sentences (bench/synthetic.py) served by a real
`sift serve` on 127.0.0.1. Prints latency p50/p90/max and the bytes the server wrote to storage
per article (from /proc/PID/io write_bytes, so page-cache writes count once flushed by the
kernel: the server fsyncs every commit, which flushes them).

    .venv/bin/python bench/write_cost.py --size 1000000 [--writes 100]

A commit writes the article's rows (SQLite WAL, fsynced), the keyword index's new segment
(tantivy) and nothing of the vectors: the bytes follow the article, not the index. The copy is
made once per run (it is the index's size on disk).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from _common import emit
from _server import serve
from synthetic import build as synthetic_index

TEXT = (
    "The city council approved a new budget for road repairs on {n}. "
    "Officials said work on {k} streets would begin next month. "
    "Residents had complained about potholes for years."
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--writes", type=int, default=100)
    args = parser.parse_args()
    source = synthetic_index(args.size)
    with tempfile.TemporaryDirectory(dir=source.parent) as tmp:
        index = Path(tmp) / "index"
        shutil.copytree(source, index)
        times: list[float] = []
        written: list[int] = []
        with (
            serve(index, Path(tmp) / "server.log") as server,
            httpx.Client(base_url=server.url, timeout=120) as http,
        ):
            http.get("/search", params={"q": "warm up the reader", "k": 3}).raise_for_status()
            for n in range(args.writes):
                doc = {"id": f"write-{n}", "title": f"Council budget {n}"}
                doc["text"] = TEXT.format(n=n, k=n % 40 + 2)
                before = server.written_bytes()
                started = time.perf_counter()
                http.post("/articles", json=doc).raise_for_status()
                times.append(time.perf_counter() - started)
                written.append(server.written_bytes() - before)
            memory = server.memory_kb()
        ms = np.array(times) * 1000
        mb = np.array(written) / 1e6
        emit(
            {
                "bench": "write_cost",
                "sentences": args.size,
                "writes": args.writes,
                "latency_ms": {
                    "p50": round(float(np.percentile(ms, 50)), 1),
                    "p90": round(float(np.percentile(ms, 90)), 1),
                    "max": round(float(ms.max()), 1),
                },
                "written_mb_per_article": {
                    "p50": round(float(np.percentile(mb, 50)), 3),
                    "p90": round(float(np.percentile(mb, 90)), 3),
                    "max": round(float(mb.max()), 3),
                },
                "server_peak_rss_mb": round(memory["VmHWM"] / 1024, 1),
            }
        )


if __name__ == "__main__":
    main()
