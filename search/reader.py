"""Opening an index for reading: the committed state, reloaded when a writer commits."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np
from sift.errors import StoreError
from sift.index.lock import writer_busy
from sift.index.manifest import Manifest, vectors_file
from sift.index.store import connect, load_vectors, metadata_of, read_manifest
from sift.index.vectors import nearest
from sift.search.filters import ArticleFilter
from sift.search.results import ArticleView, IndexStats


@dataclass(frozen=True, slots=True)
class SentenceRow:
    id: int
    article_id: str
    position: int
    start: int
    end: int
    text: str


@dataclass(frozen=True, slots=True)
class ArticleHead:
    id: str
    title: str | None
    source: str | None
    url: str | None
    published: str | None


class IndexReader:
    """Read access to one index directory, safe to share between threads."""

    def __init__(self, directory: Path):
        self.directory = directory
        self._local = threading.local()
        self._reload_lock = threading.Lock()
        manifest = read_manifest(self._conn())
        if manifest is None:
            raise StoreError(f"index at {directory} has no manifest: it was never committed")
        self.manifest: Manifest = manifest
        self.vectors: faiss.Index = load_vectors(directory, manifest, self._conn())

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect(self.directory)
            conn.execute("PRAGMA query_only=ON")
            self._local.conn = conn
        return conn

    def refresh(self) -> bool:
        """Pick up a newer commit, if there is one. True when something changed.

        While a writer is between a commit and writing that commit's vectors file, the last
        vectors stay in use (rows the newer commit removed are skipped when read back); a
        vectors file that a crashed writer never wrote is rebuilt from the database."""
        manifest = read_manifest(self._conn())
        if manifest is None or manifest.generation == self.manifest.generation:
            return False
        with self._reload_lock:
            if manifest.generation == self.manifest.generation:
                return False
            if not (self.directory / vectors_file(manifest.generation)).exists() and writer_busy(
                self.directory
            ):
                return False
            vectors = load_vectors(self.directory, manifest, self._conn())
            self.manifest, self.vectors = manifest, vectors
        return True

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """Every read inside sees one committed state, whatever a writer commits meanwhile."""
        conn = self._conn()
        conn.execute("BEGIN")
        try:
            yield
        finally:
            conn.execute("COMMIT")

    # -- vectors --------------------------------------------------------------------------------

    def nearest(self, query: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Scores and sentence ids of the `n` sentences nearest the query, best first."""
        vectors, info = self.vectors, self.manifest.vectors
        return nearest(vectors, info, self._conn(), query, n)

    def nearest_among(
        self, query: np.ndarray, n: int, allowed: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """As `nearest`, over the sentences in `allowed` only: filtering before ranking."""
        vectors, info = self.vectors, self.manifest.vectors
        return nearest(vectors, info, self._conn(), query, n, allowed)

    # -- keyword ----------------------------------------------------------------------------------

    def keyword_sentences(
        self, match: str, n: int, context_weight: float, flt: ArticleFilter
    ) -> tuple[list[int], list[float]]:
        """Sentence ids and BM25 scores (higher is better) for an FTS5 MATCH expression."""
        if flt:
            where, params = self._filter_sql(flt)
            sql = (
                "SELECT sentences_fts.rowid, -bm25(sentences_fts, 1.0, ?) AS score "
                "FROM sentences_fts JOIN sentences s ON s.id = sentences_fts.rowid "
                "JOIN articles a ON a.id = s.article_id "
                f"WHERE sentences_fts MATCH ? AND {where} "
                "ORDER BY score DESC, sentences_fts.rowid LIMIT ?"
            )
            args: list[object] = [context_weight, match, *params, n]
        else:
            sql = (
                "SELECT rowid, -bm25(sentences_fts, 1.0, ?) AS score FROM sentences_fts "
                "WHERE sentences_fts MATCH ? ORDER BY score DESC, rowid LIMIT ?"
            )
            args = [context_weight, match, n]
        rows = self._conn().execute(sql, args).fetchall()
        return [r[0] for r in rows], [r[1] for r in rows]

    def keyword_fields(
        self, match: str, n: int, context_weight: float, flt: ArticleFilter
    ) -> tuple[list[int], list[float]]:
        """As `keyword_sentences`, but BM25 of the sentence plus `context_weight` times BM25 of
        its context, each column searched alone so that each has its own IDF. In one query over
        both columns a word's IDF counts the rows that hold it in either: every word of a title
        is then in every sentence of its article, and loses its weight in the sentence's own
        text exactly where it matters (a claim restated in the headline)."""
        scores = dict(self._column_bm25("text", match, n, flt))
        if context_weight > 0:
            for sid, score in self._column_bm25("context", match, n, flt):
                scores[sid] = scores.get(sid, 0.0) + context_weight * score
        best = sorted(scores.items(), key=lambda item: (-item[1], item[0]))[:n]
        return [sid for sid, _ in best], [score for _, score in best]

    def _column_bm25(
        self, column: str, match: str, n: int, flt: ArticleFilter
    ) -> list[tuple[int, float]]:
        weights = "1.0, 0.0" if column == "text" else "0.0, 1.0"
        scoped = f"{{{column}}} : ({match})"
        score = f"-bm25(sentences_fts, {weights})"
        if flt:
            where, params = self._filter_sql(flt)
            sql = (
                f"SELECT sentences_fts.rowid, {score} AS score "
                "FROM sentences_fts JOIN sentences s ON s.id = sentences_fts.rowid "
                "JOIN articles a ON a.id = s.article_id "
                f"WHERE sentences_fts MATCH ? AND {where} "
                "ORDER BY score DESC, sentences_fts.rowid LIMIT ?"
            )
            args: list[object] = [scoped, *params, n]
        else:
            sql = (
                f"SELECT rowid, {score} AS score FROM sentences_fts "
                "WHERE sentences_fts MATCH ? ORDER BY score DESC, rowid LIMIT ?"
            )
            args = [scoped, n]
        return [(r[0], r[1]) for r in self._conn().execute(sql, args).fetchall()]

    def keyword_articles(self, match: str, n: int, flt: ArticleFilter) -> list[str]:
        """Article ids ranked by BM25 over their title and whole text."""
        return list(self.keyword_article_scores(match, n, flt))

    def keyword_article_scores(self, match: str, n: int, flt: ArticleFilter) -> dict[str, float]:
        """As `keyword_articles`, with each article's BM25 (higher is better), best first."""
        where, params = self._filter_sql(flt, sentences=False)
        rows = (
            self._conn()
            .execute(
                "SELECT a.id, -bm25(articles_fts, 2.0, 1.0) FROM articles_fts "
                "JOIN articles a ON a.num = articles_fts.rowid "
                f"WHERE articles_fts MATCH ? AND a.duplicate_of IS NULL AND {where} "
                "ORDER BY bm25(articles_fts, 2.0, 1.0), a.num LIMIT ?",
                [match, *params, n],
            )
            .fetchall()
        )
        return {r[0]: r[1] for r in rows}

    def allowed_sentences(self, flt: ArticleFilter) -> np.ndarray:
        """Ids of the sentences of the articles a filter lets through."""
        where, params = self._filter_sql(flt)
        rows = self._conn().execute(
            f"SELECT s.id FROM sentences s JOIN articles a ON a.id = s.article_id WHERE {where}",
            params,
        )
        return np.fromiter((r[0] for r in rows), dtype=np.int64)

    @staticmethod
    def _filter_sql(flt: ArticleFilter, sentences: bool = True) -> tuple[str, list[object]]:
        """SQL over articles `a` (and, with `sentences`, sentences `s`) for a filter."""
        clauses: list[str] = []
        params: list[object] = []
        if flt.on_fields():
            # An article passes when it, or one of its identical copies, matches: copies
            # share the sentences of the article that holds their text.
            own, own_params = flt.where("a")
            copy, copy_params = flt.where("d")
            clauses.append(
                f"({own} OR EXISTS (SELECT 1 FROM articles d WHERE d.duplicate_of = a.id "
                f"AND {copy}))"
            )
            params += [*own_params, *copy_params]
        if flt.phrases or flt.excluded:
            text, text_params = flt.text_where("a", "s" if sentences else None)
            clauses.append(text)
            params += text_params
        return (" AND ".join(clauses) or "1"), params

    # -- rows -----------------------------------------------------------------------------------

    def article_of(self, sentence_ids: list[int]) -> dict[int, str]:
        rows = self._in_batches(
            "SELECT id, article_id FROM sentences WHERE id IN ({marks})", sentence_ids
        )
        return {r[0]: r[1] for r in rows}

    def sentence_vectors(self, article_ids: list[str]) -> tuple[list[int], list[str], np.ndarray]:
        """Sentence ids, their article ids and vectors, for the given articles."""
        rows = self._in_batches(
            "SELECT id, article_id, vector FROM sentences WHERE article_id IN ({marks}) "
            "ORDER BY id",
            article_ids,
        )
        if not rows:
            return [], [], np.zeros((0, self.manifest.model.dimension), dtype=np.float32)
        vectors = np.frombuffer(b"".join(r[2] for r in rows), dtype=np.float32)
        return (
            [r[0] for r in rows],
            [r[1] for r in rows],
            vectors.reshape(len(rows), self.manifest.model.dimension),
        )

    def published_of(self, sentence_ids: list[int]) -> dict[int, str | None]:
        """Each sentence's article's publication date (the article that holds the text)."""
        rows = self._in_batches(
            "SELECT s.id, a.published FROM sentences s JOIN articles a ON a.id = s.article_id "
            "WHERE s.id IN ({marks})",
            sentence_ids,
        )
        return {r[0]: r[1] for r in rows}

    def article_dates(
        self, article_ids: list[str], flt: ArticleFilter
    ) -> list[tuple[str, str | None, str | None]]:
        """Id, source and publication date of the given articles and their identical copies,
        those that pass the filter's article fields."""
        where, params = flt.where("a") if flt.on_fields() else ("1", [])
        out: list[tuple[str, str | None, str | None]] = []
        for i in range(0, len(article_ids), 400):
            chunk = article_ids[i : i + 400]
            marks = ",".join("?" * len(chunk))
            out += self._conn().execute(
                "SELECT a.id, a.source, a.published FROM articles a "
                f"WHERE (a.id IN ({marks}) OR a.duplicate_of IN ({marks})) AND {where}",
                [*chunk, *chunk, *params],
            )
        return out

    def copies(self, article_ids: set[str]) -> dict[str, list[str]]:
        """For each article, the ids of the identical copies that point to it."""
        rows = self._in_batches(
            "SELECT duplicate_of, id FROM articles WHERE duplicate_of IN ({marks}) ORDER BY num",
            list(article_ids),
        )
        out: dict[str, list[str]] = {}
        for original, copy in rows:
            out.setdefault(original, []).append(copy)
        return out

    def _in_batches(self, sql: str, values: list) -> list[tuple]:  # type: ignore[type-arg]
        rows: list[tuple] = []  # type: ignore[type-arg]
        for i in range(0, len(values), 900):  # SQLite caps the parameters of one statement
            chunk = values[i : i + 900]
            rows += self._conn().execute(sql.format(marks=",".join("?" * len(chunk))), chunk)
        return rows

    def sentences(self, ids: list[int]) -> dict[int, SentenceRow]:
        rows = self._in_batches(
            'SELECT id, article_id, position, start, "end", text FROM sentences '
            "WHERE id IN ({marks})",
            ids,
        )
        return {r[0]: SentenceRow(*r) for r in rows}

    def heads(self, article_ids: set[str]) -> dict[str, ArticleHead]:
        rows = self._in_batches(
            "SELECT id, title, source, url, published FROM articles WHERE id IN ({marks})",
            list(article_ids),
        )
        return {r[0]: ArticleHead(*r) for r in rows}

    def sentences_between(self, article_id: str, first: int, last: int) -> list[SentenceRow]:
        """The sentences of an article from position `first` to `last` (inclusive), in order."""
        rows = self._conn().execute(
            'SELECT id, article_id, position, start, "end", text FROM sentences '
            "WHERE article_id = ? AND position BETWEEN ? AND ? ORDER BY position",
            (article_id, first, last),
        )
        return [SentenceRow(*r) for r in rows]

    def passage(self, article_id: str, position: int, context: int) -> tuple[str, int, int]:
        """The text from `context` sentences before `position` to `context` after, and its span."""
        return self.passage_between(article_id, position - context, position + context)

    def passage_between(self, article_id: str, first: int, last: int) -> tuple[str, int, int]:
        """The text of sentences `first` to `last` (positions, inclusive), and its span."""
        conn = self._conn()
        start, end = conn.execute(
            'SELECT min(start), max("end") FROM sentences '
            "WHERE article_id = ? AND position BETWEEN ? AND ?",
            (article_id, first, last),
        ).fetchone()
        (text,) = conn.execute(
            "SELECT substr(text, ?, ?) FROM articles WHERE id = ?",
            (start + 1, end - start, article_id),
        ).fetchone()
        return text, start, end

    def article(self, article_id: str) -> ArticleView | None:
        # A copy shows the text, and the sentences, of the article that holds them.
        row = (
            self._conn()
            .execute(
                "SELECT a.id, a.title, coalesce(o.text, a.text), a.url, a.source, a.published, "
                "a.metadata, a.added, a.updated, (SELECT count(*) FROM sentences "
                "WHERE article_id = coalesce(a.duplicate_of, a.id)), a.duplicate_of "
                "FROM articles a LEFT JOIN articles o ON o.id = a.duplicate_of WHERE a.id = ?",
                (article_id,),
            )
            .fetchone()
        )
        if row is None:
            return None
        return ArticleView(
            id=row[0],
            title=row[1],
            text=row[2],
            url=row[3],
            source=row[4],
            published=row[5],
            metadata=metadata_of(row[6]),
            added=row[7],
            updated=row[8],
            sentences=row[9],
            duplicate_of=row[10],
        )

    def stats(self) -> IndexStats:
        m = self.manifest
        size = sum(p.stat().st_size for p in self.directory.iterdir() if p.is_file())
        return IndexStats(
            index=str(self.directory),
            articles=m.counts.articles,
            sentences=m.counts.sentences,
            model=m.model.name,
            model_fingerprint=m.model.fingerprint,
            dimension=m.model.dimension,
            encoder=m.encoder,
            splitter=f"{m.splitter.name} {m.splitter.version}",
            vectors=m.vectors.type,
            format_version=m.format_version,
            generation=m.generation,
            created=m.created,
            updated=m.updated,
            bytes_on_disk=size,
        )

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
