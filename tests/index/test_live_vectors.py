"""The vectors base and the changes since it: a commit writes what it adds and tombstones what it
removes, readers apply both in memory, merges fold them into a new base while readers search,
and the int8 vectors re-score as the model scored (within 0.003)."""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path

import numpy as np
import pytest
from sift.index.check import check_index
from sift.index.embed import Embedder
from sift.index.optimize import optimize
from sift.index.recipe import embedding_text
from sift.index.records import Article
from sift.search.engine import Sift
from sift.search.results import SearchRequest
from sift.settings import Settings

from tests.api_server import copy_index


@pytest.fixture
def index(tmp_path: Path, seeded_dir: Path) -> Path:
    return copy_index(seeded_dir, tmp_path)


def rows(directory: Path, sql: str) -> list[tuple]:  # type: ignore[type-arg]
    conn = sqlite3.connect(directory / "sift.db")
    out = conn.execute(sql).fetchall()
    conn.close()
    return out


def dense_ids(engine: Sift, query: str, k: int = 20) -> list[str]:
    request = SearchRequest(q=query, mode="dense", k=k, per_article=5, context=0)
    return [h.article_id for h in engine.search(request).results]


def orchard(i: int) -> Article:
    return Article(id=f"orchard-{i}", title=f"Orchard {i}", text=f"Orchard {i} grew quinces.")


def test_a_commit_writes_its_rows_not_the_vectors_base(index: Path) -> None:
    base = next(index.glob("vectors.*.faiss"))
    stamp = base.stat().st_mtime_ns
    engine = Sift(Settings(index=index))
    engine.index_articles([orchard(1)])
    assert base.exists() and base.stat().st_mtime_ns == stamp  # untouched
    assert dense_ids(engine, "orchard quinces")[0] == "orchard-1"
    fresh = Sift(Settings(index=index))  # a new reader: the base, plus the rows after it
    assert dense_ids(fresh, "orchard quinces")[0] == "orchard-1"
    assert fresh.reader.vectors.ntotal == fresh.stats().sentences
    assert check_index(index).ok


def test_removals_are_tombstones_until_a_merge(index: Path) -> None:
    engine = Sift(Settings(index=index))
    engine.index_articles([orchard(1), orchard(2)])
    engine.remove(["orchard-1", "brief-drones"])
    tombstones = rows(index, "SELECT count(*) FROM vector_tombstones")[0][0]
    assert tombstones > 1  # brief-drones' sentences and orchard-1's
    for reader in (engine, Sift(Settings(index=index))):
        found = dense_ids(reader, "orchard quinces drones")
        assert "orchard-2" in found and not {"orchard-1", "brief-drones"} & set(found)
    assert check_index(index).ok
    report = optimize(index)
    assert report.reason and "merged" in report.reason
    assert rows(index, "SELECT count(*) FROM vector_tombstones")[0][0] == 0
    assert [p.name for p in index.glob("vectors.*.faiss")] == [f"vectors.{report_gen(index)}.faiss"]
    assert check_index(index).ok
    engine.reader.refresh()
    assert "orchard-2" in dense_ids(engine, "orchard quinces")


def report_gen(directory: Path) -> int:
    return int(json.loads((directory / "manifest.json").read_text())["generation"])


def test_merges_while_readers_search(index: Path) -> None:
    """A writer commits and merges (every commit, here) while threads search without pause:
    no search fails or returns a removed article, and the readers end with every change."""
    reader = Sift(Settings(index=index))
    writer = Sift(Settings(index=index, merge_min=1))
    errors: list[BaseException] = []
    done = threading.Event()
    searches = [0]

    def search() -> None:
        while not done.is_set():
            try:
                reader.reader.refresh()
                assert dense_ids(reader, "orchard quinces casualties", k=10)
                searches[0] += 1
            except BaseException as exc:
                errors.append(exc)
                return

    threads = [threading.Thread(target=search) for _ in range(3)]
    for thread in threads:
        thread.start()
    try:
        for i in range(8):
            writer.index_articles([orchard(i)])
            if i % 3 == 2:
                writer.remove([f"orchard-{i - 1}"])
    finally:
        done.set()
        for thread in threads:
            thread.join()
    writer.wait_for_merges()
    assert not errors, errors
    assert searches[0] > 0
    assert report_gen(index) > 1 and next(index.glob("vectors.*.faiss")).name != "vectors.1.faiss"
    reader.reader.refresh()
    removed = {"orchard-1", "orchard-4"}
    found = set(dense_ids(reader, "orchard quinces", k=30))
    assert {f"orchard-{i}" for i in range(8)} - removed <= found and not removed & found
    assert check_index(index).ok


def test_stored_vectors_rescore_as_the_model_scores(seeded: Sift, embedder: Embedder) -> None:
    query = embedder.encode(["casualty estimates"])[0]
    scores, ids = seeded.reader.nearest(query, 10)
    texts = seeded.reader.sentences([int(i) for i in ids])
    heads = seeded.reader.heads({t.article_id for t in texts.values()})
    exact = embedder.encode(
        [embedding_text(heads[texts[int(i)].article_id].title, texts[int(i)].text) for i in ids]
    )
    np.testing.assert_allclose(scores, exact @ query, atol=3e-3)
