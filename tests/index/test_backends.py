"""What embeds on which machine (index/backends.py), whether it keeps the ranking, and that the
index says what made its vectors. The CPU's kind is a detected value handed to a pure table, so
a CPU without bf16 is covered on any machine."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sift.index import embed as embed_module
from sift.index.backends import (
    BF16_REASON,
    ONNX_REASON,
    CpuFeatures,
    choose_encoder,
)
from sift.index.embed import Embedder, ModelError, sift_version
from sift.index.manifest import Manifest
from sift.index.split import split_sentences
from sift.index.writer import embedding_text
from sift.search.engine import Sift
from sift.search.results import SearchRequest
from sift.settings import Settings

from tests.helpers import EVAL, ROOT, SEEDS

WITH_BF16 = CpuFeatures(bf16=True, vnni=True)  # Xeon Sapphire Rapids, AMD Zen 4
WITHOUT_BF16 = CpuFeatures(bf16=False, vnni=True)  # AMD EPYC Milan, Xeon Ice Lake, cloud VMs
QUERIES = [
    "casualty estimates",
    "Who signed the defence pact?",
    "North Korean soldiers killed in Kursk",
    "inflation figures",
]


@pytest.mark.parametrize(
    ("backend", "precision", "device", "cpu", "chosen"),
    [
        # auto: the measured winner for each kind of machine
        ("auto", "auto", "cpu", WITH_BF16, ("torch", "bf16")),
        ("auto", "auto", "cpu", WITHOUT_BF16, ("onnx", "fp32")),
        ("auto", "auto", "cuda:0", WITHOUT_BF16, ("torch", "fp16")),
        ("auto", "auto", "cuda", WITH_BF16, ("torch", "fp16")),
        # a precision given: fp32 on a CPU is faster as ONNX, the same vectors
        ("auto", "fp32", "cpu", WITH_BF16, ("onnx", "fp32")),
        ("auto", "bf16", "cpu", WITHOUT_BF16, ("torch", "bf16")),
        # a backend given is obeyed
        ("torch", "auto", "cpu", WITHOUT_BF16, ("torch", "fp32")),
        ("torch", "auto", "cpu", WITH_BF16, ("torch", "bf16")),
        ("torch", "fp32", "cpu", WITH_BF16, ("torch", "fp32")),
        ("onnx", "auto", "cpu", WITH_BF16, ("onnx", "fp32")),
        ("onnx", "fp32", "cpu", WITHOUT_BF16, ("onnx", "fp32")),
    ],
)
def test_each_kind_of_machine_gets_its_measured_winner(
    backend: str, precision: str, device: str, cpu: CpuFeatures, chosen: tuple[str, str]
) -> None:
    choice = choose_encoder(backend, precision, device, cpu)
    assert (choice.backend, choice.precision) == chosen
    assert choice.reason  # every choice says why, for the manifest and `sift stats`


def test_the_reason_names_the_cpu_kind() -> None:
    assert choose_encoder("auto", "auto", "cpu", WITH_BF16).reason == BF16_REASON
    assert choose_encoder("auto", "auto", "cpu", WITHOUT_BF16).reason == ONNX_REASON
    assert "setting" in choose_encoder("onnx", "auto", "cpu", WITH_BF16).reason


def test_no_machine_gets_a_lossy_encoder() -> None:
    """int8 is not chosen until its hybrid quality is measured (index/backends.py)."""
    for cpu in (WITH_BF16, WITHOUT_BF16, CpuFeatures(bf16=False, vnni=False)):
        for device in ("cpu", "cuda:0"):
            choice = choose_encoder("auto", "auto", device, cpu)
            assert choice.precision in ("fp32", "bf16", "fp16")


@pytest.mark.parametrize(
    ("flags", "bf16"),
    [
        ("fpu sse2 avx2 avx512f avx512_vnni avx512bw", False),  # EPYC Milan / Ice Lake
        ("fpu avx2 avx512f avx512_vnni avx512_bf16", True),  # EPYC Genoa (Zen 4)
        ("fpu avx2 avx512f avx512_bf16 amx_bf16 amx_tile amx_int8", True),  # Sapphire Rapids
        ("fpu sse2 avx avx2 fma", False),  # an older or smaller CPU
    ],
)
def test_the_cpu_kind_is_read_from_its_flags(flags: str, bf16: bool) -> None:
    assert CpuFeatures.from_flags(flags.split()).bf16 is bf16


def test_impossible_combinations_are_refused() -> None:
    with pytest.raises(ModelError, match="fp32"):
        Embedder(backend="onnx", precision="bf16").choice  # noqa: B018
    with pytest.raises(ModelError, match="unknown backend"):
        Embedder(backend="int8")


@pytest.fixture
def without_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    """This process sees a CPU without bf16, whatever it runs on."""
    monkeypatch.setattr(embed_module, "detect_cpu", lambda: WITHOUT_BF16)


def test_a_cpu_without_bf16_indexes_with_the_fused_onnx_export(
    tmp_path: Path, embedder: Embedder, without_bf16: None
) -> None:
    engine = Sift(Settings(index=tmp_path / "index"))
    engine.index_paths([SEEDS])
    manifest = engine.reader.manifest
    assert manifest.encoder is not None
    assert (manifest.encoder.backend, manifest.encoder.precision) == ("onnx", "fp32")
    assert manifest.encoder.graph == "fused"
    assert manifest.encoder.reason == ONNX_REASON
    assert manifest.encoder.cpu == "without bf16"
    assert manifest.encoder.sift_version == sift_version() != "unknown"


def test_the_fused_export_ranks_as_torch_fp32_does(
    tmp_path: Path, embedder: Embedder, without_bf16: None
) -> None:
    """The quality rule for a lossless backend: the same top results on a real index as
    torch fp32, and the same stored vectors."""
    onnx = Sift(Settings(index=tmp_path / "onnx"))
    torch32 = Sift(Settings(index=tmp_path / "torch", backend="torch", precision="fp32"))
    for engine in (onnx, torch32):
        engine.index_paths([SEEDS])
    assert onnx.reader.manifest.encoder.backend == "onnx"  # type: ignore[union-attr]
    assert torch32.reader.manifest.encoder.backend == "torch"  # type: ignore[union-attr]
    for q in QUERIES:
        for mode in ("dense", "hybrid"):
            a = onnx.search(SearchRequest(q=q, k=5, mode=mode)).results
            b = torch32.search(SearchRequest(q=q, k=5, mode=mode)).results
            top_a = [(h.article_id, h.start) for h in a[:3]]
            assert top_a == [(h.article_id, h.start) for h in b[:3]], (q, mode)
    article = "north-korea-casualties.txt"
    ids_a, _, va = onnx.reader.sentence_vectors([article])
    ids_b, _, vb = torch32.reader.sentence_vectors([article])
    assert list(ids_a) == list(ids_b)
    va, vb = (v / np.linalg.norm(v, axis=1, keepdims=True) for v in (va, vb))
    assert (va * vb).sum(axis=1).min() > 0.9999  # as stored: int8 with a scale, each


def test_the_fused_export_keeps_the_vectors_of_real_news(embedder: Embedder) -> None:
    """On 300 BBC News sentences as the index embeds them: cosine to torch fp32 at least
    0.9999 for every one (the export's own check asks 0.999 of four probes)."""
    source = EVAL / "bbc_news" / "bbc_news.jsonl.gz"
    if not source.exists():
        pytest.skip(f"{source} is absent (the evaluation data lives in ../shared/eval)")
    with gzip.open(source, "rt", encoding="utf-8") as handle:
        articles = [json.loads(line) for _, line in zip(range(30), handle, strict=False)]
    texts = [
        embedding_text(a["title"], s.text) for a in articles for s in split_sentences(a["text"])
    ]
    texts = texts[:300]
    reference = Embedder(backend="torch", precision="fp32").encode(texts)
    onnx = Embedder(backend="onnx")
    got = onnx.encode(texts)
    assert onnx.encoder_info().graph == "fused"
    cosines = (reference * got).sum(axis=1)
    assert float(cosines.min()) > 0.9999, float(cosines.min())
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_sift_stats_says_what_made_the_vectors(tmp_path: Path, embedder: Embedder) -> None:
    index = tmp_path / "index"
    sift = [sys.executable, "-m", "sift.cli"]
    env = {**os.environ, "SIFT_BACKEND": "onnx"}
    subprocess.run([*sift, "index", str(SEEDS), "--index", str(index), "-q"], env=env, check=True)
    shown = subprocess.run(
        [*sift, "stats", "--index", str(index), "--json"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    encoder = json.loads(shown.stdout)["encoder"]
    assert encoder["backend"] == "onnx"
    assert encoder["precision"] == "fp32"
    assert encoder["reason"] == "backend=onnx (setting)"
    assert encoder["sift_version"] == sift_version()
    text = subprocess.run(
        [*sift, "stats", "--index", str(index)], capture_output=True, text=True, check=True
    ).stdout
    shown_text = " ".join(text.split())
    assert "onnx fp32" in shown_text and "backend=onnx (setting)" in shown_text


def test_a_manifest_from_before_the_record_still_reads() -> None:
    """Manifests written before the encoder was recorded have none: read as absent."""
    old = {
        "model": {"name": "all-MiniLM-L6-v2", "fingerprint": "ab" * 32, "dimension": 384},
        "splitter": {"name": "sentencex-news", "version": "1"},
    }
    assert Manifest.model_validate(old).encoder is None


def test_a_repeated_text_is_embedded_once_and_shared(embedder: Embedder) -> None:
    texts = ["Bill Thompson is a regular commentator.", "Prices rose.", QUERIES[0]] * 2
    done: list[int] = []
    vectors = embedder.encode(texts, progress=done.append)
    assert sum(done) == len(texts)  # progress counts every row, repeated or not
    assert vectors.shape == (6, embedder.dimension)
    assert np.array_equal(vectors[:3], vectors[3:])
    alone = embedder.encode(["Prices rose."])
    assert float(alone[0] @ vectors[1]) > 0.9999
