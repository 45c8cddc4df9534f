"""Kill `sift index` (SIGKILL) at random moments and check after every kill that the index
opens, passes `sift check`, and serves searches; then a rerun completes with the right counts.

CI runs a few kills; the full run is by hand:
    STRESS_KILLS=50 STRESS_ARTICLES=3000 \\
        .venv/bin/python -m pytest -q tests/stress/test_crash.py -s
Commits come every 150 sentences here and merges every 300, so kills land in commits, keyword
index commits, merges (vector base writes) and manifest writes as well as in embedding.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from sift.index.check import check_index
from sift.index.embed import Embedder
from sift.index.split import split_sentences
from sift.search.engine import Sift
from sift.search.results import SearchRequest
from sift.settings import Settings

from tests.helpers import SIFT

#: Minutes of killing and rerunning: opt-in with --slow, as the README's test command does.
pytestmark = pytest.mark.slow

KILLS = int(os.environ.get("STRESS_KILLS", "3"))
ARTICLES = int(os.environ.get("STRESS_ARTICLES", "600"))
TOPICS = ["harbour", "election", "vaccine", "drought", "railway", "budget", "museum", "wildfire"]


def corpus(folder: Path, articles: int = 3000) -> tuple[int, int]:
    """A few thousand small articles in two formats; returns (articles, sentences)."""
    rng = random.Random(7)
    folder.mkdir(parents=True)
    sentences = 0
    records = []
    for i in range(articles):
        topic = rng.choice(TOPICS)
        text = (
            f"Report {i} covers the {topic} story in district {rng.randint(1, 500)}. "
            f"Officials counted {rng.randint(2, 9000)} people affected by the {topic}. "
            f"More news on the {topic} is expected on day {rng.randint(1, 28)}."
        )
        records.append({"id": f"r{i}", "title": f"{topic.title()} report {i}", "text": text})
    half = articles // 2
    for n, r in enumerate(records):  # the files below hold the title too
        body = r["text"] if n < half else r["title"] + "\n\n" + r["text"] + "\n"
        sentences += len(split_sentences(body))
    (folder / "wire.jsonl").write_text("\n".join(json.dumps(r) for r in records[:half]) + "\n")
    for r in records[half:]:
        (folder / f"{r['id']}.txt").write_text(r["title"] + "\n\n" + r["text"] + "\n")
    return articles, sentences


def test_kill_at_random_points_then_resume(tmp_path: Path, embedder: Embedder) -> None:
    articles, sentences = corpus(tmp_path / "corpus", ARTICLES)
    index = tmp_path / "index"
    # Commits every 150 sentences, merges of the vectors every 300 changes: kills land in
    # rows' commits, keyword index commits, merges and manifest writes as well as in embedding.
    env = {
        **os.environ,
        "SIFT_COMMIT_EVERY": "150",
        "SIFT_MERGE_MIN": "300",
        "SIFT_INDEX": str(index),
    }
    rng = random.Random(int(os.environ.get("STRESS_SEED", "11")))
    kills = 0
    seen_progress = []
    startup: float | None = None
    while kills < KILLS:
        proc = subprocess.Popen(
            [SIFT, "index", str(tmp_path / "corpus"), "-q"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        # Loading the model takes seconds: the first run times it (until the index appears);
        # every kill then lands at a random moment of the work that follows.
        if startup is None:
            started = time.monotonic()
            while not (index / "sift.db").exists() and proc.poll() is None:
                time.sleep(0.02)
            startup = time.monotonic() - started
        else:
            time.sleep(startup)
        time.sleep(rng.uniform(0.0, 1.0 + ARTICLES / 300))
        if proc.poll() is not None:  # finished before the kill: start again from scratch
            shutil.rmtree(index)
            seen_progress.clear()
            continue
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
        if not (index / "sift.db").exists():
            continue  # killed before the first commit: nothing to check
        report = check_index(index, embedder)
        assert report.ok, f"after kill {kills}: {report.problems}"
        engine = Sift(Settings(index=index))
        stats = engine.stats()
        assert stats.sentences == report.checked["sentences"]
        seen_progress.append(stats.articles)
        if stats.articles:
            assert engine.search(SearchRequest(q="wildfire affected people", k=3)).results
    done = subprocess.run(
        [SIFT, "index", str(tmp_path / "corpus"), "--json"], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["counts"]["failed"] == 0
    assert check_index(index, embedder).ok
    stats = Sift(Settings(index=index)).stats()
    assert (stats.articles, stats.sentences) == (articles, sentences)
    # The rerun resumed: what the last killed run had committed stayed, and was not redone.
    assert summary["counts"]["unchanged"] == (seen_progress[-1] if seen_progress else 0)
    print(f"\n{kills} kills survived; committed articles after each: {seen_progress}")


@pytest.mark.parametrize(
    "where",
    [
        "save_vectors",  # a merge writing its new vectors base
        "sync",  # the keyword index's commit
        "write_json_atomically",  # manifest.json
    ],
)
def test_a_crash_around_the_commit_leaves_a_committed_state(
    tmp_path: Path, embedder: Embedder, where: str
) -> None:
    """The rows' commit stands whatever crashes after it: a merge writing its vectors base (it
    never commits), the keyword index's commit (caught up from the rows), manifest.json
    (rewritten from the database); check brings each up to date and the index serves."""
    import sift.index.generations as generations
    from sift.index.keyword_index import KeywordWriter

    owner = KeywordWriter if where == "sync" else generations

    folder = tmp_path / "c"
    corpus(folder, 40)
    # every commit merges, in the commit (a merge in the background: test_background_merges)
    settings = Settings(index=tmp_path / "index", merge_min=10, merges="inline")
    Sift(settings).index_paths([folder / "wire.jsonl"])
    original = getattr(owner, where)

    def crash(*args: object, **kwargs: object) -> None:
        raise SystemExit("killed")

    setattr(owner, where, crash)
    try:
        with pytest.raises(SystemExit):
            Sift(settings).index_paths(list(folder.glob("*.txt")))
    finally:
        setattr(owner, where, original)
    report = check_index(tmp_path / "index", embedder)
    assert report.ok, report.problems
    reopened = Sift(settings)
    assert reopened.stats().articles == 40
    if where == "write_json_atomically":
        assert report.repaired[0] == "manifest.json caught up with commit 2"
    if where in ("write_json_atomically", "sync"):
        assert report.repaired[-1] == "keyword index caught up with commit 2"
    assert reopened.search(SearchRequest(q="railway report", k=2)).results
    reopened.index_paths([folder])  # and a rerun completes
    assert reopened.stats().articles == 40 and check_index(tmp_path / "index", embedder).ok
