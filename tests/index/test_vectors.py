"""Vector index types by size: exact below the threshold, IVF with exact re-scoring above it;
`sift optimize` and the automatic rebuild after a commit; micro-batched API searches."""

from __future__ import annotations

import asyncio
import gzip
import json
import shutil
import sqlite3
from pathlib import Path

import faiss
import numpy as np
import pytest
from sift.api.batcher import SearchBatcher
from sift.cli.main import app
from sift.errors import InvalidRequest
from sift.index.embed import Embedder
from sift.index.manifest import Manifest, VectorsInfo
from sift.index.optimize import optimize
from sift.index.records import Article
from sift.index.store import connect, read_manifest
from sift.index.vectors import (
    EXACT_AMONG,
    FLAT,
    IVF,
    build,
    decode_vectors,
    kind_of,
    nearest,
    plan,
    why_rebuild,
)
from sift.search.engine import Sift
from sift.search.results import SearchRequest
from sift.settings import Settings
from typer.testing import CliRunner

from tests.helpers import EVAL

DIM = 384


# -- the index types, on clustered synthetic vectors ------------------------------------------


def clustered(n: int, seed: int = 0) -> np.ndarray:
    """Unit vectors around 200 fixed random centres: structure like sentence embeddings have.
    Another seed draws other points around the same centres."""
    centres = np.random.default_rng(0).normal(size=(200, DIM)).astype(np.float32)
    rng = np.random.default_rng(seed)
    x = centres[rng.integers(0, 200, n)] + rng.normal(0, 0.6, (n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def stored() -> tuple[sqlite3.Connection, np.ndarray]:
    """20,000 vectors in a `sentences` table, ids 1..20000, as build() and nearest() read them."""
    vectors = clustered(20_000)
    conn = sqlite3.connect(":memory:", check_same_thread=False)
    conn.execute("CREATE TABLE sentences (id INTEGER PRIMARY KEY, vector BLOB NOT NULL)")
    conn.executemany(
        "INSERT INTO sentences VALUES (?, ?)", ((i + 1, v.tobytes()) for i, v in enumerate(vectors))
    )
    return conn, vectors


@pytest.fixture(scope="module")
def ivf(stored: tuple[sqlite3.Connection, np.ndarray]) -> tuple[VectorsInfo, faiss.Index]:
    conn, vectors = stored
    info = plan(len(vectors), DIM, threshold=1_000)
    return info, build(conn, DIM, info)


def exact_ids(vectors: np.ndarray, query: np.ndarray, k: int, among: np.ndarray | None = None):
    ids = np.arange(1, len(vectors) + 1) if among is None else np.sort(among)
    scores = vectors[ids - 1] @ query
    return ids[np.argsort(-scores, kind="stable")[:k]]


def overlap(found: np.ndarray, truth: np.ndarray) -> float:
    return len(set(found.tolist()) & set(truth.tolist())) / len(truth)


def test_plan_is_exact_below_the_threshold_and_ivf_above() -> None:
    assert plan(5_000, DIM, threshold=10_000).type == FLAT
    info = plan(1_000_000, DIM, threshold=10_000)
    assert (info.type, info.nlist, info.quantizer) == (IVF, 1024, "PQ96x4fs")
    assert info.factory == "IVF1024,PQ96x4fs" and info.nprobe and info.rescore
    assert (info.trained_on, info.threshold) == (1_000_000, 10_000)


def test_ivf_recall_against_exact(
    stored: tuple[sqlite3.Connection, np.ndarray], ivf: tuple[VectorsInfo, faiss.Index]
) -> None:
    conn, vectors = stored
    info, index = ivf
    assert kind_of(index) == IVF and index.ntotal == len(vectors)
    assert info.nprobe is not None and info.nlist is not None and info.nprobe < info.nlist
    queries = clustered(100, seed=1)
    recalls = []
    for q in queries:
        scores, ids = nearest(index, info, conn, q, 200)
        assert np.all(np.diff(scores) <= 1e-6)  # best first, by exact score
        np.testing.assert_allclose(scores[:10], vectors[ids[:10] - 1] @ q, rtol=1e-5)
        recalls.append(overlap(ids[:10], exact_ids(vectors, q, 10)))
    assert np.mean(recalls) >= 0.9


def test_ivf_filters_and_removal(
    stored: tuple[sqlite3.Connection, np.ndarray], ivf: tuple[VectorsInfo, faiss.Index]
) -> None:
    conn, vectors = stored
    info, index = ivf
    rng = np.random.default_rng(2)
    many = rng.choice(np.arange(1, 20_001), 6_000, replace=False)  # the IVF, with a selector
    few = rng.choice(np.arange(1, 20_001), 50, replace=False)  # exact, from the stored vectors
    assert len(many) > EXACT_AMONG
    recalls = []
    for q in clustered(30, seed=3):
        _, ids = nearest(index, info, conn, q, 50, allowed=many)
        assert set(ids.tolist()) <= set(many.tolist())
        recalls.append(overlap(ids[:10], exact_ids(vectors, q, 10, among=many)))
        _, ids = nearest(index, info, conn, q, 10, allowed=few)
        assert ids.tolist() == exact_ids(vectors, q, 10, among=few).tolist()
    assert np.mean(recalls) >= 0.9

    q = vectors[41]  # sentence 42's own vector: it is its own nearest
    assert nearest(index, info, conn, q, 1)[1].tolist() == [42]
    index.remove_ids(np.array([42], dtype=np.int64))
    assert index.ntotal == len(vectors) - 1
    assert 42 not in nearest(index, info, conn, q, 50)[1].tolist()
    index.add_with_ids(q.reshape(1, -1), np.array([42], dtype=np.int64))
    assert nearest(index, info, conn, q, 1)[1].tolist() == [42]


def test_why_rebuild(
    stored: tuple[sqlite3.Connection, np.ndarray], ivf: tuple[VectorsInfo, faiss.Index]
) -> None:
    _, vectors = stored
    n = len(vectors)
    flat_info = plan(n, DIM, threshold=50_000)
    assert why_rebuild(n, flat_info, 50_000) is None
    small = flat_info.model_copy(update={"threshold": 10_000})
    assert "exceed" in str(why_rebuild(n, small, 10_000))
    info, _ = ivf
    assert why_rebuild(n, info, 1_000) is None
    grown = info.model_copy(update={"trained_on": n // 3})
    assert "retrain" in str(why_rebuild(n, grown, 1_000))
    high = info.model_copy(update={"threshold": 40_000})
    assert "back to exact" in str(why_rebuild(n, high, 40_000))


def test_manifests_of_format_1_without_the_new_fields_still_read() -> None:
    old = {
        "format_version": 1,
        "model": {"name": "m", "fingerprint": "f", "dimension": DIM},
        "splitter": {"name": "s", "version": "1"},
        "vectors": {"type": "flat", "metric": "inner_product", "file": "vectors.3.faiss"},
        "generation": 3,
    }
    manifest = Manifest.model_validate_json(json.dumps(old))
    assert manifest.vectors.type == FLAT and manifest.vectors.nlist is None


# -- a real index: the writer, `sift optimize`, search ---------------------------------------


def bbc(first: int, count: int) -> list[Article]:
    """`count` BBC News articles, every 44th from `first`: all five topics (sources)."""
    path = EVAL / "bbc_news" / "bbc_news.jsonl.gz"
    if not path.exists():
        pytest.skip(f"{path} is absent")
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle][first::44][:count]
    return [
        Article(id=r["id"], title=r["title"], text=r["text"], source=r["category"]) for r in rows
    ]


@pytest.fixture(scope="module")
def bbc_dir(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Path:
    """50 BBC News articles (~900 sentences), exact; tests copy it before writing."""
    directory = tmp_path_factory.mktemp("bbc") / "index"
    summary = Sift(Settings(index=directory)).index_articles(bbc(0, 50))
    assert not summary.failed
    return directory


@pytest.fixture
def bbc_copy(bbc_dir: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "index"
    shutil.copytree(bbc_dir, copy)
    return copy


def manifest_of(directory: Path) -> Manifest:
    conn = connect(directory)
    manifest = read_manifest(conn)
    conn.close()
    assert manifest is not None
    on_disk = Manifest.model_validate_json((directory / "manifest.json").read_text())
    assert on_disk == manifest
    return manifest


def stored_vectors_of(directory: Path) -> tuple[np.ndarray, np.ndarray]:
    conn = connect(directory)
    rows = conn.execute("SELECT id, vector FROM sentences ORDER BY id").fetchall()
    conn.close()
    ids = np.array([r[0] for r in rows], dtype=np.int64)
    return ids, decode_vectors([r[1] for r in rows], DIM)


def test_optimize_records_its_parameters_and_search_stays_exact_enough(
    bbc_copy: Path, embedder: Embedder
) -> None:
    before = manifest_of(bbc_copy)
    assert before.vectors.type == FLAT
    report = optimize(bbc_copy, threshold=200)
    after = manifest_of(bbc_copy)
    n = after.counts.sentences
    assert report.reason and report.after == after.vectors
    assert after.generation == before.generation + 1
    info = after.vectors
    assert (info.type, info.threshold, info.trained_on) == (IVF, 200, n)
    assert info.nlist and info.nprobe and info.quantizer and info.rescore and info.train_sample
    assert info.file == f"vectors.{after.generation}.faiss" and (bbc_copy / info.file).exists()
    assert info.covers == int(stored_vectors_of(bbc_copy)[0].max())
    assert optimize(bbc_copy).reason is None  # it suits its size now: nothing to do

    engine = Sift(Settings(index=bbc_copy))
    assert engine.reader.vectors.kind == IVF
    ids, vectors = stored_vectors_of(bbc_copy)
    queries = ["oil prices rise", "mobile phone sales", "football transfer", "election campaign"]
    for query, q in zip(queries, embedder.encode(queries), strict=True):
        truth = ids[np.argsort(-(vectors @ q), kind="stable")[:10]]
        assert overlap(engine.reader.nearest(q, 200)[1][:10], truth) >= 0.9
        assert engine.search(SearchRequest(q=query, k=5)).results


def test_removal_update_and_filters_on_ivf(bbc_copy: Path) -> None:
    optimize(bbc_copy, threshold=200)
    engine = Sift(Settings(index=bbc_copy))
    gone = "business/001"
    gone_ids = set(engine.reader.allowed_sentences(_only(gone)).tolist())
    engine.remove([gone])
    assert engine.reader.vectors.kind == IVF
    # Removed from the rows at once; from the IVF in memory at the next merge (never found).
    assert manifest_of(bbc_copy).counts.sentences == len(stored_vectors_of(bbc_copy)[0])
    hits = engine.search(SearchRequest(q="Time Warner profits", k=20, mode="dense", per_article=5))
    assert all(h.article_id != gone for h in hits.results)
    assert not gone_ids & set(
        engine.reader.nearest(_vector(engine, "Time Warner"), 500)[1].tolist()
    )

    changed = bbc(0, 2)[1].id
    updated = Article(id=changed, title="Dollar", text="The dollar fell sharply today.")
    engine.index_articles([updated])
    hits = engine.search(SearchRequest(q="dollar fell", k=3, mode="dense"))
    assert hits.results[0].article_id == changed
    assert hits.results[0].sentence == "The dollar fell sharply today."

    one = bbc(0, 3)[2].id
    only = engine.search(SearchRequest(q="profits", k=10, ids=[one]))
    assert {h.article_id for h in only.results} == {one}
    sport = engine.search(SearchRequest(q="profits", k=10, mode="dense", source=["sport"]))
    assert sport.results and all(h.source == "sport" for h in sport.results)


def test_commits_switch_the_index_type_by_size(bbc_copy: Path) -> None:
    n = manifest_of(bbc_copy).counts.sentences
    optimize(bbc_copy, threshold=n + 5)  # still exact, with a threshold just above its size
    assert manifest_of(bbc_copy).vectors.type == FLAT
    engine = Sift(Settings(index=bbc_copy))
    engine.index_articles(bbc(50, 3))  # crosses it: a merge in the background builds an IVF
    engine.wait_for_merges()
    info = manifest_of(bbc_copy).vectors
    assert (info.type, info.threshold) == (IVF, n + 5)
    assert engine.reader.vectors.kind == IVF
    engine.remove([a.id for a in bbc(0, 30) if a.id])  # below half the threshold: exact again
    engine.wait_for_merges()
    assert manifest_of(bbc_copy).vectors.type == FLAT
    assert engine.reader.vectors.kind == FLAT
    assert engine.search(SearchRequest(q="film awards", k=3)).results


def test_sift_optimize_command(bbc_copy: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(
        app, ["optimize", "--index", str(bbc_copy), "--exact-max", "200", "--json"]
    )
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["rebuilt"] and report["after"]["type"] == IVF
    result = runner.invoke(app, ["optimize", "--index", str(bbc_copy)])
    assert result.exit_code == 0 and "suits" in result.stdout
    result = runner.invoke(app, ["search", "oil prices", "--index", str(bbc_copy), "--json"])
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["results"]
    missing = runner.invoke(app, ["optimize", "--index", str(bbc_copy.parent / "none")])
    assert missing.exit_code == 2


def _only(article_id: str):  # type: ignore[no-untyped-def]
    return SearchRequest(q="x", ids=[article_id]).article_filter()


def _vector(engine: Sift, text: str) -> np.ndarray:
    return engine.embedder.encode([text])[0]


# -- micro-batching ---------------------------------------------------------------------------


def test_batched_searches_equal_direct_ones(seeded: Sift, monkeypatch: pytest.MonkeyPatch) -> None:
    texts = ["casualty estimates", "treaty", "Kursk fighting", "North Korea troops", "drones"]
    requests = [
        SearchRequest(q=t, mode=m, k=k)
        for t in texts
        for m in ("hybrid", "dense", "keyword")
        for k in (3, 5)
    ]
    bad = SearchRequest(q="treaty", k=seeded.settings.max_k + 1)
    sizes: list[int] = []
    search_batch = seeded.search_batch

    def recording(batch: list[SearchRequest]):  # type: ignore[no-untyped-def]
        sizes.append(len(batch))
        return search_batch(batch)

    monkeypatch.setattr(seeded, "search_batch", recording)
    batcher = SearchBatcher(seeded)

    async def all_at_once() -> list[object]:
        return await asyncio.gather(
            *(batcher.search(r) for r in [*requests, bad]), return_exceptions=True
        )

    answers = asyncio.run(all_at_once())
    assert isinstance(answers[-1], InvalidRequest)  # it fails alone
    assert max(sizes) > 1  # some searches did share a model call
    for request, answer in zip(requests, answers, strict=False):
        direct = seeded.search(request)
        assert [h.model_dump(exclude={"score"}) for h in answer.results] == [  # type: ignore[union-attr]
            h.model_dump(exclude={"score"}) for h in direct.results
        ]
        assert [h.score for h in answer.results] == pytest.approx(
            [h.score for h in direct.results], abs=1e-3
        )  # type: ignore[union-attr]
