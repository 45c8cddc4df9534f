"""`import sift` as the README shows it: the example runs as written, on a real index."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.helpers import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")


def section(title: str) -> str:
    start = README.index(f"## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start : end if end != -1 else None]


def test_the_readme_example_runs(tmp_path: Path) -> None:
    (example,) = re.findall(r"```python\n(.*?)```", section("The library"), flags=re.S)
    done = subprocess.run(
        [sys.executable, "-c", example],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    first, _second, count = done.stdout.splitlines()
    assert first.split()[1] == "pact-1" and "signed a mutual defence pact" in first
    assert count == "4 sentences"
    assert (tmp_path / "news-index" / "manifest.json").exists()


def test_the_layout_names_every_module() -> None:
    layout = section("Layout")
    rooms = {"core": "sift", "index": "sift.index", "search": "sift.search"}
    rooms |= {"api": "sift.api", "cli": "sift.cli"}
    for folder in rooms:
        for module in sorted((ROOT / folder).glob("*.py")):
            if module.stem.startswith("__"):
                continue
            assert f"`{module.stem}`" in layout, (
                f"README's layout leaves out {folder}/{module.name}"
            )
