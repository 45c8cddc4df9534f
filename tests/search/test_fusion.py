"""Fusion as a reader meets it: in an article that restates its subject in its headline and
lead, the sentences that hold the query's own words come before siblings that only sit next to
them; and the fusion functions themselves."""

from __future__ import annotations

import pytest
from sift.index.embed import Embedder
from sift.index.records import Article
from sift.search.engine import Sift
from sift.search.fusion import Scored, convex, ranked, rrf
from sift.search.results import Hit, SearchRequest
from sift.settings import Settings

FACT_CHECK = Article(
    id="check-bikes",
    title="Fact check: did Springfield ban bicycles?",
    text="A post shared thousands of times says Springfield has banned bicycles. "
    "The post spread quickly in March. "
    "Readers asked us whether Springfield really banned bicycles. "
    "We read the council's records and called the mayor's office. "
    "The ordinance passed on 3 March restricts electric scooters on pavements and does not "
    "mention bicycles. "
    "A spokesperson said no ban was ever discussed. "
    "The post is false.",
)
OTHERS = [
    Article(
        id="bike-lanes",
        title="Springfield opens new bicycle lanes",
        text="Springfield opened four new bicycle lanes on Monday. "
        "The lanes connect the station to the university. Cyclists welcomed the change.",
    ),
    Article(
        id="paris-scooters",
        title="Paris votes on electric scooters",
        text="Paris residents voted to ban rented electric scooters. "
        "The city will end its contracts in September.",
    ),
]
SIBLING = "We read the council's records and called the mayor's office."


@pytest.fixture(scope="module")
def fact_check(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Sift:
    directory = tmp_path_factory.mktemp("fact-check") / "index"
    engine = Sift(Settings(index=directory))
    engine.index_articles([FACT_CHECK, *OTHERS])
    return engine


def ranked_sentences(results: list[Hit]) -> list[tuple[str, float]]:
    """Every hit sentence of every result (merged results hold several), best score first."""
    found = [
        (r.passage[h.start - r.passage_start : h.end - r.passage_start], h.score)
        for r in results
        for h in r.hits
    ]
    return sorted(found, key=lambda pair: -pair[1])


def sentences(engine: Sift, q: str, mode: str) -> list[str]:
    request = SearchRequest(q=q, mode=mode, k=10, context=0, per_article=10, collapse=False)
    return [text for text, _ in ranked_sentences(engine.search(request).results)]


def test_keyword_ranks_a_sentence_by_its_own_words_first(fact_check: Sift) -> None:
    # The headline's words are in the context of every sentence of the article; they must
    # still count in full in a sentence that holds them itself.
    request = SearchRequest(q="Springfield banned bicycles", mode="keyword", k=10, context=0)
    hits = ranked_sentences(
        fact_check.search(request.model_copy(update={"per_article": 10})).results
    )
    found = [text for text, _ in hits]
    restated = found.index("A post shared thousands of times says Springfield has banned bicycles.")
    assert restated < found.index(SIBLING)
    assert all(score > 0 for _, score in hits[: restated + 1])


@pytest.mark.parametrize("fusion", ["convex", "rrf"])
def test_evidence_comes_first_whatever_the_mode(fact_check: Sift, fusion: str) -> None:
    # Every sentence of the article carries the headline in its context, and the restated
    # claim matches the query's topic: the one sentence that answers still comes first.
    engine = Sift(fact_check.settings.model_copy(update={"fusion": fusion}))
    for mode in ("hybrid", "dense", "keyword"):
        found = sentences(engine, "Springfield ordinance restricts electric scooters", mode)
        assert found[0].startswith("The ordinance passed on 3 March"), (mode, found[:3])


def test_rrf_and_convex_fusion() -> None:
    fused = rrf([["a", "b"], ["b", "c"]], [1.0, 1.0], k=60)
    assert ranked(fused) == ["b", "a", "c"]
    assert fused["a"] == pytest.approx(1 / 61)
    # Scores, not ranks: each list on [0, 1] from its least possible score to its best; an
    # article's score reaches its sentences through `key`.
    owner = {"a": "y", "b": "x", "c": "y"}
    lists = [
        Scored({"a": 0.9, "b": 0.5, "c": 0.4}, low=-1.0, complete=False),  # cosines
        Scored({"b": 10.0, "c": 2.0}, low=0.0, complete=True),  # BM25: "a" holds no query word
        Scored({"x": 5.0, "y": 1.0}, low=0.0, complete=True, key=owner),
    ]
    both = convex(["a", "b", "c"], lists, [1.0, 1.0, 0.2])
    assert ranked(both) == ["b", "a", "c"]
    # The weighted sum, less what a candidate at every list's floor would get (the dense list
    # was cut: its worst, 1.4 / 1.9), over what is left of the total weight.
    floor = 1.4 / 1.9
    assert both["a"] == pytest.approx((1.0 + 0.0 + 0.2 * 0.2 - floor) / (2.2 - floor))
    assert all(0 <= v <= 1 for v in both.values())
    # A list cut at its depth: what it did not return counts as its worst, not as nothing;
    # and the fused score's 0 is exactly that floor.
    cut = Scored({"a": 1.0, "b": 0.0}, low=-1.0, complete=False)
    assert convex(["a", "b", "z"], [cut], [1.0]) == {"a": 1.0, "b": 0.0, "z": 0.0}
    # A list whose best is its least possible score holds no evidence.
    nothing = Scored({"a": 0.0}, low=0.0, complete=True)
    assert convex(["a"], [nothing, Scored({"a": 0.5}, -1.0, True)], [1.0, 1.0]) == {"a": 0.5}


def test_convex_scores_do_not_depend_on_how_long_a_list_is() -> None:
    # A filter that leaves two matches ranks them as the whole index would: the scale is
    # set by the least possible score and the best one, not by the rest of the list.
    short = Scored({"a": 8.0, "b": 4.0}, low=0.0, complete=True)
    long = Scored({"a": 8.0, "b": 4.0, **{f"x{i}": 0.5 for i in range(200)}}, 0.0, True)
    dense = Scored({"a": 0.2, "b": 0.6}, low=-1.0, complete=True)
    assert convex(["a", "b"], [dense, short], [0.8, 0.2]) == pytest.approx(
        convex(["a", "b"], [dense, long], [0.8, 0.2])
    )
