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

Where the actors have GPUs, the texts are tokenised apart from the model, by CPU tasks
(`_tokenize`, the model's own fast tokenizer without its weights), so that one GPU is never
starved by the CPU work of its own process; `ray_tokenize` chooses. An actor uses those ids
only if that tokenizer reads its probes exactly as the model's own does, else it tokenises.

The driver loads no model: each actor describes what it embeds with (weights' fingerprint,
dimension, backend and precision chosen on its own machine) in every batch it returns, and
the writer checks the index's model against that and records it in the manifest. Only an
article whose vectors did not come back whole is embedded here (`ActorEncoder.encode`).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sqlite3
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from sift.errors import ClusterUnavailable
from sift.index.embed import Embedder, embedder_for, resolve_model
from sift.index.ingest import IngestTally, read_inputs, within_limits
from sift.index.manifest import DATABASE_FILE, EncoderInfo
from sift.index.pipeline import Prepared
from sift.index.recipe import embedding_text
from sift.index.records import Article, Failure, Sentence
from sift.index.split import split_sentences
from sift.settings import Settings

if TYPE_CHECKING:
    import ray.data

INSTALL = "pip install 'sift-search[cluster]'"
#: Articles per batch handed between stages and back to the driver: bounds driver memory (two
#: batches prefetched: a few MB). 128 rather than 32: an actor's embedding call then sorts
#: about 2,000 sentences by length, so its batches pad less (600 BBC articles on `--ray
#: local`: 54.6 s against 63.5 s; 256 gave 54.5 s).
ARTICLES_PER_BATCH = 128
#: Ray Data's largest block: a fraction of a batch of articles with their vectors.
BLOCK_BYTES = 1 << 20
#: CPUs an embedding actor uses on a machine without GPUs (its torch/onnx threads).
CPUS_PER_ACTOR = 4
#: Object store of a cluster started here (`local`): small, the machine is shared.
LOCAL_OBJECT_STORE = 256 * 1024 * 1024
#: Texts an actor tokenises both ways before it takes a tokenising stage's ids: accents and
#: typography, a title prefix, and one past any model's length limit (truncation).
TOKEN_PROBES = [
    "casualty estimates",
    "Kursk: NEW DELHI — At least 100 North Korean soldiers have been killed, a lawmaker said.",
    "Ünïcödé café “quoted”, naïve résumé; 1,000 km² at 3.5% — ½ off!",
    "Wire: " + " ".join(f"word{i} and more text" for i in range(400)),
]


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
    tokenize_apart: bool  # CPU tasks tokenise; the actors run the model alone


def plan(resources: dict[str, float], settings: Settings) -> Plan:
    gpus = int(resources.get("GPU", 0))
    cpus = max(int(resources.get("CPU", 1)), 1)
    apart = settings.ray_tokenize == "cpu" or (settings.ray_tokenize == "auto" and gpus > 0)
    if gpus:
        # fp16 on CUDA is what `precision: auto` picks. Tokenising runs on CPU tasks, which
        # the cluster has many of; with `ray_tokenize=actor`, on a thread of the actor's own
        # ahead of the model (Embedder.encode_overlapped).
        return Plan(settings.ray_actors or gpus, 1.0, 1.0, settings.torch_threads, None, apart)
    threads = settings.torch_threads or min(cpus, CPUS_PER_ACTOR)
    actors = settings.ray_actors or max(cpus // threads, 1)
    # An actor reserves half a CPU less than the threads it runs: that half is left to the read
    # and split tasks, which would otherwise wait for CPUs the actors hold and never run.
    return Plan(actors, 0.0, max(threads - 0.5, 0.5), threads, "cpu", apart)


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


class StageTokenizer:
    """The model's fast tokenizer, loaded without its weights (transformers' AutoTokenizer,
    with sentence-transformers' max_seq_length and do_lower_case): what a CPU task needs to
    tokenise for an actor. Actors check it against their own (`TOKEN_PROBES`)."""

    def __init__(self, model: str | None):
        from transformers import AutoTokenizer

        _, location = resolve_model(model)
        root = Path(location)
        if root.is_dir():
            root = root / _transformer_folder(root)
        self.tokenizer = AutoTokenizer.from_pretrained(str(root) if root.is_dir() else location)
        config_file = root / "sentence_bert_config.json"
        config = json.loads(config_file.read_text()) if config_file.is_file() else {}
        limit = min(getattr(self.tokenizer, "model_max_length", 512) or 512, 512)
        self.max_length = int(config.get("max_seq_length") or limit)
        self.lower = bool(config.get("do_lower_case", False))

    def __call__(self, texts: list[str]) -> list[list[int]]:
        if not texts:
            return []
        if self.lower:
            texts = [t.lower() for t in texts]
        encoded = self.tokenizer(texts, truncation="longest_first", max_length=self.max_length)
        return [list(ids) for ids in encoded["input_ids"]]


def _transformer_folder(root: Path) -> str:
    """Where a sentence-transformers model keeps its Transformer module ('' for most)."""
    modules = root / "modules.json"
    if modules.is_file():
        for module in json.loads(modules.read_text()):
            if str(module.get("type", "")).endswith("Transformer"):
                return str(module.get("path", ""))
    return ""


@functools.lru_cache(maxsize=2)
def _stage_tokenizer(model: str | None) -> StageTokenizer:
    """One per worker process and model: Ray reuses its workers for the tasks that follow."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return StageTokenizer(model)


def _tokenize(batch: dict[str, np.ndarray], model: str | None) -> dict[str, Any]:
    """The token ids of each article's embedding texts, packed (`_pack_ids`), on a CPU; none
    (b"") where the stage has no tokenizer for the model: the actor then tokenises."""
    try:
        tokenizer = _stage_tokenizer(model)
    except Exception as exc:  # transformers raises many types for a tokenizer it cannot load
        logging.getLogger(__name__).warning("no tokenizer for %s here (%s)", model, exc)
        return {**batch, "tokens": [b""] * len(batch["payload"])}
    tokens = []
    for payload, sentences, embed in zip(
        batch["payload"], batch["sentences"], batch["embed"], strict=True
    ):
        texts = _embedding_texts(payload, sentences) if embed else []
        tokens.append(_pack_ids(tokenizer(texts)) if texts else b"")
    return {**batch, "tokens": tokens}


def _embedding_texts(payload: str, sentences: str) -> list[str]:
    title = json.loads(payload).get("title")
    return [embedding_text(title, s[3]) for s in json.loads(sentences)]


def _pack_ids(ids: list[list[int]]) -> bytes:
    """int32: the count, each length, then every id."""
    lengths = [len(row) for row in ids]
    flat = [i for row in ids for i in row]
    return np.array([len(ids), *lengths, *flat], dtype=np.int32).tobytes()


def _unpack_ids(packed: bytes) -> list[np.ndarray]:
    values = np.frombuffer(packed, dtype=np.int32)
    count = int(values[0])
    lengths = values[1 : 1 + count]
    return np.split(values[1 + count :], np.cumsum(lengths)[:-1]) if count else []


def _committed(conn: sqlite3.Connection | None, article: Article) -> bool:
    if conn is None:
        return False
    row = conn.execute("SELECT content_hash FROM articles WHERE id = ?", (article.id,)).fetchone()
    return row is not None and row[0] == article.content_hash()


class _Embed:
    """One model per actor, loaded once; a batch of articles in, their vectors out, and what
    embedded them (`ActorEncoder`)."""

    def __init__(
        self, settings: Settings, model: str | None, overrides: dict[str, Any], apart: bool
    ):
        self.embedder = embedder_for(settings, model, **overrides)
        self.embedder.load()
        self.described = ActorEncoder.describe(self.embedder)
        self.take_ids = apart and self._reads_alike(model)

    def _reads_alike(self, model: str | None) -> bool:
        """Whether the tokenising stage gives the ids this actor's model reads."""
        ours = self.embedder.token_ids(TOKEN_PROBES)
        try:
            if _stage_tokenizer(model)(TOKEN_PROBES) == ours:
                return True
            why = "it reads the probes otherwise"
        except Exception as exc:  # transformers raises many types for a tokenizer it lacks
            why = f"it cannot load ({exc})"
        logging.getLogger(__name__).warning(
            "tokenising stage not used for %s: %s; this actor tokenises", model, why
        )
        return False

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        numbers = range(len(batch["payload"]))
        if self.take_ids:
            ids = [self._ids(batch, n) for n in numbers]
            vectors = self.embedder.encode_ids([row for rows in ids for row in rows])
            counts = [len(rows) for rows in ids]
        else:
            texts = [self._texts(batch, n) for n in numbers]
            vectors = self.embedder.encode([text for rows in texts for text in rows])
            counts = [len(rows) for rows in texts]
        out, cursor = [], 0
        for n in counts:
            out.append(vectors[cursor : cursor + n].astype(np.float32).tobytes())
            cursor += n
        rest = {k: v for k, v in batch.items() if k != "tokens"}  # not sent back to the driver
        return {**rest, "vectors": out, "encoder": [self.described] * len(counts)}

    @staticmethod
    def _texts(batch: dict[str, np.ndarray], number: int) -> list[str]:
        if not batch["embed"][number]:
            return []
        return _embedding_texts(batch["payload"][number], batch["sentences"][number])

    def _ids(self, batch: dict[str, np.ndarray], number: int) -> list[Any]:
        """An article's token ids: the stage's, or this model's own where the stage made none
        (it could not load a tokenizer)."""
        packed = batch["tokens"][number]
        if packed:
            return _unpack_ids(packed)
        return self.embedder.token_ids(self._texts(batch, number))


@dataclass
class ActorEncoder:
    """The writer's encoder for a `--ray` run: the model as the actors described it. Vectors
    come with the articles; `encode` is for the rare article whose vectors did not (it loads
    the model here, through `local`)."""

    name: str
    fingerprint: str
    dimension: int
    info: EncoderInfo
    local: Callable[[], Embedder]

    @staticmethod
    def describe(embedder: Embedder) -> str:
        return json.dumps(
            {
                "name": embedder.name,
                "fingerprint": embedder.fingerprint,
                "dimension": embedder.dimension,
                "info": embedder.encoder_info().model_dump(),
            }
        )

    @classmethod
    def parse(cls, described: str, local: Callable[[], Embedder]) -> ActorEncoder:
        fields = json.loads(described)
        info = EncoderInfo.model_validate(fields.pop("info"))
        return cls(**fields, info=info, local=local)

    def check_alike(self, other: ActorEncoder) -> None:
        """Another actor's model must be this one (the same weights and dimension), or its
        vectors are meaningless beside these: ClusterUnavailable. Another backend or precision
        for the same weights (another kind of node) is allowed, as on separate runs."""
        if (other.fingerprint, other.dimension) != (self.fingerprint, self.dimension):
            raise ClusterUnavailable(
                f"the actors embed with different models: weights {self.fingerprint[:12]} "
                f"({self.dimension} dimensions) and {other.fingerprint[:12]} "
                f"({other.dimension}); install the same model on every node"
            )

    def encode(
        self, texts: Sequence[str], progress: Callable[[int], None] | None = None
    ) -> np.ndarray:
        return self.local().encode(texts, progress)

    def encoder_info(self) -> EncoderInfo:
        return self.info


# -- the driver -------------------------------------------------------------------------------


def dataset(ray: Any, paths: list[Path], settings: Settings, model: str | None) -> ray.data.Dataset:
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
    split = (
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
    )
    if chosen.tokenize_apart:
        split = split.map_batches(
            _tokenize, batch_size=ARTICLES_PER_BATCH, fn_kwargs={"model": model}, num_cpus=0.5
        )
    return split.map_batches(
        _Embed,
        batch_size=ARTICLES_PER_BATCH,
        fn_constructor_kwargs={
            "settings": settings.model_copy(update={"api_key": None}),  # no secret leaves
            "model": model,
            "overrides": overrides,
            "apart": chosen.tokenize_apart,
        },
        compute=ray.data.ActorPoolStrategy(size=chosen.actors),
        num_cpus=chosen.cpus_per_actor,
        num_gpus=chosen.gpus_per_actor or None,
    )  # Ray Data restarts a dead actor and runs its batch again (max_restarts=-1)


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
    model: str | None,
    local: Callable[[], Embedder],
    tally: IngestTally | None = None,
) -> tuple[ActorEncoder | None, Iterator[Article | Failure | Prepared]]:
    """Every article under `paths`, split and embedded on the cluster, in input order, for
    `IndexWriter.add`, and what embedded them (None when nothing came back); the driver
    holds a few batches at a time, whatever the corpus size. The first batch is awaited
    here: it brings the actors' description of their model."""
    pipeline = dataset(ray, paths, settings, model)
    batches = iter(
        pipeline.iter_batches(
            batch_size=ARTICLES_PER_BATCH, batch_format="numpy", prefetch_batches=2
        )
    )
    first = _next_batch(ray, batches)
    if first is None:
        return None, iter(())
    described = str(first["encoder"][0])
    encoder = ActorEncoder.parse(described, local)

    def items(batch: dict[str, np.ndarray] | None) -> Iterator[Article | Failure | Prepared]:
        while batch is not None:
            for other in set(map(str, batch["encoder"])) - {described}:
                encoder.check_alike(ActorEncoder.parse(other, local))
            yield from _items(batch, encoder.dimension, tally)
            batch = _next_batch(ray, batches)

    return encoder, items(first)


def _next_batch(ray: Any, batches: Iterator[dict[str, np.ndarray]]) -> dict[str, np.ndarray] | None:
    try:
        return next(batches)
    except StopIteration:
        return None
    except ray.exceptions.RayError as exc:  # what Ray could not retry: one line
        cause = str(exc).strip().splitlines()[-1]
        raise ClusterUnavailable(f"indexing on the Ray cluster failed: {cause}") from exc


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
