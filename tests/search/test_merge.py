"""Never the same text twice: hits of one article whose passages overlap or touch are one
result, on the real seeds index and on indexes made for the case."""

from __future__ import annotations

import re
from itertools import combinations

import pytest
from sift.cli.render import highlighted
from sift.index.records import Article
from sift.search.engine import Sift
from sift.search.results import Hit, SearchRequest

QUERIES = [
    "casualty estimates",
    "who signed the defence pact",
    "North Korean troops",
    "drone warfare losses",
]


def apart(engine: Sift, a: Hit, b: Hit) -> bool:
    """Two passages of one article neither overlap nor touch: a whole sentence lies between."""
    first, second = sorted((a, b), key=lambda h: h.passage_start)
    if first.passage_end > second.passage_start:
        return False
    article = engine.article(first.article_id)
    assert article is not None
    return bool(re.search(r"\w", article.text[first.passage_end : second.passage_start]))


def check_results(engine: Sift, hits: list[Hit]) -> None:
    for hit in hits:
        text = engine.article(hit.article_id).text  # type: ignore[union-attr]
        assert text[hit.passage_start : hit.passage_end] == hit.passage
        assert text[hit.start : hit.end] == hit.sentence
        assert hit.hits, "every result lists its hit sentences"
        assert (hit.start, hit.end) in {(h.start, h.end) for h in hit.hits}
        assert hit.score == max(h.score for h in hit.hits)
        assert [h.start for h in hit.hits] == sorted(h.start for h in hit.hits)
        for h in hit.hits:
            assert hit.passage_start <= h.start < h.end <= hit.passage_end
    for a, b in combinations(hits, 2):
        if a.article_id == b.article_id:
            assert apart(engine, a, b), (a.passage, b.passage)


def test_casualty_estimates_shows_each_place_once(seeded: Sift) -> None:
    hits = seeded.search(SearchRequest(q="casualty estimates")).results
    check_results(seeded, hits)
    top = hits[0]
    # The two best sentences of the casualties article (results 1 and 3 before merging) are
    # one result now, both marked: the fatalities and the injured.
    assert top.article_id == "north-korea-casualties.txt" and len(top.hits) == 2
    at = top.passage_start
    marked = [top.passage[h.start - at : h.end - at] for h in top.hits]
    assert "the number of injured is expected to reach nearly 1,000" in top.passage
    assert any("among the casualties" in m for m in marked)
    # The drone brief's two hits are one result as well.
    drones = [h for h in hits if h.article_id == "brief-drones"]
    assert len(drones) == 1 and len(drones[0].hits) == 2


@pytest.mark.parametrize("query", QUERIES)
@pytest.mark.parametrize("context", [0, 1, 2])
@pytest.mark.parametrize("mode", ["hybrid", "dense", "keyword"])
def test_no_two_results_overlap_or_touch(seeded: Sift, query: str, context: int, mode: str) -> None:
    response = seeded.search(SearchRequest(q=query, k=10, context=context, mode=mode))
    check_results(seeded, response.results)


@pytest.mark.parametrize("query", QUERIES)
def test_grouped_articles_pass_the_same_rule(seeded: Sift, query: str) -> None:
    response = seeded.search(SearchRequest(q=query, group="article", k=6, per_article=3))
    assert response.articles
    for article in response.articles:
        assert 1 <= len(article.passages) <= 3
        check_results(seeded, article.passages)


def test_per_article_counts_results_not_hits(seeded: Sift) -> None:
    one = seeded.search(SearchRequest(q="casualty estimates", per_article=1, k=10)).results
    ids = [h.article_id for h in one]
    assert len(ids) == len(set(ids)) == 6
    two = seeded.search(SearchRequest(q="casualty estimates", per_article=2, k=10)).results
    counts = {a: sum(h.article_id == a for h in two) for a in ids}
    assert max(counts.values()) == 2  # two results of one article, though it has three hits
    assert sum(len(h.hits) for h in two if h.article_id == "north-korea-casualties.txt") == 3


@pytest.mark.parametrize("mode", ["hybrid", "dense", "keyword"])
def test_pages_never_repeat_text(seeded: Sift, mode: str) -> None:
    q = "North Korean troops"
    whole = seeded.search(SearchRequest(q=q, mode=mode, k=9, per_article=3)).results
    pages = [
        seeded.search(SearchRequest(q=q, mode=mode, k=3, offset=o, per_article=3)).results
        for o in (0, 3, 6)
    ]
    flat = [h for page in pages for h in page]
    check_results(seeded, flat)
    assert [h.rank for h in flat] == list(range(1, len(flat) + 1))
    assert [(h.article_id, h.start) for h in flat] == [(h.article_id, h.start) for h in whole]


def test_batch_search_merges_the_same_way(seeded: Sift) -> None:
    requests = [SearchRequest(q=q, k=8) for q in QUERIES]
    for single, batched in zip(
        [seeded.search(r) for r in requests], seeded.search_batch(requests), strict=True
    ):
        assert batched.model_dump(exclude={"took_ms"}) == single.model_dump(exclude={"took_ms"})
        check_results(seeded, batched.results)


def test_copies_fold_into_the_merged_result(engine: Sift) -> None:
    story = (
        "The central bank raised interest rates by half a point on Thursday. "
        "It was the biggest rise in three decades. "
        "Mortgage holders face higher monthly payments from March."
    )
    engine.index_articles(
        [
            Article(id="wire", text=story + " Markets fell in early trading."),
            Article(id="paper", text=story + " Analysts had expected a smaller rise."),
            Article(id="other", text="Bakers report record sales of bread this winter."),
        ]
    )
    hits = engine.search(SearchRequest(q="central bank rate rise, mortgage payments")).results
    check_results(engine, hits)
    story_hits = [h for h in hits if "interest rates" in h.passage]
    assert len(story_hits) == 1 and len(story_hits[0].hits) == 2
    copy = "wire" if story_hits[0].article_id == "paper" else "paper"
    assert story_hits[0].also_in == [copy]
    # The copy's own last sentence may be a result, but without the story beside it.
    shown = [s for h in hits for s in re.findall(r"[^.]+\.", h.passage)]
    assert len(shown) == len(set(s.strip() for s in shown)), shown


def test_cards_mark_every_hit(seeded: Sift) -> None:
    top = seeded.search(SearchRequest(q="casualty estimates", k=1)).results[0]
    text = highlighted(top)
    marked = [text.plain[s.start : s.end] for s in text.spans]
    assert len(marked) == len(top.hits) == 2
    assert [s.style for s in text.spans].count("bold yellow") == 1  # the best hit
    best = top.sentence.split()
    assert any(m.split() == best for m in marked)
