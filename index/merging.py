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

One merge runs at a time per index: it holds `merge.lock` from its build until its base is
installed or dropped, so processes serving one index do not build the same merge twice. A
crash leaves at most a part file, removed by the next writer that finds the lock free.
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

from filelock import FileLock, Timeout
from sift.errors import WriterBusy
from sift.index.generations import MERGE_LOCK, BuiltBase, commit_generation, next_generation
from sift.index.keyword_index import advance_keyword
from sift.index.live_vectors import MERGE_MIN, merge_reason, merged, sized_plan
from sift.index.lock import acquire_write_lock
from sift.index.manifest import Manifest, VectorsInfo
from sift.index.store import connect, read_manifest, write_index_durably
from sift.index.vectors import build

log = logging.getLogger("sift.index")

#: After a merge that failed, none starts again for this long (a full disk is not retried at
#: every commit).
RETRY_AFTER = 60.0
#: Seconds a built base waits for the index's write lock before it is dropped (a long run of
#: another process holds it; that run's own commits then call for a merge of their own).
INSTALL_PATIENCE = 60.0


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
    index's size (an IVF retrained), due or not. The caller holds `merge.lock` until the part
    is installed or dropped: a writer that finds the lock free removes every part."""
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
            info = sized_plan(manifest)
            index = build(conn, manifest.model.dimension, info)
        else:
            index = merged(directory, conn, manifest)
        conn.execute("COMMIT")
    finally:
        conn.close()
    part = directory / f"merge-{os.getpid()}-{secrets.token_hex(4)}.part"
    try:
        write_index_durably(index, part)
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
    """The merges of one engine: at most one at a time, on a thread of its own, which holds
    `merge.lock` from the build until its base is installed or dropped.

    `write_lock` is the engine's own lock around its writes. The thread installs when it gets
    that lock and the index's write lock at once, trying again for INSTALL_PATIENCE seconds;
    a writer of this engine that commits meanwhile installs it first (`after_commit`)."""

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
        meanwhile is installed, and one is started when one is due. The manifest to go on with.
        Never raises: the commit it follows is made, whatever happens to a merge."""
        try:
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
        except Exception:
            self._failed_at = time.monotonic()
            log.exception("no merge of the vectors after this commit")
        return manifest

    def busy(self) -> bool:
        thread = self._thread
        return self._built is not None or (thread is not None and thread.is_alive())

    def wait(self) -> None:
        """Until the merge under way is installed, or left to a later writer (when the index's
        write lock stays taken by another process for INSTALL_PATIENCE seconds)."""
        thread = self._thread
        if thread is not None:
            thread.join()

    def _run(self) -> None:
        merge_lock = FileLock(str(self.directory / MERGE_LOCK), thread_local=False)
        try:
            merge_lock.acquire(timeout=0)
        except Timeout:
            return  # another process builds or installs a merge of this index
        try:
            try:
                built = build_merge(self.directory, self.merge_min)
            except Exception as exc:  # faiss: RuntimeError; a damaged row: ValueError
                self._failed_at = time.monotonic()
                log.warning("vectors not merged: %s; a commit a minute from now tries again", exc)
                return
            if built is None:
                return
            with self._guard:
                self._built = built
            self._install_when_free()
        finally:
            with self._guard:
                left, self._built = self._built, None
            if left is not None:  # never installed: a later writer merges again
                left.base.part.unlink(missing_ok=True)
            merge_lock.release()

    def _install_when_free(self) -> None:
        """Install the built base once this engine and every other process leave the index's
        write lock free (an engine's writer that commits first installs it instead)."""
        deadline = time.monotonic() + INSTALL_PATIENCE
        pause = 0.05
        while self._built is not None and time.monotonic() < deadline:
            if self._write_lock.acquire(blocking=False):
                try:
                    lock = acquire_write_lock(self.directory)
                except WriterBusy:
                    lock = None
                try:
                    if lock is not None:
                        self._install_with_own_connection()
                        return
                finally:
                    if lock is not None:
                        lock.release()
                    self._write_lock.release()
            time.sleep(pause)
            pause = min(pause * 2, 1.0)
        if self._built is not None:
            log.info("merged vectors base left to a later writer: the index stayed busy")

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
        except Exception as exc:
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
