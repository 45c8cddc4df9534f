"""Reading runs ahead of the model on its own thread, in bounded memory, and an error while
reading stops the run without touching what is indexed."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sift.index.embed import Embedder
from sift.index.pipeline import DEPTH, read_ahead
from sift.index.recipe import embedding_text
from sift.index.records import Article, Failure
from sift.search.engine import Sift
from sift.search.results import SearchRequest
from sift.settings import Settings

from tests.helpers import SEEDS


def articles(count: int, pulled: list[int]) -> Iterator[Article | Failure]:
    for i in range(count):
        pulled.append(i)
        yield Article(id=f"a{i}", title=f"Article {i}", text=f"Sentence one of {i}. And two.")


def test_reading_runs_ahead_but_only_so_far() -> None:
    pulled: list[int] = []
    stream = read_ahead(articles(10_000, pulled))
    first = next(stream)
    assert first.item.id == "a0" and [s.text for s in first.sentences or []] == [
        "Sentence one of 0.",
        "And two.",
    ]
    time.sleep(0.3)  # the reader fills its queue meanwhile, and then waits
    assert DEPTH <= len(pulled) <= DEPTH + 3
    stream.close()  # the consumer stops: so does the reader thread
    assert not [t for t in threading.enumerate() if t.name == "sift-read-ahead"]


def test_everything_arrives_in_order_with_failures() -> None:
    def mixed() -> Iterator[Article | Failure]:
        for i in range(500):
            yield Failure(f"bad{i}", "unreadable") if i % 7 == 0 else Article(id=str(i), text="x.")

    got = list(read_ahead(mixed()))
    names = [p.item.where if isinstance(p.item, Failure) else p.item.id for p in got]
    assert names == [f"bad{i}" if i % 7 == 0 else str(i) for i in range(500)]
    assert all((p.sentences is None) == isinstance(p.item, Failure) for p in got)


def test_an_error_while_reading_stops_the_run_and_loses_nothing(tmp_path: Path) -> None:
    settings = Settings(index=tmp_path / "index")
    engine = Sift(settings)
    engine.index_paths([SEEDS])
    before = engine.stats()

    def broken() -> Iterator[Article | Failure]:
        yield Article(id="new-1", text="A new article that will not be kept. It has two sentences.")
        raise OSError("the disk went away")

    with pytest.raises(OSError, match="disk went away"):
        engine.index_articles(broken())
    after = Sift(settings)
    assert after.stats().articles == before.articles
    assert after.article("new-1") is None
    hits = after.search(SearchRequest(q="casualty estimates", k=1)).results
    assert hits[0].article_id == "north-korea-casualties.txt"


def test_the_gpu_feeding_path_embeds_as_encode_does() -> None:
    """On CUDA, `encode` tokenises the next batch on a thread while the model runs (no GPU
    here: the same code runs on the CPU, and must give the same vectors as torch's `encode`)."""
    embedder = Embedder(backend="torch", precision="fp32")
    texts = [p.read_text(encoding="utf-8") for p in sorted(SEEDS.glob("*.txt"))]
    texts = [line for text in texts for line in text.splitlines() if line.strip()]
    texts += ["short", "a somewhat longer sentence, to be padded against the short one"]
    plain = embedder.encode(texts)
    overlapped = embedder.encode_overlapped(texts, batch_size=4)
    assert overlapped.shape == plain.shape
    assert (plain * overlapped).sum(axis=1).min() > 0.9999


def test_indexing_with_the_onnx_backend(tmp_path: Path, embedder: Embedder) -> None:
    """The ONNX backend indexes the same vectors as torch (fp32), so the same answers."""
    engine = Sift(Settings(index=tmp_path / "index", backend="onnx"))
    engine.index_paths([SEEDS])
    assert engine.embedder.backend == "onnx"
    hits = engine.search(SearchRequest(q="casualty estimates", k=3)).results
    assert hits[0].article_id == "north-korea-casualties.txt"
    ids, _, stored = engine.reader.sentence_vectors(["north-korea-casualties.txt"])
    texts = [engine.reader.sentences(ids)[i] for i in ids]
    title = engine.article("north-korea-casualties.txt").title  # type: ignore[union-attr]
    torch = Embedder(precision="fp32", backend="torch").encode(
        [embedding_text(title, t.text) for t in texts]
    )
    assert (stored * torch).sum(axis=1).min() > 0.999
