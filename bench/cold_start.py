"""Cold start: `sift search "casualty estimates" --index <seeded index>` from process start to
printed results, the median wall time of `--repeat` runs (after one unmeasured run, so the
files are in the page cache, as they are for a user who ran sift before). The seeded index is
seeds/ indexed once into the bench cache.

With `--profile`, also where the time goes: the slowest imports (python -X importtime) and the
phases of one run in this process (imports, model load, index open, search).

    .venv/bin/python bench/cold_start.py [--repeat 5] [--profile]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from _common import emit
from _server import ROOT
from synthetic import CACHE

SIFT = str(ROOT / ".venv" / "bin" / "sift")
PYTHON = str(ROOT / ".venv" / "bin" / "python")
QUERY = "casualty estimates"


def seeded_index() -> Path:
    directory = CACHE / "seeds"
    if not (directory / "manifest.json").exists():
        subprocess.run(
            [SIFT, "index", str(ROOT / "seeds"), "--index", str(directory), "-q"], check=True
        )
    return directory


def timed_run(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def slowest_imports(index: Path, top: int = 8) -> dict[str, float]:
    """Cumulative import time (s) of the slowest top-level packages of one `sift search`."""
    run = subprocess.run(
        [PYTHON, "-X", "importtime", "-m", "sift.cli", "search", QUERY, "--index", str(index)],
        capture_output=True,
        text=True,
        check=True,
    )
    totals: dict[str, float] = {}
    for line in run.stderr.splitlines():
        match = re.match(r"import time:\s+\d+ \|\s+(\d+) \|( *)(\S+)", line)
        if match and len(match.group(2)) <= 1:  # top-level imports only
            name = match.group(3).split(".")[0]
            totals[name] = totals.get(name, 0.0) + int(match.group(1)) / 1e6
    ranked = sorted(totals.items(), key=lambda kv: -kv[1])[:top]
    return {name: round(seconds, 3) for name, seconds in ranked}


def phases(index: Path) -> dict[str, float]:
    """One run's phases, in a fresh interpreter."""
    script = f"""
import time, json
t0 = time.perf_counter()
from sift.search.engine import Sift
from sift.settings import Settings
from sift.search.results import SearchRequest
t1 = time.perf_counter()
import sentence_transformers
t2 = time.perf_counter()
engine = Sift(Settings(index={str(index)!r}))
engine.embedder.model
t3 = time.perf_counter()
engine.reader
t4 = time.perf_counter()
engine.search(SearchRequest(q={QUERY!r}))
t5 = time.perf_counter()
print(json.dumps({{"import_sift": t1 - t0, "import_sentence_transformers_torch": t2 - t1,
    "load_model": t3 - t2, "open_index": t4 - t3, "search": t5 - t4}}))
"""
    run = subprocess.run([PYTHON, "-c", script], capture_output=True, text=True, check=True)
    return {k: round(v, 3) for k, v in json.loads(run.stdout.strip().splitlines()[-1]).items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    index = seeded_index()
    command = [SIFT, "search", QUERY, "--index", str(index)]
    timed_run(command)
    times = [timed_run(command) for _ in range(args.repeat)]
    result: dict[str, object] = {
        "bench": "cold_start",
        "command": f'sift search "{QUERY}" --index <seeds index>',
        "runs": args.repeat,
        "median_s": round(statistics.median(times), 2),
        "min_s": round(min(times), 2),
        "max_s": round(max(times), 2),
    }
    if args.profile:
        result["phases_s"] = phases(index)
        result["slowest_imports_s"] = slowest_imports(index)
    emit(result)


if __name__ == "__main__":
    main()
