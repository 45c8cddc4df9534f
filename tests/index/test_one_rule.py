"""Each rule of the writer side lives in one place: the same lock, the same commit protocol and
the same paths for every command."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from sift.cli.main import app
from sift.errors import WriterBusy
from sift.index.check import check_index
from sift.index.embed import Embedder
from sift.index.lock import acquire_write_lock
from sift.index.optimize import optimize
from typer.testing import CliRunner

runner = CliRunner()


@pytest.fixture
def index_copy(seeded_dir: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(seeded_dir, tmp_path / "index"))


def test_optimize_meets_a_busy_index_as_every_writer_does(index_copy: Path) -> None:
    lock = acquire_write_lock(index_copy)
    try:
        with pytest.raises(WriterBusy, match="another sift process is writing"):
            optimize(index_copy, force=True)
        result = runner.invoke(app, ["optimize", "--index", str(index_copy), "--force"])
    finally:
        lock.release()
    assert result.exit_code == 2
    assert "another sift process is writing" in result.stderr
    assert optimize(index_copy, force=True).rebuilt  # free again: it runs


def test_a_crash_while_optimize_writes_vectors_leaves_the_last_commit(
    index_copy: Path, embedder: Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """optimize writes its vectors before the COMMIT that names them, as the writer does."""
    import sift.index.generations as generations

    before = json.loads((index_copy / "manifest.json").read_text())

    def crash(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(generations, "save_vectors", crash)
    with pytest.raises(OSError):
        optimize(index_copy, force=True)
    monkeypatch.undo()
    after = json.loads((index_copy / "manifest.json").read_text())
    assert after["generation"] == before["generation"]
    report = check_index(index_copy, embedder)
    assert report.ok and not report.repaired, report.problems


@pytest.mark.parametrize("command", ["check", "stats", "search"])
def test_a_home_relative_index_means_the_same_for_every_command(
    index_copy: Path, tmp_path: Path, command: str
) -> None:
    home = index_copy.parent  # ~/index is the copy
    args = [command, "--json"] + (["casualty estimates"] if command == "search" else [])
    env = {"HOME": str(home), "SIFT_INDEX": "~/index"}
    result = runner.invoke(app, args, env=env)
    assert result.exit_code == 0, result.stderr
    assert not (Path.cwd() / "~").exists()
    flag = runner.invoke(app, [*args, "--index", "~/index"], env={"HOME": str(home)})
    assert flag.exit_code == 0, flag.stderr
