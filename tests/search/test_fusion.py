"""Fusion as a reader meets it: in an article that restates its subject in its headline and
lead, the sentences that hold the query's own words come before siblings that only sit next to
them; and the fusion functions themselves."""

from __future__ import annotations

import pytest
from sift.index.embed import Embedder
from sift.index.records import Article
from sift.search.engine import Sift
from sift.search.fusion import convex, ranked, rrf
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
    engine = Sift(Settings(index=directory, fusion="convex"))
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


def test_evidence_outranks_siblings_that_share_only_the_headline(fact_check: Sift) -> None:
    found = sentences(fact_check, "Springfield ordinance restricts electric scooters", "hybrid")
    assert found[0].startswith("The ordinance passed on 3 March")
    assert found.index(SIBLING) > 2


def test_rrf_and_convex_fusion() -> None:
    fused = rrf([["a", "b"], ["b", "c"]], [1.0, 1.0], k=60)
    assert ranked(fused) == ["b", "a", "c"]
    assert fused["a"] == pytest.approx(1 / 61)
    # Scores, not ranks: a sentence missing from a list counts as that list's worst, and an
    # article's score reaches its sentences through `keys`.
    lists = [{"a": 0.9, "b": 0.5, "c": 0.4}, {"b": 10.0, "c": 2.0}, {"x": 5.0, "y": 1.0}]
    owner = {"a": "y", "b": "x", "c": "y"}
    both = convex(["a", "b", "c"], lists, [1.0, 1.0, 0.2], [None, None, owner])
    assert ranked(both) == ["b", "a", "c"]
    assert all(0 < v < 1 for v in both.values())
    assert convex(["a"], [{"a": 1.0}, {}], [1.0, 1.0]) == {"a": 0.5}
