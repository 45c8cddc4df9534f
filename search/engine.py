"""The one object the CLI and the API talk to: search, index, remove, show, stats."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from sift.errors import DiskFull, InvalidRequest, ReadOnly, SiftError, out_of_room
from sift.index.embed import Embedder, SentenceEncoder, embedder_for
from sift.index.ingest import IngestTally, article_or_failure, read_inputs, within_limits
from sift.index.manifest import DATABASE_FILE, Manifest
from sift.index.merging import BackgroundMerges
from sift.index.pipeline import Prepared
from sift.index.recipe import embedding_text
from sift.index.records import Article, Failure
from sift.index.split import split_sentences
from sift.index.store import connect, stored_manifest
from sift.index.upkeep import refuse_newer
from sift.index.writer import IndexSummary, IndexWriter, check_model, embeds
from sift.search.answer import answer
from sift.search.encoders import (
    QueryEncoder,
    QueryVectors,
    choose_query_encoder,
    prepare_query_encoder,
    query_encoder_ready,
)
from sift.search.reader import IndexReader
from sift.search.results import (
    ArticleView,
    IndexStats,
    SearchRequest,
    SearchResponse,
    SimilarResponse,
)
from sift.search.similar import similar_articles
from sift.settings import Settings


class Sift:
    """sift over one index directory. The model loads once, on first need; so does the index."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.directory = settings.index
        self._embedder: Embedder | None = None
        self._query_encoder: QueryEncoder | None = None
        self._query_vectors = QueryVectors()
        self._queries_ready = False
        self._query_lock = threading.Lock()
        self._reader: IndexReader | None = None
        self._write_lock = threading.Lock()
        self._merges = (
            BackgroundMerges(self.directory, settings.merge_min, self._write_lock)
            if settings.merges == "background"
            else None
        )
        self._open_lock = threading.Lock()

    # -- opening --------------------------------------------------------------------------------

    def _model_to_write(self) -> tuple[str | None, Manifest | None]:
        """The model that embeds for this index (None: the default) and its stored manifest.
        An index remembers its model: with none configured, that one."""
        manifest = stored_manifest(self.directory)
        self._check_format(manifest)
        return self.settings.model or (manifest.model.name if manifest else None), manifest

    @property
    def embedder(self) -> Embedder:
        with self._open_lock:
            if self._embedder is None:
                model, manifest = self._model_to_write()
                embedder = embedder_for(self.settings, model)
                if manifest is not None:
                    check_model(manifest, embedder, self.directory)
                self._embedder = embedder
            return self._embedder

    @property
    def query_encoder(self) -> QueryEncoder:
        """What embeds queries: the ONNX export of the index's model where it serves, else the
        embedder (the index must exist)."""
        with self._query_lock:
            if self._query_encoder is None:
                manifest = self.reader.manifest
                self._query_encoder = choose_query_encoder(
                    self.settings, manifest, lambda: self.embedder
                )
            return self._query_encoder

    def queries_ready(self) -> bool:
        """True when the first search needs no export of the model first (prepare_queries).
        Once true it stays true for this engine: a server asks after every write."""
        if not self._queries_ready:
            self._queries_ready = query_encoder_ready(self.settings, self.reader.manifest)
        return self._queries_ready

    def prepare_queries(self) -> None:
        """Export the index's model for queries now, if that is still to do (once per model and
        machine, a few seconds): the first search then starts fast. Never raises for a model
        that does not export; that model keeps torch for its queries."""
        if not self.queries_ready():
            prepare_query_encoder(self.embedder)
            self._queries_ready = True  # exported, or the model keeps torch: nothing more to do

    def _check_format(self, manifest: Manifest | None) -> None:
        if manifest is not None:
            refuse_newer(self.directory, manifest)

    @property
    def reader(self) -> IndexReader:
        if self._reader is None:
            with self._open_lock:
                if self._reader is None:
                    if not (self.directory / "sift.db").exists():
                        connect(self.directory)  # raises IndexNotFound with the fix in it
                    reader = IndexReader(self.directory)
                    self._check_format(reader.manifest)
                    self._reader = reader
        else:
            self._reader.refresh()
        return self._reader

    def warm_up(self) -> None:
        """Load the index and the model now (a server does this before taking requests)."""
        _ = self.reader
        self.query_encoder.encode(["warm up"])

    # -- reading --------------------------------------------------------------------------------

    def search(self, query: str | SearchRequest, /, **options: Any) -> SearchResponse:
        """The best passages for `query`: plain words, with `options` as in SearchRequest
        (k, mode, context, source, since, ...), or a whole SearchRequest."""
        request = query if isinstance(query, SearchRequest) else SearchRequest(q=query, **options)
        return self.search_batch([request])[0]

    def search_batch(self, requests: list[SearchRequest]) -> list[SearchResponse]:
        """Answer several searches with one model call for all their queries."""
        for request in requests:
            self._check_limits(request)
        reader = self.reader
        needs_vector = [r for r in requests if r.mode != "keyword"]
        vectors: dict[str, np.ndarray] = {}
        if needs_vector:
            encoder = self.query_encoder
            encoder.load()  # loading the model is start-up, not query time
            started = time.perf_counter()
            queries = list(dict.fromkeys(r.parsed().text for r in needs_vector))
            vectors = self._query_vectors.encode(encoder, queries)
            embed_ms = (time.perf_counter() - started) * 1000 / len(requests)
        else:
            embed_ms = 0.0
        responses = []
        for request in requests:
            started = time.perf_counter()
            with reader.snapshot():
                response = answer(
                    reader, self.settings, request, vectors.get(request.parsed().text)
                )
            response.took_ms = round((time.perf_counter() - started) * 1000 + embed_ms, 2)
            responses.append(response)
        return responses

    def _check_limits(self, request: SearchRequest) -> None:
        s = self.settings
        if request.k > s.max_k:
            raise InvalidRequest(f"k must be between 1 and {s.max_k}, got {request.k}")
        if request.offset + request.k > s.max_k * 10:
            raise InvalidRequest(f"offset + k must be at most {s.max_k * 10}")
        if request.context > s.max_context:
            raise InvalidRequest(f"context must be between 0 and {s.max_context}")
        if len(request.q) > s.max_query_chars:
            raise InvalidRequest(f"query is longer than {s.max_query_chars} characters")

    def article(self, article_id: str) -> ArticleView | None:
        return self.reader.article(article_id)

    def similar(
        self, article_id: str, k: int = 10, context: int = 1, per_article: int = 2
    ) -> SimilarResponse | None:
        """The articles nearest one article, with the passages that tie them; None when
        there is no article with that id."""
        s = self.settings
        if k > s.max_k:
            raise InvalidRequest(f"k must be between 1 and {s.max_k}, got {k}")
        if context > s.max_context:
            raise InvalidRequest(f"context must be between 0 and {s.max_context}")
        started = time.perf_counter()
        reader = self.reader
        with reader.snapshot():
            response = similar_articles(
                reader, article_id, k, context, per_article, s.collapse_similarity
            )
        if response is not None:
            response.took_ms = round((time.perf_counter() - started) * 1000, 2)
        return response

    def stats(self) -> IndexStats:
        return self.reader.stats()

    # -- writing --------------------------------------------------------------------------------

    def index_paths(
        self,
        paths: Iterable[Path],
        on_article: Callable[[str], None] | None = None,
        on_embedded: Callable[[int], None] | None = None,
        tally: IngestTally | None = None,
    ) -> IndexSummary:
        if self.settings.ray_address:
            return self._index_on_ray(list(paths), on_article, on_embedded, tally)
        items = self._within_limits(read_inputs(paths, tally))
        return self._write(lambda w: w.add(items, on_article, on_embedded))

    def _index_on_ray(
        self,
        paths: list[Path],
        on_article: Callable[[str], None] | None,
        on_embedded: Callable[[int], None] | None,
        tally: IngestTally | None,
    ) -> IndexSummary:
        """Read, split and embed on a Ray cluster; commit here, as a local run does. The model
        loads on the actors only: they say what they embed with (index/cluster.py)."""
        from sift.index.cluster import check_address, import_ray, session, stream

        address = check_address(self.settings.ray_address or "")
        import_ray()  # without Ray, say how to install it
        self._refuse_read_only()
        model, manifest = self._model_to_write()
        with session(address) as ray:
            encoder, items = stream(ray, paths, self.settings, model, lambda: self.embedder, tally)
            if encoder is None and manifest is not None:
                return IndexSummary()  # nothing came back: nothing to write, no model to load
            return self._write(lambda w: w.add(items, on_article, on_embedded), encoder)

    def index_articles(self, articles: Iterable[Article | Failure]) -> IndexSummary:
        return self._write(lambda w: w.add(self._within_limits(articles)))

    def _within_limits(self, items: Iterable[Article | Failure]) -> Iterator[Article | Failure]:
        return within_limits(items, self.settings.max_article_chars)

    def add(
        self, articles: Article | Mapping[str, Any] | Iterable[Article | Mapping[str, Any]]
    ) -> IndexSummary:
        """Index articles given as Article objects or mappings with at least a text (fields as
        in a JSON article). New ones are added, changed ones replaced, the same ones skipped;
        an article that cannot be used is listed in `failed`, and the rest is indexed."""
        given = [articles] if isinstance(articles, Article | Mapping) else list(articles)
        self._refuse_read_only()
        items = list(self._within_limits(_as_article(item) for item in given))
        ready = self._embedded_ahead(items)  # before the write lock: writers wait less
        return self._write(lambda w: w.add(ready))

    def _refuse_read_only(self) -> None:
        if self.settings.read_only:
            raise ReadOnly(
                f"index {self.directory} is served read-only: write to the primary index "
                "and take a new snapshot (sift snapshot)"
            )

    def _embedded_ahead(self, items: list[Article | Failure]) -> list[Article | Failure | Prepared]:
        """The new and changed articles of a small write split and embedded now, outside the
        write lock, so that concurrent writers (threads, `--workers`) hold it for the storing
        alone. Unchanged articles and copies of stored text are left to the writer, which
        embeds nothing for them; a large write streams through the writer as before."""
        items = [i.with_default_id() if isinstance(i, Article) else i for i in items]
        articles = [a for a in items if isinstance(a, Article)]
        if not articles or sum(len(a.text) for a in articles) > EMBED_AHEAD_CHARS:
            return list(items)
        if (self.directory / DATABASE_FILE).exists():
            conn = connect(self.directory)
            try:
                articles = [a for a in articles if embeds(conn, a)]
            finally:
                conn.close()
        todo = [(a, found) for a in articles if (found := split_sentences(a.text))]
        texts = [embedding_text(a.title, s.text) for a, found in todo for s in found]
        if not texts:
            return list(items)
        vectors = self.embedder.encode(texts)
        ready: dict[str, Prepared] = {}
        start = 0
        for article, found in todo:
            ready[str(article.id)] = Prepared(article, found, vectors[start : start + len(found)])
            start += len(found)
        return [ready.get(str(a.id), a) if isinstance(a, Article) else a for a in items]

    def remove(self, article_ids: str | Iterable[str]) -> IndexSummary:
        """Remove articles (and their sentences and vectors) by id."""
        ids = [article_ids] if isinstance(article_ids, str) else article_ids
        return self._write(lambda w: w.remove(ids))

    def _write(
        self,
        stage: Callable[[IndexWriter], IndexSummary],
        encoder: SentenceEncoder | None = None,
    ) -> IndexSummary:
        """Run `stage` in one writer, embedding with `encoder` (default: this process's)."""
        settings = self.settings
        self._refuse_read_only()
        try:
            with (
                self._write_lock,
                IndexWriter(
                    self.directory,
                    encoder or self.embedder,
                    settings.commit_every,
                    settings.commit_seconds,
                    settings.write_wait or 0.0,
                    settings.merge_min,
                    self._merges,
                ) as writer,
            ):
                stage(writer)
                summary = writer.commit()
        except (OSError, sqlite3.Error, ValueError, RuntimeError) as exc:
            if isinstance(exc, SiftError) or not out_of_room(exc):
                raise
            raise DiskFull(
                f"out of space while writing to {self.directory} ({exc}): the index keeps its "
                "last commit; free some space and run again (what was committed is skipped)"
            ) from exc
        if self._reader is not None:
            self._reader.refresh()
        return summary

    def merging(self) -> bool:
        """True while a merge of the vectors is under way or waits to be installed."""
        return self._merges is not None and self._merges.busy()

    def wait_for_merges(self) -> None:
        """Until a merge of the vectors that a write started is built and installed (a merge
        left unfinished is harmless: the next write starts it again)."""
        if self._merges is not None:
            self._merges.wait()

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()

    def __enter__(self) -> Sift:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


#: A write of at most this much text is embedded before the write lock is taken.
EMBED_AHEAD_CHARS = 200_000


def _as_article(item: Article | Mapping[str, Any]) -> Article | Failure:
    if isinstance(item, Article):
        return item
    where = str(item.get("id") or item.get("title") or "article")
    return article_or_failure(lambda: Article.from_mapping(dict(item)), where)
