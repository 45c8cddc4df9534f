"""Which encoder embeds queries: the ONNX export of the index's model where one serves, else
the sentence-transformers model itself (see index/onnx_encoder.py for why). Exports come from
the same factory as the indexing backend (`Embedder.onnx_encoder`)."""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np
from sift.errors import EncoderUnavailable
from sift.index.embed import Embedder, resolve_model
from sift.index.manifest import Manifest
from sift.index.onnx_encoder import cached_encoder, onnxruntime_available
from sift.settings import Settings

log = logging.getLogger("sift")


class QueryEncoder(Protocol):
    name: str

    def load(self) -> None: ...

    def encode(
        self, texts: Sequence[str], progress: Callable[[int], None] | None = None
    ) -> np.ndarray: ...


def choose_query_encoder(
    settings: Settings, manifest: Manifest, torch_model: Callable[[], Embedder]
) -> QueryEncoder:
    """The encoder for queries against an index built with `manifest`'s model.

    `auto` takes the cached ONNX export of the index's weights, exporting it first (once per
    model, with torch) where there is none; a model that does not export, or a machine without
    onnxruntime, gets the torch model. `onnx` insists; `torch` never exports."""
    if not _wants_onnx(settings, manifest):
        return torch_model()
    found = cached_encoder(settings.cache_dir, manifest.model.fingerprint, settings.query_threads)
    if found is not None:
        return found
    embedder = torch_model()  # checks the weights against the index's
    try:
        return embedder.onnx_encoder(threads=settings.query_threads)
    except (EncoderUnavailable, OSError) as exc:
        if settings.query_encoder == "onnx":
            raise
        log.info("queries use the torch model: %s", exc)
        return embedder


def query_encoder_ready(settings: Settings, manifest: Manifest) -> bool:
    """True when a search needs no export first: one is cached, or none would be made."""
    if not _wants_onnx(settings, manifest) or not onnxruntime_available():
        return True
    return cached_encoder(settings.cache_dir, manifest.model.fingerprint) is not None


def prepare_query_encoder(embedder: Embedder) -> None:
    """After indexing with torch: export the model for queries now, so the first search after
    it starts fast. Never fails the indexing it follows."""
    try:
        embedder.onnx_encoder()
    except (EncoderUnavailable, OSError) as exc:
        log.info("no ONNX query encoder for %s: %s", embedder.name, exc)


def _wants_onnx(settings: Settings, manifest: Manifest) -> bool:
    """ONNX for queries unless the settings say torch, or name a model other than the index's
    (which the torch model then refuses, naming both)."""
    if settings.query_encoder == "torch":
        return False
    return settings.model is None or resolve_model(settings.model)[0] == manifest.model.name


class QueryVectors:
    """Query vectors by query text, the most recently used `size` of them: news traffic
    repeats its queries (the day's names and events), and a repeated query then costs no
    model call. A query's vector depends only on its text and the encoder, so nothing a
    write does makes one stale."""

    def __init__(self, size: int = 4096):
        self.size = size
        self._vectors: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def encode(self, encoder: QueryEncoder, queries: list[str]) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        with self._lock:
            for query in queries:
                vector = self._vectors.get(query)
                if vector is not None:
                    self._vectors.move_to_end(query)
                    out[query] = vector
        missing = [q for q in dict.fromkeys(queries) if q not in out]
        if missing:
            fresh = dict(zip(missing, encoder.encode(missing), strict=True))
            out.update(fresh)
            with self._lock:
                for query, vector in fresh.items():
                    vector.setflags(write=False)
                    self._vectors[query] = vector
                    self._vectors.move_to_end(query)
                while len(self._vectors) > self.size:
                    self._vectors.popitem(last=False)
        return out
