"""Web pages and feeds, fetched from a real HTTP server on 127.0.0.1 (never the internet):
main-text extraction, feed detection, the memory of seen entries, timeouts, retries, the size
cap and the User-Agent. The CLI runs in-process, so the model loads once."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sift.cli.main import app
from sift.errors import FetchError
from sift.index.embed import Embedder
from sift.index.feeds import Page, parse_feed
from sift.index.live import LiveSources
from sift.index.web import USER_AGENT, Fetcher, FetchPolicy
from typer.testing import CliRunner

from tests.news_site import (
    STORIES,
    Request,
    Site,
    article_page,
    atom,
    failing_first,
    rss,
    serve,
    slow,
)

runner = CliRunner()
FAST = {
    "SIFT_WEB_DELAY": "0",
    "SIFT_WEB_BACKOFF": "0.01",
    "SIFT_WEB_TIMEOUT": "2",
    "COLUMNS": "80",
}
QUICK = FetchPolicy(timeout=0.3, retries=2, backoff=0.01, delay=0)


@pytest.fixture
def site() -> Iterator[Site]:
    with serve(Site()) as running:
        for story in STORIES:
            running.page(f"/world/{story.slug}.html", article_page(story))
        yield running


def invoke(*args: str | Path) -> tuple[int, str, str]:
    result = runner.invoke(app, [str(a) for a in args], env=FAST)
    return result.exit_code, result.stdout, result.stderr


def _counts(feeds: list[dict[str, object]]) -> list[tuple[object, ...]]:
    keys = ("url", "kind", "entries", "new", "seen", "fetched")
    return [tuple(f[k] for k in keys) for f in feeds]


def show(index: Path, article_id: str) -> dict[str, object]:
    code, stdout, stderr = invoke("show", article_id, "--index", index, "--json")
    assert code == 0, stderr
    return json.loads(stdout)


# -- fetching -------------------------------------------------------------------------------


def test_fetch_says_who_it_is(site: Site) -> None:
    with Fetcher(QUICK) as fetcher:
        page = fetcher.get(site.url("/world/pact.html"))
    assert page.status == 200 and page.media_type == "text/html" and page.charset == "utf-8"
    assert list(site.hits) == ["/robots.txt", "/world/pact.html"]  # robots.txt first
    assert site.agents == [USER_AGENT, USER_AGENT]
    assert USER_AGENT.startswith("sift/0.1.0 (+https://sift.invalid/")


def test_a_slow_server_times_out(site: Site) -> None:
    site.routes["/slow"] = slow(1.5)
    started = time.monotonic()
    policy = FetchPolicy(timeout=0.2, retries=1, backoff=0.01, delay=0)
    with (
        Fetcher(policy) as fetcher,
        pytest.raises(FetchError, match=r"timed out after 0.2 s \(tried 2 times\)"),
    ):
        fetcher.get(site.url("/slow"))
    assert time.monotonic() - started < 1.2
    assert site.hits["/slow"] == 2


def test_503_is_retried_with_back_off_then_succeeds(site: Site) -> None:
    site.routes["/flaky"] = failing_first(2, article_page(STORIES[0]))
    with Fetcher(QUICK) as fetcher:
        page = fetcher.get(site.url("/flaky"))
    assert page.status == 200 and b"defence pact" in page.body
    assert site.hits["/flaky"] == 3


def test_retries_give_up_and_4xx_is_not_retried(site: Site) -> None:
    site.routes["/down"] = failing_first(99, b"", status=429)
    with Fetcher(QUICK) as fetcher:
        with pytest.raises(FetchError, match=r"HTTP 429 Too Many Requests \(tried 3 times\)"):
            fetcher.get(site.url("/down"))
        with pytest.raises(FetchError, match="HTTP 404 Not Found"):
            fetcher.get(site.url("/missing"))
    assert site.hits["/down"] == 3 and site.hits["/missing"] == 1


def test_bodies_over_the_cap_are_refused(site: Site) -> None:
    big = b"<p>" + b"word " * 60_000 + b"</p>"  # 300 kB
    site.page("/big-declared", big)
    site.routes["/big-streamed"] = lambda _: (200, {"X-No-Length": "1"}, big)
    policy = FetchPolicy(timeout=2, retries=0, delay=0, max_bytes=100_000)
    with Fetcher(policy) as fetcher:
        with pytest.raises(FetchError, match="300,007 bytes, over the limit of 100,000"):
            fetcher.get(site.url("/big-declared"))
        with pytest.raises(FetchError, match="over the limit of 100,000 bytes"):
            fetcher.get(site.url("/big-streamed"))
        assert len(fetcher.get(site.url("/world/pact.html")).body) < 100_000


def test_feeds_are_told_from_pages_by_type_or_by_body(site: Site) -> None:
    body = rss(site.base, STORIES[:1])
    for content_type in ("application/rss+xml", "application/xml", "text/html", ""):
        page = Page("u", "http://h/feed", 200, content_type, None, body)
        feed = parse_feed(page)
        assert feed is not None and feed.entries[0].title == STORIES[0].title
        assert feed.entries[0].published == "2024-06-19T08:30:00+00:00"
    html = Page("u", "http://h/p", 200, "text/html", "utf-8", article_page(STORIES[0]))
    assert parse_feed(html) is None


# -- indexing pages and feeds ---------------------------------------------------------------


def test_index_a_web_page_keeps_the_story_and_drops_the_chrome(
    site: Site, tmp_path: Path, embedder: Embedder
) -> None:
    index = tmp_path / "ix"
    url = site.url("/world/drones.html")
    code, stdout, stderr = invoke("index", url, "--index", index, "--json")
    assert code == 0, stderr
    assert json.loads(stdout)["added"] == [url]
    article = show(index, url)
    text = str(article["text"])
    assert "destroying armoured vehicles" in text and "swarms of inexpensive" in text
    for chrome in ("cookies", "Subscribe", "Most read", "Copyright", "dataLayer"):
        assert chrome not in text
    assert article["source"] == "The Daily Planet" and article["url"] == url
    assert site.agents == [USER_AGENT, USER_AGENT]  # robots.txt, then the page


def test_a_growing_feed_fetches_only_its_new_entries(
    site: Site, tmp_path: Path, embedder: Embedder
) -> None:
    index = tmp_path / "ix"
    stories = STORIES[:2]
    site.routes["/feeds/world.rss"] = lambda _: (
        200,
        {"Content-Type": "application/rss+xml"},
        rss(site.base, stories),
    )
    feed = site.url("/feeds/world.rss")

    code, stdout, stderr = invoke("index", feed, "--index", index, "--json")
    assert code == 0, stderr
    first = json.loads(stdout)
    assert sorted(first["added"]) == sorted(site.url(f"/world/{s.slug}.html") for s in stories)
    assert _counts(first["feeds"]) == [(feed, "feed", 2, 2, 0, 3)]  # entries new seen fetched

    stories.append(STORIES[2])  # the site publishes a story
    code, stdout, stderr = invoke("index", feed, "--index", index, "--json")
    assert code == 0, stderr
    second = json.loads(stdout)
    assert second["added"] == [site.url("/world/harvest.html")]
    assert _counts(second["feeds"]) == [(feed, "feed", 3, 1, 2, 2)]
    assert site.hits == {
        "/robots.txt": 2,  # once a run
        "/feeds/world.rss": 2,
        "/world/pact.html": 1,
        "/world/drones.html": 1,
        "/world/harvest.html": 1,
    }
    # The feed names the story; the page gives its words.
    harvest = show(index, site.url("/world/harvest.html"))
    assert harvest["title"] == "Farmers bring in a record wheat harvest"  # not the <title>
    assert harvest["published"] == "2024-06-20T06:00:00+00:00"
    assert harvest["source"] == "The Daily Planet: World"
    assert harvest["metadata"] == {"feed": feed, "author": "Lois Lane"}
    assert "largest wheat harvest in a decade" in str(harvest["text"])

    code, stdout, _ = invoke("search", "record grain crop", "--index", index, "--json")
    assert json.loads(stdout)["results"][0]["article_id"] == site.url("/world/harvest.html")
    code, stdout, _ = invoke("stats", "--index", index, "--json")
    stats = json.loads(stdout)
    assert stats["articles"] == 3 and stats["feeds"] == {feed: 3}


def test_an_entry_whose_page_fails_falls_back_to_its_summary_and_is_tried_again(
    site: Site, tmp_path: Path, embedder: Embedder
) -> None:
    index = tmp_path / "ix"
    entries = [
        ("urn:wire:1", "Harvest", "../world/harvest.html", "Wheat harvest breaks records."),
        ("urn:wire:2", "Port strike", "../world/strike.html", "Dock workers walk out at dawn."),
    ]
    # Served as plain XML: the body, not the type, says it is a feed.
    site.page("/wire/atom", atom(entries), content_type="application/xml")
    feed = site.url("/wire/atom")

    code, stdout, _ = invoke("index", feed, "--index", index, "--json")
    assert code == 1  # something failed, the rest was indexed
    report = json.loads(stdout)
    strike = site.url("/world/strike.html")
    assert sorted(report["added"]) == sorted([site.url("/world/harvest.html"), strike])
    [failure] = report["failed"]
    assert failure["where"] == strike
    assert failure["reason"] == "HTTP 404 Not Found; indexed the feed's summary instead"
    stored = show(index, strike)
    assert stored["text"] == "Dock workers walk out at dawn."
    assert stored["metadata"] == {"feed": feed, "text_from": "feed"}

    # Next run: the page that failed is asked for again, the one that worked is not.
    site.page("/world/strike.html", article_page(STORIES[1]))
    code, stdout, _ = invoke("index", feed, "--index", index, "--json")
    assert code == 0
    assert json.loads(stdout)["updated"] == [strike]
    assert site.hits["/world/harvest.html"] == 1 and site.hits["/world/strike.html"] == 2
    assert "Small commercial drones" in str(show(index, strike)["text"])


def test_watch_polls_rounds_and_picks_up_new_entries(
    site: Site, tmp_path: Path, embedder: Embedder
) -> None:
    def grows(request: Request) -> tuple[int, dict[str, str], bytes]:
        stories = STORIES[:2] if request.count == 1 else STORIES
        return 200, {"Content-Type": "application/rss+xml"}, rss(site.base, stories)

    site.routes["/feeds/world.rss"] = grows
    index = tmp_path / "ix"
    args = ("watch", site.url("/feeds/world.rss"), "--every", "0", "--max-rounds", "2")
    code, stdout, stderr = invoke(*args, "--index", index, "--json")
    assert code == 0, stderr
    rounds = [json.loads(line) for line in stdout.splitlines()]
    assert [r["round"] for r in rounds] == [1, 2]
    assert len(rounds[0]["added"]) == 2
    assert rounds[1]["added"] == [site.url("/world/harvest.html")]
    assert sum(site.hits[f"/world/{s.slug}.html"] for s in STORIES) == 3


def test_unreachable_and_non_article_urls_fail_clearly(
    site: Site, tmp_path: Path, embedder: Embedder
) -> None:
    site.page("/logo.png", b"\x89PNG\r\n", content_type="image/png")
    code, stdout, stderr = invoke(
        "index", site.url("/logo.png"), site.url("/nowhere"), "--index", tmp_path / "ix"
    )
    assert code == 2 and stdout.startswith("0 added")
    assert "cannot index content of type image/png" in stderr
    assert "/nowhere: HTTP 404 Not Found" in stderr


def test_json_logs_record_each_fetch(site: Site, tmp_path: Path, embedder: Embedder) -> None:
    url = site.url("/world/pact.html")
    code, _, stderr = invoke("index", url, "--index", tmp_path / "ix", "--log-format", "json")
    assert code == 0, stderr
    lines = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    fetched = next(line for line in lines if line["message"] == f"fetched {url}")
    assert (fetched["logger"], fetched["level"], fetched["status"]) == ("sift.web", "info", 200)


def test_sources_can_be_read_without_the_cli(site: Site, tmp_path: Path) -> None:
    items = list(LiveSources(tmp_path, QUICK).read([site.url("/world/pact.html")]))
    assert [getattr(i, "title", None) for i in items] == ["Leaders sign a mutual defence pact"]
