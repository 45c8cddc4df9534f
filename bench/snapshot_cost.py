"""What a snapshot costs at archive scale, full and repeated (`sift snapshot DEST --from PREV`),
in a copy of the synthetic index of N sentences (bench/synthetic.py), in process: a full
snapshot, then `--changes` one-article writes (3 sentences each), then a repeated snapshot
from the first next to a full one of the same state. Prints, for each, seconds, bytes in the
copy and bytes written (less the files hard-linked from the earlier snapshot).

    .venv/bin/python bench/snapshot_cost.py --size 1000000 [--changes 1000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from _common import emit
from sift.index.records import Article
from sift.index.snapshot import SnapshotReport, snapshot
from sift.search.engine import Sift
from sift.settings import Settings
from synthetic import build as synthetic_index

TEXT = (
    "The council approved the budget for district {n}. "
    "Residents said {k} schools had waited a year for repairs. "
    "The vote passed by a wide margin."
)


def figures(report: SnapshotReport) -> dict[str, object]:
    return {
        "seconds": report.seconds,
        "mb": round(report.bytes / 1e6, 1),
        "written_mb": round(report.written_bytes / 1e6, 1),
        "vectors": report.vectors,
        "keyword": report.keyword,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--changes", type=int, default=1000)
    args = parser.parse_args()
    source = synthetic_index(args.size)
    with tempfile.TemporaryDirectory(dir=source.parent) as tmp:
        work = Path(tmp)
        index = work / "index"
        shutil.copytree(source, index)
        first = snapshot(index, work / "first")
        engine = Sift(Settings(index=index))
        for n in range(args.changes):
            text = TEXT.format(n=n, k=n % 30 + 2)
            engine.add(Article(id=f"snap-{n}", title=f"Council {n}", text=text))
        engine.wait_for_merges()
        repeated = snapshot(index, work / "repeated", previous=work / "first")
        full = snapshot(index, work / "full")
    emit(
        {
            "bench": "snapshot_cost",
            "sentences": args.size,
            "changes": args.changes,
            "first_full": figures(first),
            "repeated_from_first": figures(repeated),
            "full_of_the_same_state": figures(full),
            "repeated_over_full_seconds": round(repeated.seconds / full.seconds, 3),
        }
    )


if __name__ == "__main__":
    main()
