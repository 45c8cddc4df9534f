"""The on-disk index: a SQLite database (the truth) and the indexes derived from it.

Layout of an index directory:
    manifest.json           what the index is (model, dimension, splitter, counts, times)
    sift.db                 SQLite: meta, articles, sentences (with their vectors, int8)
    vectors.<gen>.faiss     the base of the vector index, written by the merge of generation
                            <gen>: exact or IVF by size (index/vectors.py); sentences added or
                            removed since are applied from the rows (index/live_vectors.py)
    keyword/                the keyword index (tantivy), derived from the rows
                            (index/keyword_index.py)
    write.lock              held by the one process writing

A commit is one SQLite transaction, which bumps the generation and writes only the rows it
changes; a merge writes a new base file before the commit that names it (`index.generations`),
so a committed generation always has its file. Should a file be missing or disagree with the
rows anyway, whoever opens the index rebuilds the vectors from the rows. Nothing is pickled.
"""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import faiss
from sift.errors import IndexNotFound, StoreError
from sift.index.keyword_index import CHANGES_SCHEMA
from sift.index.manifest import DATABASE_FILE, Manifest

SCHEMA = (
    """
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
    vector     BLOB NOT NULL,                -- int8 + scale (index.vectors; format 1: float32)
    UNIQUE (article_id, position)
);
-- Sentences removed since the vector index's base was written (index/live_vectors.py).
CREATE TABLE IF NOT EXISTS vector_tombstones (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id  INTEGER NOT NULL
);
CREATE TRIGGER IF NOT EXISTS vector_sentence_removed AFTER DELETE ON sentences BEGIN
    INSERT INTO vector_tombstones (id) VALUES (old.id);
END;
"""
    + CHANGES_SCHEMA
)

#: What format 1 (before the keyword index moved to tantivy) had and format 2 drops.
FORMAT_1_KEYWORD = """
DROP TRIGGER IF EXISTS articles_fts_insert;
DROP TRIGGER IF EXISTS articles_fts_delete;
DROP TRIGGER IF EXISTS articles_fts_update;
DROP TABLE IF EXISTS sentences_fts;
DROP TABLE IF EXISTS articles_fts;
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


def stored_manifest(directory: Path) -> Manifest | None:
    """The committed manifest of the index at `directory`; None where there is no database
    (or it holds no commit). StoreError where it cannot be read."""
    if not (directory / DATABASE_FILE).exists():
        return None
    conn = connect(directory)
    try:
        return read_manifest(conn)
    finally:
        conn.close()


def save_vectors(directory: Path, index: faiss.Index, name: str) -> None:
    """Write a vectors file atomically and durably (before the commit that names it)."""
    tmp = directory / f".{name}.{os.getpid()}.tmp"
    write_index_durably(index, tmp)
    os.replace(tmp, directory / name)
    fsync_directory(directory)


def write_index_durably(index: faiss.Index, path: Path) -> None:
    """A FAISS file written and fsynced (`path` is not renamed: the caller names it)."""
    faiss.write_index(index, str(path))
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def fsync_directory(directory: Path) -> None:
    """Make the names in `directory` durable (a rename survives a power cut)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def prune_vectors(directory: Path, keep: str | None) -> None:
    """Drop every vectors file but `keep` (older bases, or one a writer wrote before a commit
    that never happened)."""
    for old in directory.glob("vectors.*.faiss"):
        if old.name != keep:
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
#: Articles with a sentence whose vector blob is not of the stored length (one parameter).
BAD_VECTOR_SQL = "SELECT DISTINCT article_id FROM sentences WHERE length(vector) != ?"


def metadata_of(raw: str | None) -> dict[str, object]:
    return json.loads(raw) if raw else {}
