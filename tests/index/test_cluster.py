"""`sift index PATH... --ray`: a real local Ray cluster (Ray Data, an actor pool) with the real
model. Its index must equal a local run's; a killed actor is retried by Ray; a killed driver
leaves its last commit, and a rerun skips what was committed.

The machine these run on is small and shared: each run is a handful of articles, and the
cluster is started by the `sift` process under test (`--ray local`), which stops it."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from sift.cli.index_cmds import ray_alone_means_local
from sift.errors import ClusterUnavailable
from sift.index.backends import choose_encoder, detect_cpu
from sift.index.check import check_index
from sift.index.cluster import TOKEN_PROBES, StageTokenizer, _pack_ids, _unpack_ids, plan
from sift.index.embed import Embedder, embedder_for
from sift.index.recipe import embedding_text
from sift.index.records import Article
from sift.index.split import split_sentences
from sift.index.vectors import decode_vectors
from sift.search.engine import Sift
from sift.settings import Settings

from tests.helpers import SEEDS, SIFT

WORDS = "harbour ferry storm council budget school river bridge market rail vote court".split()
#: What both sides of a local-against-Ray comparison embed with: this machine's `auto`, except
#: where that is int8 (a CPU with VNNI and no bf16). int8 quantizes each batch's activations
#: on their own range, so a vector depends a little on the sentences embedded beside it, and
#: a local run and a Ray run batch differently: there both use the fp32 export.
SAME = (
    {"backend": "onnx"}
    if choose_encoder("auto", "auto", "cpu", detect_cpu()).precision == "int8"
    else {}
)


def corpus(folder: Path, n: int) -> Path:
    """`n` small articles, one file each, three sentences apiece, no two alike."""
    folder.mkdir(parents=True)
    for i in range(n):
        a, b, c = (WORDS[(i * k) % len(WORDS)] for k in (1, 3, 5))
        text = (
            f"Story {i}: the {a} plan was announced on day {i}. Officials said the {b} would "
            f"reopen within {i % 7 + 2} weeks. Residents of the {c} district welcomed it."
        )
        (folder / f"story-{i:03d}.txt").write_text(f"Headline {i} on the {a}\n\n{text}\n")
    return folder


def ray_index(
    paths: list[Path], index: Path, **env: str
) -> subprocess.Popen[str]:  # started, not waited for
    environ = {**os.environ, **{f"SIFT_{k.upper()}": v for k, v in env.items()}}
    command = [SIFT, "index", *map(str, paths), "--index", str(index), "--json", "--ray", "local"]
    return subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environ,
        start_new_session=True,
    )


def finished(proc: subprocess.Popen[str]) -> dict[str, object]:
    out, err = proc.communicate(timeout=900)
    assert proc.returncode == 0, err[-3000:]
    return json.loads(out)


def rows(index: Path) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]], np.ndarray]:
    conn = sqlite3.connect(index / "sift.db")
    try:
        articles = conn.execute(
            "SELECT id, title, text, url, source, published, metadata, content_hash FROM articles "
            "ORDER BY id"
        ).fetchall()
        sentences = conn.execute(
            'SELECT id, article_id, position, start, "end", text FROM sentences ORDER BY id'
        ).fetchall()
        blobs = [r[0] for r in conn.execute("SELECT vector FROM sentences ORDER BY id")]
    finally:
        conn.close()
    vectors = decode_vectors(blobs, 384)
    return articles, sentences, vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def assert_same_index(got: Path, want: Path, queries: list[str]) -> None:
    """The same articles, sentence ids and offsets, vectors within cosine 0.999 (each is stored
    as int8), the same search results; and the index passes `sift check`."""
    got_articles, got_sentences, got_vectors = rows(got)
    want_articles, want_sentences, want_vectors = rows(want)
    assert got_articles == want_articles
    assert got_sentences == want_sentences
    cosines = np.sum(got_vectors * want_vectors, axis=1)
    assert cosines.min() >= 0.999, cosines.min()
    ours, theirs = Sift(Settings(index=got)), Sift(Settings(index=want))
    for q in queries:
        a, b = ours.search(q, k=5).results, theirs.search(q, k=5).results
        assert [(h.article_id, h.sentence) for h in a] == [(h.article_id, h.sentence) for h in b]
    assert check_index(got).ok


def descendants(pid: int) -> dict[int, str]:
    """Every process started under `pid` (the Ray cluster of a `sift --ray local`), with its
    command line: only those, never anyone else's."""
    parents: dict[int, int] = {}
    titles: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            titles[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found: dict[int, str] = {}
    frontier = [pid]
    while frontier:
        parent = frontier.pop()
        for child, ppid in parents.items():
            if ppid == parent and child not in found:
                found[child] = titles.get(child, "")
                frontier.append(child)
    return found


def kill_all(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def generation(index: Path) -> int:
    try:
        return int(json.loads((index / "manifest.json").read_text())["generation"])
    except (OSError, ValueError, KeyError):
        return -1


@pytest.mark.slow
@pytest.mark.parametrize("tokenize", ["auto", "cpu"])  # here auto: in the actor (no GPU)
def test_ray_index_equals_a_local_one(tmp_path: Path, tokenize: str) -> None:
    local, remote = tmp_path / "local", tmp_path / "ray"
    Sift(Settings(index=local, **SAME)).index_paths([SEEDS])
    report = finished(ray_index([SEEDS], remote, ray_tokenize=tokenize, **SAME))
    assert report["counts"] == {  # type: ignore[comparison-overlap]
        "added": 6,
        "updated": 0,
        "unchanged": 0,
        "removed": 0,
        "failed": 0,
        "sentences": 36,
    }
    assert_same_index(remote, local, ["casualty estimates", "who signed the defence pact"])


def test_ray_without_the_extra_says_how_to_install(tmp_path: Path) -> None:
    hide_ray = (
        "import sys; sys.modules['ray'] = None; from sift.cli.main import main; "
        f"sys.argv = ['sift', 'index', {str(SEEDS)!r}, '--index', {str(tmp_path / 'i')!r}, "
        "'--ray']; main()"
    )
    done = subprocess.run([sys.executable, "-c", hide_ray], capture_output=True, text=True)
    assert done.returncode == 2, done.stderr
    assert "pip install 'sift-search[cluster]'" in done.stderr
    assert not (tmp_path / "i").exists()  # nothing was written


@pytest.mark.slow
def test_a_killed_worker_is_retried(tmp_path: Path) -> None:
    folder = corpus(tmp_path / "in", 120)
    local, remote = tmp_path / "local", tmp_path / "ray"
    Sift(Settings(index=local, **SAME)).index_paths([folder])
    proc = ray_index([folder], remote, ray_actors="1", commit_every="60", **SAME)
    killed, actors, started, titles = [], set(), time.monotonic(), set()
    try:
        while proc.poll() is None and time.monotonic() - started < 600:
            embedding = {p: t for p, t in descendants(proc.pid).items() if "_Embed" in t}
            actors.update(embedding)
            busy = [p for p, title in embedding.items() if "submit" in title]
            if busy and not killed:
                kill_all(busy)  # while it embeds a batch: that batch must be run again
                killed = busy
            titles.update(embedding.values())
            time.sleep(0.05)
        report = finished(proc)
    finally:
        kill_all(list(descendants(proc.pid)))
    assert killed, "the run ended before an embedding actor could be killed"
    assert len(actors) > len(killed), f"Ray did not start another actor: {titles}"
    counts = report["counts"]
    assert counts["added"] == 120 and counts["failed"] == 0  # type: ignore[index]
    assert_same_index(remote, local, ["when will the bridge reopen"])


@pytest.mark.slow
def test_a_killed_driver_keeps_its_commits_and_a_rerun_goes_on(tmp_path: Path) -> None:
    # Enough batches that the kill lands while most are still being embedded: with few,
    # the last ones can arrive and commit in one burst before the kill.
    n = 480
    folder = corpus(tmp_path / "in", n)
    local, remote = tmp_path / "local", tmp_path / "ray"
    Sift(Settings(index=local, **SAME)).index_paths([folder])
    proc = ray_index([folder], remote, ray_actors="1", commit_every="60", **SAME)
    cluster: set[int] = set()
    try:
        while proc.poll() is None and generation(remote) < 2:
            cluster.update(descendants(proc.pid))
            time.sleep(0.05)
        assert proc.poll() is None, "the run ended before it could be killed"
        cluster.update(descendants(proc.pid))
        os.kill(proc.pid, signal.SIGKILL)  # the driver, and the writer in it
        proc.wait()
    finally:
        kill_all(sorted(cluster))  # the cluster it started: as a dead machine would leave it
    assert check_index(remote).ok
    committed = Sift(Settings(index=remote)).stats().articles
    assert 0 < committed < n
    report = finished(ray_index([folder], remote, ray_actors="1", **SAME))
    counts = report["counts"]
    assert counts["unchanged"] == committed  # type: ignore[index]
    assert counts["added"] == n - committed  # type: ignore[index]
    assert_same_index(remote, local, ["when will the bridge reopen"])


def test_ray_alone_means_local() -> None:
    assert ray_alone_means_local(["index", "a", "--ray"]) == ["index", "a", "--ray=local"]
    assert ray_alone_means_local(["index", "a", "--ray", "--json"])[2] == "--ray=local"
    assert ray_alone_means_local(["index", "--ray", "seeds/", "a"])[1] == "--ray=local"
    for address in ("auto", "local", "ray://head:10001", "10.0.0.5:6379"):
        assert ray_alone_means_local(["index", "a", "--ray", address])[2:] == ["--ray", address]


def test_the_plan_follows_the_cluster() -> None:
    gpus = plan({"CPU": 16, "GPU": 2}, Settings())
    assert (gpus.actors, gpus.gpus_per_actor, gpus.device) == (2, 1.0, None)
    cpus = plan({"CPU": 16}, Settings())
    assert (cpus.actors, cpus.threads, cpus.cpus_per_actor) == (4, 4, 3.5)
    here = plan({"CPU": 2}, Settings())
    assert (here.actors, here.threads) == (1, 2)
    assert plan({"CPU": 16}, Settings(ray_actors=3)).actors == 3
    # GPUs run the model alone: their texts are tokenised by CPU tasks, unless told otherwise
    assert gpus.tokenize_apart and not cpus.tokenize_apart
    assert not plan({"CPU": 16, "GPU": 1}, Settings(ray_tokenize="actor")).tokenize_apart
    assert plan({"CPU": 2}, Settings(ray_tokenize="cpu")).tokenize_apart


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_the_tokenising_stage_reads_as_the_model_does(backend: str) -> None:
    """Ids made by a CPU task without the model's weights are the model's own, and embedding
    from them gives the vectors of embedding the texts."""
    texts = [embedding_text("Seeds", line) for line in seed_lines()] + TOKEN_PROBES
    embedder = Embedder(backend=backend, precision="fp32")
    ids = StageTokenizer(None)(texts)
    assert ids == embedder.token_ids(texts)
    assert [list(row) for row in _unpack_ids(_pack_ids(ids))] == ids
    from_ids, from_texts = embedder.encode_ids(_unpack_ids(_pack_ids(ids))), embedder.encode(texts)
    assert float((from_ids * from_texts).sum(axis=1).min()) > 0.9999


def test_an_actor_whose_stage_reads_otherwise_tokenises_itself(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A tokenising stage that disagrees with the model on the probes is not trusted: the
    actor embeds the texts, and the vectors are right all the same."""
    import sift.index.cluster as cluster

    payload = Article(id="a", title="Seeds", text="x").model_dump_json()
    lines = seed_lines()[:5]
    sentences = json.dumps([[i, 0, len(t), t] for i, t in enumerate(lines)])
    wrong = _pack_ids([[101, 102]] * len(lines))
    batch = {"payload": [payload], "sentences": [sentences], "embed": [True], "tokens": [wrong]}
    settings = Settings(backend="onnx")
    trusted = cluster._Embed(settings, None, {}, apart=True)
    assert trusted.take_ids
    monkeypatch.setattr(cluster, "_stage_tokenizer", lambda model: lambda texts: [[0]] * len(texts))
    doubted = cluster._Embed(settings, None, {}, apart=True)
    assert not doubted.take_ids
    got = np.frombuffer(doubted(batch)["vectors"][0], dtype=np.float32).reshape(-1, 384)
    want = Embedder(backend="onnx").encode([embedding_text("Seeds", t) for t in lines])
    assert float((got * want).sum(axis=1).min()) > 0.9999
    taken = np.frombuffer(trusted(batch)["vectors"][0], dtype=np.float32).reshape(-1, 384)
    assert float((taken * want).sum(axis=1).max()) < 0.99  # the trusted one used the ids given
    # beside an article committed already (nothing to embed) and one the stage left untouched
    mixed = {
        "payload": [payload] * 3,
        "sentences": [sentences] * 3,
        "embed": [True, False, True],
        "tokens": [wrong, b"", b""],
    }
    vectors = [np.frombuffer(v, dtype=np.float32) for v in trusted(mixed)["vectors"]]
    assert [len(v) // 384 for v in vectors] == [len(lines), 0, len(lines)]
    assert float((vectors[2].reshape(-1, 384) * want).sum(axis=1).min()) > 0.9999


def seed_lines() -> list[str]:
    return [s.text for f in sorted(SEEDS.glob("*.txt")) for s in split_sentences(f.read_text())][
        :40
    ]


@pytest.mark.slow
def test_one_large_file_streams_to_the_writer_in_small_blocks(tmp_path: Path) -> None:
    """Ray Data's default block (128 MiB) would make one file one block, held whole by every
    stage and by the driver, which would get nothing before the last article was embedded.
    Blocks of about a batch keep the driver's memory bounded (it prefetches two) whatever the
    file's size, and let commits follow the embedding."""
    from sift.index.cluster import BLOCK_BYTES, dataset, session

    path = tmp_path / "wire.jsonl"
    lines = []
    for i in range(64):  # 40 sentences each: 2,560 vectors, about 4 MB as they travel
        text = " ".join(
            f"Report {i} line {j} says the {WORDS[(i + j) % len(WORDS)]} opened on day {j}."
            for j in range(40)
        )
        lines.append(json.dumps({"id": f"wire-{i}", "title": f"Wire {i}", "text": text}))
    path.write_text("\n".join(lines) + "\n")
    settings = Settings(index=tmp_path / "index", ray_address="local", ray_actors=1)
    with session("local") as ray:
        done = dataset(ray, [path], settings, None).materialize()
        blocks, size = done.num_blocks(), done.size_bytes()
    assert size > 3_000_000
    assert blocks >= 3 and size / blocks <= 2 * BLOCK_BYTES, (blocks, size)


@pytest.mark.slow
def test_the_driver_loads_no_model_and_records_what_the_actors_ran(tmp_path: Path) -> None:
    """The model loads on the actors alone: the driver takes the weights' fingerprint, the
    dimension and the encoder from what they report, for the model check and the manifest."""
    engine = Sift(Settings(index=tmp_path / "index", ray_address="local", ray_actors=1))
    summary = engine.index_paths([SEEDS])
    assert summary.sentences == 36 and not summary.failed
    assert engine._embedder is None  # no model in this process
    local = embedder_for(Settings(), None)  # what the actors make of the same settings
    manifest = engine.reader.manifest
    assert (manifest.model.fingerprint, manifest.model.dimension) == (local.fingerprint, 384)
    assert manifest.encoder == local.encoder_info()  # the same settings on the same machine
    again = engine.index_paths([SEEDS])  # all committed: nothing embedded, nothing loaded
    assert len(again.unchanged) == 6 and engine._embedder is None


def test_actors_with_other_weights_are_refused() -> None:
    """Vectors of two models side by side are meaningless: a batch from an actor whose weights
    differ stops the run; another backend or precision of the same weights is allowed."""
    import sift.index.cluster as cluster

    local = Embedder(backend="onnx")
    ours = cluster.ActorEncoder.parse(cluster.ActorEncoder.describe(local), lambda: local)
    int8 = ours.info.model_copy(update={"precision": "int8"})
    other_kind = cluster.ActorEncoder(ours.name, ours.fingerprint, ours.dimension, int8, ours.local)
    ours.check_alike(other_kind)
    other_weights = cluster.ActorEncoder("m", "f" * 64, ours.dimension, ours.info, lambda: local)
    with pytest.raises(ClusterUnavailable, match="different models"):
        ours.check_alike(other_weights)


def test_a_tokenising_stage_without_a_tokenizer_leaves_it_to_the_actor(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import sift.index.cluster as cluster

    def missing(model: str | None) -> cluster.StageTokenizer:
        raise OSError("no tokenizer files here")

    monkeypatch.setattr(cluster, "_stage_tokenizer", missing)
    payload = Article(id="a", title="Seeds", text="x").model_dump_json()
    line = seed_lines()[0]
    batch = {
        "payload": [payload],
        "sentences": [json.dumps([[0, 0, len(line), line]])],
        "embed": [True],
    }
    tokenized = cluster._tokenize(batch, None)
    assert tokenized["tokens"] == [b""]
    actor = cluster._Embed(Settings(backend="onnx"), None, {}, apart=True)
    assert not actor.take_ids
    out = actor(tokenized)
    assert "tokens" not in out  # ids are not sent back to the driver
    got = np.frombuffer(out["vectors"][0], dtype=np.float32)
    want = Embedder(backend="onnx").encode([embedding_text("Seeds", line)])[0]
    assert float(got @ want) > 0.9999
