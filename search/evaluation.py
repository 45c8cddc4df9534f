"""The ReQA-style benchmark on SQuAD v1.1 dev, run through sift's own indexing and search.

Every paragraph is an article (titled with its Wikipedia article's title), every question a
query. A returned sentence is correct when its span in the paragraph holds the start of one
of the question's answers. MRR@10 and R@1/5/10 per mode; the article (paragraph) level is
scored too, for group=article against folding sentence hits to their article.

The Wikipedia articles are split into two halves by a hash of their title, so that no article
(nor any of its paragraphs) is in both: ranking defaults may be chosen on `tune` only, and
`report` is the half that says whether they hold on questions they were not chosen on.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from sift.index.records import Article
from sift.search.engine import Sift
from sift.search.results import SearchRequest, SearchResponse
from sift.settings import Settings

DEFAULT_SQUAD = Path("../shared/eval/squad_v1.1_dev/dev-v1.1.json.gz")
MODES = ("hybrid", "dense", "keyword")
HALVES = ("tune", "report")


@dataclass(frozen=True)
class Question:
    text: str
    article_id: str
    answer_starts: tuple[int, ...]
    half: str = "tune"


def halves(titles: list[str]) -> dict[str, str]:
    """Each title's half: titles in the order of their sha256, alternately tune and report.
    Fixed by the titles alone, so every run, and every machine, splits the same way."""
    order = sorted(titles, key=lambda t: hashlib.sha256(t.encode("utf-8")).hexdigest())
    return {title: HALVES[i % 2] for i, title in enumerate(order)}


def load_squad(
    path: Path, titles_per_half: int | None = None
) -> tuple[list[Article], list[Question]]:
    """Paragraphs as articles and questions as queries; `titles_per_half`: only the first N
    Wikipedia articles of each half (a small slice, for a quick check of the harness)."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        data = json.load(handle)
    half_of = halves([doc["title"] for doc in data["data"]])
    taken = dict.fromkeys(HALVES, 0)
    articles, questions = [], []
    for a, doc in enumerate(data["data"]):
        half = half_of[doc["title"]]
        if titles_per_half is not None and taken[half] >= titles_per_half:
            continue
        taken[half] += 1
        title = doc["title"].replace("_", " ")
        for p, paragraph in enumerate(doc["paragraphs"]):
            article_id = f"{a}/{p}"
            articles.append(Article(id=article_id, title=title, text=paragraph["context"]))
            for qa in paragraph["qas"]:
                starts = tuple(sorted({ans["answer_start"] for ans in qa["answers"]}))
                questions.append(Question(qa["question"], article_id, starts, half))
    return articles, questions


def first_correct(response: SearchResponse, question: Question) -> int | None:
    """The rank of the first correct sentence among the top 10 sentences. A result can hold
    several hit sentences (touching hits merge into one passage): ReQA ranks sentences, so
    every hit counts at its own score's place."""
    sentences = sorted(
        ((h.score, r.article_id, h.start, h.end) for r in response.results for h in r.hits),
        key=lambda hit: -hit[0],
    )
    for rank, (_, article_id, start, end) in enumerate(sentences[:10], 1):
        if article_id == question.article_id and any(
            start <= s < end for s in question.answer_starts
        ):
            return rank
    return None


def _first_article(ranked_ids: list[str], question: Question) -> int | None:
    for rank, article_id in enumerate(ranked_ids, 1):
        if article_id == question.article_id:
            return rank
    return None


def _scores(ranks: list[int | None]) -> dict[str, float]:
    n = len(ranks)
    return {
        "mrr@10": round(sum(1 / r for r in ranks if r is not None and r <= 10) / n, 4),
        "r@1": round(sum(1 for r in ranks if r is not None and r <= 1) / n, 4),
        "r@5": round(sum(1 for r in ranks if r is not None and r <= 5) / n, 4),
        "r@10": round(sum(1 for r in ranks if r is not None and r <= 10) / n, 4),
    }


def _batches(items: list[Question], size: int) -> Iterator[list[Question]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _levels(ranks: list[int | None], questions: list[Question]) -> dict[str, dict[str, float]]:
    """Scores over all the questions and over each half."""
    out = {"all": _scores(ranks)}
    for half in HALVES:
        mine = [r for r, q in zip(ranks, questions, strict=True) if q.half == half]
        if mine:
            out[half] = _scores(mine)
    return out


def run_reqa(
    squad: Path,
    index_dir: Path,
    settings: Settings,
    modes: tuple[str, ...] = MODES,
    articles_level: bool = True,
    limit: int | None = None,
    progress: Callable[[str], None] | None = None,
    titles_per_half: int | None = None,
) -> dict[str, object]:
    """Index SQuAD's paragraphs into `index_dir` (reused when already there) and score each mode,
    over all the questions and over each half. `limit`: the first N questions of each half."""
    say = progress or (lambda _: None)
    articles, questions = load_squad(squad, titles_per_half)
    if limit:
        questions = [q for half in HALVES for q in [q for q in questions if q.half == half][:limit]]
    engine = Sift(settings.model_copy(update={"index": index_dir, "max_k": 1000}))
    started = time.perf_counter()
    summary = engine.index_articles(articles)
    index_seconds = time.perf_counter() - started
    say(f"indexed {len(articles):,} paragraphs in {index_seconds:.0f} s")
    stats = engine.stats()
    report: dict[str, object] = {
        "benchmark": "ReQA SQuAD v1.1 dev",
        "paragraphs": stats.articles,
        "sentences": stats.sentences,
        "questions": len(questions),
        "questions_by_half": {h: sum(q.half == h for q in questions) for h in HALVES},
        "titles_by_half": {
            h: len({q.article_id.split("/")[0] for q in questions if q.half == h}) for h in HALVES
        },
        "index_seconds": round(index_seconds, 1),
        "embedded_sentences": summary.sentences,
        "ranking": {
            "fusion": settings.fusion,
            "rrf_k": settings.rrf_k,
            **{f"weight_{k}": v for k, v in asdict(settings.weights()).items()},
        },
        "modes": {},
    }
    modes_report: dict[str, object] = {}
    for mode in modes:
        started = time.perf_counter()
        sentence_ranks: list[int | None] = []
        folded_ranks: list[int | None] = []
        for batch in _batches(questions, 512):
            # 50 deep, so that folding sentence hits to articles has enough of them; the
            # first 10 are what k=10 returns (no per-article cap at this depth).
            requests = [
                SearchRequest(q=q.text, k=50, mode=mode, context=0, per_article=50, collapse=False)
                for q in batch
            ]
            for question, response in zip(batch, engine.search_batch(requests), strict=True):
                sentence_ranks.append(first_correct(response, question))
                folded = list(dict.fromkeys(h.article_id for h in response.results))
                folded_ranks.append(_first_article(folded, question))
        seconds = time.perf_counter() - started
        levels = _levels(sentence_ranks, questions)
        entry: dict[str, object] = {
            **levels["all"],
            "halves": {h: levels[h] for h in HALVES if h in levels},
            "seconds": round(seconds, 1),
            "queries_per_s": round(len(questions) / seconds, 1),
        }
        if articles_level:
            group_ranks: list[int | None] = []
            for batch in _batches(questions, 512):
                requests = [
                    SearchRequest(
                        q=q.text, k=10, mode=mode, context=0, per_article=1, group="article"
                    )
                    for q in batch
                ]
                for question, response in zip(batch, engine.search_batch(requests), strict=True):
                    ids = [a.article_id for a in response.articles or []]
                    group_ranks.append(_first_article(ids, question))
            entry["article_level"] = {
                "group_article": _levels(group_ranks, questions),
                "sentence_hits_folded": _levels(folded_ranks, questions),
            }
        modes_report[mode] = entry
        halves_line = ", ".join(f"{h} {v['mrr@10']:.4f}" for h, v in entry["halves"].items())  # type: ignore[attr-defined]
        say(f"{mode}: MRR@10 {entry['mrr@10']:.4f} ({halves_line}; {seconds:.0f} s)")
    report["modes"] = modes_report
    return report
