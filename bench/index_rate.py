"""Indexing rate on BBC News (2,225 articles), end to end, next to the raw encode rate of the same
model and precision on the same sentences, measured in one run.

    .venv/bin/python bench/index_rate.py [--precision auto|fp32|bf16|fp16]
                                         [--backend auto|torch|onnx] [--limit N]

The raw rate is of the backend the index run used: sentence-transformers' `encode` for torch,
the ONNX export's own `encode` for onnx.

On a GPU machine, BBC News x 50 (about 2M sentences; each copy's articles end with a line
naming the copy, so no copy is a duplicate that sift would store once):

    .venv/bin/python bench/index_rate.py --copies 50

With copies, the raw encode rate is measured on the first copy's sentences.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from _common import bbc_articles, emit, write_corpus
from sift.index.embed import Embedder
from sift.index.recipe import embedding_text
from sift.index.split import split_sentences
from sift.search.engine import Sift
from sift.settings import Settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--limit", type=int, default=None, help="Only the first N articles.")
    parser.add_argument("--copies", type=int, default=1, help="Index the corpus N times over.")
    args = parser.parse_args()
    articles = bbc_articles()[: args.limit]
    with tempfile.TemporaryDirectory() as tmp:
        corpus = write_corpus(Path(tmp) / "bbc.jsonl", articles, args.copies)
        settings = Settings(
            index=Path(tmp) / "index", precision=args.precision, backend=args.backend
        )
        engine = Sift(settings)
        embedder = engine.embedder
        embedder.encode(["warm up the model before timing"])
        started = time.perf_counter()
        summary = engine.index_paths([corpus])
        index_seconds = time.perf_counter() - started
        assert not summary.failed, summary.failed[:3]

    # The raw rate is of the very texts the index embeds ("title: sentence"), in one call.
    sentences = [
        embedding_text(a["title"], s.text) for a in articles for s in split_sentences(a["text"])
    ]
    raw = Embedder(precision=args.precision, backend=embedder.backend)
    raw.encode(["warm up"])
    started = time.perf_counter()
    if embedder.backend == "onnx":
        raw.encode(sentences)  # the export's own encode: one call, batches sorted by length
    else:
        raw.model.encode(sentences, batch_size=settings.batch_size, normalize_embeddings=True)
    encode_seconds = time.perf_counter() - started
    index_rate = summary.sentences / index_seconds
    encode_rate = len(sentences) / encode_seconds
    emit(
        {
            "bench": "index_rate",
            "corpus": "bbc_news",
            "articles": len(articles) * args.copies,
            "copies": args.copies,
            "sentences": summary.sentences,
            "backend": embedder.backend,
            "precision": embedder.precision,
            "index_seconds": round(index_seconds, 1),
            "index_sentences_per_s": round(index_rate, 1),
            "raw_encode_sentences_per_s": round(encode_rate, 1),
            "ratio": round(index_rate / encode_rate, 3),
        }
    )


if __name__ == "__main__":
    main()
