"""The `sift` command: the real console script in a subprocess for the demo and exit codes,
typer's runner in-process for the rest (same code, no model reload per call)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.helpers import ROOT, SEEDS, SIFT, invoke, write

runner = CliRunner()


def sift(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SIFT, *map(str, args)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "COLUMNS": "80", **(env or {})},
        timeout=300,
    )


def test_demo_index_then_search_json(tmp_path: Path) -> None:
    index = tmp_path / "demo"
    done = sift("index", "seeds/", "--index", index)
    assert done.returncode == 0, done.stderr
    assert "6 added, 0 updated, 0 unchanged, 0 removed, 0 failed" in done.stdout
    found = sift("search", "casualty estimates", "--json", env={"SIFT_INDEX": str(index)})
    assert found.returncode == 0, found.stderr
    body = json.loads(found.stdout)
    top3 = " ".join(r["passage"] for r in body["results"][:3])
    assert "at least 100 fatalities" in top3 and "nearly 1,000" in top3


def test_python_dash_m_search_is_the_same_cli() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "sift.cli", "--help"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0
    for command in ("index", "search", "serve", "stats", "remove", "show"):
        assert command in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("search", "   "), "query is empty"),
        (("search", "troops", "-k", "0"), "k: Input should be greater than or equal to 1"),
        (
            ("search", "troops", "--index", "/nonexistent/sift"),
            "no sift index at /nonexistent/sift",
        ),
    ],
)
def test_bad_input_is_one_line_on_stderr_and_exit_2(
    seeded_dir: Path, args: tuple[str, ...], message: str
) -> None:
    code, stdout, stderr = invoke(*args, *(() if "--index" in args else ("--index", seeded_dir)))
    assert code == 2
    assert stdout == ""
    assert message in stderr
    assert len(stderr.strip().splitlines()) == 1
    assert "Traceback" not in stderr


def test_bad_files_exit_non_zero_and_keep_the_rest(tmp_path: Path) -> None:
    write(tmp_path / "in" / "good.txt", "The harvest was the best in a decade.\n")
    write(tmp_path / "in" / "bad.json", '{"title": "no text"')
    code, stdout, stderr = invoke("index", tmp_path / "in", "--index", tmp_path / "ix", "--json")
    assert code == 1
    report = json.loads(stdout)
    assert report["added"] == ["good.txt"]
    assert report["failed"][0]["where"].endswith("bad.json")
    assert "malformed JSON" in report["failed"][0]["reason"]
    code, _, stderr = invoke("index", tmp_path / "in" / "bad.json", "--index", tmp_path / "ix")
    assert code == 2 and "malformed JSON" in stderr


def test_a_bad_run_leaves_an_existing_index_alone(tmp_path: Path) -> None:
    index = tmp_path / "ix"
    assert invoke("index", SEEDS, "--index", index)[0] == 0
    before = json.loads(invoke("stats", "--index", index, "--json")[1])
    code, _, _ = invoke("index", write(tmp_path / "empty.txt", ""), "--index", index)
    assert code == 2
    after = json.loads(invoke("stats", "--index", index, "--json")[1])
    assert after == before


def test_human_output_highlights_the_hit_and_fits_80_columns(seeded_dir: Path) -> None:
    code, stdout, _ = invoke(
        "search", "who signed the defence pact", "-k", "3", "--index", seeded_dir
    )
    assert code == 0
    assert " 1. " in stdout and "Putin" in stdout
    assert max(len(line) for line in stdout.splitlines()) <= 80


def test_show_stats_remove(tmp_path: Path) -> None:
    index = tmp_path / "ix"
    invoke("index", SEEDS, "--index", index)
    code, stdout, _ = invoke("show", "brief-drones", "--index", index, "--json")
    assert code == 0 and json.loads(stdout)["title"] == "Cheap drones reshape the battlefield"
    code, stdout, _ = invoke("stats", "--index", index, "--json")
    stats = json.loads(stdout)
    assert (stats["articles"], stats["model"], stats["dimension"]) == (6, "all-MiniLM-L6-v2", 384)
    code, stdout, _ = invoke("remove", "brief-drones", "--index", index, "--json")
    assert code == 0 and json.loads(stdout)["removed"] == ["brief-drones"]
    code, _, stderr = invoke("show", "brief-drones", "--index", index)
    assert code == 1 and "no article with id 'brief-drones'" in stderr
    code, _, stderr = invoke("remove", "brief-drones", "--index", index)
    assert code == 1 and "no article with this id" in stderr
    assert json.loads(invoke("stats", "--index", index, "--json")[1])["articles"] == 5
