"""How the CLI shows results: cards or a table for people (80 columns read well), JSON, JSON
lines or CSV for programs. The shapes are the API's models; only the rendering lives here."""

from __future__ import annotations

import csv
import json
import re
import sys
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

from rich import box
from rich.console import Console
from rich.padding import Padding
from rich.table import Table
from rich.text import Text
from sift.search.results import Hit, IndexStats, SearchResponse, SimilarResponse

FORMATS = ("cards", "table", "json", "jsonl", "csv")
CSV_COLUMNS = (
    "rank",
    "score",
    "article_id",
    "title",
    "source",
    "published",
    "url",
    "sentence",
    "passage",
)


def print_json(data: Any, stream: TextIO | None = None) -> None:
    (stream or sys.stdout).write(json.dumps(data, ensure_ascii=False, indent=2) + "\n")


def write_response(response: SearchResponse, fmt: str, out: Console) -> None:
    """One search's answer in `fmt` (one of FORMATS) on stdout."""
    if fmt == "json":
        print_json(response.model_dump(mode="json"))
    elif fmt == "jsonl":
        for item in _items(response):
            sys.stdout.write(json.dumps(item, ensure_ascii=False) + "\n")
    elif fmt == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        writer.writerows(csv_rows(response))
    elif fmt == "table":
        print_table(response, out)
    else:
        print_cards(response, out)


def _items(response: SearchResponse) -> Iterator[dict[str, Any]]:
    """A result per line: passages, or articles with their passages when grouped."""
    for item in response.articles if response.articles is not None else response.results:
        yield item.model_dump(mode="json")


def csv_rows(response: SearchResponse) -> Iterator[list[Any]]:
    """A row per passage; grouped by article, an article's rank and score on each of its rows."""
    if response.articles is None:
        for hit in response.results:
            yield [hit.rank, hit.score, *_hit_columns(hit)]
        return
    for article in response.articles:
        for hit in article.passages:
            yield [article.rank, article.score, *_hit_columns(hit)]


def _hit_columns(hit: Hit) -> list[Any]:
    return [
        hit.article_id,
        hit.title or "",
        hit.source or "",
        hit.published or "",
        hit.url or "",
        hit.sentence,
        one_line(hit.passage).strip(),
    ]


# -- for people -----------------------------------------------------------------------------


def print_cards(response: SearchResponse, out: Console) -> None:
    if response.articles is not None:
        _print_article_cards(response, out)
        return
    if not response.results:
        out.print(f"No passages match {response.query!r} (the index may be empty).")
        return
    for hit in response.results:
        out.print(_heading(hit.rank, hit.score, hit.title or hit.article_id))
        out.print(
            Padding(_details(hit.article_id, hit.source, hit.published, hit.url), (0, 0, 0, 4))
        )
        out.print(Padding(highlighted(hit), (0, 0, 0, 4)))
        if hit.also_in:
            also = Text(f"also in: {', '.join(hit.also_in)}", style="dim italic")
            out.print(Padding(also, (0, 0, 0, 4)))
        out.print()
    out.print(Text(f"{len(response.results)} passages in {response.took_ms:.0f} ms", style="dim"))
    print_facets(response, out)


def print_facets(response: SearchResponse, out: Console) -> None:
    """Facet counts, and how the order was made when it is not plain relevance."""
    if response.recency is not None:
        r = response.recency
        note = f"recency: half-life {r.half_life}, ages counted from {r.counted_from}"
        out.print(Text(note, style="dim"))
    if response.facets is None:
        return
    f = response.facets
    out.print(Text(f"{f.articles} matching articles", style="bold"))
    for name, counts in (("source", f.source), ("month", f.month)):
        line = Text(f"{name:>7}  ", style="bold")
        line.append("  ".join(f"{c.value or 'none'} ({c.count})" for c in counts))
        out.print(line)


def _print_article_cards(response: SearchResponse, out: Console) -> None:
    if not response.articles:
        out.print(f"No articles match {response.query!r}.")
        return
    for article in response.articles:
        out.print(_heading(article.rank, article.score, article.title or article.article_id))
        details = _details(article.article_id, article.source, article.published, article.url)
        out.print(Padding(details, (0, 0, 0, 4)))
        for hit in article.passages:
            out.print(Padding(highlighted(hit), (0, 0, 0, 4)))
        out.print()
    out.print(Text(f"{len(response.articles)} articles in {response.took_ms:.0f} ms", style="dim"))
    print_facets(response, out)


def print_similar(response: SimilarResponse, out: Console) -> None:
    if not response.results:
        out.print(f"No articles near {response.article_id!r}.")
    for article in response.results:
        out.print(_heading(article.rank, article.score, article.title or article.article_id))
        details = _details(article.article_id, article.source, article.published, article.url)
        out.print(Padding(details, (0, 0, 0, 4)))
        for tie in article.ties:
            out.print(Padding(highlighted(tie.passage), (0, 0, 0, 4)))
            matches = Text(f"matches: {clip(tie.sentence, 200)}", style="dim italic")
            out.print(Padding(matches, (0, 0, 0, 6)))
        out.print()
    if response.copies:
        out.print(Text(f"copies left out: {', '.join(response.copies)}", style="dim"))
    n = len(response.results)
    out.print(Text(f"{n} articles in {response.took_ms:.0f} ms", style="dim"))


def print_table(response: SearchResponse, out: Console) -> None:
    """One row a result: rank, score, the article, the matching sentence (no context)."""
    grouped = response.articles is not None
    rows = response.articles if grouped else response.results
    if not rows:
        out.print(f"No {'articles' if grouped else 'passages'} match {response.query!r}.")
        return
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, expand=True)
    table.add_column("#", justify="right", no_wrap=True, width=3)
    table.add_column("score", justify="right", no_wrap=True, width=5)
    table.add_column("article", ratio=2, overflow="fold")
    table.add_column("best sentence" if grouped else "sentence", ratio=3, overflow="fold")
    for row in rows:
        hit = row.passages[0] if grouped and row.passages else row  # type: ignore[union-attr]
        article = Text(clip(row.title or row.article_id, 60), style="bold cyan")
        where = " · ".join(p for p in (row.source, (row.published or "")[:10]) if p)
        if where:
            article.append("\n" + where, style="dim")
        sentence = Text(clip(hit.sentence, 240)) if isinstance(hit, Hit) else Text("")
        table.add_row(str(row.rank), f"{row.score:.3f}", article, sentence)
    out.print(table)
    noun = "articles" if grouped else "passages"
    out.print(Text(f"{len(rows)} {noun} in {response.took_ms:.0f} ms", style="dim"))
    print_facets(response, out)


def _heading(rank: int, score: float, title: str) -> Text:
    head = Text()
    head.append(f"{rank:>2}. ", style="bold")
    head.append(f"{score:.3f}  ", style="green")
    head.append(clip(title, 64), style="bold cyan")
    return head


def _details(*parts: str | None) -> Text:
    return Text(" · ".join(p for p in parts if p), style="dim")


def highlighted(hit: Hit) -> Text:
    """The passage on one line, every hit sentence in it marked, the best one the most."""
    spans = [(h.start, h.end) for h in hit.hits] or [(hit.start, hit.end)]
    parts: list[tuple[str, str]] = []
    at = 0
    for start, end in sorted(spans):
        lo = max(start - hit.passage_start, at)
        hi = max(end - hit.passage_start, lo)
        best = (start, end) == (hit.start, hit.end)
        parts += [
            (hit.passage[at:lo], ""),
            (hit.passage[lo:hi], "bold yellow" if best else "yellow"),
        ]
        at = hi
    parts.append((hit.passage[at:], ""))
    body = Text()
    for n, (text, style) in enumerate(parts):
        text = one_line(text)
        if n == 0:
            text = text.lstrip()
        if n == len(parts) - 1:
            text = text.rstrip()
        body.append(text, style=style)
    return body


def one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text)


def clip(text: str, width: int) -> str:
    text = one_line(text).strip()
    return text if len(text) <= width else text[: width - 1] + "…"


# -- stats ----------------------------------------------------------------------------------


def print_stats(stats: IndexStats, sources: list[dict[str, Any]] | None, out: Console) -> None:
    """What is in the index, how big it is on disk, which model made it and when it changed."""
    database, vectors, keyword = _sizes(Path(stats.index))
    lines = [
        ("index", stats.index),
        ("articles", f"{stats.articles:,}"),
        ("sentences", f"{stats.sentences:,}"),
        (
            "size",
            f"{human_bytes(stats.bytes_on_disk)} on disk (database {human_bytes(database)}, "
            f"vectors base {human_bytes(vectors)}, keyword index {human_bytes(keyword)})",
        ),
        ("model", f"{stats.model}, {stats.dimension} dimensions"),
        ("weights", stats.model_fingerprint[:16]),
        ("encoder", _encoder_line(stats)),
        ("splitter", stats.splitter),
        ("format", f"version {stats.format_version}, generation {stats.generation:,}"),
        ("created", stats.created),
        ("updated", f"{stats.updated} ({_ago(stats.updated)})"),
    ]
    if sources:
        entries = sum(s["entries"] for s in sources)
        lines.append(("feeds", f"{len(sources)} followed, {entries:,} of their entries indexed"))
    for key, value in lines:
        line = Text(f"{key:>9}  ", style="bold")
        line.append(value)
        out.print(line)
    for s in sources or []:
        line = Text(f"{'':>9}  ")
        line.append(f"{s['kind']} {s['url']}", style="bold")
        line.append(
            f": {s['entries']:,} entries seen, {s['fetched']:,} fetched, "
            f"{s['not_modified']:,} not modified, {s['robots']:,} skipped by robots.txt, "
            f"{s['failed']:,} failed, in {s['rounds']:,} rounds"
        )
        out.print(line, soft_wrap=True)


def _encoder_line(stats: IndexStats) -> str:
    e = stats.encoder
    if e is None:
        return "not recorded (vectors made before sift recorded it)"
    what = f"{e.backend} {e.precision}" + (f" ({e.graph} graph)" if e.graph else "")
    return f"{what}, sift {e.sift_version}, on a CPU {e.cpu}: {e.reason}"


def _sizes(directory: Path) -> tuple[int, int, int]:
    database = sum(f.stat().st_size for f in directory.glob("sift.db*") if f.is_file())
    vectors = sum(f.stat().st_size for f in directory.glob("vectors.*.faiss") if f.is_file())
    keyword = sum(f.stat().st_size for f in (directory / "keyword").rglob("*") if f.is_file())
    return database, vectors, keyword


def human_bytes(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:,.0f} {unit}" if unit == "B" else f"{size:,.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def _ago(stamp: str) -> str:
    try:
        then = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return "unknown"
    if then.tzinfo is None:
        then = then.replace(tzinfo=timezone.utc)
    seconds = max((datetime.now(timezone.utc) - then).total_seconds(), 0)
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            n = int(seconds // size)
            return f"{n} {unit}{'s' if n != 1 else ''} ago"
    return "just now"
