"""The vector index as a base and its changes: a commit writes what it adds, never the whole.

The truth is the sentence rows: each holds its vector (int8 with a scale, `index.vectors`).
The vector index searched is derived from them in two parts:

- the **base**: a FAISS file (exact or IVF, `index.vectors`) written by the last merge, holding
  every sentence up to the id `VectorsInfo.covers` that existed then;
- the **changes** since: the sentences with a larger id (the new segment, read from their rows)
  and the sentences removed since (`vector_tombstones`, filled by a trigger on `sentences`).

A commit therefore writes its rows and tombstones and nothing else. A reader loads the base
once and, at each commit, adds the new rows in memory and drops the removed ones: the work
follows the change, not the index. A trained IVF takes new vectors as they come (its quantizer
stays) until its size calls for retraining (`vectors.why_rebuild`). On an IVF a removed
sentence may stay in memory until the next merge: every IVF candidate is re-scored from its row,
and a removed row is not found, so it never reaches a result.

A **merge** folds the changes into a new base file, written before the commit that names it;
the old file is dropped after it. It runs after a commit once the changes pass a share of the
base (`merge_due`), or on `sift optimize`; readers keep searching what they hold meanwhile.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np
from sift.index.manifest import Manifest, VectorsInfo
from sift.index.vectors import (
    EXACT_MAX,
    FLAT,
    build,
    decode_vectors,
    kind_of,
    plan,
    single_threaded,
    why_rebuild,
)

log = logging.getLogger("sift.index")

#: Changes (new sentences plus tombstones) above which a merge writes a new base: this share of
#: the base, and at least MERGE_MIN. A merge rewrites the base file (58 B a sentence for an
#: IVF), so merging at 10 % growth writes about 10 x 58 B per sentence added, over time.
MERGE_SHARE = 0.10
MERGE_MIN = 20_000


@dataclass
class Changes:
    """Rows added after an id, tombstones after a sequence number, and the marks after them."""

    ids: np.ndarray
    vectors: np.ndarray
    removed: np.ndarray
    last_id: int
    last_tombstone: int


def changes_since(
    conn: sqlite3.Connection, dimension: int, after_id: int, after_tombstone: int
) -> Changes:
    ids: list[int] = []
    blobs: list[bytes] = []
    for sid, blob in conn.execute(
        "SELECT id, vector FROM sentences WHERE id > ? ORDER BY id", (after_id,)
    ):
        ids.append(sid)
        blobs.append(blob)
    tombs = conn.execute(
        "SELECT seq, id FROM vector_tombstones WHERE seq > ? ORDER BY seq", (after_tombstone,)
    ).fetchall()
    return Changes(
        ids=np.asarray(ids, dtype=np.int64),
        vectors=decode_vectors(blobs, dimension),
        removed=np.asarray([t[1] for t in tombs], dtype=np.int64),
        last_id=ids[-1] if ids else after_id,
        last_tombstone=tombs[-1][0] if tombs else after_tombstone,
    )


def pending_changes(conn: sqlite3.Connection, covers: int) -> int:
    """New sentences and tombstones that the base does not reflect."""
    row = conn.execute(
        "SELECT (SELECT count(*) FROM sentences WHERE id > ?), "
        "(SELECT count(*) FROM vector_tombstones)",
        (covers,),
    ).fetchone()
    return int(row[0] + row[1])


def merge_due(conn: sqlite3.Connection, manifest: Manifest, merge_min: int = MERGE_MIN) -> bool:
    base = max(manifest.counts.sentences, 1)
    limit = max(merge_min, MERGE_SHARE * base)
    return pending_changes(conn, manifest.vectors.covers or 0) > limit


def sized_plan(manifest: Manifest) -> VectorsInfo:
    """The vectors index that suits `manifest`'s size (exact, or IVF trained anew), under its
    recorded exact threshold."""
    threshold = manifest.vectors.threshold or EXACT_MAX
    return plan(manifest.counts.sentences, manifest.model.dimension, threshold)


def merge_reason(
    conn: sqlite3.Connection, manifest: Manifest, merge_min: int = MERGE_MIN
) -> tuple[bool, str | None]:
    """Whether a new base is due and why: (True, why) a new index for the size (`why_rebuild`),
    (False, why) a merge of the changes (`merge_due`), (False, None) none."""
    threshold = manifest.vectors.threshold or EXACT_MAX
    reason = why_rebuild(manifest.counts.sentences, manifest.vectors, threshold)
    if reason is not None:
        return True, reason
    if merge_due(conn, manifest, merge_min):
        return False, "merged the changes since the last base"
    return False, None


class _ReadWriteLock:
    """Many searches at once, or one change: FAISS may not be searched while it is added to."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0

    @contextmanager
    def reading(self) -> Iterator[None]:
        with self._cond:
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if not self._readers:
                    self._cond.notify_all()

    @contextmanager
    def writing(self) -> Iterator[None]:
        with self._cond:
            self._cond.wait_for(lambda: self._readers == 0)
            yield


class LiveVectors:
    """The base plus the changes applied to it since, in memory, safe to search from many
    threads while a refresh applies the next changes."""

    def __init__(self, index: faiss.Index, base_file: str | None, last_id: int, last_tomb: int):
        self.index = index
        self.base_file = base_file
        self.last_id = last_id
        self.last_tombstone = last_tomb
        self._lock = _ReadWriteLock()

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    @property
    def kind(self) -> str:
        return kind_of(self.index)

    def reading(self) -> contextmanager:  # type: ignore[valid-type]
        return self._lock.reading()

    @classmethod
    def load(cls, directory: Path, manifest: Manifest, conn: sqlite3.Connection) -> LiveVectors:
        """The base file with every change applied (removals too); rebuilt from the rows when
        the file is missing, unreadable or of another kind, or when the result disagrees with
        the rows. `conn` reads one committed state (the caller's transaction)."""
        single_threaded()
        info, dimension = manifest.vectors, manifest.model.dimension
        index: faiss.Index | None = None
        if info.file and (directory / info.file).exists():
            try:
                index = faiss.read_index(str(directory / info.file))
            except RuntimeError as exc:
                log.warning(
                    "vectors file %s unreadable (%s): rebuilt from the rows", info.file, exc
                )
            if index is not None and (index.d != dimension or kind_of(index) != info.type):
                index = None
        if index is not None:
            live = cls(index, info.file, info.covers or 0, 0)
            live._apply(changes_since(conn, dimension, live.last_id, 0), removals=True)
            if live.ntotal == manifest.counts.sentences:
                return live
            log.warning(
                "vectors file %s holds %d sentences with the changes, the rows %d: rebuilt",
                info.file,
                live.ntotal,
                manifest.counts.sentences,
            )
        marks = conn.execute(
            "SELECT (SELECT coalesce(max(id), 0) FROM sentences), "
            "(SELECT coalesce(max(seq), 0) FROM vector_tombstones)"
        ).fetchone()
        # Built from every row up to these marks: later commits are applied from them, as to
        # the base the manifest names (a merge that names another reloads).
        return cls(build(conn, dimension, info), info.file, marks[0], marks[1])

    def _apply(self, changes: Changes, removals: bool) -> None:
        if removals and len(changes.removed):
            self.index.remove_ids(changes.removed)
        if len(changes.ids):
            self.index.add_with_ids(changes.vectors, changes.ids)
        self.last_id, self.last_tombstone = changes.last_id, changes.last_tombstone

    def catch_up(
        self, directory: Path, manifest: Manifest, conn: sqlite3.Connection
    ) -> LiveVectors:
        """This index brought to `manifest` (read in the same transaction as `conn`): the
        changes since, applied in place, or a fresh load after a merge wrote a new base."""
        if manifest.vectors.file != self.base_file or kind_of(self.index) != manifest.vectors.type:
            return LiveVectors.load(directory, manifest, conn)
        single_threaded()
        changes = changes_since(conn, manifest.model.dimension, self.last_id, self.last_tombstone)
        with self._lock.writing():
            # A flat index answers from memory alone: removals must go. An IVF re-scores its
            # candidates from their rows: a removed one is not found, and is dropped there.
            self._apply(changes, removals=self.kind == FLAT)
        return self


def merged(directory: Path, conn: sqlite3.Connection, manifest: Manifest) -> faiss.Index:
    """A merge: the base with every change applied, as the manifest's vector info says."""
    return LiveVectors.load(directory, manifest, conn).index
