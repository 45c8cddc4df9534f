"""The index on disk: what it holds, incremental updates, removal, and runs that fail."""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from sift.errors import ModelMismatch, StoreError, WriterBusy
from sift.index.embed import Embedder
from sift.index.records import Article, Failure
from sift.index.writer import IndexWriter
from sift.search.engine import Sift
from sift.search.results import SearchRequest
from sift.settings import Settings

from tests.helpers import SEEDS, write


def rows_and_vectors(directory: Path) -> tuple[int, int, int]:
    """(articles, sentence rows, vectors) as stored on disk now."""
    engine = Sift(Settings(index=directory))
    reader = engine.reader
    conn = sqlite3.connect(directory / "sift.db")
    articles, sentences = conn.execute(
        "SELECT (SELECT count(*) FROM articles), (SELECT count(*) FROM sentences)"
    ).fetchone()
    conn.close()
    return articles, sentences, reader.vectors.ntotal


def search_ids(engine: Sift, query: str, k: int = 10) -> list[str]:
    return [
        h.article_id for h in engine.search(SearchRequest(q=query, k=k, per_article=10)).results
    ]


def test_directory_is_self_describing_and_holds_no_pickle(seeded_dir: Path) -> None:
    names = sorted(p.name for p in seeded_dir.iterdir() if not p.name.startswith("sift.db-"))
    assert names == ["keyword", "manifest.json", "sift.db", "vectors.1.faiss", "write.lock"]
    manifest = json.loads((seeded_dir / "manifest.json").read_text())
    assert manifest["format_version"] == 2
    assert manifest["model"]["name"] == "all-MiniLM-L6-v2"
    assert len(manifest["model"]["fingerprint"]) == 64
    assert manifest["model"]["dimension"] == 384
    assert manifest["splitter"]["name"] == "sentencex-news"
    assert manifest["counts"]["articles"] == 6
    assert manifest["counts"]["sentences"] == rows_and_vectors(seeded_dir)[1]
    assert manifest["created"] and manifest["updated"]
    for path in seeded_dir.rglob("*"):
        if path.is_file():
            assert b"\x80\x04\x95" not in path.read_bytes()[:64], f"{path.name} looks pickled"


def test_reindexing_unchanged_articles_changes_nothing(engine: Sift) -> None:
    first = engine.index_paths([SEEDS])
    assert len(first.added) == 6 and first.sentences > 30
    files = {p.name: p.stat().st_mtime_ns for p in engine.directory.iterdir()}
    second = engine.index_paths([SEEDS])
    assert second.counts() == {
        "added": 0,
        "updated": 0,
        "unchanged": 6,
        "removed": 0,
        "failed": 0,
        "sentences": 0,
    }
    assert {p.name: p.stat().st_mtime_ns for p in engine.directory.iterdir()} == files


def test_new_content_replaces_the_old_sentences(engine: Sift, tmp_path: Path) -> None:
    story = write(
        tmp_path / "in" / "story.txt", "Floods hit the valley.\n\nRescue boats were sent.\n"
    )
    write(tmp_path / "in" / "other.txt", "Elections are due in spring.\n")
    engine.index_paths([tmp_path / "in"])
    assert rows_and_vectors(engine.directory) == (2, 3, 3)
    write(story, "Wildfires spread across the hills.\n\nResidents fled. Crews fought the fire.\n")
    summary = engine.index_paths([tmp_path / "in"])
    assert (summary.updated, summary.unchanged) == (["story.txt"], ["other.txt"])
    assert rows_and_vectors(engine.directory) == (2, 4, 4)
    hits = engine.search(SearchRequest(q="flooding and rescue boats", k=10, per_article=10)).results
    assert all("Flood" not in h.passage and "Rescue" not in h.passage for h in hits)
    assert hits[0].sentence == "Wildfires spread across the hills." or "fire" in hits[0].passage


def test_remove_deletes_article_and_vectors(engine: Sift) -> None:
    engine.index_paths([SEEDS])
    articles, sentences, vectors = rows_and_vectors(engine.directory)
    assert "briefs.jsonl" not in search_ids(engine, "UN sanctions panel veto")
    assert "brief-un-sanctions" in search_ids(engine, "UN sanctions panel veto")
    own = engine.article("brief-un-sanctions")
    assert own is not None
    summary = engine.remove(["brief-un-sanctions", "no-such-id"])
    assert summary.removed == ["brief-un-sanctions"]
    assert [f.where for f in summary.failed] == ["no-such-id"]
    assert rows_and_vectors(engine.directory) == (
        articles - 1,
        sentences - own.sentences,
        vectors - own.sentences,
    )
    assert engine.article("brief-un-sanctions") is None
    assert "brief-un-sanctions" not in search_ids(engine, "UN sanctions panel veto", k=50)


def _explodes_midway(articles: list[Article]) -> Iterator[Article | Failure]:
    yield from articles
    raise RuntimeError("disk on fire")


def test_a_run_that_fails_leaves_the_index_as_it_was(engine: Sift) -> None:
    engine.index_paths([SEEDS])
    before = rows_and_vectors(engine.directory)
    manifest_before = (engine.directory / "manifest.json").read_text()
    new = [
        Article(id=f"new-{i}", text=f"Article number {i} is brand new. It has two sentences.")
        for i in range(50)
    ]
    changed = Article(id="brief-drones", text="This would replace the drones brief.")
    with pytest.raises(RuntimeError, match="disk on fire"):
        engine.index_articles(_explodes_midway([*new, changed]))
    assert rows_and_vectors(engine.directory) == before
    assert (engine.directory / "manifest.json").read_text() == manifest_before
    assert "Small, cheap drones" in (engine.article("brief-drones") or Article(text="-")).text
    # ... and the index still takes writes afterwards.
    assert len(engine.index_articles(new).added) == 50


def test_lost_vectors_file_is_rebuilt_from_the_database(tmp_path: Path, seeded_dir: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(seeded_dir, copy)
    expected = search_ids(Sift(Settings(index=copy)), "defence pact")
    (copy / "vectors.1.faiss").unlink()  # as if killed between the commit and the file write
    assert search_ids(Sift(Settings(index=copy)), "defence pact") == expected


def test_second_writer_is_refused_clearly(engine: Sift, embedder: Embedder) -> None:
    engine.index_paths([SEEDS])
    with IndexWriter(engine.directory, embedder), pytest.raises(WriterBusy, match="another sift"):
        IndexWriter(engine.directory, embedder)


def test_opening_with_another_model_is_refused(seeded_dir: Path, other_model: Path) -> None:
    engine = Sift(Settings(index=seeded_dir, model=str(other_model)))
    with pytest.raises(ModelMismatch, match="was built with model 'all-MiniLM-L6-v2'"):
        engine.search(SearchRequest(q="defence pact"))
    with pytest.raises(ModelMismatch):
        engine.index_articles([Article(text="Would mix two models.")])


def test_same_weights_under_another_path_is_the_same_model(
    seeded_dir: Path, tmp_path: Path
) -> None:
    from sift.index.embed import resolve_model

    copy = tmp_path / "same-model"
    shutil.copytree(resolve_model(None)[1], copy)
    hits = Sift(Settings(index=seeded_dir, model=str(copy))).search(SearchRequest(q="defence pact"))
    assert hits.results


def test_newer_format_is_refused(tmp_path: Path, seeded_dir: Path) -> None:
    copy = tmp_path / "future"
    shutil.copytree(seeded_dir, copy)
    conn = sqlite3.connect(copy / "sift.db")
    (raw,) = conn.execute("SELECT value FROM meta WHERE key = 'manifest'").fetchone()
    conn.execute(
        "UPDATE meta SET value = ? WHERE key = 'manifest'",
        (raw.replace('"format_version":2', '"format_version":99'),),
    )
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="format version 99"):
        Sift(Settings(index=copy)).search(SearchRequest(q="defence pact"))
