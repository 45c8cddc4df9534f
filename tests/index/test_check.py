"""`sift check`: every kind of damage is named exactly, and `--repair` mends what the stored
article text can rebuild."""

from __future__ import annotations

import json
import shutil
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from sift.index.check import check_index, repair_index
from sift.index.embed import Embedder
from sift.index.keyword_index import KeywordIndex
from sift.search.engine import Sift
from sift.search.results import SearchRequest
from sift.settings import Settings

from tests.helpers import SEEDS


@pytest.fixture
def damaged(tmp_path: Path, seeded_dir: Path) -> Path:
    copy = tmp_path / "index"
    shutil.copytree(seeded_dir, copy)
    return copy


def drop_keyword_docs(directory: Path, ids: list[int]) -> None:
    """Lose sentences from the keyword index behind sift's back (tantivy's own writer)."""
    keyword = KeywordIndex(directory)
    writer = keyword.sentences.writer(15_000_000, 1)
    for sid in ids:
        writer.delete_documents_by_term("id", sid)
    writer.commit()
    writer.wait_merging_threads()


def sql(directory: Path, statement: str, *params: object) -> None:
    conn = sqlite3.connect(directory / "sift.db")
    conn.execute(statement, params)
    conn.commit()
    conn.close()


def test_a_healthy_index_passes(seeded_dir: Path, embedder: Embedder) -> None:
    report = check_index(seeded_dir, embedder)
    assert report.ok and report.problems == []
    assert report.checked["articles"] == 6


DAMAGE: dict[str, tuple[Callable[[Path], None], set[str]]] = {
    "vectors file deleted": (
        lambda d: (d / "vectors.1.faiss").unlink(),
        {"vectors_file"},
    ),
    "manifest.json truncated": (
        lambda d: (d / "manifest.json").write_text('{"format_ver'),
        {"manifest_file"},
    ),
    "keyword rows lost": (lambda d: drop_keyword_docs(d, [1, 2, 3, 4, 5]), {"keyword_ids"}),
    "keyword index deleted": (
        lambda d: shutil.rmtree(d / "keyword"),
        {"keyword_generation", "keyword_index"},
    ),
    "keyword state unreadable": (
        lambda d: (d / "keyword" / "state.json").write_text('{"format'),
        {"keyword_generation"},
    ),
    "offsets shifted": (
        lambda d: sql(d, "UPDATE sentences SET start = start + 3 WHERE position = 1"),
        {"offsets"},
    ),
    "a sentence row lost": (
        lambda d: sql(d, "DELETE FROM sentences WHERE id = (SELECT max(id) FROM sentences)"),
        {"keyword_ids", "counts"},  # its vector is tombstoned by the trigger, as a writer would
    ),
    "a vector blob cut short": (
        lambda d: sql(d, "UPDATE sentences SET vector = substr(vector, 1, 100) WHERE id = 3"),
        {"vector_rows"},
    ),
    "counts wrong": (
        lambda d: sql(
            d,
            "UPDATE meta SET value = json_set(value, '$.counts.articles', 99) "
            "WHERE key = 'manifest'",
        ),
        {"counts", "manifest_file"},
    ),
}


@pytest.mark.parametrize("name", DAMAGE)
def test_damage_is_named_and_repaired(damaged: Path, embedder: Embedder, name: str) -> None:
    expected_before = search(damaged)
    harm, codes = DAMAGE[name]
    harm(damaged)
    report = check_index(damaged, embedder)
    assert not report.ok
    assert {p.code for p in report.problems} == codes
    assert all(p.detail for p in report.problems)
    repaired = repair_index(damaged, embedder)
    assert repaired.ok, repaired.problems
    assert repaired.repaired
    if name not in {"a sentence row lost"}:
        assert search(damaged) == expected_before


def search(directory: Path) -> list[tuple[str, str]]:
    engine = Sift(Settings(index=directory))
    hits = engine.search(SearchRequest(q="casualty estimates", k=5, context=0)).results
    return [(h.article_id, h.sentence) for h in hits]


def test_another_model_is_reported_and_not_repaired(damaged: Path, other_model: Path) -> None:
    other = Embedder(str(other_model))
    report = check_index(damaged, other)
    assert [(p.code, p.repairable) for p in report.problems] == [("model", False)]
    assert "all-MiniLM-L6-v2" in report.problems[0].detail
    assert not repair_index(damaged, other).ok
    assert check_index(damaged, None).ok  # the index itself is sound


def test_missing_index_is_reported(tmp_path: Path) -> None:
    report = check_index(tmp_path / "nothing")
    assert not report.ok and report.problems[0].code == "unreadable"
    assert "no sift index" in report.problems[0].detail


def test_sift_check_command(damaged: Path) -> None:
    from sift.cli.main import app
    from typer.testing import CliRunner

    runner = CliRunner()
    assert runner.invoke(app, ["check", "--index", str(damaged)]).exit_code == 0
    (damaged / "vectors.1.faiss").unlink()
    found = runner.invoke(app, ["check", "--index", str(damaged)])
    assert found.exit_code == 1 and "vectors_file" in found.stdout
    fixed = runner.invoke(app, ["check", "--repair", "--index", str(damaged), "--json"])
    assert fixed.exit_code == 0
    assert json.loads(fixed.stdout)["repaired"] == [
        "rebuilt the vectors from the database",
        "rewrote the manifest and counts",
    ]


def test_a_check_while_writes_and_merges_go_on_reports_only_real_problems(
    tmp_path: Path, embedder: Embedder
) -> None:
    """`sift check` on a live index: writers commit, merges install new vector bases and the
    keyword index and manifest file follow each commit, all while the check reads. A check
    reads one committed state, and looks again where the index moved under it, so it never
    reports a problem that is only a commit in flight."""
    index = tmp_path / "index"
    engine = Sift(Settings(index=index, merge_min=1, merges="background", write_wait=60))
    engine.index_paths([SEEDS])
    stop = threading.Event()
    writes = []

    def write() -> None:
        number = 0
        while not stop.is_set():
            text = " ".join(
                f"Dispatch {number} paragraph {j} says the ferry times changed." for j in range(6)
            )
            engine.add({"id": f"wire-{number % 7}", "title": f"Wire {number}", "text": text})
            writes.append(number)
            number += 1

    writer = threading.Thread(target=write)
    writer.start()
    try:
        reports = []
        while len(reports) < 25 or len(writes) < 25:
            reports.append(check_index(index))
    finally:
        stop.set()
        writer.join()
    engine.wait_for_merges()
    assert len(writes) >= 25
    wrong = [p for r in reports for p in r.problems]
    assert not wrong, wrong[:5]
    assert check_index(index).ok
