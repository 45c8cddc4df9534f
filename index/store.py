"""The on-disk index: a SQLite database (the truth) and a FAISS file derived from it.

Layout of an index directory:
    manifest.json           what the index is (model, dimension, splitter, counts, times)
    sift.db                 SQLite: meta, articles, sentences (with their vectors as float32 blobs)
    vectors.<gen>.faiss     FAISS index over inner product, ids are sentence ids: exact or
                            IVF by size, as manifest.vectors says (index/vectors.py)
    write.lock              held by the one process writing

A commit is one SQLite transaction, which bumps the generation. The FAISS file of that generation
is written just before it (`index.generations`), so a committed generation always has its file;
should a file be missing or disagree with the rows anyway, whoever opens the index rebuilds the
vectors from the database, so the vectors always agree with the rows. Nothing is pickled.
"""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import faiss
from sift.errors import IndexNotFound, StoreError
from sift.index.manifest import DATABASE_FILE, Manifest, VectorsInfo, vectors_file
from sift.index.vectors import build, new_flat, single_threaded

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS articles (
    num          INTEGER PRIMARY KEY,        -- stable row number, the keyword index's key
    id           TEXT NOT NULL UNIQUE,
    title        TEXT,
    text         TEXT NOT NULL,              -- '' for a duplicate: the text lives once
    url          TEXT,
    source       TEXT,
    published    TEXT,
    metadata     TEXT NOT NULL DEFAULT '{}',
    content_hash TEXT NOT NULL,              -- of every field: decides "unchanged"
    text_hash    TEXT NOT NULL,              -- of the text alone: finds identical copies
    duplicate_of TEXT,                       -- id of the article that holds this text
    added        TEXT NOT NULL,
    updated      TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS articles_text_hash ON articles (text_hash);
CREATE INDEX IF NOT EXISTS articles_duplicate_of ON articles (duplicate_of);
CREATE INDEX IF NOT EXISTS articles_source ON articles (source);
CREATE INDEX IF NOT EXISTS articles_published ON articles (published);
CREATE TABLE IF NOT EXISTS sentences (
    id         INTEGER PRIMARY KEY,          -- also the vector's id in FAISS
    article_id TEXT NOT NULL REFERENCES articles(id) ON UPDATE CASCADE,
    position   INTEGER NOT NULL,
    start      INTEGER NOT NULL,
    "end"      INTEGER NOT NULL,
    text       TEXT NOT NULL,
    vector     BLOB NOT NULL,                -- float32, the FAISS file is rebuilt from these
    UNIQUE (article_id, position)
);
-- Keyword index over sentences: the sentence, and its context (title and neighbours) that
-- counts for less. rowid = sentence id. Kept in step by the writer, in the same transaction.
CREATE VIRTUAL TABLE IF NOT EXISTS sentences_fts USING fts5(
    text, context, tokenize = 'porter unicode61 remove_diacritics 2'
);
-- Keyword index over whole articles, for article-level evidence.
CREATE VIRTUAL TABLE IF NOT EXISTS articles_fts USING fts5(
    title, text, content = 'articles', content_rowid = 'num',
    tokenize = 'porter unicode61 remove_diacritics 2'
);
CREATE TRIGGER IF NOT EXISTS articles_fts_insert AFTER INSERT ON articles BEGIN
    INSERT INTO articles_fts (rowid, title, text) VALUES (new.num, new.title, new.text);
END;
CREATE TRIGGER IF NOT EXISTS articles_fts_delete AFTER DELETE ON articles BEGIN
    INSERT INTO articles_fts (articles_fts, rowid, title, text)
    VALUES ('delete', old.num, old.title, old.text);
END;
CREATE TRIGGER IF NOT EXISTS articles_fts_update AFTER UPDATE ON articles BEGIN
    INSERT INTO articles_fts (articles_fts, rowid, title, text)
    VALUES ('delete', old.num, old.title, old.text);
    INSERT INTO articles_fts (rowid, title, text) VALUES (new.num, new.title, new.text);
END;
"""


def connect(directory: Path, *, create: bool = False) -> sqlite3.Connection:
    db = directory / DATABASE_FILE
    if not db.exists() and not create:
        raise IndexNotFound(
            f"no sift index at {directory} "
            f"(index articles first: sift index PATH --index {directory})"
        )
    try:
        conn = sqlite3.connect(db, isolation_level=None, check_same_thread=False, timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")  # readers keep reading while a writer commits
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{db} is not a readable sift database: {exc}") from exc
    return conn


def read_manifest(conn: sqlite3.Connection) -> Manifest | None:
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = 'manifest'").fetchone()
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"index database is unreadable: {exc}") from exc
    return Manifest.model_validate_json(row[0]) if row else None


def new_vector_index(dimension: int) -> faiss.Index:
    return new_flat(dimension)


def load_vectors(directory: Path, manifest: Manifest, conn: sqlite3.Connection) -> faiss.Index:
    """The FAISS index of the manifest's generation; rebuilt from the database, as the manifest
    describes it, when its file is missing or disagrees with the rows (a crash between commit
    and file write)."""
    single_threaded()  # the writer adds to these vectors in this thread
    path = directory / vectors_file(manifest.generation)
    if path.exists():
        index = faiss.read_index(str(path))
        if index.ntotal == manifest.counts.sentences and index.d == manifest.model.dimension:
            return index
    return rebuild_vectors(conn, manifest.model.dimension, manifest.vectors)


def rebuild_vectors(
    conn: sqlite3.Connection, dimension: int, info: VectorsInfo | None = None
) -> faiss.Index:
    """The vectors of every stored sentence, in an index of the kind `info` says (exact when
    not given)."""
    return build(conn, dimension, info or VectorsInfo())


def save_vectors(directory: Path, index: faiss.Index, generation: int, prune: bool = True) -> str:
    """Write the FAISS file of `generation` atomically; with `prune`, drop every other one."""
    name = vectors_file(generation)
    tmp = directory / f".{name}.{os.getpid()}.tmp"
    faiss.write_index(index, str(tmp))
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, directory / name)
    if prune:
        prune_vectors(directory, generation)
    return name


def prune_vectors(directory: Path, keep: int) -> None:
    """Drop the vectors files of every generation but `keep` (older ones, or a newer one that a
    writer wrote before a commit that never happened)."""
    for old in directory.glob("vectors.*.faiss"):
        if old.name != vectors_file(keep):
            old.unlink(missing_ok=True)


#: Articles whose stored sentences no longer match their text (offsets or text differ).
MISMATCHED_SENTENCES_SQL = (
    "SELECT DISTINCT s.article_id FROM sentences s JOIN articles a ON a.id = s.article_id "
    'WHERE substr(a.text, s.start + 1, s."end" - s.start) != s.text'
)
#: Articles whose sentence positions are not 0..n-1.
POSITION_GAPS_SQL = (
    "SELECT article_id FROM sentences GROUP BY article_id "
    "HAVING min(position) != 0 OR max(position) != count(*) - 1"
)
#: Articles holding their own text but no sentences.
UNSPLIT_ARTICLES_SQL = (
    "SELECT a.id FROM articles a WHERE a.duplicate_of IS NULL AND NOT EXISTS "
    "(SELECT 1 FROM sentences s WHERE s.article_id = a.id)"
)
#: Articles with a sentence whose vector blob is not `dimension` float32s (one parameter).
BAD_VECTOR_SQL = "SELECT DISTINCT article_id FROM sentences WHERE length(vector) != ?"


def metadata_of(raw: str | None) -> dict[str, object]:
    return json.loads(raw) if raw else {}
