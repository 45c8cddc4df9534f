"""Search: the demo query, the JSON contract, the options, and bad queries."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError
from sift.errors import IndexNotFound, InvalidRequest
from sift.search.engine import Sift
from sift.search.results import SearchRequest
from sift.settings import Settings

CONTRACT_KEYS = {
    "rank",
    "score",
    "article_id",
    "title",
    "source",
    "url",
    "published",
    "sentence",
    "start",
    "end",
    "passage",
    "passage_start",
    "passage_end",
    "hits",
    "also_in",
}


def test_casualty_estimates_finds_the_fatalities_and_the_injured(seeded: Sift) -> None:
    response = seeded.search(SearchRequest(q="casualty estimates"))
    top3 = " ".join(hit.passage for hit in response.results[:3])
    assert "at least 100 fatalities occurred" in top3
    assert "the number of injured is expected to reach nearly 1,000" in top3
    assert response.results[0].article_id == "north-korea-casualties.txt"


def test_who_signed_the_defence_pact(seeded: Sift) -> None:
    hits = seeded.search(SearchRequest(q="who signed the defence pact", k=3)).results
    assert hits[0].sentence.startswith("In June, the two countries signed a landmark defence pact")
    assert "russia-north-korea-treaty.md" in {h.article_id for h in hits}


def test_json_contract_and_offsets(seeded: Sift) -> None:
    response = seeded.search(SearchRequest(q="drone warfare losses", k=8))
    body = response.model_dump(mode="json")
    assert set(body) == {
        "query",
        "k",
        "offset",
        "mode",
        "sort",
        "recency",
        "took_ms",
        "results",
        "articles",
        "facets",
    }
    assert (body["mode"], body["offset"], body["articles"]) == ("hybrid", 0, None)
    assert (body["sort"], body["recency"], body["facets"]) == ("relevance", None, None)
    assert body["query"] == "drone warfare losses" and body["k"] == 8
    assert [r["rank"] for r in body["results"]] == list(range(1, len(body["results"]) + 1))
    scores = [r["score"] for r in body["results"]]
    assert scores == sorted(scores, reverse=True)
    for result in body["results"]:
        assert set(result) == CONTRACT_KEYS
        text = seeded.article(result["article_id"]).text  # type: ignore[union-attr]
        assert text[result["start"] : result["end"]] == result["sentence"]
        assert text[result["passage_start"] : result["passage_end"]] == result["passage"]
        assert result["passage_start"] <= result["start"] < result["end"] <= result["passage_end"]


def test_article_fields_come_with_each_hit(seeded: Sift) -> None:
    hit = seeded.search(SearchRequest(q="UN sanctions monitoring panel veto", k=1)).results[0]
    assert (hit.article_id, hit.source, hit.published) == (
        "brief-un-sanctions",
        "sift sample",
        "2024-04-30",
    )
    assert hit.title == "UN panel that monitored North Korea sanctions ends its work"


def test_k_per_article_and_context(seeded: Sift) -> None:
    wide = seeded.search(SearchRequest(q="North Korean troops", k=20, per_article=1)).results
    ids = [h.article_id for h in wide]
    assert len(ids) == len(set(ids)) == 6  # one passage per article, all six articles
    capped = seeded.search(SearchRequest(q="North Korean troops", k=20, per_article=3)).results
    assert max(sum(h.article_id == a for h in capped) for a in ids) == 3
    assert len(seeded.search(SearchRequest(q="North Korean troops", k=4)).results) == 4
    bare = seeded.search(SearchRequest(q="North Korean troops", k=3, context=0)).results
    # No context: a passage is its hit sentences (adjacent hits are one passage).
    assert all(h.passage_start == h.hits[0].start and h.passage_end == h.hits[-1].end for h in bare)
    assert any(h.passage == h.sentence for h in bare)
    more = seeded.search(SearchRequest(q="North Korean troops", k=3, context=3)).results
    assert more[0].start == bare[0].start and bare[0].passage in more[0].passage
    assert len(more[0].passage) > len(bare[0].passage)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"q": ""}, "at least 1 character"),
        ({"q": "   \n\t "}, "query is empty"),
        ({"q": "x", "k": 0}, "greater than or equal to 1"),
        ({"q": "x", "k": 100_000}, "less than or equal to 1000"),
        ({"q": "x", "context": -1}, "greater than or equal to 0"),
        ({"q": "x", "per_article": 0}, "greater than or equal to 1"),
    ],
)
def test_bad_requests_are_refused(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        SearchRequest.model_validate(fields)


def test_settings_limits_apply(seeded_dir: Path) -> None:
    engine = Sift(Settings(index=seeded_dir, max_k=5))
    with pytest.raises(InvalidRequest, match="k must be between 1 and 5"):
        engine.search(SearchRequest(q="troops", k=6))


def test_missing_index_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(IndexNotFound, match=r"no sift index at .* sift index PATH"):
        Sift(Settings(index=tmp_path / "nowhere")).search(SearchRequest(q="troops"))


def test_unicode_queries_are_handled(seeded: Sift) -> None:
    for query in ("دفاع", "🎉 pact", "zero\u200bwidth pact", "control\x07char pact"):
        assert seeded.search(SearchRequest(q=query, k=2)).results


def test_a_repeated_query_embeds_once_and_ranks_the_same(seeded: Sift) -> None:
    encoder = seeded.query_encoder
    calls: list[list[str]] = []
    real = encoder.encode

    def counting(texts, progress=None):  # type: ignore[no-untyped-def]
        calls.append(list(texts))
        return real(texts, progress)

    encoder.encode = counting  # type: ignore[method-assign]
    try:
        query = "who signed the defence pact in the repeated query test"
        first = seeded.search(query, mode="dense")
        again = seeded.search(query, mode="hybrid")
        third = seeded.search(query, mode="dense")
    finally:
        del encoder.encode
    assert calls == [[query]]
    assert [h.article_id for h in first.results] == [h.article_id for h in third.results]
    assert [h.score for h in first.results] == [h.score for h in third.results]
    assert again.results
