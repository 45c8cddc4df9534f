"""Adding, updating and removing articles: one run is one atomic commit (or one per batch).

The lock is `index.lock`, the commit protocol `index.generations`, the text recipes
`index.recipe`; repairs (`sift check --repair`) extend this writer in `index.repair`.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sift.errors import ModelMismatch, StoreError
from sift.index.embed import SentenceEncoder
from sift.index.generations import commit_generation, create_index, heal_files, next_generation
from sift.index.keyword_index import KeywordWriter, forget_applied
from sift.index.live_vectors import MERGE_MIN, sized_plan
from sift.index.lock import acquire_write_lock
from sift.index.manifest import DATABASE_FILE, Counts, Manifest, ModelInfo, SplitterInfo, now_iso
from sift.index.merging import BackgroundMerges
from sift.index.optimize import maybe_optimize
from sift.index.pipeline import Prepared, read_ahead
from sift.index.recipe import embedding_text, text_hash
from sift.index.records import Article, Failure, Sentence
from sift.index.split import SPLITTER_NAME, SPLITTER_VERSION, split_sentences
from sift.index.store import SCHEMA, connect, read_manifest
from sift.index.upkeep import catch_up_keyword, refuse_newer, upgrade_format
from sift.index.vectors import build, encode_vector

#: Sentences embedded per model call batch group; bounds memory on a large run.
EMBED_CHUNK = 4096


@dataclass
class IndexSummary:
    """What one run changed. `failed` lists every input that was not indexed, and why."""

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    failed: list[Failure] = field(default_factory=list)
    sentences: int = 0  # sentences embedded in this run
    seconds: float = 0.0

    def counts(self) -> dict[str, int]:
        return {
            "added": len(self.added),
            "updated": len(self.updated),
            "unchanged": len(self.unchanged),
            "removed": len(self.removed),
            "failed": len(self.failed),
            "sentences": self.sentences,
        }


def check_model(manifest: Manifest, embedder: SentenceEncoder, directory: Path) -> None:
    """Refuse to mix models: vectors of two models in one index are meaningless together.
    The weights decide; the same weights under another path or name are the same model."""
    if embedder.fingerprint != manifest.model.fingerprint:
        raise ModelMismatch(
            f"index {directory} was built with model {manifest.model.name!r} "
            f"(weights {manifest.model.fingerprint[:12]}), not {embedder.name!r} "
            f"(weights {embedder.fingerprint[:12]}); use the same model, or another --index"
        )


@dataclass
class PendingArticle:
    """An article staged for the next embedding batch."""

    article: Article
    content_hash: str
    text_hash: str
    sentences: list[Sentence]
    replaced: bool
    vectors: np.ndarray | None = None  # embedded elsewhere (index.cluster)


def stored_hash(conn: sqlite3.Connection, article_id: str) -> str | None:
    """The content hash of the article stored under `article_id`, if any."""
    row = conn.execute("SELECT content_hash FROM articles WHERE id = ?", (article_id,)).fetchone()
    return None if row is None else str(row[0])


def original_of(conn: sqlite3.Connection, same_text: str, article_id: str) -> str | None:
    """Another article that holds this text (`text_hash`), which a copy points to."""
    row = conn.execute(
        "SELECT id FROM articles WHERE text_hash = ? AND duplicate_of IS NULL AND id != ? "
        "ORDER BY num LIMIT 1",
        (same_text, article_id),
    ).fetchone()
    return None if row is None else str(row[0])


def embeds(conn: sqlite3.Connection, article: Article) -> bool:
    """Whether storing `article` embeds its sentences: not when it is stored unchanged, nor
    when another article holds its text."""
    assert article.id is not None
    return stored_hash(conn, article.id) != article.content_hash() and (
        original_of(conn, text_hash(article.text), article.id) is None
    )


class IndexWriter:
    """The one writer of an index directory. Use as a context manager; `commit()` makes a run
    durable, and leaving without it (an error, Ctrl-C) leaves the index as it was."""

    def __init__(
        self,
        directory: Path,
        embedder: SentenceEncoder,
        commit_every: int = 10_000,
        commit_seconds: float = 60.0,
        lock_wait: float = 0.0,
        merge_min: int = MERGE_MIN,
        merges: BackgroundMerges | None = None,
    ):
        """`commit_every` sentences or `commit_seconds` of work make a batch: a long run commits
        batch by batch, so a crash loses at most the batch in flight and a rerun goes on from
        there (committed articles are unchanged and skipped). A smaller run is all or nothing.
        `lock_wait`: seconds to wait for another writer before WriterBusy. `merge_min`: changes
        since the vectors base that call for a merge (`index.live_vectors`), built in the
        background by `merges` where given, else by the commit itself."""
        self.directory = directory
        self.embedder = embedder
        self.commit_every = commit_every
        self.commit_seconds = commit_seconds
        self.merge_min = merge_min
        self.merges = merges
        directory.mkdir(parents=True, exist_ok=True)
        self._lock = acquire_write_lock(directory, lock_wait)
        try:
            self._open()
        except BaseException:
            self._lock.release()
            raise

    def _open(self) -> None:
        if not (self.directory / DATABASE_FILE).exists():
            create_index(self.directory, self._new_manifest())
        self.conn = connect(self.directory)
        self.conn.executescript(SCHEMA)  # IF NOT EXISTS: brings older layouts up to date
        manifest = read_manifest(self.conn)
        if manifest is None:
            raise StoreError(f"{self.directory / DATABASE_FILE} holds no manifest")
        check_model(manifest, self.embedder, self.directory)
        refuse_newer(self.directory, manifest)
        manifest = upgrade_format(self.directory, self.conn, manifest)
        heal_files(self.directory, manifest)
        self.keyword = KeywordWriter(self.directory)
        try:
            catch_up_keyword(self.keyword, self.conn, manifest.generation)
        except BaseException:
            self.keyword.close()  # its tantivy writers hold their own locks
            raise
        self.manifest = manifest
        self._dirty = False
        self._batch_sentences = 0
        self._batch_started = time.perf_counter()
        self._in_transaction = False
        self._pending: dict[str, PendingArticle] = {}
        self._pending_texts: set[str] = set()
        self._next_id = self._max_sentence_id() + 1
        self.summary = IndexSummary()

    def _new_manifest(self) -> Manifest:
        return Manifest(
            model=ModelInfo(
                name=self.embedder.name,
                fingerprint=self.embedder.fingerprint,
                dimension=self.embedder.dimension,
            ),
            splitter=SplitterInfo(name=SPLITTER_NAME, version=SPLITTER_VERSION),
        )

    def _max_sentence_id(self) -> int:
        row = self.conn.execute("SELECT max(id) FROM sentences").fetchone()
        stored = json.loads(self._meta("next_sentence_id") or "0")
        return max(row[0] or 0, stored - 1)

    def _meta(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def _begin(self) -> None:
        if not self._in_transaction:
            # A keyword sync that failed after the last commit (a full disk) is retried first.
            catch_up_keyword(self.keyword, self.conn, self.manifest.generation)
            self.conn.execute("BEGIN IMMEDIATE")
            self._in_transaction = True
            forget_applied(self.conn)

    # -- adding ---------------------------------------------------------------------------------

    def add(
        self,
        items: Iterable[Article | Failure | Prepared],
        on_article: Callable[[str], None] | None = None,
        on_embedded: Callable[[int], None] | None = None,
    ) -> IndexSummary:
        """Stage articles (and record failures) for the next commit."""
        started = time.perf_counter()
        self._begin()
        for prepared in read_ahead(items):
            item = prepared.item
            if isinstance(item, Failure):
                self.summary.failed.append(item)
            else:
                self._stage(item.with_default_id(), prepared.sentences, prepared.vectors)
            staged = sum(len(p.sentences) for p in self._pending.values())
            if staged >= min(EMBED_CHUNK, self.commit_every):
                self._flush(on_embedded)
                if self._batch_due():
                    self.commit()
                    self._begin()
            if on_article is not None:
                on_article(item.where if isinstance(item, Failure) else str(item.id))
        self._flush(on_embedded)
        self.summary.seconds += time.perf_counter() - started
        return self.summary

    def _batch_due(self) -> bool:
        elapsed = time.perf_counter() - self._batch_started
        return self._batch_sentences >= self.commit_every or elapsed >= self.commit_seconds

    def _stage(
        self,
        article: Article,
        sentences: list[Sentence] | None = None,
        vectors: np.ndarray | None = None,
    ) -> None:
        """`sentences`: the article's, if already split (index.pipeline); `vectors`: theirs,
        if already embedded."""
        assert article.id is not None
        same_text = text_hash(article.text)
        if article.id in self._pending or same_text in self._pending_texts:
            self._flush(None)  # the later of two in one run sees the earlier one stored
        content_hash = article.content_hash()
        stored = stored_hash(self.conn, article.id)
        if stored == content_hash:
            self.summary.unchanged.append(article.id)
            return
        replaced = stored is not None
        original = original_of(self.conn, same_text, article.id)
        if original is not None:  # identical text is stored once: this one points to it
            if replaced:
                self._retire(article.id)
            self._upsert_article(article, content_hash, same_text, duplicate_of=original)
            self._dirty = True
            (self.summary.updated if replaced else self.summary.added).append(article.id)
            return
        if sentences is None:
            sentences, vectors = split_sentences(article.text), None
        if not sentences:
            self.summary.failed.append(Failure(article.id, "article has no sentences"))
            return
        self._pending[article.id] = PendingArticle(
            article, content_hash, same_text, sentences, replaced, vectors
        )
        self._pending_texts.add(same_text)

    def _flush(self, on_embedded: Callable[[int], None] | None) -> None:
        if not self._pending:
            return
        pending = list(self._pending.values())
        self._pending.clear()
        self._pending_texts.clear()
        texts = [embedding_text(p.article.title, s.text) for p in pending for s in p.sentences]
        if all(p.vectors is not None for p in pending):
            vectors = np.vstack([p.vectors for p in pending if p.vectors is not None])
            if on_embedded is not None:
                on_embedded(len(texts))
        else:
            vectors = self.embedder.encode(texts, progress=on_embedded)
        ids = np.arange(self._next_id, self._next_id + len(texts), dtype=np.int64)
        self._next_id += len(texts)
        rows = []
        cursor = 0
        for p in pending:
            art = p.article
            if p.replaced:
                self._retire(str(art.id))
            self._upsert_article(art, p.content_hash, p.text_hash)
            for s in p.sentences:
                sid = int(ids[cursor])
                rows.append(
                    (
                        sid,
                        art.id,
                        s.position,
                        s.start,
                        s.end,
                        s.text,
                        encode_vector(vectors[cursor]),
                    )
                )
                cursor += 1
            (self.summary.updated if p.replaced else self.summary.added).append(str(art.id))
        self.conn.executemany(
            'INSERT INTO sentences (id, article_id, position, start, "end", text, vector) '
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        self.summary.sentences += len(texts)
        self._batch_sentences += len(texts)
        self._dirty = True

    def _upsert_article(
        self, art: Article, content_hash: str, text_hash: str, duplicate_of: str | None = None
    ) -> None:
        now = now_iso()
        self.conn.execute(
            "INSERT INTO articles (id, title, text, url, source, published, metadata, "
            "content_hash, text_hash, duplicate_of, added, updated) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT(id) DO UPDATE SET title = excluded.title, text = excluded.text, "
            "url = excluded.url, source = excluded.source, published = excluded.published, "
            "metadata = excluded.metadata, content_hash = excluded.content_hash, "
            "text_hash = excluded.text_hash, duplicate_of = excluded.duplicate_of, "
            "updated = excluded.updated",
            (
                art.id,
                art.title,
                "" if duplicate_of else art.text,
                art.url,
                art.source,
                art.published,
                json.dumps(art.metadata, ensure_ascii=False, default=str),
                content_hash,
                text_hash,
                duplicate_of,
                now,
                now,
            ),
        )

    def _retire(self, article_id: str) -> None:
        """Before an article's text is replaced or removed: hand its sentences and text to its
        first identical copy, if it has one (no re-embedding), else drop them."""
        copies = [
            r[0]
            for r in self.conn.execute(
                "SELECT id FROM articles WHERE duplicate_of = ? ORDER BY num", (article_id,)
            )
        ]
        if not copies:
            self._drop_sentences(article_id)
            return
        heir = copies[0]
        self.conn.execute(
            "UPDATE sentences SET article_id = ? WHERE article_id = ?", (heir, article_id)
        )
        self.conn.execute(
            "UPDATE articles SET duplicate_of = NULL, "
            "text = (SELECT text FROM articles WHERE id = ?) WHERE id = ?",
            (article_id, heir),
        )
        self.conn.execute(
            "UPDATE articles SET duplicate_of = ? WHERE duplicate_of = ?", (heir, article_id)
        )

    def _drop_sentences(self, article_id: str) -> None:
        old = np.array(
            [
                r[0]
                for r in self.conn.execute(
                    "SELECT id FROM sentences WHERE article_id = ?", (article_id,)
                )
            ],
            dtype=np.int64,
        )
        if not len(old):
            return
        self.conn.execute("DELETE FROM sentences WHERE article_id = ?", (article_id,))

    # -- removing -------------------------------------------------------------------------------

    def remove(self, article_ids: Iterable[str]) -> IndexSummary:
        self._begin()
        for article_id in article_ids:
            exists = self.conn.execute(
                "SELECT 1 FROM articles WHERE id = ?", (article_id,)
            ).fetchone()
            if exists is None:
                self.summary.failed.append(Failure(article_id, "no article with this id"))
                continue
            self._retire(article_id)
            self.conn.execute("DELETE FROM articles WHERE id = ?", (article_id,))
            self._dirty = True
            self.summary.removed.append(article_id)
        return self.summary

    # -- committing -----------------------------------------------------------------------------

    def commit(self) -> IndexSummary:
        """Make everything staged durable at once, then write the vectors and manifest files."""
        if not self._in_transaction:
            return self.summary
        if not self._dirty:
            self.rollback()
            return self.summary
        articles, sentences = self.conn.execute(
            "SELECT (SELECT count(*) FROM articles), (SELECT count(*) FROM sentences)"
        ).fetchone()
        manifest = next_generation(
            self.manifest, counts=Counts(articles=articles, sentences=sentences)
        )
        if self.summary.sentences:  # this run embedded: record what made its vectors
            manifest.encoder = self.embedder.encoder_info()
        base = None
        if manifest.vectors.file is None and sentences:  # the first base: from the first rows
            manifest.vectors = sized_plan(manifest)
            base = build(self.conn, manifest.model.dimension, manifest.vectors)
        commit_generation(
            self.directory, self.conn, manifest, {"next_sentence_id": str(self._next_id)}, base
        )
        self._in_transaction = False
        self.manifest = manifest
        self._dirty = False
        self._batch_sentences = 0
        self._batch_started = time.perf_counter()
        # After the rows are committed (a crash before this is caught up on the next opening).
        self.keyword.sync(self.conn, manifest.generation, replay=False)
        if self.merges is not None:
            self.manifest = self.merges.after_commit(self.conn, manifest)
        else:
            self.manifest = maybe_optimize(self.directory, self.conn, manifest, self.merge_min)
        return self.summary

    def rollback(self) -> None:
        if self._in_transaction:
            if self.conn.in_transaction:  # not when the failure came after the COMMIT
                self.conn.execute("ROLLBACK")
            self._in_transaction = False
        self._dirty = False
        self._pending.clear()
        self._pending_texts.clear()

    def close(self) -> None:
        try:
            self.rollback()
            self.keyword.close()
            self.conn.close()
        finally:
            self._lock.release()

    def __enter__(self) -> IndexWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
