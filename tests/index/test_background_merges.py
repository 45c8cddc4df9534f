"""Merges in the background: a new vectors base is built from one committed state while writes
go on, and installed without losing what those writes did."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from filelock import FileLock
from sift.index.check import check_index
from sift.index.lock import acquire_write_lock
from sift.index.merging import build_merge, install_merge
from sift.index.optimize import optimize
from sift.index.records import Article
from sift.index.store import connect
from sift.search.engine import Sift
from sift.search.results import SearchRequest
from sift.settings import Settings

from tests.api_server import copy_index


@pytest.fixture
def index(tmp_path: Path, seeded_dir: Path) -> Path:
    return copy_index(seeded_dir, tmp_path)


def orchard(i: int) -> Article:
    return Article(id=f"orchard-{i}", title=f"Orchard {i}", text=f"Orchard {i} grew quinces.")


def found(engine: Sift, query: str) -> set[str]:
    request = SearchRequest(q=query, mode="dense", k=50, per_article=5, context=0)
    return {h.article_id for h in engine.search(request).results}


def manifest(directory: Path) -> dict:  # type: ignore[type-arg]
    return json.loads((directory / "manifest.json").read_text(encoding="utf-8"))


def tombstones(directory: Path) -> int:
    conn = sqlite3.connect(directory / "sift.db")
    try:
        return int(conn.execute("SELECT count(*) FROM vector_tombstones").fetchone()[0])
    finally:
        conn.close()


def merge_lock(directory: Path) -> FileLock:
    lock = FileLock(str(directory / "merge.lock"), thread_local=False)
    lock.acquire()
    return lock


def test_writes_during_a_merge_are_kept_when_it_is_installed(index: Path) -> None:
    """A merge built from one state, then writes (an article added, one whose vectors the merge
    folded in removed), then the install: the new base holds the merge's state, and the later
    rows and tombstones stay as changes to it."""
    engine = Sift(Settings(index=index, merges="inline"))
    engine.index_articles([orchard(i) for i in range(8)])
    merging = merge_lock(index)  # as a merge holds it, from its build to its install
    built = build_merge(index, merge_min=1)
    assert built is not None and built.base.part.exists()
    before = manifest(index)["vectors"]["file"]

    engine.index_articles([orchard(100)])  # after the merge's state
    engine.remove(["orchard-3"])  # folded into the merge, removed after it
    assert tombstones(index) > 0 and built.base.part.exists()

    lock = acquire_write_lock(index)
    conn = connect(index)
    try:
        new = install_merge(index, conn, built)
    finally:
        conn.close()
        lock.release()
        merging.release()
    assert new is not None and new.vectors.file != before
    assert not built.base.part.exists()
    assert [p.name for p in index.glob("vectors.*.faiss")] == [new.vectors.file]
    assert tombstones(index) == 1  # orchard-3's sentence, removed after the merge read
    assert manifest(index)["vectors"]["covers"] == built.base.covers
    assert check_index(index).ok

    for reader in (engine, Sift(Settings(index=index))):  # the old reader, and a fresh one
        hits = found(reader, "orchard quinces")
        assert {"orchard-100", "orchard-7"} <= hits and "orchard-3" not in hits


def test_a_merge_of_a_base_that_moved_on_is_dropped(index: Path) -> None:
    engine = Sift(Settings(index=index, merges="inline"))
    engine.index_articles([orchard(i) for i in range(8)])
    built = build_merge(index, merge_min=1)
    assert built is not None
    optimize(index)  # another merge gets there first
    generation = manifest(index)["generation"]
    conn = connect(index)
    try:
        assert install_merge(index, conn, built) is None
    finally:
        conn.close()
    assert not built.base.part.exists()
    assert manifest(index)["generation"] == generation
    assert check_index(index).ok


def test_writes_start_merges_that_end_installed(index: Path) -> None:
    """Through the engine: writes that make a merge due start one in the background; the
    writes that follow never wait for it, and in the end every change is in a new base."""
    engine = Sift(Settings(index=index, merge_min=1))
    first = manifest(index)["vectors"]["file"]
    for i in range(12):
        engine.index_articles([orchard(i)])
        if i % 4 == 3:
            engine.remove([f"orchard-{i - 2}"])
    engine.wait_for_merges()
    assert not engine.merging()
    assert manifest(index)["vectors"]["file"] != first
    assert not list(index.glob("merge-*.part"))
    assert check_index(index).ok
    removed = {"orchard-1", "orchard-5", "orchard-9"}
    fresh = Sift(Settings(index=index))
    hits = found(fresh, "orchard quinces")
    assert {f"orchard-{i}" for i in range(12)} - removed <= hits and not removed & hits


def test_a_part_no_merge_holds_is_removed_by_the_next_writer(index: Path) -> None:
    """A merge holds merge.lock from its build to its install: while another process holds
    it, its part stays; once the lock is free, a part left behind (a crash) is removed."""
    part = index / "merge-999999999-0000abcd.part"
    part.write_bytes(b"half a base")
    merging = merge_lock(index)
    try:
        Sift(Settings(index=index)).index_articles([orchard(1)])
        assert part.exists()  # a merge under way: its part is not touched
    finally:
        merging.release()
    Sift(Settings(index=index)).index_articles([orchard(2)])
    assert not part.exists()
    assert check_index(index).ok


def test_no_merge_is_built_before_one_is_due_unless_asked(index: Path) -> None:
    Sift(Settings(index=index, merges="inline")).index_articles([orchard(1)])
    assert build_merge(index) is None  # one sentence against merge_min 20,000
    assert not list(index.glob("merge-*.part"))
    forced = build_merge(index, force="merge")
    assert forced is not None and forced.reason == "asked to merge"
    forced.base.part.unlink()


@pytest.mark.parametrize("where", ["replace", "write_json_atomically"])
def test_a_crash_while_a_merge_is_installed_leaves_a_sound_index(
    index: Path, where: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed as the part is renamed (before the commit), or after the commit (before
    manifest.json): the index is its last commit or the merge's, check passes after the next
    writer heals it, and searches find every article."""
    import sift.index.generations as generations

    engine = Sift(Settings(index=index, merges="inline"))
    engine.index_articles([orchard(i) for i in range(8)])
    generation = manifest(index)["generation"]
    merging = merge_lock(index)
    built = build_merge(index, merge_min=1)
    assert built is not None
    real = generations.os.replace if where == "replace" else generations.write_json_atomically

    def crash(*args: object, **kwargs: object) -> None:
        if where == "replace" and not str(args[0]).endswith(".part"):
            return real(*args, **kwargs)  # type: ignore[operator]
        raise SystemExit("killed")

    monkeypatch.setattr(generations.os if where == "replace" else generations, where, crash)
    conn = connect(index)
    try:
        with pytest.raises(SystemExit):
            install_merge(index, conn, built)
    finally:
        conn.close()
        monkeypatch.undo()
        merging.release()
    engine.index_articles([orchard(100)])  # the next writer heals what the crash left
    assert manifest(index)["generation"] == generation + (1 if where == "replace" else 2)
    assert not list(index.glob("merge-*.part"))
    assert len(list(index.glob("vectors.*.faiss"))) == 1
    assert check_index(index).ok
    hits = found(Sift(Settings(index=index)), "orchard quinces")
    assert {f"orchard-{i}" for i in range(8)} | {"orchard-100"} <= hits
