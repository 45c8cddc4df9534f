"""`sift search`, `show`, `remove`, `stats`, `config`, `serve` and `optimize`."""

from __future__ import annotations

import csv
import json
import os
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.markup import escape
from rich.table import Table
from rich.text import Text
from sift.cli.common import (
    IndexOpt,
    JsonOpt,
    LogFormatOpt,
    ModelOpt,
    app,
    command_settings,
    err,
    errors_to_exit,
    fail,
    flags,
    out,
)
from sift.cli.render import (
    CSV_COLUMNS,
    FORMATS,
    csv_rows,
    print_json,
    print_similar,
    print_stats,
    write_response,
)
from sift.search.engine import Sift
from sift.search.results import SearchRequest
from sift.settings import config_file, describe

# -- search ---------------------------------------------------------------------------------


@app.command("search")
def search_cmd(
    query: Annotated[
        str | None, typer.Argument(help="What to look for, in plain words.", show_default=False)
    ] = None,
    k: Annotated[int, typer.Option("-k", "--k", help="Results to return.")] = 10,
    offset: Annotated[int, typer.Option(help="Results to skip (next pages).")] = 0,
    mode: Annotated[
        str, typer.Option(help="hybrid (dense + keyword), dense or keyword.")
    ] = "hybrid",
    context: Annotated[int, typer.Option("--context", "-c", help="Sentences either side.")] = 1,
    per_article: Annotated[
        int, typer.Option("--per-article", help="At most this many passages per article.")
    ] = 2,
    group: Annotated[
        str, typer.Option(help="passage, or article: rank articles with their best passages.")
    ] = "passage",
    source: Annotated[
        list[str] | None, typer.Option("--source", help="Only this source (repeatable).")
    ] = None,
    since: Annotated[str | None, typer.Option(help="Published on or after (ISO date).")] = None,
    until: Annotated[str | None, typer.Option(help="Published on or before (ISO date).")] = None,
    article_id: Annotated[
        list[str] | None, typer.Option("--id", help="Only this article (repeatable).")
    ] = None,
    meta: Annotated[
        list[str] | None, typer.Option("--meta", help="Only where metadata key=value (repeatable).")
    ] = None,
    no_collapse: Annotated[
        bool, typer.Option("--no-collapse", help="Keep near-identical sentences apart.")
    ] = False,
    sort: Annotated[
        str, typer.Option(help="relevance, or date: newest first (undated last).")
    ] = "relevance",
    recency: Annotated[
        str | None,
        typer.Option(
            help="Blend age into the score with this half-life: 30d, 12h, 2w, 6m, 1y.",
            show_default=False,
        ),
    ] = None,
    facets: Annotated[
        bool, typer.Option("--facets", help="Count matching articles by source and month.")
    ] = False,
    queries: Annotated[
        Path | None,
        typer.Option(
            "--queries",
            help="File of queries, one a line, or JSONL with id and query: one JSON line each "
            "(or CSV rows with --format csv).",
        ),
    ] = None,
    fmt: Annotated[
        str | None,
        typer.Option(
            "--format",
            "-f",
            help="cards (default), table, json, jsonl (a result a line) or csv.",
            show_default=False,
        ),
    ] = None,
    index: IndexOpt = None,
    model: ModelOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Same as --format json.")] = False,
) -> None:
    """Search the index and print the best passages with their articles.

    "an exact phrase" must be in the hit sentence; -word leaves out articles holding it."""
    if (query is None) == (queries is None):
        fail("give a QUERY or --queries FILE (one of them)")
    if as_json and fmt not in (None, "json"):
        fail(f"--json and --format {fmt} disagree: give one")
    fmt = "json" if as_json else fmt
    if fmt is not None and fmt not in FORMATS:
        fail(f"unknown format {fmt!r}: use {', '.join(FORMATS)}")
    options = {
        "k": k,
        "offset": offset,
        "mode": mode,
        "context": context,
        "per_article": per_article,
        "group": group,
        "source": source or [],
        "since": since,
        "until": until,
        "ids": article_id or [],
        "meta": meta or [],
        "collapse": not no_collapse,
        "sort": sort,
        "recency": recency,
        "facets": facets,
    }
    engine = Sift(command_settings(index, model))
    if queries is not None:
        if fmt not in (None, "json", "jsonl", "csv"):
            fail(f"--queries writes jsonl or csv, not {fmt}")
        _search_file(engine, queries, options, fmt or "jsonl")
        return
    with errors_to_exit():
        response = engine.search(SearchRequest(q=query, **options))
    write_response(response, fmt or "cards", out)


def _search_file(engine: Sift, path: Path, options: dict[str, Any], fmt: str) -> None:
    """One JSON line per query (or CSV rows), in order, from one model call for the whole file."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"cannot read {path}: {exc}")
    labelled: list[tuple[str | None, str]] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        if line.lstrip().startswith("{"):
            try:
                item = json.loads(line)
                labelled.append((item.get("id"), str(item["query"])))
            except (json.JSONDecodeError, KeyError, AttributeError):
                fail(f"{path} line {number}: expected a JSON object with a 'query'")
        else:
            labelled.append((None, line.strip()))
    if not labelled:
        fail(f"{path} holds no queries")
    with errors_to_exit():
        requests = [SearchRequest(q=q, **options) for _, q in labelled]
        responses = engine.search_batch(requests)
    if fmt == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(("query_id", "query", *CSV_COLUMNS))
        for (label, q), response in zip(labelled, responses, strict=True):
            writer.writerows([label or "", q, *row] for row in csv_rows(response))
        return
    for (label, _), response in zip(labelled, responses, strict=True):
        body = response.model_dump(mode="json")
        sys.stdout.write(json.dumps({"id": label, **body} if label else body, ensure_ascii=False))
        sys.stdout.write("\n")


# -- similar --------------------------------------------------------------------------------


@app.command("similar")
def similar_cmd(
    article_id: Annotated[str, typer.Argument(help="The article's id.")],
    k: Annotated[int, typer.Option("-k", "--k", help="Articles to return.")] = 10,
    context: Annotated[int, typer.Option("--context", "-c", help="Sentences either side.")] = 1,
    per_article: Annotated[
        int, typer.Option("--per-article", help="Passages shown per article.")
    ] = 2,
    index: IndexOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The articles nearest one article (copies of it left out), with the passages that tie
    them."""
    if k < 1 or context < 0 or per_article < 1:
        fail("-k and --per-article must be at least 1, --context at least 0")
    engine = Sift(command_settings(index))
    with errors_to_exit():
        response = engine.similar(article_id, k, context, per_article)
    if response is None:
        fail(f"no article with id {article_id!r}", 1)
    if as_json:
        print_json(response.model_dump(mode="json"))
        return
    print_similar(response, out)


# -- show, remove, stats --------------------------------------------------------------------


@app.command("show")
def show_cmd(
    article_id: Annotated[str, typer.Argument(help="The article's id.")],
    index: IndexOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show a stored article: its fields, metadata and text."""
    engine = Sift(command_settings(index))
    with errors_to_exit():
        article = engine.article(article_id)
    if article is None:
        fail(f"no article with id {article_id!r}", 1)
    if as_json:
        print_json(article.model_dump(mode="json"))
        return
    out.print(Text(article.title or article.id, style="bold cyan"))
    for key in ("id", "source", "published", "url"):
        value = getattr(article, key)
        if value:
            out.print(Text(f"{key}: {value}", style="dim"))
    for key, value in article.metadata.items():
        out.print(Text(f"{key}: {value}", style="dim"))
    out.print(Text(f"{article.sentences} sentences, updated {article.updated}", style="dim"))
    out.print()
    out.print(Text(article.text))


@app.command("remove")
def remove_cmd(
    article_ids: Annotated[list[str], typer.Argument(help="Ids of the articles to remove.")],
    index: IndexOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Remove articles and their vectors from the index."""
    engine = Sift(command_settings(index))
    with errors_to_exit():
        engine.reader  # noqa: B018  (fails clearly when there is no index)
        summary = engine.remove(article_ids)
        engine.wait_for_merges()  # a merge the removals made due, before the process ends
    if as_json:
        print_json(
            {
                "removed": summary.removed,
                "failed": [f.as_dict() for f in summary.failed],
            }
        )
    else:
        for failure in summary.failed:
            err.print(f"[red]failed[/] {escape(str(failure))}", soft_wrap=True)
        out.print(f"{len(summary.removed)} removed")
    if summary.failed:
        raise typer.Exit(1)


@app.command("stats")
def stats_cmd(index: IndexOpt = None, as_json: JsonOpt = False) -> None:
    """Counts, size on disk, model and last update of the index (and the feeds it follows)."""
    settings = command_settings(index)
    engine = Sift(settings)
    with errors_to_exit():
        stats = engine.stats()
    sources = _source_stats(settings.index)
    feeds = {s["url"]: s["entries"] for s in sources}
    if as_json:
        print_json({**stats.model_dump(mode="json"), "feeds": feeds, "sources": sources})
        return
    print_stats(stats, sources, out)


def _source_stats(directory: Path) -> list[dict[str, Any]]:
    """Each feed and sitemap the index follows, with its counts over all runs."""
    try:
        from sift.index.feed_state import FeedState
    except ImportError:  # no web extra: no feeds either
        return []
    return [asdict(s) for s in FeedState(directory).stats()]


# -- config ---------------------------------------------------------------------------------


@app.command("config")
def config_cmd(
    index: IndexOpt = None,
    model: ModelOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Print the effective configuration and where each value came from."""
    given = flags(index=index, model=model)
    settings = command_settings(**given)
    rows = describe(settings, given)
    path = config_file()
    if as_json:
        print_json(
            {
                "config_file": str(path) if path else None,
                "settings": [{"name": r.name, "value": r.value, "origin": r.origin} for r in rows],
            }
        )
        return
    where = escape(str(path)) if path else "none (no ./sift.toml, SIFT_CONFIG unset)"
    out.print(f"[dim]config file: {where}[/]")
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    table.add_column("setting", no_wrap=True)
    table.add_column("value", overflow="fold")
    table.add_column("from", no_wrap=True, style="dim")
    for row in rows:
        if row.value is None:
            value = Text("unset", style="dim")
        else:
            shown = row.value if isinstance(row.value, str) else json.dumps(row.value)
            value = Text(shown, style="" if row.origin == "default" else "bold")
        table.add_row(row.name, value, row.origin)
    out.print(table)


# -- serve ----------------------------------------------------------------------------------


@app.command("serve")
def serve_cmd(
    host: Annotated[
        str | None, typer.Option(help="Address to listen on \\[env SIFT_HOST].")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port \\[env SIFT_PORT].")] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=64,
            help="Processes serving the one index; each picks up new commits \\[env SIFT_WORKERS].",
        ),
    ] = None,
    read_only: Annotated[
        bool,
        typer.Option(
            "--read-only",
            help="Refuse writes with 403 (a replica serving a snapshot) \\[env SIFT_READ_ONLY].",
            show_default=False,
        ),
    ] = False,
    index: IndexOpt = None,
    model: ModelOpt = None,
    log_format: LogFormatOpt = None,
) -> None:
    """Serve the JSON search API (and its docs at /docs) with uvicorn."""
    import uvicorn

    settings = command_settings(
        index,
        model,
        logs=False,
        log_format=log_format,
        workers=workers,
        read_only=read_only or None,
    )
    # The app reads its settings from the environment, as any deployment of it would (each
    # worker process builds its own app from them).
    os.environ["SIFT_INDEX"] = str(settings.index)
    os.environ["SIFT_LOG_FORMAT"] = settings.log_format
    os.environ["SIFT_READ_ONLY"] = "true" if settings.read_only else "false"
    if settings.model:
        os.environ["SIFT_MODEL"] = settings.model
    uvicorn.run(
        "sift.api.app:create_app",
        factory=True,
        host=host or settings.host,
        port=port if port is not None else settings.port,
        workers=settings.workers,
        log_level="info",
    )


@app.command("optimize")
def optimize_cmd(
    index: IndexOpt = None,
    exact_max: Annotated[
        int | None,
        typer.Option(min=1, help="Sentences up to which vectors stay exact (kept in the index)."),
    ] = None,
    force: Annotated[bool, typer.Option(help="Rebuild even if the index suits its size.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Merge the vectors' changes into a new base, rebuilt for the index's size when it no
    longer suits it (exact, or IVF trained on the stored vectors); upgrade an older format;
    give free pages back."""
    from sift.index.optimize import optimize

    directory = command_settings(index).index
    with errors_to_exit():
        report = optimize(directory, exact_max, force)
    kind = report.after.factory or report.after.type
    if as_json:
        print_json(report.as_dict())
    elif not report.rebuilt:
        out.print(f"{report.sentences:,} sentences: the vector index ({kind}) suits them")
    else:
        out.print(f"{report.sentences:,} sentences: rebuilt as {kind} in {report.seconds:.1f} s")
    if report.reason and not as_json:
        out.print(Text(f"({report.reason})", style="dim"))
