"""Shared fixtures: the real model (loaded once per process), real indexes on disk."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

# Weights come from the installed package only; nothing may reach a model hub.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
for _name in [n for n in os.environ if n.startswith("SIFT_")]:
    del os.environ[_name]  # a developer's own configuration must not leak into the tests
# Exported query encoders (index/onnx_encoder.py) go to a cache of the test run's own, shared
# by every process it starts; the first index of the run exports the model into it.
os.environ["SIFT_CACHE_DIR"] = tempfile.mkdtemp(prefix="sift-test-cache-")
atexit.register(shutil.rmtree, os.environ["SIFT_CACHE_DIR"], True)

from sift.index.embed import Embedder  # noqa: E402
from sift.search.engine import Sift  # noqa: E402
from sift.settings import Settings  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SEEDS = ROOT / "seeds"
EVAL = ROOT.parent / "shared" / "eval"


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    embedder = Embedder()
    embedder.encode(["load the model once for the whole session"])
    return embedder


@pytest.fixture(scope="session")
def seeded_dir(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Path:
    """An index of seeds/, built once; tests must not write to it."""
    directory = tmp_path_factory.mktemp("seeded") / "index"
    summary = Sift(Settings(index=directory)).index_paths([SEEDS])
    assert not summary.failed, summary.failed
    return directory


@pytest.fixture(scope="session")
def seeded(seeded_dir: Path) -> Sift:
    return Sift(Settings(index=seeded_dir))


@pytest.fixture
def engine(tmp_path: Path, embedder: Embedder) -> Sift:
    """A fresh, empty index of its own."""
    return Sift(Settings(index=tmp_path / "index"))


def write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


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
