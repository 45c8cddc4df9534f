"""Fusion study: how each way of fusing sift's rankings scores on SQuAD's two halves and on two
proxies of the fact-check failure (an article that restates its subject near the top).

The candidate lists of every query (dense, BM25 over the sentence with and without its context
column, BM25 over whole articles) are fetched once per data set through sift's own index and
reader, then every fusion is computed from them, so variants cost no search time.

Data sets (judged sentences; MRR@10 of the first judged sentence):
- squad_tune / squad_report: ReQA on SQuAD v1.1 dev, the halves of `sift eval`.
- squad_lead: SQuAD, each paragraph headed by one of its own questions turned into a statement
  (a sentence in the words of the queries that is not the answer, and a neighbour of the first
  sentence, as a fact-check article restates its claim); queried by the paragraph's other
  questions. Measures: telling answer sentences from sentences lifted by a topical lead.
- bbc_deep: BBC News (1,000 of its articles, 800 queries); the query is the article's headline
  plus half the content words of one sentence from deep inside it (position 4 or later),
  judged on that sentence. Measures:
  finding the one sentence that carries the specific words when the article as a whole (its
  title, its lead that restates the headline) matches the rest of the query.
Neither proxy has paraphrase or claim/evidence reasoning; they measure the mechanism only.

    .venv/bin/python bench/fusion_study.py --work /tmp/fstudy   # builds indexes once, reuses
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import bbc_articles, emit, need_eval
from sift.index.records import Article
from sift.search.engine import Sift
from sift.search.evaluation import load_squad
from sift.search.filters import ArticleFilter
from sift.search.fusion import ranked
from sift.search.keyword import STOPWORDS, query_terms
from sift.search.ranking import ARTICLE_DEPTH, fuse_convex
from sift.settings import FUSION_WEIGHTS, FusionWeights, Settings

DEPTH = 200


@dataclass
class Query:
    text: str
    relevant: set[int]  # sentence ids
    group: str


# -- data sets ---------------------------------------------------------------------------------


def squad_sets() -> tuple[list[Article], list[tuple[str, str, tuple[int, ...], str]]]:
    articles, questions = load_squad(need_eval("squad_v1.1_dev", "dev-v1.1.json.gz"))
    return articles, [(q.text, q.article_id, q.answer_starts, q.half) for q in questions]


def squad_lead() -> tuple[list[Article], list[tuple[str, str, tuple[int, ...], str]]]:
    articles, questions = load_squad(need_eval("squad_v1.1_dev", "dev-v1.1.json.gz"))
    by_article: dict[str, list] = {}
    for q in questions:
        by_article.setdefault(q.article_id, []).append(q)
    out_articles, out_questions = [], []
    for art in articles:
        qs = by_article.get(art.id, [])
        if len(qs) < 2:
            continue
        lead = qs[0].text.strip().rstrip("?").strip() + "."
        shift = len(lead) + 1
        out_articles.append(Article(id=art.id, title=art.title, text=f"{lead} {art.text}"))
        for q in qs[1:]:
            out_questions.append(
                (q.text, q.article_id, tuple(s + shift for s in q.answer_starts), "lead")
            )
    return out_articles, out_questions


_WORD = re.compile(r"\w+")


def bbc_deep(
    n_articles: int = 1000, n: int = 800
) -> tuple[list[Article], list[tuple[str, str, int, str]]]:
    rows = bbc_articles()
    rng = random.Random(12)
    rows = [rows[i] for i in sorted(rng.sample(range(len(rows)), n_articles))]
    articles = [Article(id=r["id"], title=r["title"], text=r["text"]) for r in rows]
    picks = rng.sample(range(len(articles)), n)
    return articles, [("", articles[i].id, i, "deep") for i in picks]


def bbc_queries(engine: Sift, articles: list[Article], picks: list) -> list[Query]:
    rng = random.Random(12)
    reader = engine.reader
    conn = reader._conn()
    out = []
    for _, article_id, i, group in picks:
        rows = conn.execute(
            "SELECT id, position, text FROM sentences WHERE article_id = ? ORDER BY position",
            (article_id,),
        ).fetchall()
        deep = [r for r in rows if r[1] >= 4]
        candidates = [r for r in deep if len(_content(r[2])) >= 8]
        if not candidates:
            continue
        sid, _, text = rng.choice(candidates)
        words = _content(text)
        kept = sorted(rng.sample(range(len(words)), len(words) // 2))
        query = f"{articles[i].title} {' '.join(words[k] for k in kept)}"
        out.append(Query(query, {sid}, group))
    return out


def _content(text: str) -> list[str]:
    return [w for w in _WORD.findall(text) if w.lower() not in STOPWORDS and not w.isdigit()]


def judged(engine: Sift, questions: list) -> list[Query]:
    conn = engine.reader._conn()
    spans: dict[str, list[tuple[int, int, int]]] = {}
    for sid, article_id, start, end in conn.execute(
        'SELECT id, article_id, start, "end" FROM sentences'
    ):
        spans.setdefault(article_id, []).append((sid, start, end))
    out = []
    for text, article_id, starts, group in questions:
        rel = {sid for sid, s, e in spans[article_id] if any(s <= a < e for a in starts)}
        out.append(Query(text, rel, group))
    return out


# -- candidate lists ---------------------------------------------------------------------------


def candidates(engine: Sift, queries: list[Query]) -> list[dict]:
    reader = engine.reader
    conn = reader._conn()
    vectors = engine.query_encoder.encode([q.text for q in queries])
    owner = dict(conn.execute("SELECT id, article_id FROM sentences"))
    out = []
    for q, vec in zip(queries, vectors, strict=True):
        scores, ids = reader.nearest(vec, DEPTH)
        words = query_terms(q.text)
        entry: dict = {"dense": [[int(i), float(s)] for s, i in zip(scores, ids, strict=True)]}
        # kw_ctx: the default, one field holding the sentence and its context at 0.4, whose IDF
        # counts a word in either; kw_text / kw_context: each alone, with its own statistics.
        for name, field in (("kw_ctx", "match"), ("kw_text", "text"), ("kw_context", "context")):
            found, found_scores = reader.keyword.field_scores(field, words, DEPTH)
            entry[name] = [[i, s] for i, s in zip(found, found_scores, strict=True) if s > 0]
        article_scores = (
            reader.keyword_article_scores(words, ARTICLE_DEPTH, ArticleFilter()) if words else {}
        )
        rows = list(article_scores.items())
        entry["article"] = [[r[0], r[1]] for r in rows]
        entry["owner"] = {
            str(i): owner[i]
            for lst in ("dense", "kw_ctx", "kw_text", "kw_context")
            for i, _ in entry[lst]
        }
        entry["relevant"] = sorted(q.relevant)
        entry["group"] = q.group
        out.append(entry)
    return out


# -- fusions -----------------------------------------------------------------------------------

Fusion = Callable[[dict], list[int]]


def rrf_fusion(
    lists: tuple[str, ...], weights: tuple[float, ...], k: float, w_art: float
) -> Fusion:
    def fuse(e: dict) -> list[int]:
        scores: dict[int, float] = {}
        for name, w in zip(lists, weights, strict=True):
            for r, (i, _) in enumerate(e[name], 1):
                scores[i] = scores.get(i, 0.0) + w / (k + r)
        if w_art:
            arank = {a: r for r, (a, _) in enumerate(e["article"], 1)}
            for i in scores:
                r = arank.get(e["owner"][str(i)])
                if r:
                    scores[i] += w_art / (k + r)
        return sorted(scores, key=lambda i: -scores[i])

    return fuse


def _z(pairs: list) -> dict:
    """A list's scores standardised (mean 0, sd 1)."""
    if not pairs:
        return {}
    vals = np.array([s for _, s in pairs], dtype=float)
    sd = vals.std()
    scaled = (vals - vals.mean()) / sd if sd > 0 else np.zeros_like(vals)
    return {i: float(v) for (i, _), v in zip(pairs, scaled, strict=True)}


def z_fusion(kw: str, alpha: float, w_art: float) -> Fusion:
    """z-scores combined: alpha * dense + (1 - alpha) * keyword + w_art * the article's BM25;
    an item a list did not return counts as that list's worst (the `convex` of the first
    study)."""

    def fuse(e: dict) -> list[int]:
        lists = [_z(e["dense"]), _z(e[kw]), _z(e["article"])]
        dense, kwd, art = lists
        floor_d, floor_k, floor_a = (min(z.values(), default=0.0) for z in lists)
        ids = set(dense) | set(kwd)
        scores = {
            i: alpha * dense.get(i, floor_d)
            + (1 - alpha) * kwd.get(i, floor_k)
            + w_art * art.get(e["owner"][str(i)], floor_a)
            for i in ids
        }
        return sorted(scores, key=lambda i: -scores[i])

    return fuse


def two_level(k: float, w_art: float) -> Fusion:
    """Article evidence picks articles (their BM25 with title, their best sentence by context
    BM25, their best dense sentence); sentence evidence alone (dense, BM25 of the sentence
    text) orders sentences, and is what the article term is added to."""

    def fuse(e: dict) -> list[int]:
        sent: dict[int, float] = {}
        for name in ("dense", "kw_text"):
            for r, (i, _) in enumerate(e[name], 1):
                sent[i] = sent.get(i, 0.0) + 1 / (k + r)
        art: dict[str, float] = {}
        best_ctx = list(dict.fromkeys(e["owner"][str(i)] for i, _ in e["kw_context"]))
        best_dense = list(dict.fromkeys(e["owner"][str(i)] for i, _ in e["dense"]))
        for ranking in (best_ctx, best_dense, [a for a, _ in e["article"]]):
            for r, a in enumerate(ranking, 1):
                art[a] = art.get(a, 0.0) + 1 / (k + r)
        scores = {i: s + w_art * art.get(e["owner"][str(i)], 0.0) for i, s in sent.items()}
        return sorted(scores, key=lambda i: -scores[i])

    return fuse


def derive(e: dict) -> None:
    """Lists computed from the fetched ones: the per-field BM25 sums."""
    for w in (0.2, 0.4):
        scores = {i: s for i, s in e["kw_text"]}
        for i, s in e["kw_context"]:
            scores[i] = scores.get(i, 0.0) + w * s
        e[f"kw_sum{w}"] = sorted(scores.items(), key=lambda p: -p[1])[:DEPTH]


def shipped(alpha: float, w_art: float) -> Fusion:
    """sift's own convex fusion (`search/ranking.py`'s `fuse_convex`): alpha of the dense list,
    1 - alpha of the sentence BM25, w_art of the article's BM25."""

    def fuse(e: dict) -> list[int]:
        dense = {i: s for i, s in e["dense"]}
        kwd = {i: s for i, s in e["kw_ctx"]}
        art = {a: s for a, s in e["article"]}
        owner = {int(i): a for i, a in e["owner"].items()}
        # ranking.py also asks whether tantivy returned fewer articles than asked before
        # copies were dropped; the cached lists keep only what was left.
        fused = fuse_convex(
            dense,
            kwd,
            len(kwd) < DEPTH,
            art,
            len(art) < ARTICLE_DEPTH,
            owner,
            FusionWeights(dense=alpha, keyword=1 - alpha, article=w_art),
        )
        return ranked(fused, {i: n for n, i in enumerate(dict.fromkeys([*dense, *kwd]))})

    return fuse


def variants() -> dict[str, Fusion]:
    def plain(name: str) -> Fusion:
        return lambda e: [i for i, _ in e[name]]

    default = FUSION_WEIGHTS["convex"]
    v: dict[str, Fusion] = {
        "dense": plain("dense"),
        "keyword (sift's: one query, ctx 0.4)": plain("kw_ctx"),
        "keyword text only": plain("kw_text"),
        "keyword text + 0.2 context": plain("kw_sum0.2"),
        "keyword text + 0.4 context": plain("kw_sum0.4"),
        f"convex (default) a{default.dense} art{default.article}": shipped(
            default.dense, default.article
        ),
        "rrf k5 ctx0.4 art0.5 (rrf's default)": rrf_fusion(("dense", "kw_ctx"), (1, 1), 5, 0.5),
        "rrf k60 ctx0.4 art0.5": rrf_fusion(("dense", "kw_ctx"), (1, 1), 60, 0.5),
        "rrf k60 text art0.5": rrf_fusion(("dense", "kw_text"), (1, 1), 60, 0.5),
        "rrf k5 kw_sum0.2 art0.5": rrf_fusion(("dense", "kw_sum0.2"), (1, 1), 5, 0.5),
        "two-level k5 art1.0": two_level(5, 1.0),
        # The convex fusion of the first study: z-scores, each column with its own statistics.
        "z-scores kw_sum0.4 a0.5 art0.2": z_fusion("kw_sum0.4", 0.5, 0.2),
        "z-scores kw_ctx a0.5 art0.1": z_fusion("kw_ctx", 0.5, 0.1),
    }
    # The grid the convex defaults were chosen from, on squad_tune alone.
    for alpha in (0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9):
        for w_art in (0.0, 0.05, 0.1, 0.2):
            v[f"convex a{alpha} art{w_art}"] = shipped(alpha, w_art)
    return v


def mrr(order: list[int], relevant: list[int]) -> float:
    rel = set(relevant)
    for r, i in enumerate(order[:10], 1):
        if i in rel:
            return 1 / r
    return 0.0


# -- main --------------------------------------------------------------------------------------


def load_or_build(work: Path, name: str, settings: Settings) -> list[dict]:
    cache = work / f"{name}.candidates.json.gz"
    if cache.exists():
        with gzip.open(cache, "rt") as f:
            return json.load(f)
    engine = Sift(settings.model_copy(update={"index": work / name}))
    if name == "squad":
        articles, questions = squad_sets()
        engine.index_articles(articles)
        queries = judged(engine, questions)
    elif name == "squad_lead":
        articles, questions = squad_lead()
        engine.index_articles(articles)
        queries = judged(engine, questions)
    else:
        articles, picks = bbc_deep()
        engine.index_articles(articles)
        queries = bbc_queries(engine, articles, picks)
    entries = candidates(engine, queries)
    engine.close()
    partial = cache.with_suffix(".part")
    with gzip.open(partial, "wt") as f:
        json.dump(entries, f)
    partial.replace(cache)
    return entries


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/fstudy"))
    parser.add_argument("--sets", nargs="*", default=["squad", "squad_lead", "bbc_deep"])
    parser.add_argument("--fetch-only", action="store_true", help="Build and cache, no scores.")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    settings = Settings()
    table: dict[str, dict[str, float]] = {}
    sizes: dict[str, int] = {}
    for name in args.sets:
        entries = load_or_build(args.work, name, settings)
        if args.fetch_only:
            continue
        for e in entries:
            derive(e)
        groups = sorted({e["group"] for e in entries})
        for g in groups:
            label = f"squad_{g}" if name == "squad" else name
            sizes[label] = sum(e["group"] == g for e in entries)
        for vname, fuse in variants().items():
            for g in groups:
                label = f"squad_{g}" if name == "squad" else name
                mine = [e for e in entries if e["group"] == g]
                score = sum(mrr(fuse(e), e["relevant"]) for e in mine) / len(mine)
                table.setdefault(vname, {})[label] = round(score, 4)
    emit({"bench": "fusion_study", "queries": sizes, "mrr@10": table})


if __name__ == "__main__":
    main()
