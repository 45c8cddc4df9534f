"""Rebuilding the vector index for the index's size: by `sift optimize`, or after a commit when
the size crossed the exact threshold or grew well past what the IVF was trained on.

A rebuild changes no row: it writes the new index as a new generation, committed as every
writer commits (`index.generations`), so readers switch to it as to any commit.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

import faiss
from sift.errors import StoreError
from sift.index.generations import commit_generation, next_generation
from sift.index.lock import acquire_write_lock
from sift.index.manifest import (
    Manifest,
    VectorsInfo,
)
from sift.index.store import connect, load_vectors, read_manifest
from sift.index.vectors import EXACT_MAX, build, plan, why_rebuild

log = logging.getLogger("sift.index")


@dataclass
class OptimizeReport:
    """What `optimize` found and did."""

    sentences: int
    before: VectorsInfo
    after: VectorsInfo
    reason: str | None  # None: the index already suited its size, nothing changed
    rebuilt: bool  # False with a reason: only the recorded threshold changed
    seconds: float

    def as_dict(self) -> dict[str, object]:
        return {
            "sentences": self.sentences,
            "rebuilt": self.rebuilt,
            "reason": self.reason,
            "before": self.before.model_dump(mode="json"),
            "after": self.after.model_dump(mode="json"),
            "seconds": self.seconds,
        }


def maybe_optimize(
    directory: Path, conn: sqlite3.Connection, manifest: Manifest, vectors: faiss.Index
) -> tuple[Manifest, faiss.Index]:
    """After a commit, by the writer holding the lock: the manifest and vectors to go on with,
    rebuilt when `why_rebuild` says so. A rebuild that fails leaves the commit as it was."""
    threshold = manifest.vectors.threshold or EXACT_MAX
    reason = why_rebuild(vectors, manifest.vectors, threshold)
    if reason is None:
        return manifest, vectors
    started = time.perf_counter()
    try:
        info = plan(vectors.ntotal, manifest.model.dimension, threshold)
        rebuilt = build(conn, manifest.model.dimension, info)
        manifest = _commit_generation(directory, conn, manifest, info, rebuilt)
    except (RuntimeError, sqlite3.Error, MemoryError) as exc:  # faiss raises RuntimeError
        log.warning("vector index not rebuilt (%s): %s; run sift optimize", reason, exc)
        return manifest, vectors
    log.info("vector index rebuilt as %s in %.1f s: %s", info.factory, _since(started), reason)
    return manifest, rebuilt


def optimize(directory: Path, threshold: int | None = None, force: bool = False) -> OptimizeReport:
    """Rebuild the vector index for the current size (exact or IVF, retrained) when it no
    longer suits it, or always with `force`. Takes the write lock for the time it runs."""
    started = time.perf_counter()
    lock = acquire_write_lock(directory)
    try:
        conn = connect(directory)
    except BaseException:
        lock.release()
        raise
    try:
        manifest = read_manifest(conn)
        if manifest is None:
            raise StoreError(f"index at {directory} has no manifest: it was never committed")
        vectors = load_vectors(directory, manifest, conn)
        recorded = manifest.vectors.threshold or EXACT_MAX
        threshold = threshold or recorded
        reason = why_rebuild(vectors, manifest.vectors, threshold)
        if reason is None and force:
            reason = "asked to rebuild"
        after, rebuilt = manifest.vectors, reason is not None
        if rebuilt:
            after = plan(vectors.ntotal, manifest.model.dimension, threshold)
            vectors = build(conn, manifest.model.dimension, after)
        elif threshold != manifest.vectors.threshold:  # the same index, under a new threshold
            reason = f"recorded the exact threshold {threshold:,}"
            after = manifest.vectors.model_copy(update={"threshold": threshold})
        if reason is not None:
            after = _commit_generation(directory, conn, manifest, after, vectors).vectors
        seconds = round(_since(started), 3)
        return OptimizeReport(vectors.ntotal, manifest.vectors, after, reason, rebuilt, seconds)
    finally:
        conn.close()
        lock.release()


def _commit_generation(
    directory: Path,
    conn: sqlite3.Connection,
    manifest: Manifest,
    info: VectorsInfo,
    vectors: faiss.Index,
) -> Manifest:
    """The rebuilt vectors as the next generation, committed the way a writer commits."""
    new = next_generation(manifest, vectors=info)
    conn.execute("BEGIN IMMEDIATE")
    try:
        commit_generation(directory, conn, new, vectors)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return new


def _since(started: float) -> float:
    return time.perf_counter() - started
