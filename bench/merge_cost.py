"""What a new vectors base costs the writes around it, in a copy of the synthetic index of N
sentences (bench/synthetic.py), in process: a merge of the changes, then a rebuild for the size
(the IVF retrained, as when the index doubles), each built in the background
(`index.merging.build_merge`) while one-article writes commit one after the other, then
installed. Prints, for each, the build's seconds, the writes committed meanwhile (latency
p50/max) and the install's milliseconds. Inline (`SIFT_MERGES=inline`, and every merge before
this), the write that makes one due waits for the build and the install together.

    .venv/bin/python bench/merge_cost.py --size 1000000 [--changes 2000]

`--changes` articles of 3 sentences are written first, so that the merge has changes to fold in.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from _common import emit
from filelock import FileLock
from sift.index.generations import MERGE_LOCK
from sift.index.lock import acquire_write_lock
from sift.index.merging import Built, build_merge, install_merge
from sift.index.records import Article
from sift.index.store import connect
from sift.search.engine import Sift
from sift.settings import Settings
from synthetic import build as synthetic_index

TEXT = (
    "The harbour board approved new cranes for berth {n}. "
    "Dock workers said {k} ships had waited a week to unload. "
    "The port expects record traffic next year."
)


def article(n: int) -> Article:
    return Article(id=f"merge-{n}", title=f"Harbour {n}", text=TEXT.format(n=n, k=n % 30 + 2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--changes", type=int, default=2000)
    args = parser.parse_args()
    source = synthetic_index(args.size)
    with tempfile.TemporaryDirectory(dir=source.parent) as tmp:
        index = Path(tmp) / "index"
        shutil.copytree(source, index)
        # Inline merges: this bench starts the merge itself, at a known moment.
        engine = Sift(Settings(index=index, merges="inline", merge_min=10**9))
        engine.add([article(n) for n in range(args.changes)])
        n = args.changes
        figures = {}
        for kind in ("merge", "rebuild"):
            figures[kind], n = _background(index, engine, kind, n)
        hits = Sift(Settings(index=index)).search("harbour cranes berth", k=3).results
        emit(
            {
                "bench": "merge_cost",
                "sentences": args.size,
                "changes_before": args.changes * 3,
                **figures,
                "search_after": [h.article_id for h in hits],
            }
        )


def _background(index: Path, engine: Sift, kind: str, n: int) -> tuple[dict[str, object], int]:
    """A base built in a thread while this one writes, then installed: its figures, and the
    next article number."""
    built: list[Built | None] = []
    build_seconds = [0.0]

    def build() -> None:
        started = time.perf_counter()
        built.append(build_merge(index, force=kind))  # type: ignore[arg-type]
        build_seconds[0] = time.perf_counter() - started

    merging = FileLock(str(index / MERGE_LOCK), thread_local=False)  # held as a merge holds it
    merging.acquire()
    thread = threading.Thread(target=build)
    thread.start()
    writes: list[float] = []
    while thread.is_alive():
        started = time.perf_counter()
        engine.add(article(n))
        writes.append((time.perf_counter() - started) * 1000)
        n += 1
    thread.join()
    assert built and built[0] is not None
    lock = acquire_write_lock(index)
    conn = connect(index)
    try:
        started = time.perf_counter()
        new = install_merge(index, conn, built[0])
        install_ms = (time.perf_counter() - started) * 1000
    finally:
        conn.close()
        lock.release()
        merging.release()
    assert new is not None
    return {
        "base": new.vectors.factory,
        "build_seconds": round(build_seconds[0], 2),
        "writes_during_build": {
            "count": len(writes),
            "p50_ms": round(float(np.percentile(writes, 50)), 1) if writes else None,
            "max_ms": round(max(writes), 1) if writes else None,
        },
        "install_ms": round(install_ms, 1),
    }, n


if __name__ == "__main__":
    main()
