"""Generations: how an index comes to be, how a change becomes the next generation, and how
an index left by a crash is brought back to its last commit.

The rule, for every writer (a run, a repair, a rebuild by optimize): the vectors file of the
new generation is written *before* the SQLite COMMIT that names it, so a committed generation
always has its file. A crash before the commit leaves a file of a generation that never was,
which the next writer drops; a crash after it leaves at most a stale manifest.json, rewritten
from the database (the truth) by the next writer.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import faiss
from sift.index.manifest import (
    DATABASE_FILE,
    MANIFEST_FILE,
    Manifest,
    manifest_json,
    now_iso,
    vectors_file,
    write_json_atomically,
)
from sift.index.store import SCHEMA, prune_vectors, save_vectors


def create_index(directory: Path, manifest: Manifest) -> None:
    """A new index, committed empty: made under a temporary name and renamed into place, so
    there is never a database without its manifest, whenever a run is killed."""
    manifest.vectors.file = vectors_file(manifest.generation)
    tmp = directory / f".{DATABASE_FILE}.{os.getpid()}.new"
    tmp.unlink(missing_ok=True)
    conn = sqlite3.connect(tmp, isolation_level=None)
    try:
        conn.executescript(SCHEMA)
        conn.execute(
            "INSERT INTO meta (key, value) VALUES ('manifest', ?)", (manifest.model_dump_json(),)
        )
    finally:
        conn.close()
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, directory / DATABASE_FILE)


def heal_files(directory: Path, manifest: Manifest, vectors: faiss.Index) -> None:
    """After a crash between a commit and its files: write what the commit left unwritten
    (`vectors` were loaded, or rebuilt, from the database), and drop half-written files."""
    for stale in directory.glob(".*.tmp"):
        stale.unlink(missing_ok=True)
    if not (directory / vectors_file(manifest.generation)).exists():
        save_vectors(directory, vectors, manifest.generation)
    prune_vectors(directory, manifest.generation)
    written = directory / MANIFEST_FILE
    if not written.exists() or written.read_text(encoding="utf-8") != manifest_json(manifest):
        write_json_atomically(written, manifest_json(manifest))


def next_generation(manifest: Manifest, **update: Any) -> Manifest:
    """The manifest of the generation after `manifest`, with `update` applied."""
    generation = manifest.generation + 1
    new = manifest.model_copy(update={**update, "generation": generation, "updated": now_iso()})
    new.vectors = new.vectors.model_copy(update={"file": vectors_file(generation)})
    return new


def commit_generation(
    directory: Path,
    conn: sqlite3.Connection,
    manifest: Manifest,
    vectors: faiss.Index,
    meta: Mapping[str, str] | None = None,
) -> None:
    """Make `manifest` (from `next_generation`) and `vectors` the committed state. `conn` is in
    the write transaction that staged the rows; it ends committed, or raises with the caller
    left to roll back (nothing of the new generation is then visible)."""
    rows = [("manifest", manifest.model_dump_json()), *(meta or {}).items()]
    conn.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", rows)
    save_vectors(directory, vectors, manifest.generation, prune=False)
    conn.execute("COMMIT")
    prune_vectors(directory, manifest.generation)
    write_json_atomically(directory / MANIFEST_FILE, manifest_json(manifest))
