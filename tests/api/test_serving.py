"""Serving beyond one process: `sift serve --workers N`, `--read-only` replicas, and
`sift snapshot`, the consistent copy that refreshes them while a writer keeps committing."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sift.errors import InvalidRequest, ReadOnly
from sift.index.check import check_index
from sift.index.embed import Embedder
from sift.index.manifest import vectors_file
from sift.index.snapshot import snapshot
from sift.search.engine import Sift
from sift.settings import Settings

from tests.api_server import copy_index, serve
from tests.helpers import SIFT


def article(n: int, round_: int = 0) -> dict[str, str]:
    return {
        "id": f"wire-{n}",
        "title": f"Wire story {n}",
        "text": f"Harbour {n} reopened after the storm, round {round_}. Ferries resumed service.",
    }


def test_two_workers_take_turns_at_writing(tmp_path: Path, seeded_dir: Path) -> None:
    """Concurrent writes land on both processes: each waits for the other's commit, none fails,
    and every process then answers from the index with all of them."""
    index = copy_index(seeded_dir, tmp_path)
    with serve(index, "--workers", "2") as server:
        with ThreadPoolExecutor(6) as pool:
            answers = list(
                pool.map(lambda n: server.client.post("/articles", json=article(n)), range(12))
            )
        assert [a.status_code for a in answers] == [200] * 12, [a.text for a in answers]
        assert sorted(a.json()["added"][0] for a in answers) == sorted(
            f"wire-{n}" for n in range(12)
        )
        for _ in range(6):  # fresh connections: both processes answer, both see every write
            assert server.client.get("/health").json()["articles"] == 6 + 12
        started = [line for line in server.log_lines() if "Started server process" in line]
        assert len(started) == 2, server.log_lines()
    assert check_index(index).ok


def test_read_only_refuses_writes_and_searches(tmp_path: Path, seeded_dir: Path) -> None:
    index = copy_index(seeded_dir, tmp_path)
    committed = (index / "manifest.json").read_text(encoding="utf-8")
    with serve(index, "--read-only") as server:
        api = server.client
        for response in (
            api.post("/articles", json=article(1)),
            api.post("/articles", json={"not": "an article"}),  # refused before it is read
            api.delete("/articles/brief-drones"),
            api.delete("/articles/no-such-article"),
        ):
            assert response.status_code == 403, response.text
            body = response.json()
            assert body["error"] == "read_only" and "read-only" in body["message"]
        hits = api.get("/search", params={"q": "casualty estimates", "k": 3}).json()["results"]
        assert "at least 100 fatalities" in " ".join(h["passage"] for h in hits)
        assert api.get("/articles/brief-drones").status_code == 200
        add = api.get("/openapi.json").json()["paths"]["/articles"]["post"]
        assert "403" in add["responses"]
    assert (index / "manifest.json").read_text(encoding="utf-8") == committed


def test_the_library_refuses_writes_when_read_only(tmp_path: Path, seeded_dir: Path) -> None:
    index = copy_index(seeded_dir, tmp_path)
    engine = Sift(Settings(index=index, read_only=True))
    with pytest.raises(ReadOnly, match="read-only"):
        engine.add({"id": "x", "text": "A new story."})
    with pytest.raises(ReadOnly):
        engine.remove("brief-drones")
    assert engine.stats().articles == 6


def test_snapshot_during_a_stream_of_writes(
    tmp_path: Path, seeded_dir: Path, embedder: Embedder
) -> None:
    """Each snapshot, taken while another thread commits round after round, is one committed
    state: it passes `sift check` and answers searches, with every article of one round."""
    index = copy_index(seeded_dir, tmp_path)
    writer = Sift(Settings(index=index))
    writer.add([article(n) for n in range(4)])
    done = threading.Event()
    rounds = 0

    def write() -> None:
        nonlocal rounds
        while not done.is_set() and rounds < 40:
            rounds += 1
            writer.add([article(n, rounds) for n in range(4)] + [article(100 + rounds)])
            writer.remove([f"wire-{99 + rounds}"])  # a commit that also prunes vectors

    thread = threading.Thread(target=write)
    thread.start()
    copies = []
    try:
        for i in range(4):
            seen = rounds
            while rounds == seen and thread.is_alive():  # a commit between two snapshots
                time.sleep(0.01)
            copies.append(snapshot(index, tmp_path / f"copy-{i}"))
    finally:
        done.set()
        thread.join()
    assert rounds >= 4
    for report in copies:
        copy = Path(report.destination)
        assert check_index(copy, embedder).ok
        replica = Sift(Settings(index=copy, read_only=True))
        stats = replica.stats()
        assert (stats.articles, stats.sentences) == (report.articles, report.sentences)
        hits = replica.search("ferries running again after the storm", k=3).results
        assert hits and hits[0].article_id.startswith("wire-")
        texts = {replica.article(f"wire-{n}").text for n in range(4)}  # type: ignore[union-attr]
        assert len({t.split("round ")[1] for t in texts}) == 1, texts  # one round, not a mix


def test_snapshot_rebuilds_vectors_a_writer_pruned(tmp_path: Path, seeded_dir: Path) -> None:
    index = copy_index(seeded_dir, tmp_path)
    generation = json.loads((index / "manifest.json").read_text())["generation"]
    (index / vectors_file(generation)).unlink()  # as after a later commit pruned it
    report = snapshot(index, tmp_path / "copy")
    assert report.vectors == "rebuilt" and report.sentences == 36
    assert check_index(tmp_path / "copy").ok


def test_snapshot_command(tmp_path: Path, seeded_dir: Path) -> None:
    dest = tmp_path / "replica"
    done = subprocess.run(
        [SIFT, "snapshot", str(dest), "--index", str(seeded_dir), "--json"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["articles"] == 6 and report["vectors"] == "copied"
    again = subprocess.run(
        [SIFT, "snapshot", str(dest), "--index", str(seeded_dir)], capture_output=True, text=True
    )
    assert again.returncode == 2 and "is an index" in again.stderr
    with pytest.raises(InvalidRequest, match="new folder"):
        snapshot(seeded_dir, tmp_path)  # not empty
    assert check_index(dest).ok


def answers(index: Path) -> dict[tuple[str, str], list[tuple[str, int]]]:
    engine = Sift(Settings(index=index, read_only=True))
    return {
        (q, mode): [(h.article_id, h.start) for h in engine.search(q, k=8, mode=mode).results]
        for q in ("harbour reopened after the storm", "ferry news", "drone attacks", "treaty")
        for mode in ("keyword", "hybrid", "dense")
    }


def inodes(folder: Path) -> set[int]:
    return {p.stat().st_ino for p in folder.rglob("*") if p.is_file()}


def test_a_repeated_snapshot_writes_only_what_is_new(
    tmp_path: Path, seeded_dir: Path, embedder: Embedder
) -> None:
    """`--from` an earlier snapshot: what cannot have changed (the vectors base, the keyword
    index's segments) is that snapshot's own files, hard-linked; the keyword index is caught up
    with the rows that differ. The copy answers as a full snapshot of the same state does, and
    the earlier snapshot is left as it was."""
    index = copy_index(seeded_dir, tmp_path)
    writer = Sift(Settings(index=index))
    writer.add([article(1), article(2)])
    first = Path(snapshot(index, tmp_path / "first").destination)
    before = answers(first)
    writer.add(article(1, round_=1))  # a new text
    writer.add({**article(2), "title": "Ferry news"})  # a new title only
    writer.add(article(3))
    writer.remove(["brief-drones"])
    second = snapshot(index, tmp_path / "second", previous=first)
    full = snapshot(index, tmp_path / "full")
    assert (second.keyword, second.vectors, full.keyword) == ("caught up", "linked", "built")
    assert second.generation == full.generation > 0
    assert 0 < second.written_bytes < second.bytes
    copy = Path(second.destination)
    base = json.loads((copy / "manifest.json").read_text())["vectors"]["file"]
    assert (copy / base).stat().st_ino == (first / base).stat().st_ino
    assert inodes(copy / "keyword") & inodes(first / "keyword")  # segments shared
    # The same rows in its keyword index (`check_index` below compares them); BM25's statistics
    # still count the documents deleted since the earlier snapshot, as the primary's do, so
    # scores move a little and only the leading ranks are the full copy's for certain.
    got, want = answers(copy), answers(Path(full.destination))
    assert {k: v[:3] for k, v in got.items()} == {k: v[:3] for k, v in want.items()}
    assert got[("ferry news", "keyword")][0][0] == "wire-2"  # its new title is searched
    assert all(a != "brief-drones" for hits in got.values() for a, _ in hits)
    assert check_index(copy, embedder).ok and check_index(first, embedder).ok
    assert answers(first) == before  # the earlier snapshot did not move


def test_a_repeated_snapshot_needs_a_snapshot_of_the_same_index(
    tmp_path: Path, seeded_dir: Path
) -> None:
    index = copy_index(seeded_dir, tmp_path)
    other = tmp_path / "other"
    Sift(Settings(index=other)).add({"id": "x", "text": "Another index altogether."})
    with pytest.raises(InvalidRequest, match="not a snapshot of"):
        snapshot(index, tmp_path / "copy", previous=other)
    with pytest.raises(InvalidRequest, match="no sift index"):
        snapshot(index, tmp_path / "copy", previous=tmp_path / "nowhere")
    first = tmp_path / "first"
    snapshot(index, first)
    done = subprocess.run(
        [SIFT, "snapshot", str(tmp_path / "second"), "--index", str(index), "--from", str(first)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert "keyword index caught up" in " ".join(done.stdout.split())
    assert not (tmp_path / "copy").exists()  # a refused snapshot leaves nothing behind


def test_a_repeated_snapshot_follows_a_copy_that_inherits_its_text(
    tmp_path: Path, seeded_dir: Path
) -> None:
    """Removing an article whose text another one repeats hands its text and sentences to
    that copy (no new embedding, the copy's content unchanged): the repeated snapshot's
    keyword index must follow, as the primary's does."""
    index = copy_index(seeded_dir, tmp_path)
    writer = Sift(Settings(index=index))
    text = "The lighthouse keeper retired after forty winters on the headland."
    writer.add({"id": "keeper", "title": "Keeper retires", "text": text})
    writer.add({"id": "keeper-copy", "title": "Coastal farewell", "text": text})
    first = Path(snapshot(index, tmp_path / "first").destination)
    writer.remove(["keeper"])
    second = Path(snapshot(index, tmp_path / "second", previous=first).destination)
    for where in (index, second):
        engine = Sift(Settings(index=where, read_only=True))
        for q in ("lighthouse keeper forty winters", "coastal farewell"):
            hits = engine.search(q, k=3, mode="keyword").results
            assert hits and hits[0].article_id == "keeper-copy", (where.name, q, hits)
    assert check_index(second).ok
