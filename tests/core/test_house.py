"""The shape of the package: one import name, rooms that import in one direction, and one error
model that the CLI and the API both map."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from types import ModuleType

import pytest
import sift
import typer
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sift.api.errors import install
from sift.cli.common import errors_to_exit
from sift.errors import FetchError, SiftError
from starlette.exceptions import HTTPException

from tests.helpers import ROOT

ROOMS = ["sift.index", "sift.search", "sift.api", "sift.cli"]
#: What each room may import of the others (`sift` itself: settings, errors, logs).
MAY_IMPORT = {
    "sift.index": {"sift"},
    "sift.search": {"sift", "sift.index"},
    "sift.api": {"sift", "sift.index", "sift.search"},
    "sift.cli": {"sift", "sift.index", "sift.search", "sift.api"},
    "sift": {"sift"},
}
OPTIONAL = {"mcp"}  # extras a module may need; absent, that module is not walked


def sift_modules() -> list[ModuleType]:
    modules = [sift]
    for name in ["sift.settings", "sift.errors", "sift.logs", *ROOMS]:
        package = importlib.import_module(name)
        modules.append(package)
        for info in pkgutil.walk_packages(getattr(package, "__path__", []), f"{name}."):
            if info.name.endswith("__main__"):
                continue
            try:
                modules.append(importlib.import_module(info.name))
            except ImportError as exc:
                if exc.name not in OPTIONAL:
                    raise
    return modules


def room_of(module: str) -> str:
    return next((room for room in ROOMS if module == room or module.startswith(room + ".")), "sift")


def imports_of(module: ModuleType) -> set[str]:
    """Every sift module this one imports, wherever in the file (lazy imports count too)."""
    tree = ast.parse(Path(module.__file__ or "").read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("sift"):
            found.add(node.module)
            found.update(
                f"{node.module}.{a.name}"
                for a in node.names
                if f"{node.module}.{a.name}" in sys.modules
            )
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("sift"))
    return {name for name in found if name in sys.modules and name != module.__name__}


def test_one_import_package() -> None:
    """The wheel installs `sift` and nothing else at the top level."""
    assert Path(sift.__file__).parent == ROOT / "core"
    assert importlib.import_module("sift.index.writer").__file__ == str(ROOT / "index/writer.py")


def test_the_wheel_holds_only_sift(tmp_path: Path) -> None:
    # Built from a copy of the tracked files: setuptools leaves build/ beside the sources.
    source = tmp_path / "src"
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    for name in tracked:
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
    subprocess.run(
        [*pip_wheel, "-q", "-w", str(tmp_path), str(source)],
        check=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("sift_search-*.whl")
    tops = {name.split("/")[0] for name in zipfile.ZipFile(wheel).namelist()}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"sift"}
    names = zipfile.ZipFile(wheel).namelist()
    assert "sift/api/templates/search.html" in names and "sift/cli/main.py" in names


def test_rooms_import_in_one_direction() -> None:
    wrong = [
        f"{module.__name__} imports {name}"
        for module in sift_modules()
        if module is not sift  # `sift.open` reaches the engine on purpose, lazily
        for name in imports_of(module)
        if room_of(name) not in MAY_IMPORT[room_of(module.__name__)] | {room_of(module.__name__)}
    ]
    assert not wrong, wrong


def test_no_import_cycles() -> None:
    modules = {m.__name__: m for m in sift_modules() if m is not sift}
    graph = {name: imports_of(module) & set(modules) for name, module in modules.items()}
    # A package imports its own modules to re-export them: not a cycle of two jobs.
    for name in graph:
        graph[name] = {d for d in graph[name] if not name.startswith(d + ".") or d == "sift"}
    cycles = []

    def visit(name: str, path: list[str]) -> None:
        for dep in graph.get(name, ()):
            if dep in path:
                cycles.append(" -> ".join([*path[path.index(dep) :], dep]))
            elif dep not in done:
                visit(dep, [*path, dep])
        done.add(name)

    done: set[str] = set()
    for name in sorted(graph):
        if name not in done:
            visit(name, [name])
    assert not cycles, cycles


def public_errors() -> list[type[BaseException]]:
    found = {
        obj
        for module in sift_modules()
        for name, obj in vars(module).items()
        if inspect.isclass(obj)
        and issubclass(obj, BaseException)
        and obj.__module__.startswith("sift")
        and not name.startswith("_")
    }
    return sorted(found, key=lambda cls: cls.__name__)


def instance(cls: type[SiftError]) -> SiftError:
    return cls("https://example.invalid/x", "why") if issubclass(cls, FetchError) else cls("why")


def test_every_public_error_is_a_sift_error() -> None:
    errors = public_errors()
    assert len(errors) >= 12, errors
    strays = [c for c in errors if not issubclass(c, SiftError | HTTPException)]
    assert not strays, f"not in the error model (sift.errors): {strays}"
    codes = [c.code for c in errors if issubclass(c, SiftError)]
    assert len(codes) == len(set(codes)), "two failures share a code"


@pytest.mark.parametrize(
    "cls", [c for c in public_errors() if issubclass(c, SiftError)], ids=lambda c: c.__name__
)
def test_the_cli_and_the_api_map_each_error(cls: type[SiftError]) -> None:
    with pytest.raises(typer.Exit) as exited, errors_to_exit():
        raise instance(cls)
    assert exited.value.exit_code == cls.exit_status != 0

    app = FastAPI()
    install(app)

    @app.get("/fail")
    def fail() -> None:
        raise instance(cls)

    response = TestClient(app, raise_server_exceptions=False).get("/fail")
    assert response.status_code == cls.http_status
    assert response.json() == {"error": cls.code, "message": str(instance(cls))}


def test_no_private_name_crosses_a_module() -> None:
    crossing = [
        f"{module.__name__} imports {node.module}.{alias.name}"
        for module in sift_modules()
        for node in ast.walk(ast.parse(Path(module.__file__ or "").read_text(encoding="utf-8")))
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sift")
        for alias in node.names
        if alias.name.startswith("_")
    ]
    assert not crossing, crossing
