"""Helpers shared by the benchmark scripts: the machine they ran on, the eval data, output."""

from __future__ import annotations

import gzip
import json
import os
import platform
import sys
from pathlib import Path
from typing import Any

EVAL = Path(__file__).resolve().parents[2] / "shared" / "eval"


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
    }


def need_eval(*parts: str) -> Path:
    path = EVAL.joinpath(*parts)
    if not path.exists():
        sys.exit(f"skipped: {path} is absent (the evaluation data lives in ../shared/eval)")
    return path


def bbc_articles() -> list[dict[str, Any]]:
    with gzip.open(need_eval("bbc_news", "bbc_news.jsonl.gz"), "rt", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def write_corpus(path: Path, articles: list[dict[str, Any]], copies: int = 1) -> Path:
    """`articles` as JSON lines, `copies` times over; each copy has its own id and text, so
    none is stored as a duplicate of another."""
    with path.open("w", encoding="utf-8") as out:
        for copy in range(copies):
            for a in articles:
                if copy:
                    a = {**a, "id": f"{a['id']}~{copy}", "text": f"{a['text']}\n\nCopy {copy}."}
                out.write(json.dumps(a) + "\n")
    return path


def emit(result: dict[str, Any]) -> None:
    """One line of JSON on stdout: the figure, and the machine it was measured on."""
    print(json.dumps({**result, "machine": machine()}))


def queries(n: int, seed: int = 0) -> list[tuple[str, str]]:
    """`n` queries as (kind, text), half BBC News titles (news-like, with near matches in the
    BBC-made indexes) and half SQuAD v1.1 dev questions (open questions, weaker matches)."""
    import random

    titles = [a["title"] for a in bbc_articles() if a.get("title")]
    with gzip.open(need_eval("squad_v1.1_dev", "dev-v1.1.json.gz"), "rt", encoding="utf-8") as f:
        squad = json.load(f)["data"]
    questions = [qa["question"] for a in squad for p in a["paragraphs"] for qa in p["qas"]]
    rng = random.Random(seed)
    half = n // 2
    return [("bbc_title", t) for t in rng.sample(titles, half)] + [
        ("squad_question", q) for q in rng.sample(questions, n - half)
    ]
