"""A consistent copy of an index while a writer keeps committing (`sift snapshot DEST`).

The database is copied with SQLite's online backup API, which reads one committed state (a
read transaction over the WAL) however many commits land meanwhile. The copy's manifest then
names its generation and the vectors base of that generation, which was written before its
commit (`index.generations`), so it is copied as it is, unless the writer has since merged and
pruned it: then the base is rebuilt from the copied rows, which are the truth. The keyword
index is built from the copied rows.
Nothing is taken from the source's manifest.json or write lock.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import faiss
import numpy as np
from sift.errors import InvalidRequest, StoreError
from sift.index.manifest import DATABASE_FILE, MANIFEST_FILE, Manifest, manifest_json
from sift.index.store import connect, read_manifest, save_vectors
from sift.index.upkeep import bring_up_to_date
from sift.index.vectors import build


@dataclass(frozen=True)
class SnapshotReport:
    source: str
    destination: str
    generation: int
    articles: int
    sentences: int
    vectors: Literal["copied", "rebuilt"]  # rebuilt: the writer had pruned that generation's file
    bytes: int
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def snapshot(source: Path, destination: Path) -> SnapshotReport:
    """Copy the index at `source` into `destination`, which must be new or an empty folder."""
    started = time.perf_counter()
    if destination.exists() and (not destination.is_dir() or any(destination.iterdir())):
        what = "an index" if (destination / DATABASE_FILE).exists() else "not an empty folder"
        raise InvalidRequest(f"{destination} is {what}: a snapshot goes to a new folder")
    if destination.resolve() == source.resolve():
        raise InvalidRequest("a snapshot cannot be written over its own index")
    conn = connect(source)  # IndexNotFound, with the fix, when there is no index
    made = not destination.exists()
    destination.mkdir(parents=True, exist_ok=True)
    tmp = destination / f".{DATABASE_FILE}.{os.getpid()}.snapshot"
    try:
        copy = sqlite3.connect(tmp, isolation_level=None)
        try:
            conn.backup(copy)  # all pages in one step: one committed state
            copy.execute("PRAGMA journal_mode=WAL")
            manifest = read_manifest(copy)
            if manifest is None:
                raise StoreError(f"index at {source} has no manifest: it was never committed")
            how = _vectors(source, destination, manifest, copy)
        finally:
            copy.close()
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        (destination / MANIFEST_FILE).write_text(manifest_json(manifest), encoding="utf-8")
        os.replace(tmp, destination / DATABASE_FILE)  # last: the folder is an index from here on
        bring_up_to_date(destination, manifest, None)  # its keyword index, from its rows
    except BaseException:  # no half copy is left to look like an index
        shutil.rmtree(destination) if made else [p.unlink() for p in destination.iterdir()]
        raise
    finally:
        conn.close()
    size = sum(p.stat().st_size for p in destination.iterdir() if p.is_file())
    return SnapshotReport(
        source=str(source),
        destination=str(destination),
        generation=manifest.generation,
        articles=manifest.counts.articles,
        sentences=manifest.counts.sentences,
        vectors=how,
        bytes=size,
        seconds=round(time.perf_counter() - started, 3),
    )


def _vectors(
    source: Path, destination: Path, manifest: Manifest, copy: sqlite3.Connection
) -> Literal["copied", "rebuilt"]:
    """The copy's vectors base: the source's file as it is, or, when a later merge has pruned
    it, built again from the copied rows it covers (the changes since are read from the rows)."""
    name = manifest.vectors.file
    if name is None:
        return "copied"  # no base yet: every vector is read from the rows
    target = destination / name
    try:
        shutil.copyfile(source / name, target)  # written whole and renamed: never half a file
        index = faiss.read_index(str(target))
        if index.d == manifest.model.dimension:
            return "copied"
    except (FileNotFoundError, RuntimeError):
        pass  # pruned by a later merge (or unreadable): the rows are the truth
    target.unlink(missing_ok=True)
    base = build(copy, manifest.model.dimension, manifest.vectors, up_to=manifest.vectors.covers)
    removed = [r[0] for r in copy.execute("SELECT id FROM vector_tombstones")]
    if removed:
        base.remove_ids(np.asarray(removed, dtype=np.int64))
    save_vectors(destination, base, name)
    return "rebuilt"
