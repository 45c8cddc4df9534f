"""Merges in the background: a new vectors base is built while writes go on, and installed in
a commit that takes a moment.

A merge has two steps (`index.live_vectors` says what a base and its changes are):

1. **Build**, holding no write lock: from one committed state (a read transaction), the base
   with the changes folded in, or a new index for the size (`vectors.why_rebuild`), written
   and fsynced as `merge-<pid>-<token>.part`. Writers commit meanwhile; readers search what
   they hold.
2. **Install**, by whoever holds the write lock next (the merge's own thread when the index
   is idle, else the next writer right after its commit): the part is renamed to the next
   generation's base and committed with the id and the tombstone it folded in. Tombstones
   written after the build read its state stay, and so do the rows after its id: both are
   changes to that base. A base that moved on meanwhile (another merge, `sift optimize`) makes
   the part stale, and it is dropped.

One merge runs at a time per index (a lock file beside the database): processes serving one
index do not build the same merge twice. A crash leaves at most a part file, removed by the
next writer once the process that wrote it is gone.
"""

from __future__ import annotations

import logging
import os
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import faiss
from filelock import FileLock, Timeout
from sift.errors import WriterBusy
from sift.index.generations import BuiltBase, commit_generation, next_generation
from sift.index.keyword_index import advance_keyword
from sift.index.live_vectors import MERGE_MIN, merge_reason, merged
from sift.index.lock import acquire_write_lock
from sift.index.manifest import Manifest, VectorsInfo
from sift.index.store import connect, read_manifest
from sift.index.vectors import EXACT_MAX, build, plan

log = logging.getLogger("sift.index")

MERGE_LOCK = "merge.lock"
#: After a merge that failed, none starts again for this long (a full disk is not retried at
#: every commit).
RETRY_AFTER = 60.0


@dataclass
class Built:
    """A base built in the background, waiting to be installed."""

    base: BuiltBase
    rebuild: bool  # a new kind or a retrained IVF (its manifest info is `info`)
    info: VectorsInfo  # a rebuild's; a merge keeps the base's own at install
    started_from: str | None  # the base file it folded the changes into
    reason: str
    seconds: float


def build_merge(
    directory: Path,
    merge_min: int = MERGE_MIN,
    force: Literal["merge", "rebuild"] | None = None,
) -> Built | None:
    """Step 1: the new base from the index's committed state, written as a part file; None
    when none is due. `force`: a merge of whatever changes there are, or a rebuild for the
    index's size (an IVF retrained), due or not."""
    started = time.perf_counter()
    conn = connect(directory)
    try:
        conn.execute("BEGIN")  # one committed state, from the first read on
        manifest = read_manifest(conn)
        if manifest is None or manifest.vectors.file is None:
            return None  # the first commit writes the first base itself
        rebuild, reason = merge_reason(conn, manifest, merge_min)
        if force is not None and (reason is None or force == "rebuild"):
            rebuild, reason = force == "rebuild", f"asked to {force}"
        if reason is None:
            return None
        covers, tombstones = conn.execute(
            "SELECT (SELECT coalesce(max(id), 0) FROM sentences), "
            "(SELECT coalesce(max(seq), 0) FROM vector_tombstones)"
        ).fetchone()
        info = manifest.vectors
        if rebuild:
            threshold = manifest.vectors.threshold or EXACT_MAX
            info = plan(manifest.counts.sentences, manifest.model.dimension, threshold)
            index = build(conn, manifest.model.dimension, info)
        else:
            index = merged(directory, conn, manifest)
        conn.execute("COMMIT")
    finally:
        conn.close()
    part = directory / f"merge-{os.getpid()}-{secrets.token_hex(4)}.part"
    try:
        faiss.write_index(index, str(part))
        with open(part, "rb") as handle:
            os.fsync(handle.fileno())
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    seconds = time.perf_counter() - started
    return Built(
        BuiltBase(part, covers, tombstones), rebuild, info, manifest.vectors.file, reason, seconds
    )


def install_merge(directory: Path, conn: sqlite3.Connection, built: Built) -> Manifest | None:
    """Step 2, by the holder of the write lock, outside a transaction: the next generation
    with the built base; None (and the part dropped) when the base moved on since."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        current = read_manifest(conn)
        if current is None or current.vectors.file != built.started_from:
            conn.execute("ROLLBACK")
            built.base.part.unlink(missing_ok=True)
            return None
        info = built.info if built.rebuild else current.vectors
        new = next_generation(current, vectors=info)
        commit_generation(directory, conn, new, base=built.base)
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        built.base.part.unlink(missing_ok=True)
        raise
    advance_keyword(directory, current.generation, new.generation)
    return new


class BackgroundMerges:
    """The merges of one engine: at most one at a time, built on a thread of its own.

    `write_lock` is the engine's own lock around its writes: the thread installs only when it
    gets that lock and the index's write lock at once, and otherwise leaves the built base to
    the next writer (`after_commit`)."""

    def __init__(self, directory: Path, merge_min: int, write_lock: threading.Lock):
        self.directory = directory
        self.merge_min = merge_min
        self._write_lock = write_lock
        self._guard = threading.Lock()
        self._thread: threading.Thread | None = None
        self._built: Built | None = None
        self._failed_at = -RETRY_AFTER

    def after_commit(self, conn: sqlite3.Connection, manifest: Manifest) -> Manifest:
        """By a writer that holds the write lock, right after its commit: a merge built
        meanwhile is installed, and one is started when one is due. The manifest to go on with."""
        manifest = self._install(conn) or manifest
        with self._guard:
            if self._thread is not None and self._thread.is_alive():
                return manifest
            if time.monotonic() - self._failed_at < RETRY_AFTER:
                return manifest
            if merge_reason(conn, manifest, self.merge_min)[1] is None:
                return manifest
            self._thread = threading.Thread(target=self._run, name="sift-merge", daemon=True)
            self._thread.start()
        return manifest

    def busy(self) -> bool:
        thread = self._thread
        return self._built is not None or (thread is not None and thread.is_alive())

    def wait(self) -> None:
        """Until the merge under way is built and installed (waiting for the write lock)."""
        thread = self._thread
        if thread is not None:
            thread.join()
        if self._built is not None:
            with self._write_lock:
                lock = acquire_write_lock(self.directory, wait=600.0)
                try:
                    self._install_with_own_connection()
                finally:
                    lock.release()

    def _run(self) -> None:
        merge_lock = FileLock(str(self.directory / MERGE_LOCK), thread_local=False)
        try:
            merge_lock.acquire(timeout=0)
        except Timeout:
            return  # another process builds this merge
        try:
            built = build_merge(self.directory, self.merge_min)
        except (RuntimeError, sqlite3.Error, OSError, MemoryError) as exc:  # faiss: RuntimeError
            self._failed_at = time.monotonic()
            log.warning("vectors not merged: %s; the next commit after a minute tries again", exc)
            return
        finally:
            merge_lock.release()
        if built is None:
            return
        with self._guard:
            self._built = built
        # Idle index: install now. Otherwise the writer holding the lock does, after its commit.
        if not self._write_lock.acquire(blocking=False):
            return
        try:
            try:
                lock = acquire_write_lock(self.directory)
            except WriterBusy:
                return
            try:
                self._install_with_own_connection()
            finally:
                lock.release()
        finally:
            self._write_lock.release()

    def _install_with_own_connection(self) -> None:
        conn = connect(self.directory)
        try:
            self._install(conn)
        finally:
            conn.close()

    def _install(self, conn: sqlite3.Connection) -> Manifest | None:
        with self._guard:
            built, self._built = self._built, None
        if built is None:
            return None
        try:
            new = install_merge(self.directory, conn, built)
        except (RuntimeError, sqlite3.Error, OSError) as exc:
            self._failed_at = time.monotonic()
            log.warning("merged vectors base not installed: %s", exc)
            return read_manifest(conn)  # what SQLite holds, had it committed after all
        if new is None:
            log.info("merged vectors base dropped: the base moved on while it was built")
            return None
        log.info(
            "vectors base %s written in the background in %.1f s: %s",
            new.vectors.file,
            built.seconds,
            built.reason,
        )
        return new
