"""`sift index` and `sift watch`: files, folders, web pages and feeds into the index, with
progress on a terminal and a summary (or `--json`) at the end."""

from __future__ import annotations

import json
import signal
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, nullcontext
from datetime import datetime
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from sift.cli.common import (
    IndexOpt,
    JsonOpt,
    LogFormatOpt,
    ModelOpt,
    QuietOpt,
    app,
    command_settings,
    err,
    errors_to_exit,
    fail,
    out,
)
from sift.cli.render import print_json
from sift.errors import ModelError, ReadOnly, StoreError, WriterBusy
from sift.index.ingest import IngestTally, read_inputs
from sift.index.records import Article, Failure
from sift.index.writer import IndexSummary
from sift.search.engine import Sift
from sift.settings import Settings

if TYPE_CHECKING:
    from sift.index.live import LiveSources, SourceReport


def _is_url(source: str) -> bool:
    return source.startswith(("http://", "https://"))


def _live_sources(settings: Settings) -> LiveSources:
    try:
        from sift.index.live import LiveSources
        from sift.index.web import FetchPolicy
    except ImportError as exc:
        fail(str(exc))
    return LiveSources(settings.index, FetchPolicy.from_settings(settings))


@app.command("index")
def index_cmd(
    sources: Annotated[
        list[str],
        typer.Argument(
            help="Files or folders of articles, URLs of web pages, of RSS/Atom feeds or of "
            "(news) sitemaps (a rerun fetches only new and changed entries; robots.txt is "
            "obeyed).",
            show_default=False,
        ),
    ],
    ray: Annotated[
        str | None,
        typer.Option(
            "--ray",
            metavar="[ADDRESS]",
            help="Read, split and embed on a Ray cluster: local (start one here; --ray alone), "
            "auto (join the running one) or ray://host:port; commits stay here. Needs "
            "sift-search[cluster] [env SIFT_RAY_ADDRESS].",
            show_default=False,
        ),
    ] = None,
    index: IndexOpt = None,
    model: ModelOpt = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
    log_format: LogFormatOpt = None,
) -> None:
    """Index files and folders (txt, md, html, json, jsonl, csv), web pages, feeds and sitemaps."""
    settings = command_settings(index, model, log_format=log_format, ray_address=ray)
    engine = Sift(settings)
    tally = IngestTally()
    urls = [s for s in sources if _is_url(s)]
    paths = [Path(s) for s in sources if not _is_url(s)]
    live = _live_sources(settings) if urls else None
    if settings.ray_address and live is not None:
        fail("--ray indexes files and folders; index URLs and feeds without it")
    show_progress = not (quiet or as_json) and err.is_terminal
    with errors_to_exit(), _progress(show_progress) as (on_article, on_embedded):
        if live is None:
            summary = engine.index_paths(paths, on_article, on_embedded, tally)
        else:
            items = chain(read_inputs(paths, tally), live.read(urls))
            summary = engine.index_articles(_counted(items, on_article))
    if live is not None:
        live.remember(summary)
    with (
        err.status("Merging the vectors into a new base ...", spinner="dots")
        if show_progress and engine.merging()
        else nullcontext(),
    ):
        engine.wait_for_merges()  # a run ends with its index merged, as a run without them
    _report_index(summary, settings, tally, as_json, live)
    if summary.sentences and not engine.queries_ready():
        with (
            err.status(
                "Preparing the query encoder (once per model): later searches start fast ...",
                spinner="dots",
            )
            if show_progress
            else nullcontext()
        ):
            engine.prepare_queries()
    if summary.failed:
        raise typer.Exit(2 if not (summary.added or summary.updated or summary.unchanged) else 1)


def ray_alone_means_local(argv: list[str]) -> list[str]:
    """`--ray` given without an address (last, or before another option or a PATH) is
    `--ray local`: typer's options take a value always, so the default is put in here."""
    from sift.index.cluster import looks_like_address

    out = list(argv)
    for i, arg in enumerate(out):
        if arg == "--ray" and (i + 1 == len(out) or not looks_like_address(out[i + 1])):
            out[i] = "--ray=local"
    return out


def _counted(
    items: Iterable[Article | Failure], on_article: Callable[[str], None] | None
) -> Iterator[Article | Failure]:
    for item in items:
        if on_article is not None:
            on_article(item.where if isinstance(item, Failure) else str(item.id))
        yield item


@app.command("watch")
def watch_cmd(
    feeds: Annotated[
        list[str],
        typer.Argument(help="URLs of feeds or sitemaps (or pages) to poll.", show_default=False),
    ],
    every: Annotated[
        float | None,
        typer.Option(
            help="Seconds from the start of one round to the next \\[env SIFT_WATCH_EVERY]."
        ),
    ] = None,
    max_rounds: Annotated[
        int | None, typer.Option("--max-rounds", min=1, help="Stop after this many rounds.")
    ] = None,
    index: IndexOpt = None,
    model: ModelOpt = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="A JSON line per round on stdout.")
    ] = False,
    log_format: LogFormatOpt = None,
) -> None:
    """Poll feeds and index their new entries, round after round, until Ctrl-C."""
    if bad := [f for f in feeds if not _is_url(f)]:
        fail(f"not an http(s) URL: {bad[0]}")
    settings = command_settings(index, model, log_format=log_format, watch_every=every)
    engine = Sift(settings)
    live = _live_sources(settings)
    done = 0
    stop_on_term = signal.signal(signal.SIGTERM, _interrupt)  # a service manager's stop: Ctrl-C
    try:
        while True:
            started = time.monotonic()
            _watch_round(engine, live, feeds, done + 1, settings, as_json)
            done += 1
            if max_rounds is not None and done >= max_rounds:
                break
            time.sleep(max(started + settings.watch_every - time.monotonic(), 0.0))
    except KeyboardInterrupt:
        # A round cut short keeps what it committed; its entries are fetched again next time.
        err.print(f"[dim]stopped after {done} complete round{'s' if done != 1 else ''}[/]")
        raise typer.Exit(0) from None
    finally:
        signal.signal(signal.SIGTERM, stop_on_term)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _watch_round(
    engine: Sift,
    live: LiveSources,
    feeds: list[str],
    number: int,
    settings: Settings,
    as_json: bool,
) -> None:
    """One poll of every feed: one commit, then the new entries remembered."""
    now = datetime.now().astimezone()
    when = now.isoformat(timespec="seconds")
    try:
        summary = engine.index_articles(live.read(feeds))
    except WriterBusy as exc:  # someone else is writing: try again next round
        err.print(f"[yellow]round {number}:[/] {escape(str(exc))}", soft_wrap=True)
        return
    except (StoreError, ModelError, ReadOnly) as exc:
        fail(str(exc))
    live.remember(summary)
    if as_json:
        line = {"round": number, "at": when, **_index_report(summary, settings, None, live)}
        sys.stdout.write(json.dumps(line, ensure_ascii=False) + "\n")
        sys.stdout.flush()
        return
    for failure in summary.failed:
        err.print(f"[red]failed[/] {escape(str(failure))}", soft_wrap=True)
    _print_sources(live)
    counts = summary.counts()
    seen = sum(f.seen for f in live.sources)
    robots = sum(f.robots for f in live.sources)
    not_modified = sum(f.not_modified for f in live.sources)
    out.print(
        f"round {number}, {now:%H:%M:%S}: {counts['added']} added, {counts['updated']} updated, "
        f"{counts['failed']} failed, {seen} seen before, {not_modified} not modified, "
        f"{robots} skipped by robots.txt"
    )


def _print_sources(live: LiveSources) -> None:
    for skip in live.skipped:
        err.print(f"[dim]skipped {escape(skip.where)}: {escape(skip.reason)}[/]", soft_wrap=True)
    for report in live.feeds:
        err.print(f"[dim]{escape(_source_line(report))}[/]", soft_wrap=True)


def _source_line(r: SourceReport) -> str:
    return (
        f"{r.kind} {r.url}: {r.entries} entries ({r.new} new, {r.updated} updated, "
        f"{r.seen} seen before); {r.fetched} fetched, {r.not_modified} not modified, "
        f"{r.robots} skipped by robots.txt, {r.failed} failed"
    )


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


def _index_report(
    summary: IndexSummary, settings: Settings, tally: IngestTally | None, live: LiveSources | None
) -> dict[str, Any]:
    report: dict[str, Any] = {
        "index": str(settings.index),
        **{k: getattr(summary, k) for k in ("added", "updated", "unchanged", "removed")},
        "failed": [f.as_dict() for f in summary.failed],
        "counts": summary.counts(),
        "seconds": round(summary.seconds, 3),
    }
    if tally is not None:
        report["skipped_files"] = tally.skipped
    if live is not None:
        report["feeds"] = [f.as_dict() for f in live.feeds]
        report["skipped"] = [{"where": s.where, "reason": s.reason} for s in live.skipped]
    return report


def _report_index(
    summary: IndexSummary,
    settings: Settings,
    tally: IngestTally,
    as_json: bool,
    live: LiveSources | None = None,
) -> None:
    if as_json:
        print_json(_index_report(summary, settings, tally, live))
        return
    counts = summary.counts()
    for failure in summary.failed:
        err.print(f"[red]failed[/] {escape(str(failure))}", soft_wrap=True)
    if tally.skipped:
        err.print(f"[dim]skipped {len(tally.skipped)} files of unsupported types[/]")
    if live is not None:
        _print_sources(live)
    rate = summary.sentences / summary.seconds if summary.seconds else 0.0
    out.print(
        f"{counts['added']} added, {counts['updated']} updated, {counts['unchanged']} unchanged, "
        f"{counts['removed']} removed, {counts['failed']} failed; "
        f"{summary.sentences:,} sentences embedded in {summary.seconds:.1f} s "
        f"({rate:,.0f}/s) -> {escape(str(settings.index))}"
    )
