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
    INT8_LOSS,
    INT8_REASON,
    ONNX_REASON,
    QUALITY_TOLERANCE,
    CpuFeatures,
    QualityLoss,
    choose_encoder,
)
from sift.index.embed import Embedder, ModelError, sift_version
from sift.index.manifest import Manifest
from sift.index.split import split_sentences
from sift.index.writer import embedding_text
from sift.search.engine import Sift
from sift.search.evaluation import run_reqa
from sift.search.results import SearchRequest
from sift.settings import Settings

from tests.helpers import EVAL, ROOT, SEEDS

WITH_BF16 = CpuFeatures(bf16=True, vnni=True)  # Xeon Sapphire Rapids, AMD Zen 4
WITHOUT_BF16 = CpuFeatures(bf16=False, vnni=True)  # Xeon Cascade Lake and Ice Lake
NEITHER = CpuFeatures(bf16=False, vnni=False)  # AMD EPYC Rome and Milan, older Xeons
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
        ("auto", "auto", "cpu", WITHOUT_BF16, ("onnx", "int8")),
        ("auto", "auto", "cpu", NEITHER, ("onnx", "fp32")),
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
        ("onnx", "auto", "cpu", WITHOUT_BF16, ("onnx", "fp32")),
        ("onnx", "fp32", "cpu", WITHOUT_BF16, ("onnx", "fp32")),
        # int8 runs on the ONNX export, wherever it is asked for
        ("auto", "int8", "cpu", WITH_BF16, ("onnx", "int8")),
        ("onnx", "int8", "cpu", NEITHER, ("onnx", "int8")),
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
    assert choose_encoder("auto", "auto", "cpu", WITHOUT_BF16).reason == INT8_REASON
    assert choose_encoder("auto", "auto", "cpu", NEITHER).reason == ONNX_REASON
    assert "setting" in choose_encoder("onnx", "auto", "cpu", WITH_BF16).reason
    assert "setting" in choose_encoder("auto", "int8", "cpu", WITH_BF16).reason
    assert WITHOUT_BF16.describe() == "without bf16, with VNNI"
    assert NEITHER.describe() == "without bf16 or VNNI"


def test_the_quality_rule_decides_whether_auto_takes_int8() -> None:
    """A lossy backend is taken only while its measured MRR@10 loss, dense and hybrid each,
    stays within the tolerance; the measured int8 loss does (bench/int8_quality.py)."""
    assert INT8_LOSS.within()
    assert choose_encoder("auto", "auto", "cpu", WITHOUT_BF16, INT8_LOSS).precision == "int8"
    over = QUALITY_TOLERANCE + 0.001
    for loss in (QualityLoss(dense=-over, hybrid=0.0), QualityLoss(dense=0.0, hybrid=-over)):
        assert not loss.within()
        choice = choose_encoder("auto", "auto", "cpu", WITHOUT_BF16, loss)
        assert (choice.backend, choice.precision) == ("onnx", "fp32")
    # never on a CPU where it was not measured to win: bf16 CPUs, CPUs without VNNI, CUDA
    for cpu, device in ((WITH_BF16, "cpu"), (NEITHER, "cpu"), (WITHOUT_BF16, "cuda:0")):
        assert choose_encoder("auto", "auto", device, cpu, INT8_LOSS).precision != "int8"


@pytest.mark.parametrize(
    ("flags", "bf16"),
    [
        ("fpu sse2 avx2 avx512f avx512_vnni avx512bw", False),  # Xeon Ice Lake
        ("fpu avx2 avx512f avx512_vnni avx512_bf16", True),  # EPYC Genoa (Zen 4)
        ("fpu avx2 avx512f avx512_bf16 amx_bf16 amx_tile amx_int8", True),  # Sapphire Rapids
        ("fpu sse2 avx avx2 fma", False),  # AMD EPYC Milan, an older or smaller CPU
    ],
)
def test_the_cpu_kind_is_read_from_its_flags(flags: str, bf16: bool) -> None:
    assert CpuFeatures.from_flags(flags.split()).bf16 is bf16
    assert CpuFeatures.from_flags(flags.split()).vnni is ("vnni" in flags)


def test_impossible_combinations_are_refused() -> None:
    with pytest.raises(ModelError, match="fp32"):
        Embedder(backend="onnx", precision="bf16").choice  # noqa: B018
    with pytest.raises(ModelError, match="unknown backend"):
        Embedder(backend="int8")
    with pytest.raises(ModelError, match="int8 runs on the onnx backend"):
        Embedder(backend="torch", precision="int8").choice  # noqa: B018


@pytest.fixture
def without_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    """This process sees a CPU without bf16 or VNNI, whatever it runs on."""
    monkeypatch.setattr(embed_module, "detect_cpu", lambda: NEITHER)


def test_a_cpu_without_bf16_indexes_with_the_fused_onnx_export(
    tmp_path: Path, embedder: Embedder, without_bf16: None
) -> None:
    engine = Sift(Settings(index=tmp_path / "index", backend="auto"))
    engine.index_paths([SEEDS])
    manifest = engine.reader.manifest
    assert manifest.encoder is not None
    assert (manifest.encoder.backend, manifest.encoder.precision) == ("onnx", "fp32")
    assert manifest.encoder.graph == "fused"
    assert manifest.encoder.reason == ONNX_REASON
    assert manifest.encoder.cpu == "without bf16 or VNNI"
    assert manifest.encoder.sift_version == sift_version() != "unknown"


def test_the_fused_export_ranks_as_torch_fp32_does(
    tmp_path: Path, embedder: Embedder, without_bf16: None
) -> None:
    """The quality rule for a lossless backend: the same top results on a real index as
    torch fp32, and the same stored vectors."""
    onnx = Sift(Settings(index=tmp_path / "onnx", backend="auto"))
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


def test_a_cpu_with_vnni_indexes_in_int8_and_keeps_the_ranking(
    tmp_path: Path, embedder: Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without bf16 but with VNNI, `auto` embeds with the int8 export; the index says so, its
    queries are embedded in fp32 as ever, and the seeds' best results are fp32's."""
    monkeypatch.setattr(embed_module, "detect_cpu", lambda: WITHOUT_BF16)
    int8 = Sift(Settings(index=tmp_path / "int8", backend="auto"))
    fp32 = Sift(Settings(index=tmp_path / "fp32", backend="onnx"))
    for engine in (int8, fp32):
        engine.index_paths([SEEDS])
    encoder = int8.reader.manifest.encoder
    assert encoder is not None
    assert (encoder.backend, encoder.precision, encoder.graph) == ("onnx", "int8", "fused")
    assert encoder.reason == INT8_REASON
    assert encoder.cpu == "without bf16, with VNNI"
    assert fp32.reader.manifest.encoder.precision == "fp32"  # type: ignore[union-attr]
    for q in QUERIES:
        for mode in ("dense", "hybrid"):
            a = int8.search(SearchRequest(q=q, k=5, mode=mode)).results
            b = fp32.search(SearchRequest(q=q, k=5, mode=mode)).results
            assert (a[0].article_id, a[0].start) == (b[0].article_id, b[0].start), (q, mode)
    article = "north-korea-casualties.txt"
    ids_a, _, va = int8.reader.sentence_vectors([article])
    ids_b, _, vb = fp32.reader.sentence_vectors([article])
    assert list(ids_a) == list(ids_b)
    va, vb = (v / np.linalg.norm(v, axis=1, keepdims=True) for v in (va, vb))
    cosines = (va * vb).sum(axis=1)
    assert cosines.min() > 0.98 and cosines.mean() > 0.99  # close, and not the same vectors
    assert cosines.min() < 0.9999


def test_int8_keeps_ranking_quality_on_a_squad_slice(tmp_path: Path, embedder: Embedder) -> None:
    """The quality rule on a slice a test can afford (one Wikipedia article a half: 922
    questions over 422 sentences): `sift eval`'s dense and hybrid MRR@10 of an int8 index stay
    near fp32's (measured: +0.0005 and +0.0032). The rule's own figure, on every question, is
    bench/int8_quality.py's."""
    squad = EVAL / "squad_v1.1_dev" / "dev-v1.1.json.gz"
    if not squad.exists():
        pytest.skip(f"{squad} is absent (the evaluation data lives in ../shared/eval)")
    mrr = {}
    for name, settings in {"fp32": {"backend": "onnx"}, "int8": {"precision": "int8"}}.items():
        report = run_reqa(
            squad, tmp_path / name, Settings(**settings), ("dense", "hybrid"), False, None, None, 1
        )
        mrr[name] = {mode: report["modes"][mode]["mrr@10"] for mode in ("dense", "hybrid")}  # type: ignore[index]
    made = Sift(Settings(index=tmp_path / "int8")).reader.manifest.encoder
    assert made is not None and made.precision == "int8"
    for mode in ("dense", "hybrid"):
        assert abs(mrr["int8"][mode] - mrr["fp32"][mode]) <= 0.01, mrr


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


def test_an_int8_model_that_cannot_be_made_falls_back_to_the_fp32_export(
    embedder: Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`auto` chose int8 and quantizing fails: the fp32 export embeds, and the manifest's
    reason says why. Asked for in so many words, int8 is refused with the cause instead."""
    import sift.index.onnx_encoder as onnx_encoder
    from sift.errors import EncoderUnavailable

    def broken(directory: Path) -> Path:
        raise EncoderUnavailable("cannot quantize the ONNX encoder to int8: disk full")

    monkeypatch.setattr(onnx_encoder, "quantize_encoder", broken)
    monkeypatch.setattr(onnx_encoder, "INT8_FILE", "model-int8-missing.onnx")
    chosen = Embedder(cpu=WITHOUT_BF16)
    info = chosen.encoder_info()
    assert (info.backend, info.precision) == ("onnx", "fp32")
    assert info.reason.startswith("int8 unavailable (cannot quantize")
    assert ONNX_REASON in info.reason
    assert chosen.encode(["casualty estimates"]).shape == (1, 384)
    with pytest.raises(ModelError, match="precision int8: cannot quantize"):
        Embedder(precision="int8").encoder_info()
