"""A write that runs out of space (here: a file size limit, RLIMIT_FSIZE, on the writing process)
ends with a clear error and exit 2, and leaves the index at its last commit."""

from __future__ import annotations

import json
import os
import random
import resource
import shutil
import subprocess
from pathlib import Path

from sift.index.check import check_index
from sift.search.engine import Sift
from sift.search.results import SearchRequest
from sift.settings import Settings

from tests.helpers import SIFT

WORDS = "harbour election vaccine drought railway budget museum wildfire council river".split()


def corpus(path: Path, articles: int) -> Path:
    rng = random.Random(3)
    lines = []
    for i in range(articles):
        text = " ".join(
            f"Report {i} line {j} says the {rng.choice(WORDS)} story moved {rng.randint(1, 99)} "
            f"points in district {rng.randint(1, 500)}."
            for j in range(6)
        )
        lines.append(json.dumps({"id": f"full-{i}", "title": f"Report {i}", "text": text}))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_a_write_that_runs_out_of_space_keeps_the_last_commit(
    tmp_path: Path, seeded_dir: Path
) -> None:
    index = tmp_path / "index"
    shutil.copytree(seeded_dir, index)
    before = Sift(Settings(index=index)).search(SearchRequest(q="casualty estimates", k=3))
    largest = max(p.stat().st_size for p in index.rglob("*") if p.is_file())
    limit = largest + 60_000  # room to open and read; not for 150 more articles

    def capped() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    source = corpus(tmp_path / "more.jsonl", 150)
    run = subprocess.run(
        [SIFT, "index", str(source), "--index", str(index)],
        preexec_fn=capped,
        capture_output=True,
        text=True,
        env={**os.environ},
        timeout=600,
    )
    assert run.returncode == 2, run.stderr[-2000:]
    assert "out of space" in run.stderr and "keeps its last commit" in run.stderr
    assert "Traceback" not in run.stderr

    report = check_index(index)
    assert report.ok, report.problems
    engine = Sift(Settings(index=index))
    assert engine.stats().articles == 6
    after = engine.search(SearchRequest(q="casualty estimates", k=3))
    assert [h.sentence for h in after.results] == [h.sentence for h in before.results]

    done = subprocess.run(  # with room again, the same run completes
        [SIFT, "index", str(source), "--index", str(index), "-q"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert Sift(Settings(index=index)).stats().articles == 156
    assert check_index(index).ok
