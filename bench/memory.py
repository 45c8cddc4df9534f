"""Memory (peak RSS of `sift serve`) and bytes on disk per sentence, on a synthetic index
(bench/synthetic.py, default 1M sentences).

The server is started and answers 50 hybrid and 50 dense searches one at a time: its RSS then
is the steady one. It then serves hybrid and dense searches at concurrency 16 for `--seconds`
each: its peak RSS (VmHWM) is read from /proc at the end. The same is done on a 1,000-sentence
synthetic index: the difference of the steady RSS is what the index itself costs, apart from
the Python runtime, torch and the model that any index needs.

    .venv/bin/python bench/memory.py [--size 1000000] [--seconds 10]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from _common import emit, queries
from _server import load, serve
from synthetic import CACHE
from synthetic import build as synthetic_index

BASELINE = 1_000


def rss_kb(directory: Path, texts: list[str], seconds: float) -> tuple[int, int]:
    """(RSS after 100 searches one at a time, peak RSS after `seconds` of each mode at
    concurrency 16), in kB."""
    with serve(directory, CACHE / "memory_server.log") as server:
        for mode in ("hybrid", "dense"):
            load(server.url, texts[:50], mode, 1, 60, 50)
        steady = server.memory_kb()["VmRSS"]
        for mode in ("hybrid", "dense"):
            load(server.url, texts[50:], mode, 16, seconds, 10**9)
        return steady, server.memory_kb()["VmHWM"]


def disk(directory: Path) -> dict[str, int]:
    """Bytes by top-level entry (a folder, as the keyword index, counts everything in it)."""
    out = {}
    for entry in sorted(directory.iterdir()):
        files = [entry] if entry.is_file() else [p for p in entry.rglob("*") if p.is_file()]
        out[entry.name] = sum(p.stat().st_size for p in files)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    directory, small = synthetic_index(args.size), synthetic_index(BASELINE)
    texts = [q for _, q in queries(2000, seed=2)]
    steady, peak = rss_kb(directory, texts, args.seconds)
    small_steady, small_peak = rss_kb(small, texts, args.seconds)
    manifest = json.loads((directory / "manifest.json").read_text())
    n = manifest["counts"]["sentences"]
    files = disk(directory)
    vectors_file = manifest["vectors"]["file"]
    emit(
        {
            "bench": "memory",
            "index": "synthetic (bench/synthetic.py)",
            "sentences": n,
            "vectors": manifest["vectors"].get("factory") or manifest["vectors"]["type"],
            "rss_mb": round(steady / 1024, 1),
            "peak_rss_mb": round(peak / 1024, 1),
            "peak_rss_bytes_per_sentence": round(peak * 1024 / n),
            "baseline_rss_mb": round(small_steady / 1024, 1),
            "baseline_peak_rss_mb": round(small_peak / 1024, 1),
            "index_rss_bytes_per_sentence": round((steady - small_steady) * 1024 / (n - BASELINE)),
            "vectors_file_bytes_per_sentence": round(files[vectors_file] / n, 1),
            "disk_bytes_per_sentence": round(sum(files.values()) / n),
            "disk_files_mb": {k: round(v / 2**20, 1) for k, v in files.items()},
        }
    )


if __name__ == "__main__":
    main()
