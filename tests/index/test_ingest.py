"""Reading articles: every format, the ids and titles it derives, and every bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sift.index.ingest import IngestTally, read_inputs
from sift.index.records import Article, Failure

from tests.helpers import SEEDS, write


def read(*paths: Path) -> tuple[list[Article], list[Failure]]:
    items = list(read_inputs(list(paths)))
    return (
        [i for i in items if isinstance(i, Article)],
        [i for i in items if isinstance(i, Failure)],
    )


def only(path: Path) -> Article:
    articles, failures = read(path)
    assert not failures, failures
    assert len(articles) == 1
    return articles[0]


def only_failure(path: Path) -> str:
    articles, failures = read(path)
    assert not articles
    assert len(failures) == 1
    return failures[0].reason


def test_txt_title_is_first_line_and_text_is_kept_whole(tmp_path: Path) -> None:
    path = write(
        tmp_path / "news" / "story.txt", "Storm hits coast\n\nThe storm arrived at dawn.\n"
    )
    article = only(path)
    assert article.id == "story.txt"
    assert article.title == "Storm hits coast"
    assert article.text.startswith("Storm hits coast\n\nThe storm arrived")


def test_ids_derive_from_the_path_under_the_named_folder(tmp_path: Path) -> None:
    write(tmp_path / "corpus" / "a" / "one.txt", "One.\n")
    write(tmp_path / "corpus" / "b" / "one.txt", "Another one.\n")
    articles, _ = read(tmp_path / "corpus")
    assert sorted(a.id for a in articles) == ["a/one.txt", "b/one.txt"]


def test_markdown_front_matter_heading_and_markup(tmp_path: Path) -> None:
    path = write(
        tmp_path / "pact.md",
        "---\ntitle: The pact\npublished: 2024-06-19\nsource: Wire\nauthor: Kim\n---\n"
        "# A heading\n\nLeaders **signed** the [pact](http://x.example) today.\n",
    )
    article = only(path)
    assert (article.title, article.published, article.source) == ("The pact", "2024-06-19", "Wire")
    assert article.metadata == {"author": "Kim"}
    assert article.text == "A heading\n\nLeaders signed the pact today."


def test_markdown_without_title_uses_its_heading(tmp_path: Path) -> None:
    article = only(write(tmp_path / "x.md", "Intro line\n\n## Real news\n\nBody text here.\n"))
    assert article.title == "Intro line"
    article = only(write(tmp_path / "y.md", "# Real news\n\nBody text here.\n"))
    assert article.title == "Real news"


def test_html_keeps_main_text_and_drops_scripts_and_navigation() -> None:
    article = only(SEEDS / "kursk-fighting.html")
    assert article.title == "Fighting continues in Russia's Kursk region"
    assert article.published == "2025-01-10"
    assert "cross-border offensive" in article.text
    for junk in ("window.analytics", "Sign in", "Cookie settings", "display: flex"):
        assert junk not in article.text


def test_json_one_article_and_a_list(tmp_path: Path) -> None:
    one = {"title": "T", "text": "Body.", "url": "http://a.example/1", "lang": "en"}
    article = only(write(tmp_path / "one.json", json.dumps(one)))
    assert (article.id, article.url, article.metadata) == (
        "one.json",
        "http://a.example/1",
        {"lang": "en"},
    )
    many = [{"id": "x1", "text": "First."}, {"text": "Second.", "date": "2025-02-03"}]
    articles, failures = read(write(tmp_path / "many.json", json.dumps(many)))
    assert not failures
    assert [a.id for a in articles] == ["x1", "many.json#2"]
    assert articles[1].published == "2025-02-03"


def test_jsonl_reports_the_bad_line_and_keeps_the_rest(tmp_path: Path) -> None:
    path = write(
        tmp_path / "feed.jsonl",
        '{"id": "a", "text": "Fine."}\n{"id": "b", "text": \n\n[1, 2]\n{"id": "c", "text": ""}\n'
        '{"id": "d", "body": "Also fine.", "source": "Wire", "published": "2025-01-01T10:00Z"}\n',
    )
    articles, failures = read(path)
    assert [a.id for a in articles] == ["a", "d"]
    assert articles[1].source == "Wire"
    assert [(f.where.split()[-1], f.reason) for f in failures] == [
        ("2", "malformed JSON: Expecting value (column 21)"),
        ("4", "expected a JSON object, got list"),
        ("5", "article has no text"),
    ]


def test_csv_with_header_and_metadata_columns(tmp_path: Path) -> None:
    path = write(
        tmp_path / "wire.csv",
        'id,title,text,published,desk\nw1,Rates,"The bank held rates, again.",2024-11-28,econ\n'
        'w2,Vote,"Parliament voted. It passed.",,politics\n',
    )
    articles, failures = read(path)
    assert not failures
    assert [(a.id, a.title, a.published, a.metadata) for a in articles] == [
        ("w1", "Rates", "2024-11-28", {"desk": "econ"}),
        ("w2", "Vote", None, {"desk": "politics"}),
    ]
    assert articles[0].text == "The bank held rates, again."


def test_csv_without_text_column_is_refused(tmp_path: Path) -> None:
    reason = only_failure(write(tmp_path / "bad.csv", "id,title\n1,Nothing here\n"))
    assert "no text column" in reason and "id, title" in reason


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("empty.txt", "", "empty file"),
        ("blank.md", "  \n\n \t\n", "empty file"),
        ("binary.txt", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary file"),
        (
            "latin1.txt",
            "Caf\xe9 au lait.".encode("latin-1"),
            "not UTF-8 (invalid byte 0xe9 at offset 3)",
        ),
        ("broken.json", '{"text": "unterminated', "malformed JSON at line 1"),
        ("deep.json", "[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ("notext.json", '{"title": "No body"}', "no text field"),
        ("emptytext.json", '{"text": "   "}', "article has no text"),
        ("scalar.json", "42", "must be an article object or a list"),
        (
            "baddate.json",
            '{"text": "x", "published": "last Tuesday"}',
            "published must be an ISO date",
        ),
        ("picture.png", b"\x89PNG", "unsupported file type '.png'"),
    ],
)
def test_bad_files_get_a_clear_reason(
    tmp_path: Path, name: str, content: str | bytes, expected: str
) -> None:
    assert expected in only_failure(write(tmp_path / name, content))


def test_missing_path_is_reported(tmp_path: Path) -> None:
    assert only_failure(tmp_path / "nope") == "no such file or directory"


def test_a_bad_file_in_a_folder_is_reported_and_the_rest_read(tmp_path: Path) -> None:
    write(tmp_path / "in" / "good.txt", "Good article.\n")
    write(tmp_path / "in" / "bad.txt", b"\xff\xfe\x00binary")
    write(tmp_path / "in" / "photo.jpg", b"\xff\xd8")
    write(tmp_path / "in" / ".hidden" / "secret.txt", "Not an article.\n")
    tally = IngestTally()
    items = list(read_inputs([tmp_path / "in"], tally))
    assert [getattr(i, "id", None) for i in items if isinstance(i, Article)] == ["good.txt"]
    assert [Path(f.where).name for f in items if isinstance(f, Failure)] == ["bad.txt"]
    assert [Path(p).name for p in tally.skipped] == ["photo.jpg"]


def test_oversized_file_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "huge.txt", "word " * 1000)
    failures = [i for i in read_inputs([path], max_file_bytes=1000) if isinstance(i, Failure)]
    assert "over the limit of 1,000" in failures[0].reason


def test_every_seed_reads_cleanly() -> None:
    articles, failures = read(SEEDS)
    assert not failures
    assert len(articles) >= 6
    assert len({a.id for a in articles}) == len(articles)
