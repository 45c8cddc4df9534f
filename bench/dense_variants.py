"""Dense MRR@10 on ReQA SQuAD v1.1 dev (the `sift eval` protocol) for ways of embedding that
would be faster than today's, each against today's in one run:

    .venv/bin/python bench/dense_variants.py [--int8]

- `titled_fp32`: today, `title: sentence` through the fused ONNX export (fp32);
- `bare_fp32`: the sentence alone (about a quarter fewer tokens);
- `mix_A`: the sentence alone, plus A times its article's title embedded once (normalised);
- `titled_int8` (with --int8): today's texts through the export quantized to int8
  (onnxruntime dynamic quantization, per channel, MatMul weights only), queries in fp32.

Every sentence of the 2,067 paragraphs (sift's own splitter) is ranked for each of the 10,570
questions by cosine, exactly; a hit is correct when its span holds an answer's start, as in
`sift eval`'s dense mode (which reproduces `titled_fp32` to within 0.001: 0.6941 there). A
variant is kept only if dense MRR@10 stays within 0.005 of today's (and hybrid, checked with
`sift eval`, for a variant that passes here).
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

import numpy as np
from _common import emit, need_eval
from sift.index.embed import Embedder
from sift.index.normalize import unit_rows
from sift.index.onnx_encoder import MODEL_FILE, OnnxEncoder
from sift.index.split import split_sentences
from sift.index.writer import embedding_text
from sift.search.evaluation import Question, load_squad

MIX = (0.2, 0.3, 0.4, 0.5)


def mrr_at_10(queries: np.ndarray, vectors: np.ndarray, spans: list, questions: list) -> float:
    vectors = unit_rows(vectors.astype(np.float32))
    total = 0.0
    for i in range(0, len(questions), 512):
        scores = queries[i : i + 512] @ vectors.T
        top = np.argpartition(-scores, 10, axis=1)[:, :10]
        for row, best, question in zip(scores, top, questions[i : i + 512], strict=True):
            total += _reciprocal_rank(best[np.argsort(-row[best])], spans, question)
    return round(total / len(questions), 4)


def _reciprocal_rank(ranked: np.ndarray, spans: list, question: Question) -> float:
    for rank, j in enumerate(ranked, 1):
        article_id, start, end = spans[j]
        if article_id == question.article_id and any(
            start <= s < end for s in question.answer_starts
        ):
            return 1 / rank
    return 0.0


def int8_encoder(fp32: OnnxEncoder, work: Path) -> OnnxEncoder:
    import shutil

    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    target = work / "int8"
    shutil.copytree(fp32.directory, target)
    quantize_dynamic(
        str(fp32.directory / MODEL_FILE),
        str(target / MODEL_FILE),
        weight_type=QuantType.QInt8,
        per_channel=True,
        op_types_to_quantize=["MatMul"],
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )
    return OnnxEncoder(target, batch_size=32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--int8", action="store_true", help="Also the int8 quantized export.")
    args = parser.parse_args()
    articles, questions = load_squad(need_eval("squad_v1.1_dev", "dev-v1.1.json.gz"))
    spans, titled, bare, titles = [], [], [], []
    for article in articles:
        for s in split_sentences(article.text):
            spans.append((article.id, s.start, s.end))
            titled.append(embedding_text(article.title, s.text))
            bare.append(s.text)
            titles.append(article.title or "")
    fp32 = Embedder(backend="onnx").onnx_encoder(batch_size=32)
    seconds: dict[str, float] = {}

    def timed(name: str, encoder: OnnxEncoder, texts: list[str]) -> np.ndarray:
        started = time.perf_counter()
        vectors = encoder.encode(texts)
        seconds[name] = round(time.perf_counter() - started, 1)
        return vectors

    queries = timed("questions", fp32, [q.text for q in questions])
    results: dict[str, float] = {}
    results["titled_fp32"] = mrr_at_10(
        queries, timed("titled_fp32", fp32, titled), spans, questions
    )
    bare_vectors = timed("bare_fp32", fp32, bare)
    results["bare_fp32"] = mrr_at_10(queries, bare_vectors, spans, questions)
    names = sorted(set(titles))
    title_vectors = fp32.encode(names)[[names.index(t) for t in titles]]
    for weight in MIX:
        mixed = unit_rows(bare_vectors) + weight * title_vectors
        results[f"mix_{weight}"] = mrr_at_10(queries, mixed, spans, questions)
    if args.int8:
        with tempfile.TemporaryDirectory() as tmp:
            int8 = int8_encoder(fp32, Path(tmp))
            vectors = timed("titled_int8", int8, titled)
        results["titled_int8"] = mrr_at_10(queries, vectors, spans, questions)
    emit(
        {
            "bench": "dense_variants",
            "corpus": "squad_v1.1_dev",
            "sentences": len(spans),
            "questions": len(questions),
            "dense_mrr_at_10": results,
            "delta_to_today": {k: round(v - results["titled_fp32"], 4) for k, v in results.items()},
            "encode_seconds": seconds,
        }
    )


if __name__ == "__main__":
    main()
