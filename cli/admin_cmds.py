"""`sift check` and `sift eval`: looking after an index and measuring its ranking."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table
from sift.cli.common import (
    IndexOpt,
    JsonOpt,
    ModelOpt,
    app,
    command_settings,
    err,
    errors_to_exit,
    fail,
    out,
)
from sift.cli.render import print_json
from sift.index.check import check_index, repair_index
from sift.search.engine import Sift


@app.command("check")
def check_cmd(
    repair: Annotated[
        bool, typer.Option("--repair", help="Rebuild what can be rebuilt from the article text.")
    ] = False,
    index: IndexOpt = None,
    model: ModelOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Verify the index (manifest, counts, ids of vectors, keyword index and rows, model)."""
    settings = command_settings(index, model)
    with errors_to_exit():
        engine = Sift(settings)
        embedder = engine.embedder if (settings.index / "sift.db").exists() else None
        if repair and embedder is not None:
            report = repair_index(settings.index, embedder)
        else:
            report = check_index(settings.index, embedder)
    if as_json:
        print_json(report.as_dict())
    else:
        for line in report.repaired:
            out.print(f"[green]repaired[/] {escape(line)}")
        for problem in report.problems:
            fix = "" if problem.repairable else " [dim](not repairable)[/]"
            out.print(f"[red]{problem.code}[/] {escape(problem.detail)}{fix}", soft_wrap=True)
        checked = ", ".join(f"{v:,} {k}" for k, v in report.checked.items())
        verdict = "[green]ok[/]" if report.ok else f"[red]{len(report.problems)} problems[/]"
        out.print(f"{escape(str(settings.index))}: {verdict} ({checked or 'nothing checked'})")
    if not report.ok:
        raise typer.Exit(1)


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
    limit: Annotated[
        int | None, typer.Option(min=1, help="Only the first N questions of each half.")
    ] = None,
    titles: Annotated[
        int | None,
        typer.Option(
            min=1, help="Only the first N Wikipedia articles of each half (a quick small slice)."
        ),
    ] = None,
    articles: Annotated[
        bool, typer.Option("--articles/--no-articles", help="Also score article ranking.")
    ] = True,
    as_json: JsonOpt = False,
) -> None:
    """Score ranking quality on SQuAD (ReQA protocol): MRR@10, R@1/5/10 for each mode, on the
    half the ranking defaults were tuned on and on the half kept for reporting only."""
    from sift.search.evaluation import HALVES, MODES, run_reqa

    if not squad.exists():
        fail(f"no SQuAD file at {squad} (the evaluation data lives in ../shared/eval)")
    modes = tuple(mode or MODES)
    if bad := [m for m in modes if m not in MODES]:
        fail(f"unknown mode {bad[0]!r}: use {', '.join(MODES)}")
    settings = command_settings(None)
    with tempfile.TemporaryDirectory(prefix="sift-eval-") as tmp, errors_to_exit():
        where = index or Path(tmp) / "index"
        say = (lambda line: err.print(f"[dim]{escape(line)}[/]")) if not as_json else None
        report = run_reqa(squad, where, settings, modes, articles, limit, say, titles)
    if as_json:
        print_json(report)
        return
    by_half = report["questions_by_half"]
    table = Table(
        title=f"ReQA SQuAD v1.1 dev: {report['questions']:,} questions "
        f"({', '.join(f'{h} {n:,}' for h, n in by_half.items())}), "  # type: ignore[attr-defined]
        f"{report['sentences']:,} sentences"
    )
    columns = ("mode", "half", "MRR@10", "R@1", "R@5", "R@10", "articles MRR@10", "queries/s")
    for column in columns:
        table.add_column(column, justify="left" if column in ("mode", "half") else "right")
    for name, entry in report["modes"].items():  # type: ignore[attr-defined]
        level = entry.get("article_level", {}).get("group_article", {})
        for half in ("all", *HALVES):
            scores = entry if half == "all" else entry["halves"].get(half)
            if scores is None:
                continue
            table.add_row(
                name if half == "all" else "",
                half,
                f"{scores['mrr@10']:.4f}",
                f"{scores['r@1']:.4f}",
                f"{scores['r@5']:.4f}",
                f"{scores['r@10']:.4f}",
                f"{level.get(half, {}).get('mrr@10', float('nan')):.4f}",
                f"{entry['queries_per_s']:,.0f}" if half == "all" else "",
            )
    out.print(table)


@app.command("snapshot")
def snapshot_cmd(
    destination: Annotated[
        Path,
        typer.Argument(help="A new folder (or an empty one) for the copy.", show_default=False),
    ],
    index: IndexOpt = None,
    previous: Annotated[
        Path | None,
        typer.Option(
            "--from",
            help="An earlier snapshot of this index: link what has not changed since it "
            "(vectors base, keyword segments) and write only what is new.",
            show_default=False,
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Write a consistent copy of the index while writers keep committing (for replicas)."""
    from sift.index.snapshot import snapshot

    settings = command_settings(index)
    with errors_to_exit():
        earlier = previous.expanduser() if previous else None
        report = snapshot(settings.index, destination.expanduser(), earlier)
    if as_json:
        print_json(report.as_dict())
        return
    out.print(
        f"{escape(report.destination)}: generation {report.generation}, "
        f"{report.articles:,} articles, {report.sentences:,} sentences "
        f"(vectors {report.vectors}, keyword index {report.keyword}), "
        f"{report.bytes / 1e6:,.1f} MB, {report.written_bytes / 1e6:,.1f} MB written, "
        f"in {report.seconds:.1f} s"
    )
