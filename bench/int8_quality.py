"""The quality rule for the int8 backend: `sift eval` (ReQA SQuAD v1.1 dev, every question, both
halves) on an index embedded by the fused ONNX export in fp32 and on one embedded by the same
export quantized to int8, in one run, with the differences that `index/backends.py` keeps as
INT8_LOSS. Queries are embedded in fp32 for both, as a search does.

    .venv/bin/python bench/int8_quality.py [--titles N] [--work DIR]

`auto` takes int8 (on CPUs without bf16, with VNNI) only while both the dense and the hybrid
difference stay within 0.005. The indexing rate of each is printed too (SQuAD's paragraphs).
About 15 minutes on a 2-core machine; `--titles 4` is a quick slice (not the rule's figure).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from _common import emit, need_eval
from sift.index.backends import INT8_LOSS, QUALITY_TOLERANCE
from sift.search.evaluation import run_reqa
from sift.settings import Settings

MODES = ("dense", "hybrid", "keyword")
VARIANTS = {"fp32": {"backend": "onnx"}, "int8": {"precision": "int8"}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--titles", type=int, help="Only N Wikipedia articles a half.")
    parser.add_argument("--work", type=Path, default=None, help="Keep the indexes here.")
    args = parser.parse_args()
    squad = need_eval("squad_v1.1_dev", "dev-v1.1.json.gz")
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        reports = {}
        for name, settings in VARIANTS.items():
            report = run_reqa(
                squad,
                work / name,
                Settings(**settings),
                MODES,
                articles_level=False,
                titles_per_half=args.titles,
                progress=lambda line, name=name: print(f"{name}: {line}", file=sys.stderr),
            )
            reports[name] = report
    mrr = {
        name: {mode: r["modes"][mode]["mrr@10"] for mode in MODES}  # type: ignore[index]
        for name, r in reports.items()
    }
    halves = {
        name: {
            mode: {h: v["mrr@10"] for h, v in r["modes"][mode]["halves"].items()}  # type: ignore[index]
            for mode in MODES
        }
        for name, r in reports.items()
    }
    loss = {mode: round(mrr["int8"][mode] - mrr["fp32"][mode], 4) for mode in MODES}
    emit(
        {
            "bench": "int8_quality",
            "questions": reports["fp32"]["questions"],
            "sentences": reports["fp32"]["sentences"],
            "mrr@10": mrr,
            "mrr@10_by_half": halves,
            "int8_minus_fp32": loss,
            "within_tolerance": all(abs(loss[m]) <= QUALITY_TOLERANCE for m in ("dense", "hybrid")),
            "recorded_in_backends_py": {"dense": INT8_LOSS.dense, "hybrid": INT8_LOSS.hybrid},
            "index_sentences_per_s": {
                name: round(r["sentences"] / r["index_seconds"], 1)  # type: ignore[operator]
                for name, r in reports.items()
            },
        }
    )


if __name__ == "__main__":
    main()
