"""A consistent copy of an index while a writer keeps committing (`sift snapshot DEST`).

The database is copied with SQLite's online backup API, which reads one committed state (a
read transaction over the WAL) however many commits land meanwhile. The copy's manifest then
names its generation and the vectors base of that generation, which was written before its
commit (`index.generations`), so it is copied as it is, unless the writer has since merged and
pruned it: then the base is rebuilt from the copied rows, which are the truth. The keyword
index is built from the copied rows.
Nothing is taken from the source's manifest.json or write lock.

A repeated snapshot (`sift snapshot DEST --from PREVIOUS`) writes only what is new since an
earlier snapshot of the same index: the files that do not change once written, the vectors
base and the keyword index's segments, are hard-linked from PREVIOUS (copied where the two
folders are on different file systems), and the keyword index is caught up with the rows
that differ between the two databases instead of built from all of them. The database is
copied whole: it is the truth, and one committed state of it is what makes the copy
consistent. PREVIOUS is not changed; it stays a working index.
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
from sift.index.keyword_index import keyword_dir, keyword_generation
from sift.index.manifest import DATABASE_FILE, MANIFEST_FILE, Manifest, manifest_json
from sift.index.store import connect, read_manifest, save_vectors, stored_manifest
from sift.index.upkeep import bring_up_to_date
from sift.index.vectors import build

#: The rows whose keyword documents differ between an earlier snapshot's database (`prev`)
#: and the new copy. A sentence's text never changes in place (a new text is a new id), but
#: it may pass to another article (a copy that inherits it, with its own title); an article
#: is compared by content and by whether it holds its text itself (a copy that inherits the
#: text keeps its content hash).
_CHANGED_KEYS = """
INSERT OR IGNORE INTO keyword_changes (kind, key, op)
SELECT 's', id, 'change' FROM (
    SELECT id, article_id FROM main.sentences EXCEPT SELECT id, article_id FROM prev.sentences)
UNION ALL
SELECT 's', id, 'change' FROM (
    SELECT id, article_id FROM prev.sentences EXCEPT SELECT id, article_id FROM main.sentences)
UNION ALL
SELECT 'a', num, 'change' FROM (
    SELECT num, content_hash, duplicate_of FROM main.articles
    EXCEPT SELECT num, content_hash, duplicate_of FROM prev.articles)
UNION ALL
SELECT 'a', num, 'change' FROM (
    SELECT num, content_hash, duplicate_of FROM prev.articles
    EXCEPT SELECT num, content_hash, duplicate_of FROM main.articles)
"""


@dataclass(frozen=True)
class SnapshotReport:
    source: str
    destination: str
    generation: int
    articles: int
    sentences: int
    vectors: Literal["copied", "rebuilt", "linked"]  # rebuilt: the writer had pruned it
    keyword: Literal["built", "caught up"]  # caught up: from PREVIOUS, with the rows that differ
    bytes: int
    written_bytes: int  # what this snapshot wrote: `bytes` less the files linked from PREVIOUS
    seconds: float
    previous: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def snapshot(source: Path, destination: Path, previous: Path | None = None) -> SnapshotReport:
    """Copy the index at `source` into `destination`, which must be new or an empty folder;
    with `previous` (an earlier snapshot of the same index), write only what is new."""
    started = time.perf_counter()
    if destination.exists() and (not destination.is_dir() or any(destination.iterdir())):
        what = "an index" if (destination / DATABASE_FILE).exists() else "not an empty folder"
        raise InvalidRequest(f"{destination} is {what}: a snapshot goes to a new folder")
    if destination.resolve() == source.resolve():
        raise InvalidRequest("a snapshot cannot be written over its own index")
    conn = connect(source)  # IndexNotFound, with the fix, when there is no index
    try:
        earlier = _earlier(previous, source, conn) if previous is not None else None
    except BaseException:
        conn.close()
        raise
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
            how = _vectors(source, destination, manifest, copy, earlier)
            keyword = (
                "caught up" if earlier and _keyword_from(earlier, destination, copy) else "built"
            )
        finally:
            copy.close()
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        (destination / MANIFEST_FILE).write_text(manifest_json(manifest), encoding="utf-8")
        os.replace(tmp, destination / DATABASE_FILE)  # last: the folder is an index from here on
        # Its keyword index: from its rows, or caught up with those that differ from PREVIOUS.
        bring_up_to_date(destination, manifest, None)
        if keyword_generation(destination) != manifest.generation:
            raise StoreError(f"the keyword index of {destination} could not be written (see log)")
    except BaseException:  # no half copy is left to look like an index
        if made:
            shutil.rmtree(destination)
        else:
            for p in destination.iterdir():
                shutil.rmtree(p) if p.is_dir() else p.unlink()
        raise
    finally:
        conn.close()
    files = [p.stat() for p in destination.rglob("*") if p.is_file()]
    return SnapshotReport(
        source=str(source),
        destination=str(destination),
        generation=manifest.generation,
        articles=manifest.counts.articles,
        sentences=manifest.counts.sentences,
        vectors=how,
        keyword=keyword,  # type: ignore[arg-type]
        bytes=sum(f.st_size for f in files),
        written_bytes=sum(f.st_size for f in files if f.st_nlink == 1),
        seconds=round(time.perf_counter() - started, 3),
        previous=str(earlier.directory) if earlier else None,
    )


@dataclass(frozen=True)
class _Earlier:
    """An earlier snapshot of the index being copied: what a repeated snapshot builds on."""

    directory: Path
    manifest: Manifest
    keyword_current: bool  # its keyword index reflects its own generation


def _earlier(previous: Path, source: Path, conn: sqlite3.Connection) -> _Earlier:
    """`previous`, checked to be a snapshot of the index at `source`; InvalidRequest if not."""
    if previous.resolve() == source.resolve():
        raise InvalidRequest("--from names the index itself: give an earlier snapshot of it")
    if not (previous / DATABASE_FILE).exists():
        raise InvalidRequest(f"--from {previous}: no sift index there")
    theirs = stored_manifest(previous)
    ours = read_manifest(conn)
    same = (
        theirs is not None
        and ours is not None
        and (theirs.created, theirs.model.fingerprint) == (ours.created, ours.model.fingerprint)
    )
    if not same:
        raise InvalidRequest(f"--from {previous} is not a snapshot of {source}")
    assert theirs is not None
    current = keyword_generation(previous) == theirs.generation
    return _Earlier(previous, theirs, current)


def _share(source: Path, target: Path) -> bool:
    """`target` as the same file as `source` (a hard link: True), or a copy where a link
    cannot be made (another file system: False)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)
        return False
    return True


def _keyword_from(earlier: _Earlier, destination: Path, copy: sqlite3.Connection) -> bool:
    """The earlier snapshot's keyword index, linked file by file (tantivy never rewrites a
    file: new segments, deletions and its meta file are new files, renamed into place), with
    the keys that differ between the two databases recorded for it to catch up on. False
    where it cannot be trusted (it lags its own database): the copy's is then built anew."""
    if not earlier.keyword_current:
        return False
    source = keyword_dir(earlier.directory)
    for path in source.rglob("*"):
        if path.is_file() and not path.name.endswith(".lock"):
            _share(path, keyword_dir(destination) / path.relative_to(source))
    copy.execute("ATTACH DATABASE ? AS prev", (str(earlier.directory / DATABASE_FILE),))
    try:
        copy.execute("BEGIN")
        try:
            copy.execute("DELETE FROM keyword_changes")  # the source's own, not ours
            copy.execute(_CHANGED_KEYS)
        except BaseException:
            copy.execute("ROLLBACK")
            raise
        copy.execute("COMMIT")
    finally:
        copy.execute("DETACH DATABASE prev")
    return True


def _vectors(
    source: Path,
    destination: Path,
    manifest: Manifest,
    copy: sqlite3.Connection,
    earlier: _Earlier | None,
) -> Literal["copied", "rebuilt", "linked"]:
    """The copy's vectors base: the earlier snapshot's file where it is the same base (a base
    is named by the generation that wrote it, and never changes), else the source's file as
    it is, or, when a later merge has pruned it, built again from the copied rows it covers
    (the changes since are read from the rows)."""
    name = manifest.vectors.file
    if name is None:
        return "copied"  # no base yet: every vector is read from the rows
    target = destination / name
    # The same base: the same file name, coverage, type and build (an earlier snapshot that
    # was written to since, or optimized, may hold another file under the same name).
    if earlier is not None and earlier.manifest.vectors == manifest.vectors:
        return "linked" if _share(earlier.directory / name, target) else "copied"
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
