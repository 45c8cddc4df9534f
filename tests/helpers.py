"""What several test modules share: where things are, the installed `sift` command, and a way
to write a file. Fixtures live in conftest.py; servers in api_server.py; the news site in
news_site.py."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from sift.cli.main import app
from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parents[1]
SEEDS = ROOT / "seeds"
#: The shared evaluation data (SQuAD, BBC News), beside the checkout; absent on a user's clone.
EVAL = ROOT.parent / "shared" / "eval"
#: Debian's chromium, which the browser tests drive (no downloaded browser), and how.
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: The `sift` command of the environment running the tests.
SIFT = shutil.which("sift", path=str(Path(sys.executable).parent)) or "sift"


def write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


#: Articles that the concurrency tests rewrite round after round.
LIVE = 8


def version_text(j: int, version: int) -> str:
    """Article j as written in round `version`: every sentence names its version."""
    return (
        f"Ferry report {j} version {version}: the harbour ferries run again. "
        f"Version {version} of report {j} counts {version * 10 + j} sailings. "
        f"The harbour master confirmed version {version} late on day {version}."
    )


runner = CliRunner()


def invoke(*args: str | Path) -> tuple[int, str, str]:
    """`sift ARGS` in this process, 80 columns wide: (exit code, stdout, stderr)."""
    result = runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "80"})
    return result.exit_code, result.stdout, result.stderr
