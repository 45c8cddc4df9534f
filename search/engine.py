"""The one object the CLI and the API talk to: search, index, remove, show, stats."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from sift.errors import InvalidRequest, ReadOnly, StoreError
from sift.index.embed import Embedder, embedder_for
from sift.index.ingest import IngestTally, article_or_failure, read_inputs, within_limits
from sift.index.manifest import FORMAT_VERSION, Manifest
from sift.index.records import Article, Failure
from sift.index.store import connect, read_manifest
from sift.index.writer import IndexSummary, IndexWriter, check_model
from sift.search.encoders import (
    QueryEncoder,
    choose_query_encoder,
    prepare_query_encoder,
    query_encoder_ready,
)
from sift.search.filters import ArticleFilter
from sift.search.passages import build_hits, select
from sift.search.ranking import rank_articles, rank_sentences
from sift.search.reader import IndexReader
from sift.search.results import (
    ArticleHit,
    ArticleView,
    Hit,
    IndexStats,
    SearchRequest,
    SearchResponse,
)
from sift.settings import Settings


def _response(
    request: SearchRequest, hits: list[Hit], articles: list[ArticleHit] | None = None
) -> SearchResponse:
    """took_ms is filled in by the caller, which times the whole answer."""
    return SearchResponse(
        query=request.q,
        k=request.k,
        offset=request.offset,
        mode=request.mode,
        took_ms=0.0,
        results=hits,
        articles=articles,
    )


def _spread(
    reader: IndexReader, candidates: list[int], per_article: int, context: int
) -> dict[str, list[int]]:
    """Each article's best sentences, in order, skipping any whose passage would overlap one
    already taken: an article's passages should show different parts of it."""
    rows = reader.sentences(candidates)
    best: dict[str, list[int]] = {}
    taken: dict[str, list[int]] = {}
    for sid in candidates:
        row = rows.get(sid)
        if row is None or len(best.get(row.article_id, [])) >= per_article:
            continue
        positions = taken.setdefault(row.article_id, [])
        if any(abs(row.position - p) <= 2 * context for p in positions):
            continue
        positions.append(row.position)
        best.setdefault(row.article_id, []).append(sid)
    return best


class Sift:
    """sift over one index directory. The model loads once, on first need; so does the index."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.directory = settings.index
        self._embedder: Embedder | None = None
        self._query_encoder: QueryEncoder | None = None
        self._queries_ready = False
        self._query_lock = threading.Lock()
        self._reader: IndexReader | None = None
        self._write_lock = threading.Lock()
        self._open_lock = threading.Lock()

    # -- opening --------------------------------------------------------------------------------

    def _stored_manifest(self) -> Manifest | None:
        if not (self.directory / "sift.db").exists():
            return None
        conn = connect(self.directory)
        try:
            return read_manifest(conn)
        finally:
            conn.close()

    @property
    def embedder(self) -> Embedder:
        with self._open_lock:
            if self._embedder is None:
                manifest = self._stored_manifest()
                self._check_format(manifest)
                wanted = self.settings.model
                # An index remembers its model: with none configured, use that one.
                model = wanted or (manifest.model.name if manifest else None)
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
            prepare_query_encoder(self.embedder, self.settings.cache_dir)
            self._queries_ready = True  # exported, or the model keeps torch: nothing more to do

    def _check_format(self, manifest: Manifest | None) -> None:
        if manifest is not None and manifest.format_version > FORMAT_VERSION:
            raise StoreError(
                f"index {self.directory} has format version {manifest.format_version}; this "
                f"sift reads up to {FORMAT_VERSION}: upgrade sift"
            )

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
            queries = list(dict.fromkeys(r.q for r in needs_vector))
            vectors = dict(zip(queries, encoder.encode(queries), strict=True))
            embed_ms = (time.perf_counter() - started) * 1000 / len(requests)
        else:
            embed_ms = 0.0
        responses = []
        for request in requests:
            started = time.perf_counter()
            with reader.snapshot():
                response = self._answer(reader, request, vectors.get(request.q))
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

    def _answer(
        self, reader: IndexReader, request: SearchRequest, vector: np.ndarray | None
    ) -> SearchResponse:
        flt = request.article_filter()
        settings = self.settings
        want = request.offset + request.k
        collapse = settings.collapse_similarity if request.collapse else None
        if request.group == "article":
            return self._answer_articles(reader, request, vector, flt)
        # Hybrid looks at a fixed depth, so pages of one query never disagree; dense and
        # keyword orders do not change with depth, so they may look as deep as a page needs.
        depth = settings.candidates if request.mode == "hybrid" else max(settings.candidates, want)
        while True:
            ranking = rank_sentences(reader, settings, request.q, vector, request.mode, flt, depth)
            chosen = select(
                reader, ranking.ids, ranking.scores, want, request.per_article, collapse
            )
            # The per-article cap and the collapse can leave a page short: look deeper while
            # a deeper look can find more (dense and keyword orders do not change with depth).
            if len(chosen) >= want or ranking.exhaustive or request.mode == "hybrid":
                break
            depth *= 4
        page = chosen[request.offset : want]
        return _response(request, build_hits(reader, page, request.context, request.offset + 1))

    def _answer_articles(
        self,
        reader: IndexReader,
        request: SearchRequest,
        vector: np.ndarray | None,
        flt: ArticleFilter,
    ) -> SearchResponse:
        settings = self.settings
        depth = max(settings.candidates, (request.offset + request.k) * 10)
        ranking = rank_sentences(
            reader,
            settings,
            request.q,
            vector,
            request.mode,
            flt,
            depth,
            articles=request.mode != "dense",
        )
        owner = reader.article_of(ranking.ids)
        ordered = rank_articles(ranking, owner, settings)
        page = ordered[request.offset : request.offset + request.k]
        wanted = {a for a, _ in page}
        candidates = [sid for sid in ranking.ids if owner.get(sid) in wanted]
        # Articles found by their own text alone: their sentences by the query vector.
        found = {owner[sid] for sid in candidates}
        if missing := [a for a in wanted if a not in found]:
            ids, _, vectors = reader.sentence_vectors(missing)
            order = np.argsort(-(vectors @ vector)) if vector is not None else range(len(ids))
            candidates += [ids[i] for i in order]
        best = _spread(reader, candidates, request.per_article, request.context)
        heads = reader.heads(wanted)
        results = []
        for rank, (article_id, score) in enumerate(page, request.offset + 1):
            mine = best.get(article_id, [])
            chosen = select(
                reader,
                mine,
                {i: ranking.scores.get(i, 0.0) for i in mine},
                request.per_article,
                request.per_article,
                None,
            )
            head = heads[article_id]
            results.append(
                ArticleHit(
                    rank=rank,
                    score=round(score, 4),
                    article_id=article_id,
                    title=head.title,
                    source=head.source,
                    url=head.url,
                    published=head.published,
                    passages=build_hits(reader, chosen, request.context),
                )
            )
        return _response(request, [], results)

    def article(self, article_id: str) -> ArticleView | None:
        return self.reader.article(article_id)

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
        """Read, split and embed on a Ray cluster; commit here, as a local run does."""
        from sift.index.cluster import check_address, import_ray, session, stream

        address = check_address(self.settings.ray_address or "")
        import_ray()  # before the model loads: without Ray, say how to install it
        embedder = self.embedder
        with session(address) as ray:
            items = stream(ray, paths, self.settings, embedder, tally)
            return self._write(lambda w: w.add(items, on_article, on_embedded))

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
        return self.index_articles(_as_article(item) for item in given)

    def remove(self, article_ids: str | Iterable[str]) -> IndexSummary:
        """Remove articles (and their sentences and vectors) by id."""
        ids = [article_ids] if isinstance(article_ids, str) else article_ids
        return self._write(lambda w: w.remove(ids))

    def _write(self, stage: Callable[[IndexWriter], IndexSummary]) -> IndexSummary:
        settings = self.settings
        if settings.read_only:
            raise ReadOnly(
                f"index {self.directory} is served read-only: write to the primary index "
                "and take a new snapshot (sift snapshot)"
            )
        with (
            self._write_lock,
            IndexWriter(
                self.directory,
                self.embedder,
                settings.commit_every,
                settings.commit_seconds,
                settings.write_wait or 0.0,
            ) as writer,
        ):
            stage(writer)
            summary = writer.commit()
        if self._reader is not None:
            self._reader.refresh()
        return summary

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()

    def __enter__(self) -> Sift:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _as_article(item: Article | Mapping[str, Any]) -> Article | Failure:
    if isinstance(item, Article):
        return item
    where = str(item.get("id") or item.get("title") or "article")
    return article_or_failure(lambda: Article.from_mapping(dict(item)), where)
