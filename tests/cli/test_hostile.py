"""A catalog of hostile input. Each one gets a clear error, or is handled; the index is intact
after every one of them (same counts, passes `sift check`)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from sift.cli.main import app
from sift.index.check import check_index
from sift.index.embed import Embedder
from sift.index.records import Article
from sift.search.engine import Sift
from sift.search.results import SearchRequest
from sift.settings import Settings
from typer.testing import CliRunner

from tests.helpers import write

runner = CliRunner()


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory, seeded_dir: Path) -> Path:
    copy = tmp_path_factory.mktemp("hostile") / "index"
    shutil.copytree(seeded_dir, copy)
    return copy


def counts(index: Path) -> tuple[int, int, int]:
    stats = Sift(Settings(index=index)).stats()
    return stats.articles, stats.sentences, stats.generation


def huge_file(path: Path) -> Path:
    line = "The flood defences held overnight, officials said on Tuesday morning. " * 20 + "\n"
    with open(path, "w", encoding="utf-8") as handle:
        for _ in range(100 * 1024 * 1024 // len(line) + 1):
            handle.write(line)
    return path


FILES: dict[str, tuple[Callable[[Path], Path], str]] = {
    "binary": (lambda d: write(d / "x.txt", bytes(range(256)) * 40), "binary file"),
    "empty": (lambda d: write(d / "empty.md", b""), "empty file"),
    "whitespace": (lambda d: write(d / "blank.txt", " \n\t\n "), "empty file"),
    "non-utf8": (lambda d: write(d / "l1.txt", "Zürich café".encode("latin-1")), "not UTF-8"),
    "utf16": (lambda d: write(d / "u16.txt", "Breaking news".encode("utf-16")), "binary file"),
    "100 MB file": (lambda d: huge_file(d / "huge.txt"), "over the limit"),
    "deep JSON": (lambda d: write(d / "deep.json", "[" * 200_000 + "]" * 200_000), "nested"),
    "malformed JSON": (lambda d: write(d / "bad.json", '{"text": "a", }'), "malformed JSON"),
    "JSON of nulls": (lambda d: write(d / "nulls.json", "[null, null]"), "expected a JSON object"),
    "JSON wrong types": (lambda d: write(d / "types.json", '{"text": 5}'), "text"),
    "JSONL garbage": (lambda d: write(d / "g.jsonl", "\x00\x01garbage\n"), "binary file"),
    "CSV without text": (lambda d: write(d / "n.csv", "title,url\nA,http://x\n"), "no text column"),
    "CSV ragged": (lambda d: write(d / "r.csv", "text\nfirst,second,third\n"), "more fields"),
    "unsupported type": (lambda d: write(d / "x.pdf", b"%PDF-1.4"), "unsupported file type"),
    "missing path": (lambda d: d / "does-not-exist", "no such file"),
}


@pytest.mark.parametrize("name", FILES)
def test_hostile_files_are_refused_and_the_index_intact(
    target: Path, tmp_path: Path, embedder: Embedder, name: str
) -> None:
    make, message = FILES[name]
    before = counts(target)
    path = make(tmp_path)
    result = runner.invoke(app, ["index", str(path), "--index", str(target), "--json"])
    assert result.exit_code == 2, result.stdout
    report = json.loads(result.stdout)
    assert report["added"] == [] and len(report["failed"]) >= 1
    assert message in report["failed"][0]["reason"]
    assert counts(target) == before
    assert check_index(target, embedder).ok


QUERIES = [
    ("FTS syntax", ["search", 'NEAR("pact" AND) OR * title:x ^y'], 0, ""),
    ("control characters", ["search", "pact\x00\x07\x1b[31m"], 0, ""),
    ("only punctuation", ["search", "?!?!", "--mode", "keyword"], 0, "No passages"),
    ("huge k", ["search", "pact", "-k", "100000000"], 2, "k"),
    ("k zero", ["search", "pact", "-k", "0"], 2, "k"),
    ("negative offset", ["search", "pact", "--offset", "-5"], 2, "offset"),
    ("negative context", ["search", "pact", "--context", "-1"], 2, "context"),
    ("huge query", ["search", "pact " * 5000], 2, "at most 10000 characters"),
    ("bad date", ["search", "pact", "--since", "yesterday"], 2, "ISO date"),
    ("bad mode", ["search", "pact", "--mode", "psychic"], 2, "mode"),
    ("RTL", ["search", "اتفاقية دفاع"], 0, ""),
    ("emoji and zero-width", ["search", "pact\u200b🤝\u200d"], 0, ""),
]


@pytest.mark.parametrize(("name", "args", "code", "message"), QUERIES, ids=[q[0] for q in QUERIES])
def test_hostile_queries(target: Path, name: str, args: list[str], code: int, message: str) -> None:
    before = counts(target)
    result = runner.invoke(app, [*args, "--index", str(target)])
    assert result.exit_code == code, (result.stdout, result.stderr)
    if code:
        assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    else:
        assert message in result.stdout
    assert "Traceback" not in result.stdout + result.stderr
    assert counts(target) == before


def test_unicode_edge_cases_in_articles(engine: Sift, embedder: Embedder) -> None:
    texts = {
        "rtl": "وقعت روسيا وكوريا الشمالية اتفاقية دفاع. דיווח נוסף בעברית כאן.",
        "emoji": "Fans cheered 🎉🎉 as the team won. The mayor 👩🏽‍⚖️ spoke after.",
        "zero-width": "Zero\u200bwidth spaces\u200c hide\u200d here. Another sentence follows.",
        "combining": "Cafe\u0301 owners in Zu\u0308rich protested. Prices rose again.",
        "astral": "𝕿𝖍𝖊 gothic headline ran. 𝟙𝟚𝟛 numbers too.",
    }
    summary = engine.index_articles([Article(id=k, text=v) for k, v in texts.items()])
    assert sorted(summary.added) == sorted(texts)
    for article_id, text in texts.items():
        stored = engine.article(article_id)
        assert stored is not None and stored.text == text
        hits = engine.search(SearchRequest(q=text[:20], k=20, per_article=5, context=0)).results
        for hit in hits:
            if hit.article_id == article_id:
                assert text[hit.start : hit.end] == hit.sentence
    assert check_index(engine.directory, embedder).ok


def test_article_size_limit_applies_to_api_style_input(tmp_path: Path, embedder: Embedder) -> None:
    engine = Sift(Settings(index=tmp_path / "ix", max_article_chars=1000))
    summary = engine.index_articles(
        [Article(id="big", text="word " * 500), Article(id="ok", text="Fine.")]
    )
    assert summary.added == ["ok"]
    assert "over the limit of 1,000" in summary.failed[0].reason


def test_symlinks_never_lead_outside_the_named_folder(tmp_path: Path) -> None:
    from sift.index.ingest import read_inputs

    secret = write(tmp_path / "outside" / "secret.txt", "Private notes.\n")
    inside = tmp_path / "corpus"
    write(inside / "ok.txt", "Public article.\n")
    (inside / "link.txt").symlink_to(secret)
    (inside / "dir").symlink_to(secret.parent, target_is_directory=True)
    items = list(read_inputs([inside]))
    ids = [getattr(i, "id", None) for i in items]
    assert ids == [None, "ok.txt"]  # the link is reported, the linked folder not entered
    assert "leads outside the folder" in str(items[0])
