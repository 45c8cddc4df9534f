"""The manifest: what an index directory holds, written beside it as plain JSON."""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path

from pydantic import BaseModel, Field

#: 1: keyword index in SQLite FTS5, float32 vectors rewritten whole by every commit;
#: 2: keyword index in tantivy (index/keyword_index.py), int8 vectors, a vectors base and
#: the changes since it (index/live_vectors.py).
FORMAT_VERSION = 2
MANIFEST_FILE = "manifest.json"
DATABASE_FILE = "sift.db"
LOCK_FILE = "write.lock"


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class ModelInfo(BaseModel):
    name: str
    fingerprint: str = Field(description="sha256 over the model's weights.")
    dimension: int


class EncoderInfo(BaseModel):
    """What embedded the vectors of the latest run that embedded any (absent from manifests
    written before it was recorded). An index's vectors stay comparable across backends: each
    one is checked against torch fp32 (index/onnx_encoder.py), and the model's weights must
    match `model.fingerprint` whatever runs them."""

    backend: str = Field(description="torch or onnx.")
    precision: str = Field(description="fp32, bf16, fp16 or int8.")
    graph: str | None = Field(
        default=None, description="onnx: fused (onnxruntime's transformer optimizer) or plain."
    )
    reason: str = Field(description="Why this backend: the setting, or the machine's kind.")
    cpu: str = Field(description="The CPU kind it was chosen for: with or without bf16.")
    sift_version: str = Field(description="The sift that embedded.")


class SplitterInfo(BaseModel):
    name: str
    version: str


class VectorsInfo(BaseModel):
    """The vector index and the parameters that built it. The optional fields are absent from
    manifests written before approximate indexes existed: those describe a flat index."""

    type: str = Field(default="flat", description="flat (exact) or ivf (approximate).")
    metric: str = "inner_product"
    file: str | None = Field(
        default=None, description="The base FAISS file (written by the last merge), if any."
    )
    covers: int | None = Field(
        default=None,
        description="The largest sentence id the base file holds; sentences after it, and "
        "removals since (tombstones), are applied from the rows.",
    )
    factory: str | None = Field(default=None, description="FAISS index_factory string.")
    nlist: int | None = Field(default=None, description="IVF: inverted lists.")
    nprobe: int | None = Field(default=None, description="IVF: lists searched per query.")
    quantizer: str | None = Field(default=None, description="IVF: how vectors are coded.")
    rescore: int | None = Field(
        default=None, description="IVF: candidates re-scored exactly from the stored vectors."
    )
    trained_on: int | None = Field(default=None, description="IVF: sentences when trained.")
    train_sample: int | None = Field(default=None, description="IVF: vectors trained on.")
    threshold: int | None = Field(
        default=None, description="Sentences up to which the index stays exact (flat)."
    )
    built: str | None = Field(default=None, description="When this index type was built.")


class Counts(BaseModel):
    articles: int = 0
    sentences: int = 0


class TextInfo(BaseModel):
    """What text goes into each index, so a reader knows how the index was made."""

    embedded: str = Field(default="title: sentence", description="Text given to the model.")
    keyword: str = Field(
        default="BM25 of the sentence (weight 1) and its context = title + neighbouring "
        "sentences (weight 0.4), in one field",
        description="What the sentence keyword index scores (tantivy, English stemming).",
    )


class Manifest(BaseModel):
    format_version: int = FORMAT_VERSION
    model: ModelInfo
    encoder: EncoderInfo | None = None
    splitter: SplitterInfo
    text: TextInfo = Field(default_factory=TextInfo)
    vectors: VectorsInfo = Field(default_factory=VectorsInfo)
    counts: Counts = Field(default_factory=Counts)
    generation: int = Field(default=0, description="Bumped by every commit.")
    created: str = Field(default_factory=now_iso)
    updated: str = Field(default_factory=now_iso)


def vectors_file(generation: int) -> str:
    return f"vectors.{generation}.faiss"


def write_json_atomically(path: Path, text: str) -> None:
    """Replace `path` with `text`: a reader sees the old file or the new, never a torn one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def manifest_json(manifest: Manifest) -> str:
    return json.dumps(manifest.model_dump(mode="json"), indent=2) + "\n"
