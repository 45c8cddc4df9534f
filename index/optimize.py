"""Writing a new vectors base: a merge of the changes since the last one, or a rebuild for the
index's size. By `sift optimize`, or after a commit when the changes pass a share of the base
(`index.live_vectors`), the size crossed the exact threshold, or grew well past what the IVF
was trained on.

A merge changes no row: it writes the new base as a new generation, committed as every writer
commits (`index.generations`), so readers switch to it as to any commit.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from sift.errors import StoreError
from sift.index.generations import commit_generation, next_generation
from sift.index.keyword_index import KeywordWriter, advance_keyword
from sift.index.live_vectors import MERGE_MIN, merge_reason, merged, pending_changes, sized_plan
from sift.index.lock import acquire_write_lock
from sift.index.manifest import (
    Manifest,
    VectorsInfo,
)
from sift.index.store import connect, read_manifest
from sift.index.upkeep import catch_up_keyword, upgrade_format
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
    directory: Path, conn: sqlite3.Connection, manifest: Manifest, merge_min: int = MERGE_MIN
) -> Manifest:
    """After a commit, by the writer holding the lock: the manifest to go on with, after a new
    vectors base when `why_rebuild` calls for another kind of index, or the changes since the
    base call for a merge (`live_vectors.merge_due`). One that fails leaves the commit as it
    was (the changes stay applied from the rows)."""
    rebuild, reason = merge_reason(conn, manifest, merge_min)
    if reason is None:
        return manifest
    started = time.perf_counter()
    try:
        info = manifest.vectors
        if rebuild:
            info = sized_plan(manifest)
        manifest = _commit_base(directory, conn, manifest, info, rebuild=rebuild)
    except (RuntimeError, sqlite3.Error, MemoryError, OSError) as exc:  # faiss: RuntimeError
        log.warning("vectors not merged (%s): %s; run sift optimize", reason, exc)
        return read_manifest(conn) or manifest  # what SQLite holds, had it committed after all
    log.info(
        "vectors base written as %s in %.1f s: %s",
        manifest.vectors.factory,
        _since(started),
        reason,
    )
    return manifest


def optimize(directory: Path, threshold: int | None = None, force: bool = False) -> OptimizeReport:
    """Merge the changes into a new vectors base, rebuilt for the current size (exact or IVF,
    retrained) when it no longer suits it, or always with `force`; also upgrades an older
    format and brings the keyword index up to date. Takes the write lock for the time it runs."""
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
        manifest = upgrade_format(directory, conn, manifest)
        n = manifest.counts.sentences
        recorded = manifest.vectors.threshold or EXACT_MAX
        threshold = threshold or recorded
        reason = why_rebuild(n, manifest.vectors, threshold)
        if reason is None and force:
            reason = "asked to rebuild"
        after, rebuilt = manifest.vectors, reason is not None
        pending = pending_changes(conn, manifest.vectors.covers or 0)
        if rebuilt:
            after = plan(n, manifest.model.dimension, threshold)
        elif threshold != manifest.vectors.threshold:  # the same index, under a new threshold
            reason = f"recorded the exact threshold {threshold:,}"
            after = manifest.vectors.model_copy(update={"threshold": threshold})
        elif pending or manifest.vectors.file is None:
            reason = f"merged {pending:,} changes into a new base"
        if reason is not None:
            after = _commit_base(directory, conn, manifest, after, rebuild=rebuilt).vectors
        keyword = KeywordWriter(directory)
        try:
            catch_up_keyword(keyword, conn, read_manifest(conn).generation)  # type: ignore[union-attr]
        finally:
            keyword.close()
        vacuumed = _vacuum_if_loose(conn)
        if vacuumed and reason is None:
            reason = f"reclaimed {vacuumed / 1e6:,.1f} MB of free pages"
        seconds = round(_since(started), 3)
        return OptimizeReport(n, manifest.vectors, after, reason, rebuilt, seconds)
    finally:
        conn.close()
        lock.release()


#: `sift optimize` gives the free pages of the database back (VACUUM) above this share.
LOOSE_SHARE = 0.2


def _vacuum_if_loose(conn: sqlite3.Connection) -> int:
    """VACUUM when free pages pass LOOSE_SHARE of the file (after an upgrade, or many
    removals): the bytes given back."""
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    free = conn.execute("PRAGMA freelist_count").fetchone()[0]
    if not pages or free < LOOSE_SHARE * pages:
        return 0
    size = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.execute("VACUUM")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return int(free * size)


def _commit_base(
    directory: Path,
    conn: sqlite3.Connection,
    manifest: Manifest,
    info: VectorsInfo,
    rebuild: bool,
) -> Manifest:
    """A new vectors base as the next generation, committed the way a writer commits:
    the current base with the changes folded in, or (`rebuild`) built anew from the rows."""
    new = next_generation(manifest, vectors=info)
    conn.execute("BEGIN IMMEDIATE")
    try:
        if rebuild:
            base = build(conn, manifest.model.dimension, info)
        else:
            base = merged(directory, conn, manifest)
        commit_generation(directory, conn, new, base=base)
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    advance_keyword(directory, manifest.generation, new.generation)
    return new


def rebuild_base(directory: Path, conn: sqlite3.Connection, manifest: Manifest) -> Manifest:
    """A vectors base built anew from the rows, for the index's size (`sift check --repair`)."""
    return _commit_base(directory, conn, manifest, sized_plan(manifest), rebuild=True)


def _since(started: float) -> float:
    return time.perf_counter() - started
