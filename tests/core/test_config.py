"""One Settings model, four sources: flags > SIFT_* env > sift.toml > defaults; `sift config`
says which gave each value and never shows a secret."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sift.cli.main import app
from sift.errors import ConfigError
from sift.settings import FUSION_WEIGHTS, Settings, describe
from typer.testing import CliRunner

from tests.helpers import write

runner = CliRunner()


def config(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = runner.invoke(app, ["config", *args], env={"COLUMNS": "80", **(env or {})})
    return result.exit_code, result.stdout, result.stderr


def origins(stdout: str) -> dict[str, tuple[object, str]]:
    body = json.loads(stdout)
    return {s["name"]: (s["value"], s["origin"]) for s in body["settings"]}


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory with a sift.toml in it."""
    write(
        tmp_path / "sift.toml",
        'index = "data/index"\nport = 9000\nmax_k = 50\ncors_origins = ["https://a.test"]\n',
    )
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_each_value_says_where_it_came_from(project: Path) -> None:
    code, stdout, stderr = config("--json", "--model", "/models/mini", env={"SIFT_PORT": "9100"})
    assert code == 0, stderr
    assert json.loads(stdout)["config_file"] == str(project / "sift.toml")
    seen = origins(stdout)
    assert seen["model"] == ("/models/mini", "flag")
    assert seen["port"] == (9100, "env SIFT_PORT")  # env beats the file
    assert seen["max_k"] == (50, "sift.toml")
    assert seen["cors_origins"] == (["https://a.test"], "sift.toml")
    assert seen["index"] == (str(project / "data" / "index"), "sift.toml")
    assert seen["rrf_k"] == (5.0, "default")


def test_flags_beat_env_beat_file_beat_defaults(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert Settings().max_k == 50
    monkeypatch.setenv("SIFT_MAX_K", "60")
    assert Settings().max_k == 60
    assert Settings(max_k=70).max_k == 70
    assert Settings().candidates == 200


def test_a_relative_index_is_relative_to_the_file_named_by_sift_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = write(tmp_path / "etc" / "news.toml", 'index = "ix"\nweb_delay = 2\n')
    monkeypatch.chdir(write(tmp_path / "work" / "x", "").parent)
    code, stdout, _ = config("--json", env={"SIFT_CONFIG": str(elsewhere)})
    assert code == 0
    seen = origins(stdout)
    assert seen["index"] == (str(tmp_path / "etc" / "ix"), "news.toml")
    assert seen["web_delay"] == (2.0, "news.toml")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("indx = 'x'\n", "unknown setting 'indx'"),
        ("port = \n", "is not valid TOML"),
        ("port = 'many'\n", "port: Input should be a valid integer"),
    ],
)
def test_a_bad_file_is_one_clear_line(project: Path, content: str, message: str) -> None:
    write(project / "sift.toml", content)
    code, stdout, stderr = config()
    assert code == 2 and stdout == ""
    assert message in stderr and "bad configuration" in stderr
    assert "Traceback" not in stderr
    with pytest.raises((ConfigError, ValueError)):
        Settings()


def test_a_missing_sift_config_file_is_an_error(tmp_path: Path) -> None:
    code, _, stderr = config(env={"SIFT_CONFIG": str(tmp_path / "absent.toml")})
    assert code == 2 and "no config file at" in stderr and "SIFT_CONFIG" in stderr


def test_secrets_are_masked(project: Path) -> None:
    write(project / "sift.toml", 'api_key = "hunter2-very-secret"\n')
    for args in (("--json",), ()):
        code, stdout, _ = config(*args)
        assert code == 0 and "hunter2" not in stdout and "********" in stdout
    assert describe(Settings())[0].name == "index"


def test_the_table_reads_well_in_80_columns(project: Path) -> None:
    code, stdout, _ = config(env={"SIFT_API_KEY": "k"})
    assert code == 0
    assert max(len(line) for line in stdout.splitlines()) <= 80
    assert "config file:" in stdout and "env SIFT_API_KEY" in stdout
    rows = {line.split()[0]: line for line in stdout.splitlines()[3:] if line.strip()}
    assert rows["max_k"].split()[1:] == ["50", "sift.toml"]
    assert rows["device"].split()[1:] == ["unset", "default"]


def test_commands_use_the_index_the_file_names(
    seeded_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path / "sift.toml", f'index = "{seeded_dir}"\n')
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["stats", "--json"])
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["articles"] == 6


def test_fusion_weights_left_unset_follow_the_fusion(monkeypatch: pytest.MonkeyPatch) -> None:
    # Each fusion's weights are in its own units: switching to rrf must not keep convex's.
    assert Settings().weights() == FUSION_WEIGHTS["convex"]
    assert Settings(fusion="rrf").weights() == FUSION_WEIGHTS["rrf"]
    monkeypatch.setenv("SIFT_WEIGHT_ARTICLE", "0")
    for fusion in ("convex", "rrf"):
        weights = Settings(fusion=fusion).weights()
        assert weights.article == 0.0
        assert weights.dense == FUSION_WEIGHTS[fusion].dense
