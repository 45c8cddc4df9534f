"""The one object the CLI and the API talk to: search, index, remove, show, stats."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from index.embed import Embedder
from index.ingest import IngestTally, read_inputs
from index.manifest import FORMAT_VERSION, Manifest
from index.records import Article, Failure
from index.settings import Settings
from index.store import StoreError, connect, read_manifest
from index.writer import IndexSummary, IndexWriter, check_model
from search.reader import IndexReader, SentenceRow
from search.results import ArticleView, Hit, IndexStats, SearchRequest, SearchResponse


class InvalidRequest(ValueError):
    """A request outside what the settings allow; the message says which limit."""


class Sift:
    """sift over one index directory. The model loads once, on first need; so does the index."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.directory = Path(settings.index).expanduser()
        self._embedder: Embedder | None = None
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
                embedder = Embedder(
                    model,
                    device=self.settings.device,
                    batch_size=self.settings.batch_size,
                    precision=self.settings.precision,
                )
                if manifest is not None:
                    check_model(manifest, embedder, self.directory)
                self._embedder = embedder
            return self._embedder

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
        self.embedder.encode(["warm up"])

    # -- reading --------------------------------------------------------------------------------

    def search(self, request: SearchRequest) -> SearchResponse:
        self._check_limits(request)
        reader = self.reader
        embedder = self.embedder
        _ = embedder.model  # loading the model is start-up, not query time
        started = time.perf_counter()
        query = embedder.encode([request.q])[0]
        hits = self._rank(reader, query, request)
        took = (time.perf_counter() - started) * 1000
        return SearchResponse(query=request.q, k=request.k, took_ms=round(took, 2), results=hits)

    def _check_limits(self, request: SearchRequest) -> None:
        s = self.settings
        if request.k > s.max_k:
            raise InvalidRequest(f"k must be between 1 and {s.max_k}, got {request.k}")
        if request.context > s.max_context:
            raise InvalidRequest(f"context must be between 0 and {s.max_context}")
        if len(request.q) > s.max_query_chars:
            raise InvalidRequest(f"query is longer than {s.max_query_chars} characters")

    def _rank(self, reader: IndexReader, query, request: SearchRequest) -> list[Hit]:  # type: ignore[no-untyped-def]
        total = reader.vectors.ntotal
        fetch = min(total, request.k * 4 + 20)
        while True:
            scores, ids = reader.nearest(query, fetch)
            rows = reader.sentences([int(i) for i in ids])
            chosen: list[tuple[float, SentenceRow]] = []
            per_article: dict[str, int] = {}
            for score, sid in zip(scores, ids, strict=True):
                row = rows.get(int(sid))
                if row is None:  # a vector whose row a newer commit removed
                    continue
                if per_article.get(row.article_id, 0) >= request.per_article:
                    continue
                per_article[row.article_id] = per_article.get(row.article_id, 0) + 1
                chosen.append((float(score), row))
                if len(chosen) == request.k:
                    break
            # The per-article cap can leave a page short: look deeper until it is full.
            if len(chosen) == request.k or fetch >= total:
                break
            fetch = min(total, fetch * 4)
        heads = reader.heads({row.article_id for _, row in chosen})
        hits = []
        for rank, (score, row) in enumerate(chosen, 1):
            head = heads[row.article_id]
            passage, p_start, p_end = reader.passage(row.article_id, row.position, request.context)
            hits.append(
                Hit(
                    rank=rank,
                    score=round(score, 4),
                    article_id=row.article_id,
                    title=head.title,
                    source=head.source,
                    url=head.url,
                    published=head.published,
                    sentence=row.text,
                    start=row.start,
                    end=row.end,
                    passage=passage,
                    passage_start=p_start,
                    passage_end=p_end,
                )
            )
        return hits

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
        return self._write(lambda w: w.add(read_inputs(paths, tally), on_article, on_embedded))

    def index_articles(self, articles: Iterable[Article | Failure]) -> IndexSummary:
        return self._write(lambda w: w.add(articles))

    def remove(self, article_ids: Iterable[str]) -> IndexSummary:
        return self._write(lambda w: w.remove(article_ids))

    def _write(self, stage: Callable[[IndexWriter], IndexSummary]) -> IndexSummary:
        with self._write_lock, IndexWriter(self.directory, self.embedder) as writer:
            stage(writer)
            summary = writer.commit()
        if self._reader is not None:
            self._reader.refresh()
        return summary

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
