"""Opening an index for reading: the committed state, reloaded when a writer commits."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sift.errors import StoreError
from sift.index.keyword_index import KeywordIndex, keyword_generation
from sift.index.live_vectors import LiveVectors
from sift.index.manifest import Manifest
from sift.index.store import connect, metadata_of, read_manifest
from sift.index.upkeep import bring_up_to_date
from sift.index.vectors import decode_vectors, nearest
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
        bring_up_to_date(directory, manifest, keyword_generation(directory))
        self.manifest: Manifest
        self.manifest, self.vectors = self._load(None)
        self.keyword = KeywordIndex(directory)

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect(self.directory)
            conn.execute("PRAGMA query_only=ON")
            self._local.conn = conn
        return conn

    def refresh(self) -> bool:
        """Pick up a newer commit, if there is one. True when something changed. The vectors
        take the commit's changes in memory (a new base after a merge); the keyword index
        reloads when it moved on, which is after the commit that it follows (and is caught up
        first when a crashed writer left it behind)."""
        manifest = read_manifest(self._conn())
        if manifest is None:
            return False
        if manifest.generation == self.manifest.generation:
            if keyword_generation(self.directory) == self.keyword.generation:
                return False
            with self._reload_lock:
                self.keyword.reload()
            return True
        with self._reload_lock:
            if manifest.generation == self.manifest.generation:
                return False
            bring_up_to_date(self.directory, manifest, keyword_generation(self.directory))
            self.manifest, self.vectors = self._load(self.vectors)
            self.keyword.reload()
        return True

    def _load(self, vectors: LiveVectors | None) -> tuple[Manifest, LiveVectors]:
        """The committed manifest and the vectors brought to it, read in one snapshot. A base
        file that a newer merge has pruned since the manifest was read is not rebuilt: the
        newer manifest, which names the new base, is read instead."""
        attempts = 10
        for attempt in range(attempts):
            with self.snapshot():
                manifest = read_manifest(self._conn())
                if manifest is None:
                    raise StoreError(f"index at {self.directory} has no manifest")
                base = manifest.vectors.file
                found = base is None or (self.directory / base).exists()
                if found or attempt == attempts - 1:  # at last, LiveVectors rebuilds from rows
                    if vectors is None:
                        return manifest, LiveVectors.load(self.directory, manifest, self._conn())
                    return manifest, vectors.catch_up(self.directory, manifest, self._conn())
            time.sleep(0.01)
        raise AssertionError("unreachable")

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """Every read inside sees one committed state, whatever a writer commits meanwhile.
        Inside another snapshot (of this thread), the outer one's state."""
        conn = self._conn()
        if conn.in_transaction:
            yield
            return
        conn.execute("BEGIN")
        try:
            yield
        finally:
            conn.execute("COMMIT")

    # -- vectors --------------------------------------------------------------------------------

    def nearest(self, query: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Scores and sentence ids of the `n` sentences nearest the query, best first."""
        vectors, info = self.vectors, self.manifest.vectors
        with vectors.reading():
            return nearest(vectors.index, info, self._conn(), query, n)

    def nearest_among(
        self, query: np.ndarray, n: int, allowed: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """As `nearest`, over the sentences in `allowed` only: filtering before ranking."""
        vectors, info = self.vectors, self.manifest.vectors
        with vectors.reading():
            return nearest(vectors.index, info, self._conn(), query, n, allowed)

    # -- keyword ----------------------------------------------------------------------------------

    def keyword_sentences(
        self, words: list[str], n: int, allowed: np.ndarray | None = None
    ) -> tuple[list[int], list[float]]:
        """Sentence ids and BM25 scores (higher is better) of the sentence with its context at
        a lower weight (`index.keyword_index.sentence_match`). Only the sentences in `allowed`
        are scored, when given (`allowed_sentences` of a filter)."""
        return self.keyword.sentence_scores(words, n, allowed)

    def keyword_article_scores(
        self, words: list[str], n: int, flt: ArticleFilter
    ) -> dict[str, float]:
        """Article ids and their BM25 over title (twice the weight) and whole text, best first;
        articles that hold their own text only (a copy shares its original's)."""
        allowed = self.allowed_articles(flt) if flt else None
        return self.own_articles(*self.keyword_article_hits(words, n, allowed), n)[0]

    def keyword_article_hits(
        self, words: list[str], n: int, allowed: np.ndarray | None
    ) -> tuple[list[int], list[float]]:
        """Article nums and BM25 scores from tantivy alone (no database read: another thread
        may ask), 2n of them, as `own_articles` drops copies."""
        return self.keyword.article_scores(words, 2 * n, allowed)

    def own_articles(
        self, nums: list[int], scores: list[float], n: int
    ) -> tuple[dict[str, float], bool]:
        """The first `n` of `keyword_article_hits` that hold their own text, by id with their
        scores, and whether they are every article holding a query word."""
        found = dict(
            self._in_batches(
                "SELECT num, id FROM articles WHERE duplicate_of IS NULL AND num IN ({marks})",
                nums,
            )
        )
        best = [
            (found[num], score) for num, score in zip(nums, scores, strict=True) if num in found
        ]
        return dict(best[:n]), len(nums) < 2 * n and len(best) <= n

    def keyword_articles(self, words: list[str], n: int, flt: ArticleFilter) -> list[str]:
        """Article ids ranked by BM25 over their title and whole text."""
        return list(self.keyword_article_scores(words, n, flt))

    def allowed_articles(self, flt: ArticleFilter) -> np.ndarray:
        """Nums of the articles holding their own text that a filter lets through."""
        where, params = self._filter_sql(flt, sentences=False)
        rows = self._conn().execute(
            f"SELECT a.num FROM articles a WHERE a.duplicate_of IS NULL AND {where}", params
        )
        return np.fromiter((r[0] for r in rows), dtype=np.int64)

    def allowed_sentences(self, flt: ArticleFilter) -> np.ndarray:
        """Ids of the sentences of the articles a filter lets through."""
        where, params = self._filter_sql(flt)
        rows = self._conn().execute(
            f"SELECT s.id FROM sentences s JOIN articles a ON a.id = s.article_id WHERE {where}",
            params,
        )
        return np.fromiter((r[0] for r in rows), dtype=np.int64)

    def _filter_sql(self, flt: ArticleFilter, sentences: bool = True) -> tuple[str, list[object]]:
        """SQL over articles `a` (and, with `sentences`, sentences `s`) for a filter. Phrases
        and excluded words are looked up in the keyword index first: the SQL gets their ids."""
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
        if flt.excluded:
            excluded = self.keyword.articles_with_any(flt.excluded)
            clauses.append("a.num NOT IN (SELECT value FROM json_each(?))")
            params.append(json.dumps(excluded.tolist()))
        for phrase in flt.phrases:
            holding = "SELECT value FROM json_each(?)"
            if sentences:
                clauses.append(f"s.id IN ({holding})")
            else:
                clauses.append(
                    f"a.id IN (SELECT article_id FROM sentences WHERE id IN ({holding}))"
                )
            params.append(json.dumps(self.keyword.sentences_with(phrase).tolist()))
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
        vectors = decode_vectors([r[2] for r in rows], self.manifest.model.dimension)
        return [r[0] for r in rows], [r[1] for r in rows], vectors

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
        size = sum(p.stat().st_size for p in self.directory.rglob("*") if p.is_file())
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
