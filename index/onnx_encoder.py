"""The query-side encoder: the index's own model, exported once to ONNX, run on onnxruntime.

A search embeds one short query. Loading torch and sentence-transformers for that costs ~3.5 s
and ~500 MB before the first answer; onnxruntime with an export of the same weights starts in
a fraction of a second in a fraction of the memory, and gives the same vectors (fp32, cosine
0.99996 or more to sentence-transformers fp32 on BBC sentences; checked on every export).

For indexing on CPUs without bf16 the same export is the fast backend (index/backends.py): it
is exported with eager attention, so that onnxruntime's transformer optimizer can fuse each
layer's attention, LayerNorms and GELU into single kernels; the fused graph is kept only if it
passes the same check against torch, else the plain one is.

The export lives in the cache directory under the weights' fingerprint, the one the index's
manifest records, so an index finds the encoder of exactly the weights it was built with:

    <cache>/encoders/<fingerprint>/model.onnx       the transformer, fp32, dynamic batch/length
                                   model-int8.onnx  the same, its MatMul weights quantized to
                                                    int8 (made on first use, `quantize_encoder`)
                                   tokenizer.json   the model's fast tokenizer
                                   encoder.json     EncoderSpec: pooling, normalisation, limits,
                                                    and whether the graph is fused

Only the plain sentence-transformers stack is exported: Transformer, then mean or CLS
pooling, then optionally Normalize. Any other model keeps using sentence-transformers.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import shutil
import tempfile
import threading
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import BaseModel
from sift.errors import EncoderUnavailable
from sift.index.normalize import unit_rows

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

#: 2: exported with eager attention and fused by onnxruntime's transformer optimizer.
ENCODER_FORMAT = 2
SPEC_FILE = "encoder.json"
MODEL_FILE = "model.onnx"
INT8_FILE = "model-int8.onnx"
TOKENIZER_FILE = "tokenizer.json"
#: An export is kept only if its vectors match the torch model's (fp32) this closely.
MIN_COSINE = 0.999
#: The int8 model is lossy by design; its rankings decide whether it is used (index/backends.py),
#: this bound only refuses a quantization gone wrong (measured: 0.995 or more on the probes).
INT8_MIN_COSINE = 0.98
#: Model types whose layers onnxruntime's BERT optimizer knows.
_FUSABLE = {"bert", "roberta", "xlm-roberta"}
_PROBES = [
    "Query",
    "casualty estimates",
    "Who signed the defence pact between Russia and North Korea in June?",
    "NEW DELHI: At least 100 North Korean soldiers have been killed and nearly 1,000 injured "
    "while fighting alongside Russian forces in the Kursk region, a lawmaker said on Thursday.",
]


class EncoderSpec(BaseModel):
    format: int = ENCODER_FORMAT
    name: str
    fingerprint: str
    dimension: int
    pooling: Literal["mean", "cls"]
    normalize: bool
    max_seq_length: int
    inputs: list[str]
    graph: Literal["fused", "plain"] = "plain"


def encoder_dir(cache_dir: Path, fingerprint: str) -> Path:
    return Path(cache_dir).expanduser() / "encoders" / fingerprint


def onnxruntime_available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


OnnxPrecision = Literal["fp32", "int8"]


class OnnxEncoder:
    """Embeds texts like the Embedder it was exported from. Thread-safe (onnxruntime sessions
    run concurrently); loads on first use. `precision` int8 runs the quantized model."""

    device = "cpu"

    def __init__(
        self,
        directory: Path,
        threads: int | None = None,
        batch_size: int = 64,
        precision: OnnxPrecision = "fp32",
        model_file: Path | None = None,
    ):
        self.directory = Path(directory)
        self.precision: OnnxPrecision = precision
        self.model_file = model_file or self.directory / (
            INT8_FILE if precision == "int8" else MODEL_FILE
        )
        try:
            self.spec = EncoderSpec.model_validate_json(
                (self.directory / SPEC_FILE).read_text(encoding="utf-8")
            )
        except (OSError, ValueError) as exc:
            raise EncoderUnavailable(f"no usable ONNX encoder in {self.directory}: {exc}") from exc
        if self.spec.format != ENCODER_FORMAT:
            raise EncoderUnavailable(
                f"ONNX encoder format {self.spec.format} is not {ENCODER_FORMAT}"
            )
        self.name = self.spec.name
        self.fingerprint = self.spec.fingerprint
        self.dimension = self.spec.dimension
        self.batch_size = batch_size
        self._threads = threads
        self._session = None
        self._tokenizer = None
        self._lock = threading.Lock()

    def load(self) -> None:
        """Open the model and tokenizer; EncoderUnavailable if either cannot be used."""
        with self._lock:
            if self._session is not None:
                return
            try:
                self._open()
            except Exception as exc:  # onnxruntime and tokenizers raise their own types
                raise EncoderUnavailable(
                    f"cannot open the ONNX encoder in {self.directory}: {exc}"
                ) from exc

    def _open(self) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        options = ort.SessionOptions()
        if self._threads:
            options.intra_op_num_threads = self._threads
            options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        tokenizer = Tokenizer.from_file(str(self.directory / TOKENIZER_FILE))
        tokenizer.enable_truncation(max_length=self.spec.max_seq_length)
        tokenizer.no_padding()  # padded per batch, below
        self._session = ort.InferenceSession(
            str(self.model_file), options, providers=["CPUExecutionProvider"]
        )
        self._tokenizer = tokenizer

    def encode(
        self, texts: Sequence[str], progress: Callable[[int], None] | None = None
    ) -> np.ndarray:
        """Unit-length (if the model normalises) float32 vectors, one row per text."""
        return self.encode_ids(self.token_ids(texts), progress)

    def token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Each text's token ids as this encoder reads it (truncated, unpadded)."""
        self.load()
        assert self._tokenizer is not None
        return [e.ids for e in self._tokenizer.encode_batch(list(texts))]

    def encode_ids(
        self, ids: Sequence[Sequence[int]], progress: Callable[[int], None] | None = None
    ) -> np.ndarray:
        """As `encode`, from token ids already made (`token_ids`, or a tokenising stage)."""
        self.load()
        out = np.zeros((len(ids), self.dimension), dtype=np.float32)
        # Sorted by length, so a batch pads to a length its texts share.
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        for start in range(0, len(order), self.batch_size):
            rows = order[start : start + self.batch_size]
            out[rows] = self._encode_batch([ids[i] for i in rows])
            if progress is not None:
                progress(len(rows))
        return out

    def _encode_batch(self, batch: list[Sequence[int]]) -> np.ndarray:
        assert self._session is not None
        length = max(len(row) for row in batch)
        ids = np.zeros((len(batch), length), dtype=np.int64)
        mask = np.zeros((len(batch), length), dtype=np.int64)
        for number, row in enumerate(batch):
            ids[number, : len(row)] = row
            mask[number, : len(row)] = 1
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self.spec.inputs:
            feeds["token_type_ids"] = np.zeros_like(ids)
        (hidden,) = self._session.run(["last_hidden_state"], feeds)
        if self.spec.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            weights = mask[:, :, None].astype(np.float32)
            pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
        pooled = pooled.astype(np.float32)
        if self.spec.normalize:
            pooled = unit_rows(pooled)
        return pooled


def cached_encoder(
    cache_dir: Path, fingerprint: str, threads: int | None = None, precision: OnnxPrecision = "fp32"
) -> OnnxEncoder | None:
    """The exported encoder of the weights with this fingerprint, if one is cached.

    The weights decide, not the name or the folder: an index's manifest records the
    fingerprint of the weights its vectors came from, and the export of exactly those
    weights embeds its queries, whatever has become of the model folder since."""
    directory = encoder_dir(cache_dir, fingerprint)
    if not (directory / SPEC_FILE).is_file() or not onnxruntime_available():
        return None
    try:
        encoder = OnnxEncoder(directory, threads=threads, precision=precision)
        encoder.load()  # a damaged model file shows here, not in a search
    except EncoderUnavailable:
        return None
    return encoder


def open_encoder(
    model: SentenceTransformer,
    name: str,
    fingerprint: str,
    cache_dir: Path,
    threads: int | None = None,
    batch_size: int = 64,
    precision: OnnxPrecision = "fp32",
) -> OnnxEncoder:
    """The one way to an ONNX encoder, for indexing and for queries alike: the cached export
    of these weights, exported first where there is none (and quantized, for int8). Raises
    EncoderUnavailable."""
    directory = export_encoder(model, name, fingerprint, cache_dir)
    if precision == "int8":
        quantize_encoder(directory)
    encoder = OnnxEncoder(directory, threads=threads, batch_size=batch_size, precision=precision)
    encoder.load()
    return encoder


def quantize_encoder(directory: Path) -> Path:
    """The int8 model beside an export's fp32 one, made once: onnxruntime's dynamic
    quantization of the MatMul weights, per output channel (activations are quantized per
    batch at run time; LayerNorm, softmax and GELU stay fp32). Kept only if its vectors stay
    close to the fp32 export's (INT8_MIN_COSINE); raises EncoderUnavailable otherwise."""
    target = Path(directory) / INT8_FILE
    if target.is_file():
        return target
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    staging = target.with_name(f".{INT8_FILE}.{os.getpid()}.{threading.get_ident()}")
    quiet = _Silence("pre-processing before quantization")  # its advice is for CNNs
    logging.getLogger().addFilter(quiet)
    try:
        quantize_dynamic(
            str(Path(directory) / MODEL_FILE),
            str(staging),
            weight_type=QuantType.QInt8,
            per_channel=True,
            op_types_to_quantize=["MatMul"],
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
        fp32 = OnnxEncoder(directory, batch_size=len(_PROBES)).encode(_PROBES)
        int8 = OnnxEncoder(directory, batch_size=len(_PROBES), precision="int8", model_file=staging)
        cosine = float((unit_rows(fp32) * unit_rows(int8.encode(_PROBES))).sum(axis=1).min())
        if cosine < INT8_MIN_COSINE:
            raise EncoderUnavailable(
                f"the int8 model differs from the fp32 one (cosine {cosine:.4f})"
            )
        staging.replace(target)  # another process may have done the same: either file serves
    except EncoderUnavailable:
        raise
    except Exception as exc:  # onnx and onnxruntime raise their own types
        raise EncoderUnavailable(f"cannot quantize the ONNX encoder to int8: {exc}") from exc
    finally:
        logging.getLogger().removeFilter(quiet)
        staging.unlink(missing_ok=True)
    return target


class _Silence(logging.Filter):
    """Drops the log records that hold one phrase."""

    def __init__(self, phrase: str):
        super().__init__()
        self.phrase = phrase

    def filter(self, record: logging.LogRecord) -> bool:
        return self.phrase not in record.getMessage()


def export_encoder(
    model: SentenceTransformer, name: str, fingerprint: str, cache_dir: Path
) -> Path:
    """Export the model (weights `fingerprint`) to ONNX in the cache, once; the directory.

    Raises EncoderUnavailable for a model outside the plain stack, or an export whose vectors
    differ from the torch model's."""
    if not onnxruntime_available():
        raise EncoderUnavailable("onnxruntime is not installed (pip install onnxruntime)")
    final = encoder_dir(cache_dir, fingerprint)
    if cached_encoder(cache_dir, fingerprint) is not None:
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    if final.exists():  # a damaged or outdated export: set it aside, then make a new one
        shutil.rmtree(final.rename(final.with_name(f".old-{final.name}-{os.getpid()}")), True)
    staging = Path(tempfile.mkdtemp(prefix=".export-", dir=final.parent))
    try:
        _export_into(model, name, fingerprint, staging)
        try:
            staging.rename(final)
        except OSError:  # another process exported it meanwhile
            if cached_encoder(cache_dir, fingerprint) is None:
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final


def _export_into(model: SentenceTransformer, name: str, fingerprint: str, staging: Path) -> None:
    import torch
    from sentence_transformers.models import Normalize, Pooling, Transformer

    modules = list(model)
    if (
        len(modules) not in (2, 3)
        or not isinstance(modules[0], Transformer)
        or not isinstance(modules[1], Pooling)
        or (len(modules) == 3 and not isinstance(modules[2], Normalize))
    ):
        kinds = ", ".join(type(m).__name__ for m in modules)
        raise EncoderUnavailable(f"only Transformer + Pooling (+ Normalize) export; got {kinds}")
    transformer, pooling = modules[0], modules[1]
    config = pooling.get_config_dict()
    mode = config.get("pooling_mode") or pooling.get_pooling_mode_str()  # v6 or earlier
    if mode not in ("mean", "cls"):
        raise EncoderUnavailable(f"pooling {mode!r} is not exported (mean and cls are)")
    hf = copy.deepcopy(transformer.auto_model).to("cpu", torch.float32).eval()
    # Eager attention traces to the MatMul/Softmax pattern the optimizer fuses; the SDPA
    # kernel traces to one it does not recognise.
    if hasattr(hf, "set_attn_implementation"):
        with contextlib.suppress(ValueError, NotImplementedError):
            hf.set_attn_implementation("eager")
    inputs = ["input_ids", "attention_mask"]
    if "token_type_ids" in transformer.tokenizer.model_input_names:
        inputs.append("token_type_ids")

    class LastHiddenState(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = hf

        def forward(self, *args: torch.Tensor) -> torch.Tensor:
            return self.inner(**dict(zip(inputs, args, strict=True))).last_hidden_state

    sample = tuple(torch.ones(2, 8, dtype=torch.long) for _ in inputs)
    axes = {name: {0: "batch", 1: "length"} for name in [*inputs, "last_hidden_state"]}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the tracer's notes about Python-side shape checks
        torch.onnx.export(
            LastHiddenState(),
            sample,
            str(staging / MODEL_FILE),
            input_names=inputs,
            output_names=["last_hidden_state"],
            dynamic_axes=axes,
            opset_version=17,
            dynamo=False,
        )
    transformer.tokenizer.backend_tokenizer.save(str(staging / TOKENIZER_FILE))
    spec = EncoderSpec(
        name=name,
        fingerprint=fingerprint,
        dimension=int(hf.config.hidden_size),
        pooling=mode,
        normalize=len(modules) == 3,
        max_seq_length=int(transformer.max_seq_length),
        inputs=inputs,
    )
    reference = copy.deepcopy(model).to("cpu", torch.float32)
    plain = staging / f"plain-{MODEL_FILE}"
    (staging / MODEL_FILE).rename(plain)
    if _fuse(plain, staging / MODEL_FILE, hf.config):
        _write_spec(staging, spec.model_copy(update={"graph": "fused"}))
        try:
            _verify(staging, reference)
            plain.unlink()
            return
        except EncoderUnavailable:
            pass  # a fusion that changes the vectors is not kept: the plain graph is
    plain.replace(staging / MODEL_FILE)
    _write_spec(staging, spec)
    _verify(staging, reference)


def _write_spec(staging: Path, spec: EncoderSpec) -> None:
    (staging / SPEC_FILE).write_text(spec.model_dump_json(indent=2), encoding="utf-8")


def _fuse(source: Path, target: Path, config: object) -> bool:
    """onnxruntime's transformer optimizer over a BERT-like export: attention, LayerNorm (with
    the residual add) and GELU each become one kernel. Measured on BBC sentences, this CPU,
    fp32: see README (Performance). False where the model is not BERT-like or it fails."""
    heads = getattr(config, "num_attention_heads", None)
    hidden = getattr(config, "hidden_size", None)
    if getattr(config, "model_type", None) not in _FUSABLE or not heads or not hidden:
        return False
    try:
        from onnxruntime.transformers import optimizer

        fused = optimizer.optimize_model(
            str(source),
            model_type="bert",
            num_heads=int(heads),
            hidden_size=int(hidden),
            opt_level=1,
        )
        if not fused.get_fused_operator_statistics().get("Attention"):
            return False
        fused.save_model_to_file(str(target))
    except Exception:  # the optimizer raises many types; the plain graph still serves
        target.unlink(missing_ok=True)
        return False
    return True


def _verify(staging: Path, reference: SentenceTransformer) -> None:
    """The export must give the fp32 torch model's vectors, padded batches included."""
    expected = reference.encode(_PROBES, batch_size=len(_PROBES), convert_to_numpy=True)
    got = OnnxEncoder(staging, batch_size=len(_PROBES)).encode(_PROBES)
    cosine = float((unit_rows(expected) * unit_rows(got)).sum(axis=1).min())
    if cosine < MIN_COSINE:
        raise EncoderUnavailable(f"the ONNX export differs from the model (cosine {cosine:.5f})")
