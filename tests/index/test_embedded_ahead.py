"""A small write is split and embedded before the write lock is taken, so that writers of
other threads and processes wait for the storing alone; unchanged articles and copies of
stored text are not embedded at all."""

from __future__ import annotations

from pathlib import Path

import pytest
from sift.index.check import check_index
from sift.index.lock import writer_busy
from sift.index.records import Article
from sift.search.engine import Sift
from sift.settings import Settings

from tests.api_server import copy_index


@pytest.fixture
def engine(tmp_path: Path, seeded_dir: Path) -> Sift:
    return Sift(Settings(index=copy_index(seeded_dir, tmp_path)))


def watch_embedding(engine: Sift) -> list[tuple[int, bool]]:
    """(texts, write lock held) for each call of the engine's model."""
    calls: list[tuple[int, bool]] = []
    embedder = engine.embedder
    real = embedder.encode

    def encode(texts, progress=None):  # type: ignore[no-untyped-def]
        calls.append((len(texts), writer_busy(engine.directory)))
        return real(texts, progress)

    embedder.encode = encode  # type: ignore[method-assign]
    return calls


def test_a_write_embeds_before_it_takes_the_write_lock(engine: Sift) -> None:
    calls = watch_embedding(engine)
    article = Article(id="ferry", title="Ferry", text="The ferry sailed at dawn. It was full.")
    summary = engine.add(article)
    assert summary.added == ["ferry"]
    assert calls == [(2, False)]
    hits = engine.search("ferry at dawn", mode="dense", k=1).results
    assert hits[0].article_id == "ferry"
    assert check_index(engine.directory).ok


def test_unchanged_articles_and_copies_are_not_embedded(engine: Sift) -> None:
    article = Article(id="ferry", title="Ferry", text="The ferry sailed at dawn. It was full.")
    engine.add(article)
    calls = watch_embedding(engine)
    copy = Article(id="ferry-copy", title="Ferry copy", text=article.text)
    summary = engine.add([article, copy])
    assert summary.unchanged == ["ferry"] and summary.added == ["ferry-copy"]
    assert calls == []
    assert engine.article("ferry-copy") is not None
