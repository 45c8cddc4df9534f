"""Bringing an index up to date on opening: an older format upgraded in place, and a keyword
index that lags the database (a crash after a commit) caught up from it.

Whoever writes does this on opening (it holds the write lock); a reader does it too when no one
writes, so that a server started on an upgraded or crashed index serves it whole.
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import numpy as np
from sift.errors import StoreError, WriterBusy
from sift.index.generations import commit_generation, next_generation
from sift.index.keyword_index import KeywordWriter
from sift.index.lock import acquire_write_lock
from sift.index.manifest import FORMAT_VERSION, Manifest
from sift.index.store import FORMAT_1_KEYWORD, SCHEMA, connect, read_manifest
from sift.index.vectors import encode_vector

log = logging.getLogger("sift.index")


def upgrade_format(directory: Path, conn: sqlite3.Connection, manifest: Manifest) -> Manifest:
    """An index written by an older sift, upgraded in place (nothing stored is lost). Format 1
    kept its keyword index in SQLite FTS5 tables, which format 2 drops for tantivy (built from
    the rows by `catch_up_keyword`), and its vectors as float32, which format 2 stores as int8
    with a scale; its vectors file becomes the base that later commits add to. The writer
    holds the lock; it all happens in one transaction, so a crash leaves format 1 as it was."""
    if manifest.format_version >= FORMAT_VERSION:
        return manifest
    log.warning(
        "upgrading the index at %s from format %d to %d: the keyword index moves from SQLite "
        "FTS5 to tantivy (built once from the stored rows) and vectors are stored as int8; "
        "nothing stored is lost. `sift optimize` then gives the freed space back.",
        directory,
        manifest.format_version,
        FORMAT_VERSION,
    )
    conn.execute("BEGIN IMMEDIATE")
    try:
        for statement in FORMAT_1_KEYWORD.split(";"):
            if statement.strip():
                conn.execute(statement)
        for statement in _statements(SCHEMA):
            conn.execute(statement)
        _halve_vectors(conn, manifest.model.dimension)
        covers = conn.execute("SELECT coalesce(max(id), 0) FROM sentences").fetchone()[0]
        vectors = manifest.vectors.model_copy(update={"covers": covers})
        new = next_generation(manifest, format_version=FORMAT_VERSION, vectors=vectors)
        conn.execute("DELETE FROM keyword_changes")  # the keyword index is built from every row
        commit_generation(directory, conn, new)
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return new


def _statements(script: str) -> list[str]:
    """The statements of a script, triggers (with their inner semicolons) whole."""
    out: list[str] = []
    for piece in script.split(";"):
        if out and not sqlite3.complete_statement(out[-1] + ";"):
            out[-1] += ";" + piece
        elif piece.strip():
            out.append(piece)
    return [s for s in out if s.strip()]


def _halve_vectors(conn: sqlite3.Connection, dimension: int) -> None:
    """float32 vector blobs rewritten as int8 with a scale, in batches."""
    wide = dimension * 4
    last = 0
    while True:
        rows = conn.execute(
            "SELECT id, vector FROM sentences WHERE id > ? ORDER BY id LIMIT 50000", (last,)
        ).fetchall()
        if not rows:
            return
        last = rows[-1][0]
        narrow = [
            (encode_vector(np.frombuffer(blob, dtype=np.float32)), sid)
            for sid, blob in rows
            if len(blob) == wide
        ]
        conn.executemany("UPDATE sentences SET vector = ? WHERE id = ?", narrow)


def catch_up_keyword(keyword: KeywordWriter, conn: sqlite3.Connection, generation: int) -> None:
    """Bring the keyword index to the committed `generation`: the changes recorded since it last
    caught up (all of them again, which is harmless), or everything when it has no state."""
    if not keyword.lagging(generation):
        return
    rebuild = keyword.needs_rebuild
    applied = keyword.sync(conn, generation, replay=True)
    if rebuild and applied:
        log.warning("keyword index built from the database: %d rows", applied)
    else:
        log.info("keyword index caught up with generation %d: %d keys", generation, applied)


def refuse_newer(directory: Path, manifest: Manifest) -> None:
    """An index written by a newer sift is neither read nor touched (its files may differ)."""
    if manifest.format_version > FORMAT_VERSION:
        raise StoreError(
            f"index {directory} has format version {manifest.format_version}; this "
            f"sift reads up to {FORMAT_VERSION}: upgrade sift"
        )


def bring_up_to_date(
    directory: Path, manifest: Manifest, keyword_generation: int | None, locked: bool = False
) -> bool:
    """For a reader: upgrade the format, or catch the keyword index up, when either is due and
    no one else writes (a writer does both itself). True when something was done. A failure
    (a full disk, a read-only folder) is logged: the reader goes on with what there is.
    `locked`: the caller holds the index's write lock already."""
    refuse_newer(directory, manifest)
    due = manifest.format_version < FORMAT_VERSION or keyword_generation != manifest.generation
    if not due:
        return False
    try:
        return _bring_up_to_date(directory, locked)
    except (StoreError, OSError, ValueError, sqlite3.Error) as exc:
        log.warning("index %s not brought up to date: %s", directory, exc)
        return False


def _bring_up_to_date(directory: Path, locked: bool) -> bool:
    try:
        lock = None if locked else acquire_write_lock(directory)
    except WriterBusy:
        return False
    try:
        conn = connect(directory)
        try:
            committed = read_manifest(conn)
            if committed is None:
                return False
            committed = upgrade_format(directory, conn, committed)
            keyword = KeywordWriter(directory)
            try:
                catch_up_keyword(keyword, conn, committed.generation)
            finally:
                keyword.close()
        finally:
            conn.close()
    finally:
        if lock is not None:
            lock.release()
    return True
