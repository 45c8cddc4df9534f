"""Repairs for `sift check --repair`: the writer, with ways to make rows, keyword index and
vectors agree again. Every repair is staged like any write and made durable by `commit()`."""

from __future__ import annotations

import json

from sift.index.optimize import rebuild_base
from sift.index.recipe import text_hash
from sift.index.records import Article
from sift.index.split import split_sentences
from sift.index.store import (
    BAD_VECTOR_SQL,
    MISMATCHED_SENTENCES_SQL,
    POSITION_GAPS_SQL,
    UNSPLIT_ARTICLES_SQL,
)
from sift.index.vectors import vector_bytes
from sift.index.writer import IndexWriter, PendingArticle


class RepairingWriter(IndexWriter):
    """The one writer of an index, taking repairs besides articles."""

    def articles_needing_resplit(self) -> list[str]:
        """Articles whose stored sentences disagree with their text, or have none."""
        query = " UNION ".join(
            [MISMATCHED_SENTENCES_SQL, POSITION_GAPS_SQL, UNSPLIT_ARTICLES_SQL, BAD_VECTOR_SQL]
        )
        rows = self.conn.execute(query, (vector_bytes(self.manifest.model.dimension),)).fetchall()
        return [r[0] for r in rows]

    def reembed(self, article_ids: list[str]) -> None:
        """Split and embed these articles again from their stored text."""
        self._begin()
        for article_id in article_ids:
            row = self.conn.execute(
                "SELECT id, title, text, url, source, published, metadata FROM articles "
                "WHERE id = ?",
                (article_id,),
            ).fetchone()
            if row is None or not row[2].strip():
                continue
            article = Article(
                id=row[0],
                title=row[1],
                text=row[2],
                url=row[3],
                source=row[4],
                published=row[5],
                metadata=json.loads(row[6] or "{}"),
            )
            # Its copies keep pointing to it: only its own sentences are made anew.
            self._drop_sentences(article_id)
            self._pending[article_id] = PendingArticle(
                article,
                article.content_hash(),
                text_hash(article.text),
                split_sentences(article.text),
                replaced=False,
            )
        self._flush(None)
        self.summary.added.clear()

    def drop_orphans(self) -> int:
        self._begin()
        orphans = [
            r[0]
            for r in self.conn.execute(
                "SELECT s.id FROM sentences s LEFT JOIN articles a ON a.id = s.article_id "
                "WHERE a.id IS NULL"
            )
        ]
        for sid in orphans:
            self.conn.execute("DELETE FROM sentences WHERE id = ?", (sid,))
        self._dirty = True
        return len(orphans)

    def rebuild_keyword_index(self) -> None:
        """Both keyword indexes anew from the rows, at the next commit."""
        self._begin()
        self.keyword.needs_rebuild = True
        self._dirty = True

    def rebuild_vectors(self) -> None:
        """A new vectors base built from the rows, after the next commit."""
        self._begin()
        self._new_base = True
        self._dirty = True

    def force_commit(self) -> None:
        """Commit even when no row changed: rewrites counts and manifest (and the vectors base
        when `rebuild_vectors` asked for it)."""
        self._begin()
        self._dirty = True
        self.commit()
        if getattr(self, "_new_base", False):
            self.manifest = rebuild_base(self.directory, self.conn, self.manifest)
            self._new_base = False
