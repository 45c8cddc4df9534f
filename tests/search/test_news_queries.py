"""Queries the way people search news: phrases, exclusion, date order, recency, facets and
related coverage, on real indexes, through the engine, the CLI and a real `sift serve`."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from sift.index.records import Article
from sift.search.engine import Sift
from sift.search.query_syntax import parse_query
from sift.search.results import SearchRequest
from sift.settings import Settings

from tests.api_server import Server, copy_index, serve
from tests.helpers import invoke

MODES = ["hybrid", "dense", "keyword"]
STRAY = ['"unbalanced drones', 'drones"', "drones - tanks", "drones -", "--drones", '""drones']


def texts(engine: Sift, article_ids: list[str]) -> list[str]:
    return [engine.article(a).text for a in article_ids]  # type: ignore[union-attr]


# -- phrases and exclusion --------------------------------------------------------------------


def test_the_syntax_is_read_and_nothing_else() -> None:
    parsed = parse_query('“Kim Jong Un” visit -drones -"storm corps" well-known')
    assert parsed.text == "Kim Jong Un visit well-known"
    assert parsed.phrases == (("kim", "jong", "un"),)
    assert parsed.excluded == (("drones",), ("storm", "corps"))
    for stray in STRAY:
        assert parse_query(stray).excluded == () and parse_query(stray).phrases == ()
    with pytest.raises(ValueError, match="only excludes words"):
        SearchRequest(q="-drones -tanks")


@pytest.mark.parametrize("mode", MODES)
def test_a_phrase_is_in_every_hit(seeded: Sift, mode: str) -> None:
    plain = seeded.search(SearchRequest(q="Kim Jong Un", mode=mode, k=10)).results
    phrase = seeded.search(SearchRequest(q='"Kim Jong Un"', mode=mode, k=10)).results
    assert phrase and len(phrase) < len(plain)
    for result in phrase:
        text = seeded.article(result.article_id).text  # type: ignore[union-attr]
        for hit in result.hits:
            assert "kim jong un" in text[hit.start : hit.end].lower()
    grouped = seeded.search(SearchRequest(q='"Kim Jong Un"', mode=mode, group="article"))
    assert grouped.articles
    for article in grouped.articles:
        assert all("Kim Jong Un" in p.sentence for p in article.passages)


@pytest.mark.parametrize("mode", MODES)
def test_an_excluded_word_leaves_out_whole_articles(seeded: Sift, mode: str) -> None:
    q = "North Korean troops"
    before = {h.article_id for h in seeded.search(SearchRequest(q=q, mode=mode)).results}
    after = {
        h.article_id for h in seeded.search(SearchRequest(q=q + " -drones", mode=mode)).results
    }
    assert "north-korea-casualties.txt" in before  # it speaks of "drone warfare"
    assert after and after < before
    assert not any(re.search(r"\bdrones?\b", t, re.I) for t in texts(seeded, list(after)))
    # A phrase can be excluded too; the same words apart are not.
    kept = seeded.search(SearchRequest(q='troops -"drone strikes"', mode=mode)).results
    assert "north-korea-casualties.txt" in {h.article_id for h in kept}
    grouped = seeded.search(SearchRequest(q=q + " -drones", mode=mode, group="article"))
    ids = [a.article_id for a in grouped.articles or []]
    assert ids and not any(re.search(r"\bdrones?\b", t, re.I) for t in texts(seeded, ids))


@pytest.mark.parametrize("query", STRAY)
def test_stray_quotes_and_dashes_are_words(seeded: Sift, query: str) -> None:
    for mode in MODES:
        hits = seeded.search(SearchRequest(q=query, mode=mode, k=3)).results
        assert hits and hits[0].article_id == "brief-drones"


# -- dates ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dated(tmp_path_factory: pytest.TempPathFactory, embedder: object) -> Sift:
    """Reports of one harbour strike over three years, from three desks, one undated."""
    engine = Sift(Settings(index=tmp_path_factory.mktemp("dated") / "index"))
    days = ["2022-03-01", "2023-06-15", "2024-01-10", "2024-01-28", "2024-02-02", None]
    sources = ["Wire", "Wire", "Gazette", "Wire", "Herald", "Herald"]
    engine.index_articles(
        [
            Article(
                id=f"strike-{i}",
                title=f"Harbour strike, report {i}",
                text=f"Dock workers at the harbour went on strike for the {i + 2}th day. "
                f"Ships waited outside port {i}. The union asked for better pay.",
                source=sources[i],
                published=day,
            )
            for i, day in enumerate(days)
        ]
        + [
            Article(
                id="bakery",
                text="A bakery opened in the old town. Its bread sold out by noon.",
                source="Herald",
                published="2024-02-03",
            )
        ]
    )
    return engine


@pytest.mark.parametrize("mode", MODES)
def test_sort_by_date_is_newest_first(dated: Sift, mode: str) -> None:
    hits = dated.search(SearchRequest(q="harbour strike", mode=mode, sort="date", k=20)).results
    days = [h.published for h in hits]
    known = [d for d in days if d]
    assert known == sorted(known, reverse=True)
    assert days.index(None) > days.index(known[-1])  # undated: after the dated, not dropped
    relevance = dated.search(SearchRequest(q="harbour strike", mode=mode, k=20)).results
    assert {h.article_id for h in relevance} == {h.article_id for h in hits}
    grouped = dated.search(SearchRequest(q="harbour strike", group="article", sort="date", k=3))
    assert [a.published for a in grouped.articles or []] == [
        "2024-02-03",
        "2024-02-02",
        "2024-01-28",
    ]


def test_recency_favours_recent_reports_with_the_half_life_stated(dated: Sift) -> None:
    q = "dock workers strike"
    plain = dated.search(SearchRequest(q=q, k=20, per_article=1)).results
    recent = dated.search(SearchRequest(q=q, k=20, per_article=1, recency="30d"))
    assert recent.recency is not None and recent.recency.half_life_hours == 720.0
    assert recent.recency.counted_from.startswith("2024-02-03")
    ranks = {h.article_id: h.rank for h in recent.results}
    assert ranks["strike-4"] < ranks["strike-2"] < ranks["strike-1"] < ranks["strike-0"]
    assert "strike-5" in ranks  # undated: not dropped ...
    assert ranks["strike-5"] > 1  # ... nor put first
    assert [h.article_id for h in plain] != [h.article_id for h in recent.results]
    # A long half-life changes little: the order is relevance again. (These reports are near
    # copies, whose fused scores lie within 1 % of each other: 100 years of half-life, 1.4 %
    # over the two years between them, would rightly reorder them.)
    slow = dated.search(SearchRequest(q=q, k=20, per_article=1, recency="1000y")).results
    assert [h.article_id for h in slow][:2] == [h.article_id for h in plain][:2]
    with pytest.raises(ValueError, match="half-life like 30d"):
        SearchRequest(q=q, recency="soon")
    with pytest.raises(ValueError, match="does not go with sort=date"):
        SearchRequest(q=q, recency="30d", sort="date")


# -- facets -----------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_facets_count_every_matching_article(dated: Sift, mode: str) -> None:
    response = dated.search(SearchRequest(q="harbour strike", mode="keyword", k=1, facets=True))
    facets = response.facets
    assert facets is not None and len(response.results) == 1  # counts go beyond the page
    # By hand: the six strike reports hold the words; the bakery does not.
    assert facets.articles == 6
    assert {(c.value, c.count) for c in facets.source} == {
        ("Wire", 3),
        ("Herald", 2),
        ("Gazette", 1),
    }
    assert [(c.value, c.count) for c in facets.month] == [
        ("2024-02", 1),
        ("2024-01", 2),
        ("2023-06", 1),
        ("2022-03", 1),
        (None, 1),
    ]
    # Clicking a month is a filter: its count is what the filter then finds.
    january = dated.search(
        SearchRequest(
            q="harbour strike",
            mode=mode,
            since="2024-01-01",
            until="2024-01-31",
            facets=True,
            per_article=1,
        )
    )
    assert {h.article_id for h in january.results} == {"strike-2", "strike-3"}
    assert january.facets is not None and january.facets.articles == 2
    assert dated.search(SearchRequest(q="harbour strike", mode=mode)).facets is None


# -- related coverage -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def related(tmp_path_factory: pytest.TempPathFactory, embedder: object) -> Sift:
    engine = Sift(Settings(index=tmp_path_factory.mktemp("related") / "index"))
    flood = (
        "Heavy rain flooded the river valley on Monday. Hundreds of homes were evacuated. "
        "Rescue teams used boats to reach stranded families."
    )
    engine.index_articles(
        [
            Article(id="flood", text=flood, source="Wire"),
            Article(id="flood-copy", text=flood, source="Gazette"),  # the same text
            Article(id="flood-near", text=flood.replace("Monday", "Tuesday"), source="Blog"),
            Article(
                id="flood-followup",
                text="The flood waters in the valley began to recede. Evacuated families "
                "returned to damaged homes. Insurers expect large claims.",
            ),
            Article(
                id="football",
                text="The home side won the cup final. Fans celebrated in the streets.",
            ),
        ]
    )
    return engine


@pytest.mark.parametrize("mode", ["hybrid", "dense"])
def test_recency_does_not_put_newer_noise_above_the_answer(
    tmp_path: Path, embedder: object, mode: str
) -> None:
    # Six weeks at a half-life of 30 days weigh the answer by 0.38. A newer article about
    # something else must still not pass it: the score recency multiplies is 0 for no evidence.
    engine = Sift(Settings(index=tmp_path / "index"))
    engine.index_articles(
        [
            Article(
                id="answer",
                title="Dock strike ends after pay deal",
                text="Dock workers at the harbour ended their strike on Friday. "
                "The union accepted a pay deal worth four per cent.",
                published="2024-01-01",
            ),
            Article(
                id="cafe",
                title="A cafe opens by the harbour",
                text="A cafe opened by the old harbour on Monday. It serves coffee and cake.",
                published="2024-02-12",
            ),
            Article(
                id="choir",
                title="Choir concert",
                text="The town choir sang carols in the square. Tickets were free.",
                published="2024-02-10",
            ),
        ]
    )
    request = SearchRequest(q="dock workers strike pay deal", mode=mode, recency="30d", k=5)
    hits = engine.search(request).results
    assert hits[0].article_id == "answer", [(h.article_id, h.score) for h in hits]


def test_similar_articles_leave_out_copies(related: Sift) -> None:
    response = related.similar("flood", k=5)
    assert response is not None
    ids = [r.article_id for r in response.results]
    assert ids[0] == "flood-followup" and ids[-1] == "football"
    assert not {"flood", "flood-copy", "flood-near"} & set(ids)
    assert set(response.copies) == {"flood-copy", "flood-near"}
    scores = [r.score for r in response.results]
    assert scores == sorted(scores, reverse=True)
    tie = response.results[0].ties[0]
    flood = related.article("flood").text  # type: ignore[union-attr]
    assert flood[tie.start : tie.end] == tie.sentence
    assert tie.passage.article_id == "flood-followup" and tie.passage.hits
    # From a copy, the article that holds its text is a copy too.
    from_copy = related.similar("flood-copy", k=5)
    assert from_copy is not None and "flood" in from_copy.copies
    assert related.similar("no-such-article") is None


def test_cli_similar_and_news_options(seeded_dir: Path) -> None:
    code, stdout, _ = invoke("similar", "brief-seoul-nis", "--index", seeded_dir, "--json")
    assert code == 0 and json.loads(stdout)["results"]
    code, _, stderr = invoke("similar", "nowhere", "--index", seeded_dir)
    assert code == 1 and "no article with id 'nowhere'" in stderr
    code, stdout, _ = invoke(
        "search", '"North Korean" troops -drones', "--index", seeded_dir, "--facets", "--json"
    )
    body = json.loads(stdout)
    assert code == 0 and body["facets"]["articles"] >= 1
    assert all("North Korean" in r["passage"] for r in body["results"])
    code, stdout, _ = invoke("search", "treaty", "--index", seeded_dir, "--sort", "date")
    assert code == 0 and "passages in" in stdout
    code, _, stderr = invoke("search", "treaty", "--index", seeded_dir, "--recency", "soon")
    assert code == 2 and "half-life like 30d" in stderr


# -- the API ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, seeded_dir: Path) -> Iterator[Server]:
    with serve(copy_index(seeded_dir, tmp_path_factory.mktemp("news-api"))) as server:
        yield server


def test_api_news_queries(server: Server) -> None:
    api = server.client
    for query in STRAY:
        assert api.get("/search", params={"q": query}).status_code == 200
    body = api.get("/search", params={"q": '"Kim Jong Un"', "facets": "true"}).json()
    assert body["results"] and body["facets"]["articles"] == len(
        Counter(r["article_id"] for r in body["results"])
    )
    body = api.get("/search", params={"q": "troops", "sort": "date"}).json()
    days = [r["published"] for r in body["results"] if r["published"]]
    assert body["sort"] == "date" and days == sorted(days, reverse=True)
    body = api.post("/search", json={"q": "troops", "recency": "30d"}).json()
    assert body["recency"]["half_life"] == "30d"
    wrong = api.get("/search", params={"q": "-troops"})
    assert wrong.status_code == 422 and "only excludes words" in wrong.json()["message"]
    similar = api.get("/articles/brief-seoul-nis/similar", params={"k": 2}).json()
    assert len(similar["results"]) == 2 and similar["results"][0]["ties"]
    missing = api.get("/articles/nowhere/similar")
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"
    assert api.get("/articles/brief-seoul-nis").json()["id"] == "brief-seoul-nis"
