"""The on-disk index: a SQLite database (the truth) and a FAISS file derived from it.

Layout of an index directory:
    manifest.json           what the index is (model, dimension, splitter, counts, times)
    sift.db                 SQLite: meta, articles, sentences (with their vectors as float32 blobs)
    vectors.<gen>.faiss     FAISS IndexIDMap2 over inner product; ids are sentence ids
    write.lock              held by the one process writing

A commit is one SQLite transaction, which bumps the generation. The FAISS file of that generation
is written after it; if a crash comes between the two, whoever opens the index next rebuilds the
vectors from the database, so the vectors always agree with the rows. Nothing is pickled.
"""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import faiss
import numpy as np

from index.manifest import DATABASE_FILE, Manifest, vectors_file

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


class StoreError(RuntimeError):
    """The index directory is missing, unreadable or inconsistent; the message says which."""


class IndexNotFound(StoreError):
    pass


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
    return faiss.IndexIDMap2(faiss.IndexFlatIP(dimension))


def load_vectors(directory: Path, manifest: Manifest, conn: sqlite3.Connection) -> faiss.Index:
    """The FAISS index of the manifest's generation; rebuilt from the database when its file is
    missing or disagrees with the rows (a crash between commit and file write)."""
    path = directory / vectors_file(manifest.generation)
    if path.exists():
        index = faiss.read_index(str(path))
        if index.ntotal == manifest.counts.sentences and index.d == manifest.model.dimension:
            return index
    return rebuild_vectors(conn, manifest.model.dimension)


def rebuild_vectors(conn: sqlite3.Connection, dimension: int) -> faiss.Index:
    index = new_vector_index(dimension)
    cursor = conn.execute("SELECT id, vector FROM sentences ORDER BY id")
    while rows := cursor.fetchmany(50_000):
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        vectors = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32)
        index.add_with_ids(vectors.reshape(len(rows), dimension), ids)
    return index


def save_vectors(directory: Path, index: faiss.Index, generation: int) -> str:
    """Write the FAISS file of `generation` atomically and drop the files of older generations."""
    name = vectors_file(generation)
    tmp = directory / f".{name}.{os.getpid()}.tmp"
    faiss.write_index(index, str(tmp))
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, directory / name)
    for old in directory.glob("vectors.*.faiss"):
        if old.name != name:
            old.unlink(missing_ok=True)
    return name


def metadata_of(raw: str | None) -> dict[str, object]:
    return json.loads(raw) if raw else {}
