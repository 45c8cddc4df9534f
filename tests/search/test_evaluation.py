"""`sift eval`: SQuAD split into a half to tune on and a half only reported, every mode scored
on both; run on a small slice of the real data set."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sift.cli.main import app
from sift.search.evaluation import HALVES, MODES, load_squad, run_reqa
from sift.settings import Settings
from typer.testing import CliRunner

from tests.helpers import EVAL

SQUAD = EVAL / "squad_v1.1_dev" / "dev-v1.1.json.gz"
needs_squad = pytest.mark.skipif(not SQUAD.exists(), reason=f"no SQuAD dev at {SQUAD}")


@needs_squad
def test_halves_share_no_article_and_split_the_same_way_every_time() -> None:
    articles, questions = load_squad(SQUAD)
    title_of = {a.id: a.title for a in articles}
    titles = {h: {title_of[q.article_id] for q in questions if q.half == h} for h in HALVES}
    assert not titles["tune"] & titles["report"]
    assert len(titles["tune"]) == len(titles["report"]) == 24  # 48 Wikipedia articles
    counts = {h: sum(q.half == h for q in questions) for h in HALVES}
    assert min(counts.values()) > 0.4 * len(questions)
    _, again = load_squad(SQUAD)
    assert [q.half for q in again] == [q.half for q in questions]


@needs_squad
def test_sift_eval_reports_every_mode_on_both_halves(tmp_path: Path) -> None:
    slice_ = ["eval", "--squad", str(SQUAD), "--index", str(tmp_path / "eval")]
    slice_ += ["--titles", "1", "--limit", "12", "--no-articles"]
    result = CliRunner().invoke(app, [*slice_, "--json"])
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["questions_by_half"] == {"tune": 12, "report": 12}
    assert set(report["modes"]) == set(MODES)
    for entry in report["modes"].values():
        for half in HALVES:
            scores = entry["halves"][half]
            assert set(scores) == {"mrr@10", "r@1", "r@5", "r@10"}
            assert 0 < scores["mrr@10"] <= scores["r@10"] <= 1

    table = CliRunner().invoke(app, [*slice_, "--mode", "keyword"], env={"COLUMNS": "120"})
    assert table.exit_code == 0, table.stderr
    assert "tune" in table.stdout and "report" in table.stdout


def test_a_merged_result_counts_each_of_its_hit_sentences() -> None:
    """Touching hits merge into one result; ReQA ranks sentences, so the answer sentence held
    second in a merged result counts at its own score's place, not as a miss."""
    from sift.search.evaluation import Question, first_correct
    from sift.search.results import Hit, SearchResponse, SentenceHit

    def result(rank: int, article: str, hits: list[tuple[int, int, float]]) -> Hit:
        spans = [SentenceHit(start=s, end=e, score=score) for s, e, score in hits]
        return Hit.model_construct(rank=rank, article_id=article, hits=spans)

    merged = result(1, "a", [(0, 10, 0.9), (11, 20, 0.5)])  # the answer is at 12: second hit
    other = result(2, "b", [(0, 10, 0.7)])
    response = SearchResponse.model_construct(results=[merged, other])
    assert first_correct(response, Question("q", "a", (12,))) == 3  # 0.9, 0.7, then 0.5
    assert first_correct(response, Question("q", "c", (0,))) is None


@needs_squad
def test_hybrid_beats_each_of_its_parts_and_rank_fusion_on_both_halves(tmp_path: Path) -> None:
    """The default fusion (convex, on scores) on a slice, two Wikipedia articles a half: on each
    half, hybrid ranks the answer sentence better than dense or keyword alone, and better than
    rank fusion of the same lists (the whole set's figures are in README "Ranking quality")."""

    def mrr(report: dict, mode: str) -> dict[str, float]:
        return {h: v["mrr@10"] for h, v in report["modes"][mode]["halves"].items()}

    index = tmp_path / "squad"
    report = run_reqa(SQUAD, index, Settings(), MODES, False, None, None, 2)
    ranks = run_reqa(SQUAD, index, Settings(fusion="rrf"), ("hybrid",), False, None, None, 2)
    assert report["ranking"]["fusion"] == "convex"
    hybrid, dense, keyword = (mrr(report, m) for m in ("hybrid", "dense", "keyword"))
    for half in HALVES:
        assert hybrid[half] > max(dense[half], keyword[half]), (half, hybrid, dense, keyword)
        assert hybrid[half] > mrr(ranks, "hybrid")[half], (half, hybrid, mrr(ranks, "hybrid"))
