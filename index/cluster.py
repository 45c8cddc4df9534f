"""Indexing on a Ray cluster (`sift index PATH... --ray [ADDRESS]`, the `cluster` extra).

Ray Data does the heavy part: reading the inputs (a task per PATH given), splitting articles
into sentences (tasks), and embedding them on an actor pool (each actor loads the model once:
on a GPU at fp16 where the cluster has GPUs, else on CPUs). Results stream back, in input
order, to the one writer in this process, which commits them exactly as a local run does: the
same articles, sentence ids and offsets, batch by batch. Nothing here schedules, retries or
shards: Ray does (a killed actor is restarted and its batch run again), and the driver holds
only the batches in flight (streaming execution with backpressure, `iter_batches`).

Articles already committed (the same content hash) are skipped before they are embedded where
the workers can read the index (this machine, or an index on shared storage), so a rerun after
a killed driver embeds only what the last commit lacked; elsewhere the writer skips them.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import sys
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from sift.errors import ClusterUnavailable
from sift.index.embed import Embedder, embedder_for
from sift.index.ingest import IngestTally, read_inputs, within_limits
from sift.index.manifest import DATABASE_FILE
from sift.index.pipeline import Prepared
from sift.index.recipe import embedding_text
from sift.index.records import Article, Failure, Sentence
from sift.index.split import split_sentences
from sift.settings import Settings

if TYPE_CHECKING:
    import ray.data

INSTALL = "pip install 'sift-search[cluster]'"
#: Articles per batch handed between stages and back to the driver: bounds driver memory.
ARTICLES_PER_BATCH = 32
#: Ray Data's largest block: about one batch of articles with their vectors.
BLOCK_BYTES = 1 << 20
#: CPUs an embedding actor uses on a machine without GPUs (its torch/onnx threads).
CPUS_PER_ACTOR = 4
#: Object store of a cluster started here (`local`): small, the machine is shared.
LOCAL_OBJECT_STORE = 256 * 1024 * 1024


def import_ray() -> Any:
    try:
        import ray
        import ray.data
    except ImportError:
        raise ClusterUnavailable(f"--ray needs Ray (with Ray Data): {INSTALL}") from None
    return ray


def looks_like_address(address: str) -> bool:
    """local, auto, ray://host:port or host:port."""
    if address in ("local", "auto") or address.startswith("ray://"):
        return True
    host, _, port = address.rpartition(":")
    return bool(host) and port.isdigit()


def check_address(address: str) -> str:
    if looks_like_address(address):
        return address
    raise ClusterUnavailable(
        f"--ray {address!r}: give local, auto or ray://host:port (put PATHs before --ray)"
    )


def connect(address: str) -> Any:
    """Join (or start, for `local`) the cluster; the workers embed offline, like this process."""
    ray = import_ray()
    address = check_address(address)
    env = {"env_vars": {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}}
    options: dict[str, Any] = {
        "runtime_env": env,
        "log_to_driver": False,
        "include_dashboard": False,
        "ignore_reinit_error": True,
    }
    if address == "local":
        options |= {"num_cpus": os.cpu_count() or 1, "object_store_memory": LOCAL_OBJECT_STORE}
    else:
        options["address"] = address
    try:
        ray.init(**options)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ClusterUnavailable(f"cannot reach the Ray cluster at {address}: {exc}") from None
    logging.getLogger("ray.data").setLevel(logging.WARNING)  # no plan and timing lines
    return ray


@dataclass(frozen=True)
class Plan:
    """How the cluster is used, chosen once from what it has."""

    actors: int
    gpus_per_actor: float
    cpus_per_actor: float
    threads: int | None  # torch/onnx threads of a CPU actor
    device: str | None


def plan(resources: dict[str, float], settings: Settings) -> Plan:
    gpus = int(resources.get("GPU", 0))
    cpus = max(int(resources.get("CPU", 1)), 1)
    if gpus:
        # fp16 on CUDA is what `precision: auto` picks; the actor's own thread tokenises ahead
        # of the model (Embedder.encode_overlapped).
        return Plan(settings.ray_actors or gpus, 1.0, 1.0, settings.torch_threads, None)
    threads = settings.torch_threads or min(cpus, CPUS_PER_ACTOR)
    actors = settings.ray_actors or max(cpus // threads, 1)
    # An actor reserves half a CPU less than the threads it runs: that half is left to the read
    # and split tasks, which would otherwise wait for CPUs the actors hold and never run.
    return Plan(actors, 0.0, max(threads - 0.5, 0.5), threads, "cpu")


# -- the stages (run on the cluster) ----------------------------------------------------------


def _read(batch: dict[str, np.ndarray], max_chars: int) -> Iterator[dict[str, list[Any]]]:
    """One PATH given (a file or a folder): its articles, failures and skipped files, as rows."""
    for path in batch["path"]:
        tally = IngestTally()
        rows: dict[str, list[Any]] = {"kind": [], "payload": []}
        for item in within_limits(read_inputs([Path(path)], tally), max_chars):
            if isinstance(item, Failure):
                rows["kind"].append("failure")
                rows["payload"].append(json.dumps(item.as_dict()))
            else:
                rows["kind"].append("article")
                rows["payload"].append(item.with_default_id().model_dump_json())
            if len(rows["kind"]) >= ARTICLES_PER_BATCH:
                yield rows
                rows = {"kind": [], "payload": []}
        rows["kind"] += ["skipped"] * len(tally.skipped)
        rows["payload"] += tally.skipped
        if rows["kind"]:
            yield rows


def _split(batch: dict[str, np.ndarray], index: str) -> dict[str, Any]:
    """Sentences of each article, and whether it still needs embedding (not committed yet,
    where this worker can see the index)."""
    database = Path(index) / DATABASE_FILE
    conn = None
    if database.exists():
        conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=30)
    try:
        sentences, embed = [], []
        for kind, payload in zip(batch["kind"], batch["payload"], strict=True):
            article = Article.model_validate_json(payload) if kind == "article" else None
            if article is None or _committed(conn, article):
                sentences.append("null" if article is not None else "[]")
                embed.append(False)
                continue
            split = split_sentences(article.text)
            sentences.append(json.dumps([[s.position, s.start, s.end, s.text] for s in split]))
            embed.append(True)
    finally:
        if conn is not None:
            conn.close()
    return {**batch, "sentences": sentences, "embed": embed}


def _committed(conn: sqlite3.Connection | None, article: Article) -> bool:
    if conn is None:
        return False
    row = conn.execute("SELECT content_hash FROM articles WHERE id = ?", (article.id,)).fetchone()
    return row is not None and row[0] == article.content_hash()


class _Embed:
    """One model per actor, loaded once; a batch of articles in, their vectors out."""

    def __init__(self, settings: Settings, model: str, overrides: dict[str, Any]):
        self.embedder = embedder_for(settings, model, **overrides)
        self.embedder.load()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        texts, counts = [], []
        for payload, sentences, embed in zip(
            batch["payload"], batch["sentences"], batch["embed"], strict=True
        ):
            if not embed:
                counts.append(0)
                continue
            title = json.loads(payload).get("title")
            split = json.loads(sentences)
            texts += [embedding_text(title, s[3]) for s in split]
            counts.append(len(split))
        vectors = self.embedder.encode(texts)
        out, cursor = [], 0
        for n in counts:
            out.append(vectors[cursor : cursor + n].astype(np.float32).tobytes())
            cursor += n
        return {**batch, "vectors": out}


# -- the driver -------------------------------------------------------------------------------


def dataset(
    ray: Any, paths: list[Path], settings: Settings, embedder: Embedder
) -> ray.data.Dataset:
    """The pipeline over `paths`, ready to iterate: nothing runs before that."""
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True  # the writer's order: a local run's ids
    context.enable_progress_bars = False
    # Small blocks, so that each stage hands on a batch as soon as it is made: with Ray's
    # default (128 MiB) one input file is one block, which every stage holds whole, and the
    # writer gets nothing until the last article is embedded.
    context.target_max_block_size = BLOCK_BYTES
    chosen = plan(ray.cluster_resources(), settings)
    overrides: dict[str, Any] = {}
    if chosen.threads is not None:
        overrides["threads"] = chosen.threads
    if chosen.device is not None:
        overrides["device"] = chosen.device
    items = [{"path": str(p.resolve() if p.exists() else p)} for p in paths]
    return (
        ray.data.from_items(items, override_num_blocks=max(len(items), 1))
        .map_batches(
            _read, batch_size=1, fn_kwargs={"max_chars": settings.max_article_chars}, num_cpus=0.5
        )
        .map_batches(
            _split,
            batch_size=ARTICLES_PER_BATCH,
            fn_kwargs={"index": str(settings.index.resolve())},
            num_cpus=0.5,
        )
        .map_batches(
            _Embed,
            batch_size=ARTICLES_PER_BATCH,
            fn_constructor_kwargs={
                "settings": settings.model_copy(update={"api_key": None}),  # no secret leaves
                "model": embedder.name,
                "overrides": overrides,
            },
            compute=ray.data.ActorPoolStrategy(size=chosen.actors),
            num_cpus=chosen.cpus_per_actor,
            num_gpus=chosen.gpus_per_actor or None,
        )  # Ray Data restarts a dead actor and runs its batch again (max_restarts=-1)
    )


@contextmanager
def session(address: str) -> Iterator[Any]:
    """Ray, joined (or started, for `local`) for one run, from the main thread; left after it
    (a cluster started here stops with it). Ray prints its raylets' and workers' errors (a
    retried task, a restarted actor) on stdout: they are for the person, not the program
    reading `--json`, so they go to stderr while Ray is connected."""
    with redirect_stdout(sys.stderr):
        ray = connect(address)
        try:
            yield ray
        finally:
            ray.shutdown()


def stream(
    ray: Any,
    paths: list[Path],
    settings: Settings,
    embedder: Embedder,
    tally: IngestTally | None = None,
) -> Iterator[Article | Failure | Prepared]:
    """Every article under `paths`, split and embedded on the cluster, in input order, for
    `IndexWriter.add`; the driver holds a few batches at a time, whatever the corpus size."""
    pipeline = dataset(ray, paths, settings, embedder)
    dimension = embedder.dimension
    batches = iter(
        pipeline.iter_batches(
            batch_size=ARTICLES_PER_BATCH, batch_format="numpy", prefetch_batches=2
        )
    )
    while True:
        try:
            batch = next(batches)
        except StopIteration:
            return
        except ray.exceptions.RayError as exc:  # what Ray could not retry: one line
            cause = str(exc).strip().splitlines()[-1]
            raise ClusterUnavailable(f"indexing on the Ray cluster failed: {cause}") from exc
        yield from _items(batch, dimension, tally)


def _items(
    batch: dict[str, np.ndarray], dimension: int, tally: IngestTally | None
) -> Iterator[Article | Failure | Prepared]:
    for kind, payload, sentences, vectors in zip(
        batch["kind"], batch["payload"], batch["sentences"], batch["vectors"], strict=True
    ):
        if kind == "skipped":
            if tally is not None:
                tally.skipped.append(str(payload))
        elif kind == "failure":
            yield Failure(**json.loads(payload))
        else:
            article = Article.model_validate_json(payload)
            split = json.loads(sentences)
            if split is None:  # committed already: the writer finds it unchanged
                yield article
                continue
            found = [Sentence(*s) for s in split]
            rows = np.frombuffer(vectors, dtype=np.float32).reshape(-1, dimension).copy()
            yield Prepared(article, found, rows if len(rows) == len(found) else None)
