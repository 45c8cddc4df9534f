"""Opening an index for reading: the committed state, reloaded when a writer commits."""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from index.manifest import Manifest
from index.store import StoreError, connect, load_vectors, metadata_of, read_manifest
from search.results import ArticleView, IndexStats


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
        """Pick up a newer commit, if there is one. True when something changed."""
        manifest = read_manifest(self._conn())
        if manifest is None or manifest.generation == self.manifest.generation:
            return False
        with self._reload_lock:
            if manifest.generation != self.manifest.generation:
                vectors = load_vectors(self.directory, manifest, self._conn())
                self.manifest, self.vectors = manifest, vectors
        return True

    # -- vectors --------------------------------------------------------------------------------

    def nearest(self, query: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Scores and sentence ids of the `n` sentences nearest the query, best first."""
        vectors = self.vectors
        n = min(n, vectors.ntotal)
        if n <= 0:
            return np.zeros(0, dtype=np.float32), np.zeros(0, dtype=np.int64)
        scores, ids = vectors.search(query.reshape(1, -1).astype(np.float32), n)
        keep = ids[0] >= 0
        return scores[0][keep], ids[0][keep]

    # -- rows -----------------------------------------------------------------------------------

    def sentences(self, ids: list[int]) -> dict[int, SentenceRow]:
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        rows = self._conn().execute(
            f'SELECT id, article_id, position, start, "end", text FROM sentences '
            f"WHERE id IN ({marks})",
            ids,
        )
        return {r[0]: SentenceRow(*r) for r in rows}

    def heads(self, article_ids: set[str]) -> dict[str, ArticleHead]:
        if not article_ids:
            return {}
        marks = ",".join("?" * len(article_ids))
        rows = self._conn().execute(
            f"SELECT id, title, source, url, published FROM articles WHERE id IN ({marks})",
            list(article_ids),
        )
        return {r[0]: ArticleHead(*r) for r in rows}

    def passage(self, article_id: str, position: int, context: int) -> tuple[str, int, int]:
        """The text from `context` sentences before `position` to `context` after, and its span."""
        conn = self._conn()
        start, end = conn.execute(
            'SELECT min(start), max("end") FROM sentences '
            "WHERE article_id = ? AND position BETWEEN ? AND ?",
            (article_id, position - context, position + context),
        ).fetchone()
        (text,) = conn.execute(
            "SELECT substr(text, ?, ?) FROM articles WHERE id = ?",
            (start + 1, end - start, article_id),
        ).fetchone()
        return text, start, end

    def article(self, article_id: str) -> ArticleView | None:
        row = (
            self._conn()
            .execute(
                "SELECT id, title, text, url, source, published, metadata, added, updated, "
                "(SELECT count(*) FROM sentences WHERE article_id = articles.id) "
                "FROM articles WHERE id = ?",
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
