"""`sift`: the command line, a thin layer over `search.engine.Sift`.

Exit codes: 0 ok; 1 some inputs failed (the rest was indexed) or an id was not found;
2 bad usage or input that nothing could be done with (one line on stderr says which).
"""

from __future__ import annotations

import csv
import json
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from pydantic import ValidationError
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from index.embed import ModelError
from index.logs import JsonFormatter
from index.settings import ConfigError, Settings, config_file, describe
from index.store import StoreError
from search.engine import InvalidRequest, Sift
from search.output import CSV_COLUMNS, FORMATS, csv_rows, print_json, print_stats, write_response
from search.results import SearchRequest

if TYPE_CHECKING:
    pass

app = typer.Typer(
    name="sift",
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
LogFormatOpt = Annotated[
    str | None,
    typer.Option(
        "--log-format",
        help="Log lines on stderr: text (warnings) or json (one object a line, info and up) "
        "[env SIFT_LOG_FORMAT].",
        show_default=False,
    ),
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")]

try:
    VERSION = version("sift-search")
except PackageNotFoundError:  # pragma: no cover - a bare checkout
    VERSION = "0+unknown"


def _show_version(value: bool) -> None:
    if value:
        out.print(f"sift {VERSION}")
        raise typer.Exit()


@app.callback()
def _main(
    _version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_show_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Semantic passage search over news articles.

    Settings come from flags, then SIFT_* environment variables, then ./sift.toml (or the file
    in SIFT_CONFIG), then defaults: `sift config` shows them and where each came from.
    """


def fail(message: str, code: int = 2) -> NoReturn:
    err.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
    raise typer.Exit(code)


def _flags(**values: Any) -> dict[str, Any]:
    """The settings given on the command line: those not left out."""
    return {k: v for k, v in values.items() if v is not None}


def _settings(
    index: Path | None = None, model: str | None = None, *, logs: bool = True, **more: Any
) -> Settings:
    """The settings with the flags given; and sift's log lines set up as they say (unless the
    command hands logging to someone else: the server configures its own)."""
    try:
        settings = Settings(**_flags(index=index, model=model, **more))
    except ValidationError as exc:
        fail(f"bad configuration: {_first_error(exc)}")
    except ConfigError as exc:
        fail(f"bad configuration: {exc}")
    if logs:
        _configure_logging(settings.log_format)
    return settings


def _first_error(exc: ValidationError) -> str:
    first = exc.errors()[0]
    loc = ".".join(str(p) for p in first["loc"])
    msg = str(first["msg"]).removeprefix("Value error, ")
    return f"{loc}: {msg}" if loc else msg


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever sys.stderr is when a line is logged (a test runner swaps it)."""

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _: Any) -> None:
        pass


def _configure_logging(log_format: str) -> None:
    """sift's loggers on stderr: warnings as text, or everything from info up as JSON lines."""
    handler = _StderrHandler()
    json_lines = log_format == "json"
    handler.setFormatter(
        JsonFormatter() if json_lines else logging.Formatter("%(levelname)s: %(message)s")
    )
    logger = logging.getLogger("sift")
    logger.handlers = [h for h in logger.handlers if not isinstance(h, _StderrHandler)]
    logger.addHandler(handler)
    logger.setLevel(logging.INFO if json_lines else logging.WARNING)
    logger.propagate = False


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
        fail("interrupted; committed batches are kept and a rerun goes on from there", 130)


# `sift index` and `sift watch` live beside this module (search/cli_index.py); importing it
# here registers them on `app` first, so help lists them first.
from search import cli_index  # noqa: E402, F401

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
    """Search the index and print the best passages with their articles."""
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
    }
    engine = Sift(_settings(index, model))
    if queries is not None:
        if fmt not in (None, "json", "jsonl", "csv"):
            fail(f"--queries writes jsonl or csv, not {fmt}")
        _search_file(engine, queries, options, fmt or "jsonl")
        return
    with _errors_to_exit():
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
    with _errors_to_exit():
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
    engine = Sift(_settings(index))
    with _errors_to_exit():
        engine.reader  # noqa: B018  (fails clearly when there is no index)
        summary = engine.remove(article_ids)
    if as_json:
        print_json(
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
    """Counts, size on disk, model and last update of the index (and the feeds it follows)."""
    settings = _settings(index)
    engine = Sift(settings)
    with _errors_to_exit():
        stats = engine.stats()
    feeds = _feed_counts(Path(settings.index).expanduser())
    if as_json:
        print_json({**stats.model_dump(mode="json"), "feeds": feeds})
        return
    print_stats(stats, feeds, out)


def _feed_counts(directory: Path) -> dict[str, int]:
    try:
        from index.feeds import SeenEntries
    except ImportError:  # no web extra: no feeds either
        return {}
    return SeenEntries(directory).counts()


# -- config ---------------------------------------------------------------------------------


@app.command("config")
def config_cmd(
    index: IndexOpt = None,
    model: ModelOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Print the effective configuration and where each value came from."""
    flags = _flags(index=index, model=model)
    settings = _settings(**flags)
    rows = describe(settings, flags)
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
    host: Annotated[str | None, typer.Option(help="Address to listen on [env SIFT_HOST].")] = None,
    port: Annotated[int | None, typer.Option(help="Port [env SIFT_PORT].")] = None,
    index: IndexOpt = None,
    model: ModelOpt = None,
    log_format: LogFormatOpt = None,
) -> None:
    """Serve the JSON search API (and its docs at /docs) with uvicorn."""
    import uvicorn

    settings = _settings(index, model, logs=False, log_format=log_format)
    # The app reads its settings from the environment, as any deployment of it would.
    os.environ["SIFT_INDEX"] = str(settings.index)
    os.environ["SIFT_LOG_FORMAT"] = settings.log_format
    if settings.model:
        os.environ["SIFT_MODEL"] = settings.model
    uvicorn.run(
        "api.app:create_app",
        factory=True,
        host=host or settings.host,
        port=port if port is not None else settings.port,
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
    """Rebuild the vector index for its size: exact, or IVF trained on the stored vectors."""
    from index.optimize import optimize

    directory = Path(_settings(index).index).expanduser()
    with _errors_to_exit():
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


# Commands that look after an index (check, eval) live beside this module; importing it
# registers them on `app`.
from search import cli_admin  # noqa: E402, F401


def main() -> None:
    app()


if __name__ == "__main__":
    main()
