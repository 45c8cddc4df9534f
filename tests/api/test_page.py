"""The search page at `/` and the article view, through a real `sift serve`; the page itself in
Debian's chromium, driven by Playwright (no downloaded browser, nothing off loopback)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, Route, expect

from tests.api_server import Server, copy_index, serve
from tests.helpers import ROOT

SCREENSHOT = ROOT / "test-output" / "search-page.png"
HOSTILE = {
    "id": "hostile/1",
    "title": "<img src=x onerror=alert(1)> Harbour report",
    "text": "Harbour news. <b>Ferry timetables</b> <script>alert(2)</script> were revised.",
    "source": "<i>Wire</i>",
    "url": "javascript:alert(3)",
    "published": "2025-02-03",
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, seeded_dir: Path) -> Iterator[Server]:
    with serve(copy_index(seeded_dir, tmp_path_factory.mktemp("page"))) as server:
        yield server


@pytest.fixture
def hostile(server: Server) -> Iterator[dict[str, str]]:
    """An article whose every field tries to be markup; gone again after the test."""
    assert server.client.post("/articles", json=HOSTILE).json()["added"] == [HOSTILE["id"]]
    yield HOSTILE
    server.client.delete(f"/articles/{HOSTILE['id']}")


@pytest.fixture
def page(browser: Browser, server: Server) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1100, "height": 1000}, base_url=server.url)
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    # Console errors (a CSP violation, say) fail the test; a 4xx an API call was meant to get
    # is logged by chromium as a failed load and is not one.
    page.on(
        "console",
        lambda msg: (
            msg.type == "error"
            and not msg.text.startswith("Failed to load resource")
            and problems.append(msg.text)
        ),
    )
    yield page
    context.close()
    assert not problems, problems  # no script errors, no CSP violations


# -- served HTML -------------------------------------------------------------------------------


def test_the_page_is_self_contained(server: Server) -> None:
    response = server.client.get("/")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in response.headers["content-security-policy"]
    html = response.text
    for name in ("q", "mode", "source", "since", "until", "sort", "recency", "k"):
        assert f'name="{name}"' in html
    assert all(f'value="{mode}"' in html for mode in ("hybrid", "dense", "keyword"))
    assert "http://" not in html and "https://" not in html  # no CDN, no other origin
    script = server.client.get("/static/search.js")
    assert script.status_code == 200
    assert ".innerHTML" not in script.text and "insertAdjacentHTML" not in script.text


def test_the_article_view_escapes_and_marks_the_hit(
    server: Server, hostile: dict[str, str]
) -> None:
    api = server.client
    start = HOSTILE["text"].index("<b>")
    end = HOSTILE["text"].index(" were")
    html = api.get(f"/view/hostile/1?start={start}&end={end}").text
    assert "<img" not in html and "<script>alert" not in html and "<i>Wire" not in html
    assert "&lt;img src=x onerror=alert(1)&gt; Harbour report" in html
    assert '<mark id="hit">&lt;b&gt;Ferry timetables&lt;/b&gt;' in html
    assert "javascript:" not in html  # not a link, escaped or not
    assert api.get("/view/no-such-article").status_code == 404


# -- in the browser ----------------------------------------------------------------------------


def test_search_shows_passages_with_the_hit_marked(page: Page, server: Server) -> None:
    sent = {"q": "casualty estimates", "mode": "hybrid", "sort": "relevance", "k": 5}
    expected = server.client.get("/search", params=sent).json()  # what the form will ask
    page.goto("/")
    page.fill("#q", "casualty estimates")
    page.fill("input[name=k]", "5")
    page.click("button[type=submit]")
    marks = page.locator("#results .hit mark")
    expect(marks.first).to_be_visible()
    expect(page.locator("#results .hit")).to_have_count(5)
    # Every hit sentence of every (merged) passage is marked; the best one of each as best.
    assert marks.all_inner_texts() == [
        hit["passage"][h["start"] - hit["passage_start"] : h["end"] - hit["passage_start"]]
        for hit in expected["results"]
        for h in hit["hits"]
    ]
    best = page.locator("#results .hit mark.best")
    assert best.all_inner_texts() == [hit["sentence"] for hit in expected["results"]]
    assert marks.count() > best.count()  # a merged passage marks more than one sentence
    assert "casualties" in " ".join(marks.all_inner_texts())  # the seed article's words
    first, top = page.locator("#results .hit").first, expected["results"][0]
    assert first.locator(".title").inner_text() == (top["title"] or top["article_id"])
    assert f"score {top['score']:.3f}" in first.locator(".meta").inner_text()
    n, dated = next(
        (n, h) for n, h in enumerate(expected["results"]) if h["source"] and h["published"]
    )
    meta = page.locator("#results .hit .meta").nth(n).inner_text()
    assert dated["source"] in meta and dated["published"][:10] in meta
    assert "q=casualty+estimates" in page.url  # a search is a link that can be shared
    SCREENSHOT.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)
    first.locator(".title").click()
    expect(page.locator("mark#hit")).to_have_text(expected["results"][0]["sentence"])


def test_filters_and_mode_are_sent(page: Page) -> None:
    page.goto("/")
    page.fill("#q", "drones")
    page.select_option("select[name=mode]", "keyword")
    page.fill("input[name=source]", "sift sample")
    page.fill("input[name=since]", "2025-01-01")
    page.fill("input[name=until]", "2025-01-31")
    with page.expect_request("**/search?*") as sent:
        page.click("button[type=submit]")
    query = dict(httpx.URL(sent.value.url).params)
    assert query == {
        "q": "drones",
        "mode": "keyword",
        "source": "sift sample",
        "since": "2025-01-01",
        "until": "2025-01-31",
        "sort": "relevance",
        "k": "10",
        "facets": "true",
    }
    page.select_option("select[name=sort]", "date")
    with page.expect_request("**/search?*") as sent:
        page.click("button[type=submit]")
    assert dict(httpx.URL(sent.value.url).params)["sort"] == "date"
    page.select_option("select[name=sort]", "relevance")
    page.select_option("select[name=recency]", "30d")
    with page.expect_request("**/search?*") as sent:
        page.click("button[type=submit]")
    assert dict(httpx.URL(sent.value.url).params)["recency"] == "30d"


def test_facets_are_filters_to_click(page: Page, server: Server) -> None:
    page.goto("/?q=North+Korean+troops")
    expect(page.locator("#facets h2")).to_have_text("6 matching articles")
    source = page.locator("#facets button.facet", has_text="sift sample (4)")
    with page.expect_request("**/search?*") as sent:
        source.click()
    assert dict(httpx.URL(sent.value.url).params)["source"] == "sift sample"
    expect(page.locator("#facets h2")).to_have_text("4 matching articles")
    expect(page.locator("#results .hit .source").first).to_have_text("sift sample")
    with page.expect_request("**/search?*") as sent:
        page.locator("#facets button.facet", has_text="2024-11 (1)").click()
    params = dict(httpx.URL(sent.value.url).params)
    assert (params["since"], params["until"]) == ("2024-11-01", "2024-11-30")
    expect(page.locator("#facets h2")).to_have_text("1 matching article")


def test_no_results_has_an_empty_state(page: Page) -> None:
    def nothing(route: Route) -> None:
        body = {"query": "zebra migration", "k": 10, "took_ms": 1.0, "results": []}
        route.fulfill(status=200, content_type="application/json", body=json.dumps(body))

    page.route("**/search?*", nothing)
    page.goto("/?q=zebra+migration&source=Nowhere")
    expect(page.locator("#status")).to_have_text(
        "No passages match “zebra migration” with these filters."
    )
    expect(page.locator("#results li")).to_have_count(0)


def test_an_api_error_is_shown(page: Page) -> None:
    page.goto("/?q=anything&k=500")  # over max_k: the API answers 400 with a message
    status = page.locator("#status.error")
    expect(status).to_have_text("k must be between 1 and 100, got 500")
    expect(status).to_have_attribute("role", "alert")


def test_article_text_never_becomes_markup(page: Page, hostile: dict[str, str]) -> None:
    page.goto("/?q=ferry+timetables+were+revised&k=3")
    hit = page.locator("#results .hit", has_text="Harbour report").first
    expect(hit).to_be_visible()
    expect(hit.locator(".title")).to_have_text(HOSTILE["title"])
    expect(hit.locator(".source")).to_have_text("<i>Wire</i>")
    assert "<b>Ferry timetables</b>" in hit.locator("mark.best").inner_text()
    assert page.locator("#results img, #results script, #results b, #results i").count() == 0
