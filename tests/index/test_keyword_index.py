"""The keyword index (tantivy) follows SQLite, the truth: it catches up after a crash between
the two commits, replays without doubling, and an index of format 1 (keyword index in FTS5) is
upgraded in place without losing anything."""

from __future__ import annotations

import json
import logging
import shutil
import sqlite3
from pathlib import Path

import pytest
from sift.index.check import check_index
from sift.index.keyword_index import KeywordIndex, KeywordWriter, keyword_generation
from sift.index.lock import acquire_write_lock
from sift.index.records import Article
from sift.search.engine import Sift
from sift.search.results import SearchRequest
from sift.settings import Settings

#: What format 1 kept beside the rows: the FTS5 keyword tables and their triggers.
FORMAT_1_TABLES = """
CREATE VIRTUAL TABLE sentences_fts USING fts5(
    text, context, tokenize = 'porter unicode61 remove_diacritics 2'
);
CREATE VIRTUAL TABLE articles_fts USING fts5(
    title, text, content = 'articles', content_rowid = 'num',
    tokenize = 'porter unicode61 remove_diacritics 2'
);
CREATE TRIGGER articles_fts_insert AFTER INSERT ON articles BEGIN
    INSERT INTO articles_fts (rowid, title, text) VALUES (new.num, new.title, new.text);
END;
INSERT INTO articles_fts (articles_fts) VALUES ('rebuild');
INSERT INTO sentences_fts (rowid, text, context) SELECT id, text, '' FROM sentences;
DROP TABLE keyword_changes;
"""


@pytest.fixture
def index(tmp_path: Path, seeded_dir: Path) -> Path:
    copy = tmp_path / "index"
    shutil.copytree(seeded_dir, copy)
    return copy


def keyword_hits(directory: Path, query: str) -> list[str]:
    engine = Sift(Settings(index=directory))
    request = SearchRequest(q=query, mode="keyword", k=10, context=0)
    return [h.article_id for h in engine.search(request).results]


def held_once(directory: Path) -> bool:
    conn = sqlite3.connect(directory / "sift.db")
    rows = conn.execute("SELECT (SELECT count(*) FROM sentences), (SELECT count(*) FROM articles)")
    counts = rows.fetchone()
    conn.close()
    return KeywordIndex(directory).counts() == tuple(counts)


def test_a_crash_between_the_commits_is_caught_up_on_opening(
    index: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def crash(*_: object, **__: object) -> int:
        raise SystemExit("killed after the SQLite commit")

    engine = Sift(Settings(index=index))
    monkeypatch.setattr(KeywordWriter, "sync", crash)
    with pytest.raises(SystemExit):
        engine.index_articles([Article(id="quince", text="Quince orchards flowered early.")])
    monkeypatch.undo()
    assert keyword_generation(index) == 1  # the rows are at generation 2, the keyword index not
    # A reader opening it while no one writes brings it up to date from the rows.
    assert keyword_hits(index, "quince orchards") == ["quince"]
    assert keyword_generation(index) == 2 and held_once(index)
    assert check_index(index).ok


def test_check_catches_a_lagging_keyword_index_up(
    index: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(KeywordWriter, "sync", lambda *a, **k: (_ for _ in ()).throw(SystemExit))
    with pytest.raises(SystemExit):
        Sift(Settings(index=index)).index_articles([Article(id="q", text="Quince orchards.")])
    monkeypatch.undo()
    report = check_index(index)
    assert report.ok and report.repaired == ["keyword index caught up with commit 2"]
    assert held_once(index)


def test_a_replay_after_tantivy_committed_doubles_nothing(index: Path) -> None:
    engine = Sift(Settings(index=index))
    engine.index_articles([Article(id="quince", text="Quince orchards flowered early.")])
    # A crash after tantivy's commit and before its state was written: the state lags.
    (index / "keyword" / "state.json").write_text(json.dumps({"format": 1, "generation": 1}))
    assert keyword_hits(index, "quince orchards") == ["quince"]
    assert held_once(index) and check_index(index).ok


def test_a_writer_catches_up_before_it_writes(index: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = Sift(Settings(index=index))
    monkeypatch.setattr(KeywordWriter, "sync", lambda *a, **k: (_ for _ in ()).throw(OSError(28)))
    with pytest.raises(OSError):
        engine.index_articles([Article(id="quince", text="Quince orchards flowered early.")])
    monkeypatch.undo()
    engine.index_articles([Article(id="medlar", text="Medlar trees need frost.")])
    assert keyword_hits(index, "quince medlar") == ["medlar", "quince"] or keyword_hits(
        index, "quince medlar"
    ) == ["quince", "medlar"]
    assert held_once(index) and check_index(index).ok


def test_an_unreadable_keyword_index_is_rebuilt_from_the_rows(index: Path) -> None:
    before = keyword_hits(index, "casualty estimates")
    for path in (index / "keyword" / "sentences").iterdir():
        if path.suffix in (".idx", ".term"):
            path.write_bytes(b"\0" * 16)
    shutil.rmtree(index / "keyword" / "articles")
    assert not check_index(index).ok
    Sift(Settings(index=index)).index_articles([])  # any writer opening it
    assert keyword_hits(index, "casualty estimates") == before
    assert check_index(index).ok


def test_format_1_is_upgraded_in_place_losing_nothing(
    index: Path, caplog: pytest.LogCaptureFixture
) -> None:
    request = SearchRequest(q="casualty estimates", k=5, context=0)
    before = Sift(Settings(index=index)).search(request).model_dump(mode="json")["results"]
    conn = sqlite3.connect(index / "sift.db", isolation_level=None)
    conn.executescript(FORMAT_1_TABLES)
    (raw,) = conn.execute("SELECT value FROM meta WHERE key = 'manifest'").fetchone()
    conn.execute(
        "UPDATE meta SET value = ? WHERE key = 'manifest'",
        (raw.replace('"format_version":2', '"format_version":1'),),
    )
    conn.close()
    shutil.rmtree(index / "keyword")
    assert [p.code for p in check_index(index).problems] == ["old_format"]

    with caplog.at_level(logging.WARNING, logger="sift.index"):
        after = Sift(Settings(index=index)).search(request).model_dump(mode="json")["results"]
    assert "from format 1 to 2" in caplog.text
    assert after == before
    manifest = json.loads((index / "manifest.json").read_text())
    assert manifest["format_version"] == 2 and manifest["counts"]["articles"] == 6
    conn = sqlite3.connect(index / "sift.db")
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    conn.close()
    assert not {"sentences_fts", "articles_fts"} & tables
    assert check_index(index).ok and held_once(index)


def test_a_reader_follows_the_keyword_index_when_it_moves_on_after_the_commit(
    index: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reader that took a commit while its keyword index still lagged (the writer between
    its SQLite commit and its keyword commit) reloads the keyword index once it catches up,
    without waiting for another commit."""
    reader = Sift(Settings(index=index))
    request = SearchRequest(q="quince orchards", mode="keyword", k=5, context=0)
    assert not reader.search(request).results  # opened, at generation 1
    monkeypatch.setattr(KeywordWriter, "sync", lambda *a, **k: (_ for _ in ()).throw(SystemExit))
    with pytest.raises(SystemExit):
        Sift(Settings(index=index)).index_articles([Article(id="q", text="Quince orchards.")])
    monkeypatch.undo()
    lock = acquire_write_lock(index)  # a writer still busy: the reader cannot catch it up
    try:
        assert [h.article_id for h in reader.search(request).results] == []
        assert reader.reader.manifest.generation == 2
    finally:
        lock.release()
    assert check_index(index).ok  # the keyword index catches up (as the writer would)
    assert [h.article_id for h in reader.search(request).results] == ["q"]
