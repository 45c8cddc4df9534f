"""Generations: how an index comes to be, how a change becomes the next generation, and how
an index left by a crash is brought back to its last commit.

The rule, for every writer (a run, a repair, a merge by optimize): a commit writes its rows;
a merge's new vectors base is written *before* the SQLite COMMIT that names it, so a committed
generation always has its file. A crash before the commit leaves a file of a generation that
never was, which the next writer drops; a crash after it leaves at most a stale manifest.json,
rewritten from the database (the truth) by the next writer, and a keyword index a generation
behind, caught up from the rows (`index.upkeep`).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
from filelock import FileLock, Timeout
from sift.index.manifest import (
    DATABASE_FILE,
    MANIFEST_FILE,
    Manifest,
    manifest_json,
    now_iso,
    vectors_file,
    write_json_atomically,
)
from sift.index.store import SCHEMA, fsync_directory, prune_vectors, save_vectors

#: Bases that merges in the background wrote ahead of their commit (`index.merging`), and
#: the lock a merge holds from its build until its base is installed or dropped.
PART_GLOB = "merge-*.part"
MERGE_LOCK = "merge.lock"


def create_index(directory: Path, manifest: Manifest) -> None:
    """A new index, committed empty: made under a temporary name and renamed into place, so
    there is never a database without its manifest, whenever a run is killed."""
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


def heal_files(directory: Path, manifest: Manifest) -> None:
    """After a crash: drop half-written files and vectors files no commit names, and bring
    manifest.json (a description of the committed state) up to date."""
    for stale in directory.glob(".*.tmp"):
        stale.unlink(missing_ok=True)
    remove_orphan_parts(directory)
    prune_vectors(directory, manifest.vectors.file)
    written = directory / MANIFEST_FILE
    if not written.exists() or written.read_text(encoding="utf-8") != manifest_json(manifest):
        write_json_atomically(written, manifest_json(manifest))


def remove_orphan_parts(directory: Path) -> None:
    """Bases built in the background (`index.merging`) that no merge holds any more: a merge
    holds `merge.lock` from its build to its install, so while the lock is free every part
    is left over from a crash."""
    parts = list(directory.glob(PART_GLOB))
    if not parts:
        return
    lock = FileLock(str(directory / MERGE_LOCK), thread_local=False)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return  # a merge is under way, here or in another process
    try:
        for part in parts:
            part.unlink(missing_ok=True)
    finally:
        lock.release()


@dataclass
class BuiltBase:
    """A vectors base written ahead of its commit by a merge in the background: the part
    file, and the last sentence id and tombstone it folds in."""

    part: Path
    covers: int
    tombstones: int


def next_generation(manifest: Manifest, **update: Any) -> Manifest:
    """The manifest of the generation after `manifest`, with `update` applied."""
    generation = manifest.generation + 1
    return manifest.model_copy(update={**update, "generation": generation, "updated": now_iso()})


def commit_generation(
    directory: Path,
    conn: sqlite3.Connection,
    manifest: Manifest,
    meta: Mapping[str, str] | None = None,
    base: faiss.Index | BuiltBase | None = None,
) -> None:
    """Make `manifest` (from `next_generation`) the committed state. `conn` is in the write
    transaction that staged the rows; it ends committed, or raises with the caller left to roll
    back (nothing of the new generation is then visible). `base`: a merge's new vector base,
    written (durably) before the commit that names it, or one a merge wrote ahead (`BuiltBase`);
    the removals it folds in are forgotten in the same commit."""
    if base is not None:
        name = vectors_file(manifest.generation)
        if isinstance(base, BuiltBase):  # built from an earlier state: later changes stay
            covers = base.covers
            os.replace(base.part, directory / name)
            fsync_directory(directory)  # the new name is durable before the commit naming it
            conn.execute("DELETE FROM vector_tombstones WHERE seq <= ?", (base.tombstones,))
        else:
            covers = conn.execute("SELECT coalesce(max(id), 0) FROM sentences").fetchone()[0]
            save_vectors(directory, base, name)
            conn.execute("DELETE FROM vector_tombstones")
        manifest.vectors = manifest.vectors.model_copy(update={"file": name, "covers": covers})
    rows = [("manifest", manifest.model_dump_json()), *(meta or {}).items()]
    conn.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", rows)
    conn.execute("COMMIT")
    prune_vectors(directory, manifest.vectors.file)
    write_json_atomically(directory / MANIFEST_FILE, manifest_json(manifest))
