"""Shared fixtures: the real model (loaded once per process), real indexes on disk."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, sync_playwright

# Weights come from the installed package only; nothing may reach a model hub.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
for _name in [n for n in os.environ if n.startswith("SIFT_")]:
    del os.environ[_name]  # a developer's own configuration must not leak into the tests
# Exported query encoders (index/onnx_encoder.py) go to a cache of the test run's own, shared
# by every process it starts; the first index of the run exports the model into it.
os.environ["SIFT_CACHE_DIR"] = tempfile.mkdtemp(prefix="sift-test-cache-")
atexit.register(shutil.rmtree, os.environ["SIFT_CACHE_DIR"], True)

from sift.index.backends import choose_encoder, detect_cpu  # noqa: E402
from sift.index.embed import Embedder, embedder_for  # noqa: E402
from sift.search.engine import Sift  # noqa: E402
from sift.settings import Settings  # noqa: E402

# Where this machine's `auto` would embed in int8 (a CPU with VNNI and no bf16), the tests run
# on the fp32 export: int8 quantizes each batch's activations on their own range, so its
# vectors move a little with the sentences beside them, and the expectations here (the demo's
# answers, vectors that agree across runs) are those of lossless vectors. int8 itself is
# tested where it is asked for (tests/index/test_backends.py), on any machine.
if choose_encoder("auto", "auto", "cpu", detect_cpu()).precision == "int8":
    os.environ["SIFT_BACKEND"] = "onnx"

from tests.helpers import CHROMIUM, CHROMIUM_ARGS, SEEDS  # noqa: E402


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    embedder = embedder_for(Settings(), None)
    embedder.encode(["load the model once for the whole session"])
    return embedder


@pytest.fixture(scope="session")
def seeded_dir(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Iterator[Path]:
    """An index of seeds/, built once and shared: a test that writes copies it first
    (`tests.api_server.copy_index`). Checked at the end: no test wrote to it."""
    directory = tmp_path_factory.mktemp("seeded") / "index"
    summary = Sift(Settings(index=directory)).index_paths([SEEDS])
    assert not summary.failed, summary.failed
    committed = (directory / "manifest.json").read_text(encoding="utf-8")
    yield directory
    assert (directory / "manifest.json").read_text(encoding="utf-8") == committed, (
        "a test wrote to the shared seeded index; copy it first"
    )


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--slow", action="store_true", help="Also run the tests marked slow.")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Slow tests (marked `slow`) are opt-in: the README's test command passes --slow."""
    if config.getoption("--slow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --slow (the README's test command does)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def seeded(seeded_dir: Path) -> Sift:
    return Sift(Settings(index=seeded_dir))


@pytest.fixture
def engine(tmp_path: Path, embedder: Embedder) -> Sift:
    """A fresh, empty index of its own."""
    return Sift(Settings(index=tmp_path / "index"))


@pytest.fixture(scope="session")
def other_model(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Path:
    """A copy of the default model with one weight changed: the same shape, other vectors."""
    import shutil

    import torch
    from safetensors.torch import load_file, save_file
    from sift.index.embed import resolve_model

    source = Path(resolve_model(None)[1])
    target = tmp_path_factory.mktemp("models") / "tweaked-minilm"
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("model.safetensors"))
    weights = load_file(source / "model.safetensors")
    name = next(k for k in sorted(weights) if k.endswith("weight") and weights[k].ndim == 2)
    weights[name] = weights[name] + 0.05 * torch.ones_like(weights[name])
    save_file(weights, target / "model.safetensors")
    return target


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Per module: Playwright's sync API holds an event loop in this thread while it runs."""
    if not CHROMIUM.exists():
        pytest.skip(f"no {CHROMIUM}: install Debian's chromium (apt-get install chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()
