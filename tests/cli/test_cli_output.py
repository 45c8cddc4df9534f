"""What `sift` prints: search results as cards, a table, JSON, JSON lines or CSV; stats; the
version; shell completion; JSON logs from `sift serve --log-format json`."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import time
from pathlib import Path

import pytest
from sift.cli.main import app
from typer.testing import CliRunner

from tests.api_server import free_port
from tests.helpers import SIFT, invoke, write

runner = CliRunner()
QUERY = "who signed the defence pact"


def search(seeded_dir: Path, *args: str) -> str:
    code, stdout, stderr = invoke("search", QUERY, "-k", "3", "--index", seeded_dir, *args)
    assert code == 0, stderr
    return stdout


def test_format_json_is_the_json_flag(seeded_dir: Path) -> None:
    as_format = json.loads(search(seeded_dir, "--format", "json"))
    as_flag = json.loads(search(seeded_dir, "--json"))
    for body in (as_format, as_flag):
        body.pop("took_ms")
    assert as_format == as_flag and len(as_flag["results"]) == 3


def test_jsonl_is_a_result_a_line(seeded_dir: Path) -> None:
    lines = [json.loads(line) for line in search(seeded_dir, "--format", "jsonl").splitlines()]
    assert [line["rank"] for line in lines] == [1, 2, 3]
    assert "defence pact" in lines[0]["passage"]
    grouped = search(seeded_dir, "--format", "jsonl", "--group", "article").splitlines()
    assert all("passages" in json.loads(line) for line in grouped)


def test_csv_has_a_header_and_a_row_a_passage(seeded_dir: Path) -> None:
    rows = list(csv.DictReader(io.StringIO(search(seeded_dir, "--format", "csv"))))
    assert [r["rank"] for r in rows] == ["1", "2", "3"]
    assert list(rows[0]) == [
        "rank", "score", "article_id", "title", "source", "published", "url", "sentence",
        "passage",
    ]  # fmt: skip
    assert rows[0]["sentence"] in rows[0]["passage"]
    grouped = list(
        csv.DictReader(io.StringIO(search(seeded_dir, "--format", "csv", "--group", "article")))
    )
    assert {r["rank"] for r in grouped} <= {"1", "2", "3"} and len(grouped) >= 3


@pytest.mark.parametrize("group", ["passage", "article"])
@pytest.mark.parametrize("fmt", ["table", "cards"])
def test_human_views_fit_80_columns(seeded_dir: Path, fmt: str, group: str) -> None:
    stdout = search(seeded_dir, "--format", fmt, "--group", group)
    assert max(len(line) for line in stdout.splitlines()) <= 80
    assert "defence pact" in stdout and ("passages in" in stdout or "articles in" in stdout)


def test_the_table_has_a_row_a_result(seeded_dir: Path) -> None:
    stdout = search(seeded_dir, "--format", "table")
    header = stdout.splitlines()[0].split()
    assert header == ["#", "score", "article", "sentence"]
    ranks = [line.split()[0] for line in stdout.splitlines() if line[:3].strip().isdigit()]
    assert ranks == ["1", "2", "3"]


def test_a_file_of_queries_as_csv(seeded_dir: Path, tmp_path: Path) -> None:
    queries = write(tmp_path / "q.jsonl", '{"id": "q1", "query": "drones"}\ncasualties\n')
    code, stdout, _ = invoke(
        "search", "--queries", queries, "-k", "2", "--format", "csv", "--index", seeded_dir
    )
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(stdout)))
    assert [(r["query_id"], r["query"], r["rank"]) for r in rows] == [
        ("q1", "drones", "1"),
        ("q1", "drones", "2"),
        ("", "casualties", "1"),
        ("", "casualties", "2"),
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--format", "xml"), "unknown format 'xml'"),
        (("--json", "--format", "csv"), "--json and --format csv disagree"),
    ],
)
def test_bad_formats_are_usage_errors(
    seeded_dir: Path, args: tuple[str, ...], message: str
) -> None:
    code, stdout, stderr = invoke("search", QUERY, "--index", seeded_dir, *args)
    assert code == 2 and stdout == "" and message in stderr


def test_stats_reads_well(seeded_dir: Path) -> None:
    code, stdout, _ = invoke("stats", "--index", seeded_dir)
    assert code == 0
    fields = {line.split()[0]: line for line in stdout.splitlines() if line.strip()}
    assert fields["articles"].split()[1] == "6"
    assert "on disk (database" in fields["size"] and "KiB" in fields["size"]
    assert "all-MiniLM-L6-v2, 384 dimensions" in fields["model"]
    assert fields["updated"].endswith("ago)") or fields["updated"].endswith("just now)")
    assert max(len(line) for line in stdout.splitlines()) <= 80


def test_version_and_completion(monkeypatch: pytest.MonkeyPatch) -> None:
    result = runner.invoke(app, ["--version"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, (result.stderr, result.exception)
    assert result.stdout.strip() == "sift 0.1.0"
    # The shell is named, not detected from the parent process (which may be no shell at all);
    # typer reads this when it builds the command, before the runner's env applies.
    monkeypatch.setenv("_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION", "1")
    result = runner.invoke(app, ["--show-completion", "bash"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, (result.stderr, result.exception)
    assert "complete -o default -F _sift_completion sift" in result.stdout


def test_serve_logs_json_lines(seeded_dir: Path, tmp_path: Path) -> None:
    """The real console script: every line uvicorn and sift write is one JSON object."""
    log = tmp_path / "serve.log"
    port = free_port()
    command = [SIFT, "serve", "--port", str(port), "--index", str(seeded_dir)]
    command += ["--log-format", "json"]
    with open(log, "w") as sink:
        proc = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, env=os.environ)
    try:
        deadline = time.monotonic() + 120
        while "startup complete" not in log.read_text() and time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()
            time.sleep(0.2)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    lines = [line for line in log.read_text().splitlines() if line.strip()]
    parsed = [json.loads(line) for line in lines]
    assert any(p["message"] == "Application startup complete." for p in parsed)
    assert all({"ts", "level", "logger", "message"} <= set(p) for p in parsed)


def test_help_names_the_environment_variables() -> None:
    code, stdout, _ = invoke("search", "--help")
    assert code == 0 and "SIFT_INDEX" in stdout and "SIFT_MODEL" in stdout
