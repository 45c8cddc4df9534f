"""Queries are embedded by an ONNX export of the index's own model: same vectors, no torch."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sift.index.embed import Embedder
from sift.index.onnx_encoder import MODEL_FILE, SPEC_FILE, OnnxEncoder, cached_encoder, encoder_dir
from sift.search.engine import Sift
from sift.search.results import SearchRequest
from sift.settings import Settings

from tests.helpers import ROOT, SEEDS

SENTENCES = [
    "At least 100 North Korean soldiers have been killed fighting for Russia, Seoul says.",
    "Who signed the defence pact?",
    "casualty estimates",
    "The treaty obliges each side to provide military assistance if the other is attacked.",
    "Prices rose 2.4% in October, the fastest pace since March, official figures showed.",
]


def test_the_export_gives_the_models_own_vectors(seeded: Sift) -> None:
    """An index's queries go through the exported model, and it embeds as torch fp32 does."""
    encoder = seeded.query_encoder
    assert isinstance(encoder, OnnxEncoder)
    assert encoder.fingerprint == seeded.reader.manifest.model.fingerprint
    reference = Embedder(precision="fp32", backend="torch").encode(SENTENCES)
    got = encoder.encode(SENTENCES)
    assert got.shape == reference.shape
    cosines = (reference * got).sum(axis=1)
    assert cosines.min() > 0.999, cosines
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_torch_and_onnx_queries_rank_alike(seeded_dir: Path) -> None:
    onnx = Sift(Settings(index=seeded_dir, query_encoder="onnx"))
    torch = Sift(Settings(index=seeded_dir, query_encoder="torch"))
    assert isinstance(onnx.query_encoder, OnnxEncoder)
    assert isinstance(torch.query_encoder, Embedder)
    for query in ["casualty estimates", "who signed the defence pact", "drone warfare"]:
        request = SearchRequest(q=query, k=5, mode="dense")
        ids_onnx = [(h.article_id, h.start) for h in onnx.search(request).results]
        ids_torch = [(h.article_id, h.start) for h in torch.search(request).results]
        assert ids_onnx[:3] == ids_torch[:3], query


def test_sift_search_does_not_load_torch(seeded_dir: Path) -> None:
    """What makes a cold `sift search` fast: no torch, no sentence-transformers."""
    script = (
        "import sys\n"
        "from sift.cli.main import main\n"
        "sys.argv = ['sift', 'search', 'casualty estimates', '--json']\n"
        "try:\n    main()\nexcept SystemExit as exit:\n    assert not exit.code, exit.code\n"
        "heavy = sorted(m for m in ('torch', 'sentence_transformers', 'transformers')"
        " if m in sys.modules)\n"
        "print('HEAVY', heavy, file=sys.stderr)\n"
    )
    env = {**os.environ, "SIFT_INDEX": str(seeded_dir)}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["results"], done.stdout
    assert "HEAVY []" in done.stderr, done.stderr


def test_each_index_gets_the_encoder_of_its_own_weights(
    tmp_path: Path, seeded: Sift, other_model: Path
) -> None:
    """The cache is keyed by the weights an index was built with, not by a model's name."""
    engine = Sift(Settings(index=tmp_path / "index", model=str(other_model)))
    engine.index_paths([SEEDS])
    encoder = engine.query_encoder
    assert isinstance(encoder, OnnxEncoder)
    assert encoder.fingerprint == engine.reader.manifest.model.fingerprint
    assert encoder.fingerprint != seeded.reader.manifest.model.fingerprint
    assert isinstance(seeded.query_encoder, OnnxEncoder)
    assert seeded.query_encoder.directory != encoder.directory


@pytest.mark.parametrize("damaged", [SPEC_FILE, MODEL_FILE])
def test_a_damaged_cache_entry_is_exported_again(
    seeded: Sift, tmp_path: Path, damaged: str
) -> None:
    """A cache entry that cannot be used (a half-written file, a disk error) never breaks a
    search: the model is exported again."""
    fingerprint = seeded.reader.manifest.model.fingerprint
    _ = seeded.query_encoder  # the session's cache holds the export
    cache = tmp_path / "cache"
    source = encoder_dir(seeded.settings.cache_dir, fingerprint)
    shutil.copytree(source, encoder_dir(cache, fingerprint))
    (encoder_dir(cache, fingerprint) / damaged).write_bytes(b"{not what it should be")
    assert cached_encoder(cache, fingerprint) is None
    engine = Sift(Settings(index=seeded.directory, cache_dir=cache))
    hits = engine.search(SearchRequest(q="casualty estimates", k=3)).results
    assert hits[0].article_id == "north-korea-casualties.txt"
    assert isinstance(engine.query_encoder, OnnxEncoder)  # exported anew
    assert cached_encoder(cache, fingerprint) is not None


def test_onnx_can_be_insisted_on_and_refused(
    seeded_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """query_encoder=onnx without onnxruntime is a clear error, not a silent slow path."""
    import sift.index.onnx_encoder as onnx_encoder
    import sift.search.encoders as encoders

    monkeypatch.setattr(onnx_encoder, "onnxruntime_available", lambda: False)
    monkeypatch.setattr(encoders, "onnxruntime_available", lambda: False)
    settings = Settings(index=seeded_dir, query_encoder="onnx", cache_dir=seeded_dir / "nocache")
    with pytest.raises(onnx_encoder.EncoderUnavailable, match="onnxruntime"):
        _ = Sift(settings).query_encoder


def test_sift_index_prepares_the_query_encoder(tmp_path: Path) -> None:
    """After `sift index`, the first `sift search` finds the export ready."""
    from sift.cli.main import app
    from typer.testing import CliRunner

    cache = tmp_path / "cache"
    env = {"SIFT_CACHE_DIR": str(cache)}
    index = ["--index", str(tmp_path / "index")]
    done = CliRunner().invoke(app, ["index", str(SEEDS), *index], env=env)
    assert done.exit_code == 0, done.output
    (exported,) = (cache / "encoders").iterdir()
    assert (exported / SPEC_FILE).is_file()
    engine = Sift(Settings(index=tmp_path / "index", cache_dir=cache))
    assert engine.queries_ready()
    assert exported.name == engine.reader.manifest.model.fingerprint
