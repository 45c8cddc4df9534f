"""`sift`: the command line, a thin layer over `search.engine.Sift`.

Exit codes: 0 ok; 1 some inputs failed (the rest was indexed) or an id was not found;
2 bad usage or input that nothing could be done with (one line on stderr says which).
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.padding import Padding
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from index.embed import ModelError
from index.ingest import IngestTally
from index.settings import Settings
from index.store import StoreError
from index.writer import IndexSummary
from search.engine import InvalidRequest, Sift
from search.results import Hit, SearchRequest, SearchResponse

app = typer.Typer(
    name="sift",
    help="Semantic passage search over news articles.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
)
out = Console(highlight=False, soft_wrap=False)
err = Console(stderr=True, highlight=False)

IndexOpt = Annotated[
    Path | None,
    typer.Option("--index", "-i", help="Index directory [env SIFT_INDEX; default: user data dir]."),
]
ModelOpt = Annotated[
    str | None,
    typer.Option("--model", "-m", help="Embedding model path or name [env SIFT_MODEL]."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")]


def fail(message: str, code: int = 2) -> NoReturn:
    err.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
    raise typer.Exit(code)


def _settings(index: Path | None, model: str | None = None) -> Settings:
    overrides: dict[str, Any] = {}
    if index is not None:
        overrides["index"] = index
    if model is not None:
        overrides["model"] = model
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        fail(f"bad configuration: {_first_error(exc)}")


def _first_error(exc: ValidationError) -> str:
    first = exc.errors()[0]
    loc = ".".join(str(p) for p in first["loc"])
    msg = str(first["msg"]).removeprefix("Value error, ")
    return f"{loc}: {msg}" if loc else msg


@contextmanager
def _errors_to_exit() -> Iterator[None]:
    """Known failures become one line on stderr and exit 2, never a traceback."""
    try:
        yield
    except (StoreError, ModelError, InvalidRequest) as exc:
        fail(str(exc))
    except ValidationError as exc:
        fail(_first_error(exc))
    except KeyboardInterrupt:
        fail("interrupted; the index is as it was before this run", 130)


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2) + "\n")


# -- index ----------------------------------------------------------------------------------


@app.command("index")
def index_cmd(
    paths: Annotated[list[Path], typer.Argument(help="Files or folders of articles.")],
    index: IndexOpt = None,
    model: ModelOpt = None,
    as_json: JsonOpt = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Index articles (txt, md, html, json, jsonl, csv); re-indexing skips unchanged ones."""
    settings = _settings(index, model)
    engine = Sift(settings)
    tally = IngestTally()
    show_progress = not (quiet or as_json) and err.is_terminal
    with _errors_to_exit(), _progress(show_progress) as (on_article, on_embedded):
        summary = engine.index_paths(paths, on_article, on_embedded, tally)
    _report_index(summary, settings, tally, as_json)
    if summary.failed:
        raise typer.Exit(2 if not (summary.added or summary.updated or summary.unchanged) else 1)


@contextmanager
def _progress(
    enabled: bool,
) -> Iterator[tuple[Callable[[str], None] | None, Callable[[int], None] | None]]:
    if not enabled:
        yield None, None
        return
    columns = (
        SpinnerColumn(),
        TextColumn(
            "{task.fields[articles]:,} articles read, {task.completed:,.0f} sentences embedded"
        ),
        TextColumn("[dim]{task.fields[rate]}"),
        TimeElapsedColumn(),
    )
    started = time.perf_counter()
    with Progress(*columns, console=err, transient=True) as bar:
        task = bar.add_task("index", total=None, articles=0, rate="")

        def on_article(_: str) -> None:
            bar.update(task, articles=bar.tasks[0].fields["articles"] + 1)

        def on_embedded(n: int) -> None:
            done = bar.tasks[0].completed + n
            rate = done / max(time.perf_counter() - started, 1e-9)
            bar.update(task, completed=done, rate=f"{rate:,.0f} sentences/s")

        yield on_article, on_embedded


def _report_index(
    summary: IndexSummary, settings: Settings, tally: IngestTally, as_json: bool
) -> None:
    counts = summary.counts()
    if as_json:
        _print_json(
            {
                "index": str(settings.index),
                **{k: getattr(summary, k) for k in ("added", "updated", "unchanged", "removed")},
                "failed": [{"where": f.where, "reason": f.reason} for f in summary.failed],
                "skipped_files": tally.skipped,
                "counts": counts,
                "seconds": round(summary.seconds, 3),
            }
        )
        return
    for failure in summary.failed:
        err.print(f"[red]failed[/] {escape(str(failure))}", soft_wrap=True)
    if tally.skipped:
        err.print(f"[dim]skipped {len(tally.skipped)} files of unsupported types[/]")
    rate = summary.sentences / summary.seconds if summary.seconds else 0.0
    out.print(
        f"{counts['added']} added, {counts['updated']} updated, {counts['unchanged']} unchanged, "
        f"{counts['removed']} removed, {counts['failed']} failed; "
        f"{summary.sentences:,} sentences embedded in {summary.seconds:.1f} s "
        f"({rate:,.0f}/s) -> {escape(str(settings.index))}"
    )


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
    queries: Annotated[
        Path | None,
        typer.Option(
            "--queries",
            help="File of queries, one a line, or JSONL with id and query: one JSON line each.",
        ),
    ] = None,
    index: IndexOpt = None,
    model: ModelOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Search the index and print the best passages with their articles."""
    if (query is None) == (queries is None):
        fail("give a QUERY or --queries FILE (one of them)")
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
    }
    engine = Sift(_settings(index, model))
    if queries is not None:
        _search_file(engine, queries, options)
        return
    with _errors_to_exit():
        response = engine.search(SearchRequest(q=query, **options))
    if as_json:
        _print_json(response.model_dump(mode="json"))
    else:
        _print_results(response)


def _search_file(engine: Sift, path: Path, options: dict[str, Any]) -> None:
    """One JSON line per query, in order, from one model call for the whole file."""
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
    with _errors_to_exit():
        requests = [SearchRequest(q=q, **options) for _, q in labelled]
        responses = engine.search_batch(requests)
    for (label, _), response in zip(labelled, responses, strict=True):
        body = response.model_dump(mode="json")
        sys.stdout.write(json.dumps({"id": label, **body} if label else body, ensure_ascii=False))
        sys.stdout.write("\n")


def _print_results(response: SearchResponse) -> None:
    if response.articles is not None:
        _print_articles(response)
        return
    if not response.results:
        out.print(f"No passages match {response.query!r} (the index may be empty).")
        return
    for hit in response.results:
        head = Text()
        head.append(f"{hit.rank:>2}. ", style="bold")
        head.append(f"{hit.score:.3f}  ", style="green")
        head.append(_clip(hit.title or hit.article_id, 64), style="bold cyan")
        out.print(head)
        details = [hit.article_id, hit.source, hit.published, hit.url]
        out.print(Padding(Text(" · ".join(d for d in details if d), style="dim"), (0, 0, 0, 4)))
        out.print(Padding(_highlighted(hit), (0, 0, 0, 4)))
        if hit.also_in:
            also = Text(f"also in: {', '.join(hit.also_in)}", style="dim italic")
            out.print(Padding(also, (0, 0, 0, 4)))
        out.print()
    out.print(Text(f"{len(response.results)} passages in {response.took_ms:.0f} ms", style="dim"))


def _print_articles(response: SearchResponse) -> None:
    if not response.articles:
        out.print(f"No articles match {response.query!r}.")
        return
    for article in response.articles:
        head = Text()
        head.append(f"{article.rank:>2}. ", style="bold")
        head.append(f"{article.score:.3f}  ", style="green")
        head.append(_clip(article.title or article.article_id, 64), style="bold cyan")
        out.print(head)
        details = [article.article_id, article.source, article.published, article.url]
        out.print(Padding(Text(" · ".join(d for d in details if d), style="dim"), (0, 0, 0, 4)))
        for hit in article.passages:
            out.print(Padding(_highlighted(hit), (0, 0, 0, 4)))
        out.print()
    out.print(Text(f"{len(response.articles)} articles in {response.took_ms:.0f} ms", style="dim"))


def _highlighted(hit: Hit) -> Text:
    body = Text()
    rel_start = hit.start - hit.passage_start
    rel_end = hit.end - hit.passage_start
    body.append(_one_line(hit.passage[:rel_start]).lstrip())
    body.append(_one_line(hit.passage[rel_start:rel_end]), style="bold yellow")
    body.append(_one_line(hit.passage[rel_end:]).rstrip())
    return body


def _one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text)


def _clip(text: str, width: int) -> str:
    text = _one_line(text).strip()
    return text if len(text) <= width else text[: width - 1] + "…"


# -- show, remove, stats --------------------------------------------------------------------


@app.command("show")
def show_cmd(
    article_id: Annotated[str, typer.Argument(help="The article's id.")],
    index: IndexOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show a stored article: its fields, metadata and text."""
    engine = Sift(_settings(index))
    with _errors_to_exit():
        article = engine.article(article_id)
    if article is None:
        fail(f"no article with id {article_id!r}", 1)
    if as_json:
        _print_json(article.model_dump(mode="json"))
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
    engine = Sift(_settings(index))
    with _errors_to_exit():
        engine.reader  # noqa: B018  (fails clearly when there is no index)
        summary = engine.remove(article_ids)
    if as_json:
        _print_json(
            {
                "removed": summary.removed,
                "failed": [{"where": f.where, "reason": f.reason} for f in summary.failed],
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
    """Counts, size, model and last update of the index."""
    engine = Sift(_settings(index))
    with _errors_to_exit():
        stats = engine.stats()
    if as_json:
        _print_json(stats.model_dump(mode="json"))
        return
    for key, value in stats.model_dump().items():
        shown = f"{value:,}" if isinstance(value, int) and key != "format_version" else value
        out.print(f"[bold]{key:>18}[/]  {escape(str(shown))}")


# -- eval -----------------------------------------------------------------------------------


@app.command("eval")
def eval_cmd(
    squad: Annotated[Path, typer.Option(help="SQuAD v1.1 dev JSON (.json or .json.gz).")] = Path(
        "../shared/eval/squad_v1.1_dev/dev-v1.1.json.gz"
    ),
    index: Annotated[
        Path | None,
        typer.Option("--index", "-i", help="Where to build the eval index (kept and reused)."),
    ] = None,
    mode: Annotated[
        list[str] | None, typer.Option("--mode", help="Modes to score (default: all three).")
    ] = None,
    limit: Annotated[int | None, typer.Option(help="Only the first N questions.")] = None,
    articles: Annotated[
        bool, typer.Option("--articles/--no-articles", help="Also score article ranking.")
    ] = True,
    as_json: JsonOpt = False,
) -> None:
    """Score ranking quality on SQuAD (ReQA protocol): MRR@10, R@1/5/10 for each mode."""
    import tempfile

    from search.evaluation import MODES, run_reqa

    if not squad.exists():
        fail(f"no SQuAD file at {squad} (the evaluation data lives in ../shared/eval)")
    modes = tuple(mode or MODES)
    if bad := [m for m in modes if m not in MODES]:
        fail(f"unknown mode {bad[0]!r}: use {', '.join(MODES)}")
    settings = _settings(None)
    with tempfile.TemporaryDirectory(prefix="sift-eval-") as tmp, _errors_to_exit():
        where = index or Path(tmp) / "index"
        say = (lambda line: err.print(f"[dim]{escape(line)}[/]")) if not as_json else None
        report = run_reqa(squad, where, settings, modes, articles, limit, say)
    if as_json:
        _print_json(report)
        return
    table = Table(
        title=f"ReQA SQuAD v1.1 dev: {report['questions']:,} questions, "
        f"{report['sentences']:,} sentences"
    )
    for column in ("mode", "MRR@10", "R@1", "R@5", "R@10", "articles MRR@10", "queries/s"):
        table.add_column(column, justify="right" if column != "mode" else "left")
    for name, entry in report["modes"].items():  # type: ignore[attr-defined]
        level = entry.get("article_level", {}).get("group_article", {})
        table.add_row(
            name,
            f"{entry['mrr@10']:.4f}",
            f"{entry['r@1']:.4f}",
            f"{entry['r@5']:.4f}",
            f"{entry['r@10']:.4f}",
            f"{level.get('mrr@10', float('nan')):.4f}",
            f"{entry['queries_per_s']:,.0f}",
        )
    out.print(table)


# -- serve ----------------------------------------------------------------------------------


@app.command("serve")
def serve_cmd(
    host: Annotated[str | None, typer.Option(help="Address to listen on [env SIFT_HOST].")] = None,
    port: Annotated[int | None, typer.Option(help="Port [env SIFT_PORT].")] = None,
    index: IndexOpt = None,
    model: ModelOpt = None,
) -> None:
    """Serve the JSON search API (and its docs at /docs) with uvicorn."""
    import uvicorn

    settings = _settings(index, model)
    # The app reads its settings from the environment, as any deployment of it would.
    os.environ["SIFT_INDEX"] = str(settings.index)
    if settings.model:
        os.environ["SIFT_MODEL"] = settings.model
    uvicorn.run(
        "api.app:create_app",
        factory=True,
        host=host or settings.host,
        port=port if port is not None else settings.port,
        log_level="info",
    )


def main() -> None:
    app()


if __name__ == "__main__":
    main()
