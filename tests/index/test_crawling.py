"""Crawling the way publishers expect, against a real HTTP server on 127.0.0.1: robots.txt
(disallow, Crawl-delay, the cache, the opt-out), conditional requests answered 304, entries that
change after they were indexed, news sitemaps and sitemap indexes, and the per-source counts
that `sift index`, `sift watch` and `sift stats` report."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from dataclasses import replace
from itertools import pairwise
from pathlib import Path

import pytest
from sift.cli.main import app
from sift.index.embed import Embedder
from sift.index.robots import RobotsCache, agent_token
from sift.index.sitemaps import parse_sitemap
from sift.index.web import (
    USER_AGENT,
    Fetcher,
    FetchError,
    FetchPolicy,
    Page,
    RobotsDisallowed,
)
from typer.testing import CliRunner

from tests.news_site import (
    STORIES,
    Site,
    Story,
    Versioned,
    article_page,
    gzipped,
    news_sitemap,
    rss,
    serve,
    sitemap_index,
)

runner = CliRunner()
FAST = {"SIFT_WEB_DELAY": "0", "SIFT_WEB_BACKOFF": "0.01", "SIFT_WEB_TIMEOUT": "2"}
QUICK = FetchPolicy(timeout=1, retries=1, backoff=0.01, delay=0)
PACT, DRONES, HARVEST = STORIES


@pytest.fixture
def site() -> Iterator[Site]:
    with serve(Site()) as running:
        for story in STORIES:
            running.page(f"/world/{story.slug}.html", article_page(story))
        yield running


def robots(site: Site, text: str) -> None:
    site.page("/robots.txt", text.encode(), content_type="text/plain")


def invoke(*args: str | Path, **env: str) -> tuple[int, str, str]:
    result = runner.invoke(app, [str(a) for a in args], env=FAST | env)
    return result.exit_code, result.stdout, result.stderr


def index_json(*args: str | Path, **env: str) -> dict[str, object]:
    code, stdout, stderr = invoke("index", *args, "--json", **env)
    assert code == 0, stderr
    return json.loads(stdout)


def show(index: Path, article_id: str) -> dict[str, object]:
    code, stdout, stderr = invoke("show", article_id, "--index", index, "--json")
    assert code == 0, stderr
    return json.loads(stdout)


def counts(report: dict[str, object], *keys: str) -> tuple[object, ...]:
    [feed] = report["feeds"]  # type: ignore[misc]
    return tuple(feed[k] for k in keys)


# -- robots.txt -----------------------------------------------------------------------------


def test_robots_txt_disallow_is_obeyed_and_reported(
    site: Site, tmp_path: Path, embedder: Embedder
) -> None:
    """The issue's own case: a feed links one page under /news/ and one under /private/."""
    robots(site, "User-agent: *\nDisallow: /private/\n")
    site.page("/news/pact.html", article_page(PACT))
    site.page("/private/drones.html", article_page(DRONES))
    feed = rss(site.base, [PACT, DRONES]).replace(b"/world/pact", b"/news/pact")
    feed = feed.replace(b"/world/drones", b"/private/drones")
    site.page("/feed.rss", feed, "application/rss+xml")
    index = tmp_path / "ix"

    report = index_json(site.url("/feed.rss"), "--index", index)
    assert report["added"] == [site.url("/news/pact.html")]
    assert report["failed"] == []  # skipped on purpose is not a failure: exit code 0
    [skip] = report["skipped"]  # type: ignore[misc]
    assert skip["where"] == site.url("/private/drones.html")
    assert skip["reason"] == f"disallowed by {site.url('/robots.txt')} for user agent 'sift'"
    assert counts(report, "entries", "new", "fetched", "robots") == (2, 2, 2, 1)  # feed + page
    assert "/private/drones.html" not in site.hits
    assert site.hits["/robots.txt"] == 1  # once for the host, however many URLs

    # A disallowed URL named directly is skipped too, and said so on the terminal.
    code, stdout, stderr = invoke("index", site.url("/private/drones.html"), "--index", index)
    assert code == 0 and stdout.startswith("0 added")
    assert "skipped " + site.url("/private/drones.html") + ": disallowed by" in stderr
    assert "/private/drones.html" not in site.hits

    code, stdout, _ = invoke("stats", "--index", index, "--json")
    sources = {s["url"]: s for s in json.loads(stdout)["sources"]}
    feed_stats = sources[site.url("/feed.rss")]
    assert (feed_stats["kind"], feed_stats["robots"], feed_stats["fetched"]) == ("feed", 1, 2)
    never_read = sources[site.url("/private/drones.html")]
    assert (never_read["kind"], never_read["robots"], never_read["fetched"]) == ("unknown", 1, 0)


def test_robots_txt_is_matched_on_our_product_token(site: Site) -> None:
    # A group for "sift" is ours; one for "bot" is not, though our User-Agent's comment says bot.
    robots(
        site,
        "User-agent: bot\nDisallow: /\n\nUser-agent: sift\nDisallow: /world/drones\n\n"
        "User-agent: *\nDisallow: /world/\n",
    )
    assert agent_token(USER_AGENT) == "sift" and agent_token("NewsDesk/2.0 (+x)") == "newsdesk"
    with Fetcher(QUICK) as fetcher:
        assert fetcher.get(site.url("/world/pact.html")).status == 200
        with pytest.raises(RobotsDisallowed, match="for user agent 'sift'"):
            fetcher.get(site.url("/world/drones.html"))
    custom = replace(QUICK, user_agent="NewsDesk/2.0 (+https://desk.invalid)")
    with Fetcher(custom) as fetcher, pytest.raises(RobotsDisallowed, match="'newsdesk'"):
        fetcher.get(site.url("/world/pact.html"))  # the * group: all of /world/


def test_each_redirect_hop_is_asked_about(site: Site) -> None:
    robots(site, "User-agent: *\nDisallow: /private/\n")
    site.routes["/old"] = lambda _: (301, {"Location": "/world/pact.html"}, b"")
    site.routes["/sneaky"] = lambda _: (302, {"Location": "/private/x.html"}, b"")
    site.routes["/loop"] = lambda _: (302, {"Location": "/loop"}, b"")
    with Fetcher(QUICK) as fetcher:
        page = fetcher.get(site.url("/old"))
        assert page.final_url == site.url("/world/pact.html") and b"defence pact" in page.body
        with pytest.raises(RobotsDisallowed, match="disallowed by"):
            fetcher.get(site.url("/sneaky"))
        with pytest.raises(FetchError, match="more than 5 redirects"):
            fetcher.get(site.url("/loop"))
    assert "/private/x.html" not in site.hits and site.hits["/loop"] == 6


def test_an_unreadable_robots_txt_stops_fetching_and_a_missing_one_allows_all(site: Site) -> None:
    with Fetcher(QUICK) as fetcher:  # no /robots.txt: 404
        assert fetcher.get(site.url("/world/pact.html")).status == 200
    site.routes["/robots.txt"] = lambda _: (503, {"Retry-After": "0"}, b"busy")
    with (
        Fetcher(QUICK) as fetcher,
        pytest.raises(RobotsDisallowed, match=r"could not be read \(HTTP 503"),
    ):
        fetcher.get(site.url("/world/pact.html"))
    assert site.hits["/world/pact.html"] == 1


def test_crawl_delay_spaces_requests_and_robots_txt_is_cached_for_its_lifetime(
    site: Site,
) -> None:
    robots(site, "User-agent: *\nCrawl-delay: 1\n")
    cache = RobotsCache(USER_AGENT, lifetime=3600)
    with Fetcher(QUICK, robots=cache) as fetcher:  # QUICK's own delay is 0
        for story in STORIES:
            fetcher.get(site.url(f"/world/{story.slug}.html"))
        assert fetcher.delay_for(site.url("/")) == 1.0
    pages = [r.at for r in site.requests if r.path.startswith("/world/")]
    assert len(pages) == 3 and all(b - a >= 0.95 for a, b in pairwise(pages))
    with Fetcher(QUICK, robots=cache) as fetcher:  # a later round: the rules are still fresh
        fetcher.get(site.url("/world/pact.html"))
    assert site.hits["/robots.txt"] == 1
    expired = RobotsCache(USER_AGENT, lifetime=0)
    for _ in range(2):
        with Fetcher(QUICK, robots=expired) as fetcher:
            fetcher.get(site.url("/world/pact.html"))
    assert site.hits["/robots.txt"] == 3


def test_ignoring_robots_txt_is_a_setting_of_its_own(
    site: Site, tmp_path: Path, embedder: Embedder
) -> None:
    robots(site, "User-agent: *\nDisallow: /\n")
    url = site.url("/world/pact.html")
    report = index_json(url, "--index", tmp_path / "ix", SIFT_WEB_IGNORE_ROBOTS="true")
    assert report["added"] == [url] and report["skipped"] == []
    assert "/robots.txt" not in site.hits


# -- conditional requests and updated entries ------------------------------------------------


def test_a_304_round_downloads_nothing(site: Site, tmp_path: Path, embedder: Embedder) -> None:
    feed = Versioned(rss(site.base, [PACT, DRONES]), "application/rss+xml")
    site.routes["/feeds/world.rss"] = feed
    page = Versioned(article_page(HARVEST))
    site.routes["/harvest.html"] = page
    index = tmp_path / "ix"
    args = ("watch", site.url("/feeds/world.rss"), "--every", "0", "--max-rounds", "2")
    code, stdout, stderr = invoke(*args, "--index", index, "--json")
    assert code == 0, stderr
    first, second = (json.loads(line) for line in stdout.splitlines())
    assert len(first["added"]) == 2 and second["added"] == []
    assert counts(first, "entries", "new", "fetched", "not_modified") == (2, 2, 3, 0)
    assert counts(second, "entries", "new", "fetched", "not_modified") == (0, 0, 0, 1)
    asked = site.asked("/feeds/world.rss")
    assert "If-None-Match" not in asked[0].headers
    assert asked[1].headers["If-None-Match"] == feed.etag
    assert asked[1].headers["If-Modified-Since"] == feed.last_modified
    assert feed.not_modified == 1
    assert site.hits["/world/pact.html"] == 1 and site.hits["/robots.txt"] == 1  # one cache

    # A page named directly is asked for conditionally too, while its article is indexed.
    url = site.url("/harvest.html")
    assert index_json(url, "--index", index)["added"] == [url]
    again = index_json(url, "--index", index)
    assert again["added"] == again["updated"] == again["unchanged"] == []
    assert again["skipped"] == [
        {"where": url, "reason": "not modified since the last run (HTTP 304)"}
    ]
    assert page.not_modified == 1
    code, stdout, _ = invoke("stats", "--index", index, "--json")
    assert json.loads(stdout)["articles"] == 3
    code, stdout, _ = invoke("remove", url, "--index", index)
    assert code == 0
    assert index_json(url, "--index", index)["added"] == [url]  # removed: asked in full
    assert "If-None-Match" not in site.asked("/harvest.html")[-1].headers

    # `sift stats` keeps the counts of every round.
    code, stdout, _ = invoke("stats", "--index", index)
    assert code == 0
    assert f"feed {site.url('/feeds/world.rss')}: 2 entries seen, 3 fetched, 1 not" in " ".join(
        stdout.split()
    )


def test_a_feed_with_an_entry_to_retry_is_asked_for_in_full(
    site: Site, tmp_path: Path, embedder: Embedder
) -> None:
    feed = Versioned(rss(site.base, [PACT, DRONES]), "application/rss+xml")
    site.routes["/feeds/world.rss"] = feed
    del site.routes["/world/drones.html"]  # 404: the summary stands in, the page is retried
    index = tmp_path / "ix"
    code, _, _ = invoke("index", site.url("/feeds/world.rss"), "--index", index)
    assert code == 1
    site.page("/world/drones.html", article_page(DRONES))
    report = index_json(site.url("/feeds/world.rss"), "--index", index)
    assert report["updated"] == [site.url("/world/drones.html")]
    assert "If-None-Match" not in site.asked("/feeds/world.rss")[1].headers
    assert feed.not_modified == 0
    index_json(site.url("/feeds/world.rss"), "--index", index)  # now complete: a 304
    assert feed.not_modified == 1


def atom_feed(site: Site, entries: list[tuple[Story, str]]) -> bytes:
    """Atom entries of (story, updated): the entry changes when its updated date does."""
    body = "\n".join(
        f"""<entry><id>urn:planet:{s.slug}</id><title>{s.title}</title>
  <link rel="alternate" href="{site.base}/world/{s.slug}.html"/>
  <published>{s.iso}T08:00:00Z</published><updated>{updated}</updated></entry>"""
        for s, updated in entries
    )
    return f"""<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom"><title>Planet Wire</title><id>urn:planet:wire</id>
<updated>2024-06-21T09:00:00Z</updated>
{body}
</feed>""".encode()


def test_an_updated_entry_is_fetched_again_and_reindexed(
    site: Site, tmp_path: Path, embedder: Embedder
) -> None:
    pages = {s.slug: Versioned(article_page(s)) for s in (PACT, DRONES)}
    for slug, resource in pages.items():
        site.routes[f"/world/{slug}.html"] = resource
    dates = {"pact": "2024-06-19T08:00:00Z", "drones": "2024-06-18T14:00:00Z"}
    site.routes["/atom"] = lambda _: (
        200,
        {"Content-Type": "application/atom+xml"},
        atom_feed(site, [(PACT, dates["pact"]), (DRONES, dates["drones"])]),
    )
    index, feed, pact = tmp_path / "ix", site.url("/atom"), site.url("/world/pact.html")
    assert len(index_json(feed, "--index", index)["added"]) == 2

    # The story is corrected: a new updated date, a changed paragraph.
    corrected = replace(
        PACT,
        paragraphs=[
            *PACT.paragraphs[:2],
            "Correction: the ceremony took place in Vladivostok, not in the capital.",
        ],
    )
    old_etag = pages["pact"].etag
    pages["pact"].change(article_page(corrected))
    dates["pact"] = "2024-06-19T12:30:00Z"
    report = index_json(feed, "--index", index)
    assert report["updated"] == [pact] and report["added"] == []
    assert counts(report, "entries", "new", "updated", "seen", "fetched") == (2, 0, 1, 1, 2)
    assert site.hits["/world/drones.html"] == 1  # unchanged: never fetched again
    assert site.asked("/world/pact.html")[1].headers["If-None-Match"] == old_etag
    text = str(show(index, pact)["text"])
    assert "Vladivostok" in text and "growing cooperation" not in text
    _, stdout, _ = invoke("search", "Vladivostok correction", "--index", index, "--json")
    best = json.loads(stdout)["results"][0]
    assert best["article_id"] == pact and "Vladivostok" in json.dumps(best)  # same id, new words

    # Its date moves again but its page has not: the page answers 304, nothing is re-indexed.
    dates["pact"] = "2024-06-19T13:00:00Z"
    report = index_json(feed, "--index", index)
    assert report["updated"] == report["added"] == []
    assert counts(report, "updated", "fetched", "not_modified") == (1, 1, 1)
    assert pages["pact"].not_modified == 1


def test_an_index_from_before_keeps_following_its_feeds(
    site: Site, tmp_path: Path, embedder: Embedder
) -> None:
    site.page("/feeds/world.rss", rss(site.base, [PACT, DRONES]), "application/rss+xml")
    index, feed = tmp_path / "ix", site.url("/feeds/world.rss")
    index_json(feed, "--index", index)
    # Make the tables what an index written before this change has: no fingerprints, no
    # validators, no web_sources.
    conn = sqlite3.connect(index / "sift.db")
    conn.executescript(
        """
        CREATE TABLE old AS SELECT feed_url, entry_key, article_id, seen_at FROM feed_entries;
        DROP TABLE feed_entries;
        CREATE TABLE feed_entries (feed_url TEXT NOT NULL, entry_key TEXT NOT NULL,
            article_id TEXT NOT NULL, seen_at TEXT NOT NULL, PRIMARY KEY (feed_url, entry_key));
        INSERT INTO feed_entries SELECT * FROM old;
        DROP TABLE old;
        DROP TABLE web_sources;
        """
    )
    conn.close()
    _, stdout, _ = invoke("stats", "--index", index, "--json")
    stats = json.loads(stdout)
    assert stats["feeds"] == {feed: 2} and stats["sources"][0]["entries"] == 2

    site.page("/feeds/world.rss", rss(site.base, STORIES), "application/rss+xml")
    report = index_json(feed, "--index", index)
    assert report["added"] == [site.url("/world/harvest.html")]  # only the new entry
    assert counts(report, "new", "seen", "updated") == (1, 2, 0)
    assert site.hits["/world/pact.html"] == 1
    assert index_json(feed, "--index", index)["added"] == []


# -- sitemaps -------------------------------------------------------------------------------


def test_a_sitemap_index_with_two_news_sitemaps(
    site: Site, tmp_path: Path, embedder: Embedder
) -> None:
    lastmods = {
        "/sitemaps/news-1.xml": "2024-06-19T10:00:00Z",
        "/sitemaps/news-2.xml.gz": "2024-06-20T10:00:00Z",  # gzipped, as big sites serve them
    }
    site.routes["/sitemap_index.xml"] = lambda _: (
        200,
        {"Content-Type": "application/xml"},
        sitemap_index(site.base, list(lastmods.items())),
    )
    site.page("/sitemaps/news-1.xml", news_sitemap(site.base, [PACT]), "application/xml")
    second = Versioned(gzipped(news_sitemap(site.base, [DRONES])), "application/octet-stream")
    site.routes["/sitemaps/news-2.xml.gz"] = second
    index, url = tmp_path / "ix", site.url("/sitemap_index.xml")

    report = index_json(url, "--index", index)
    drones = site.url("/world/drones.html")
    assert sorted(report["added"]) == sorted([site.url("/world/pact.html"), drones])
    assert counts(report, "kind", "entries", "new", "fetched") == ("sitemap", 2, 2, 5)
    article = show(index, drones)
    assert article["title"] == DRONES.summary  # news:title, not the page's <title>
    assert article["published"] == "2024-06-18T07:15:00+00:00"  # news:publication_date
    assert article["source"] == "Planet News"  # news:publication
    assert article["metadata"] == {"sitemap": url, "author": "Lois Lane"}

    # Read incrementally: the second sitemap changed (a new story), the first did not.
    old_etag = second.etag
    second.change(gzipped(news_sitemap(site.base, [DRONES, HARVEST])))
    lastmods["/sitemaps/news-2.xml.gz"] = "2024-06-20T11:00:00Z"
    report = index_json(url, "--index", index)
    assert report["added"] == [site.url("/world/harvest.html")]
    assert counts(report, "entries", "new", "seen", "not_modified") == (2, 1, 1, 1)
    assert site.hits["/sitemaps/news-1.xml"] == 1  # its lastmod did not move: not asked
    assert site.hits["/world/drones.html"] == 1
    assert site.asked("/sitemaps/news-2.xml.gz")[1].headers["If-None-Match"] == old_etag


def test_sitemap_xml_is_parsed_without_entities_dtds_or_network() -> None:
    hostile = b"""<?xml version="1.0"?>
<!DOCTYPE urlset [<!ENTITY secret SYSTEM "file:///etc/passwd">
  <!ENTITY a "aaaaaaaaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">
  <!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]>
<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">
  <url><loc>http://h/a&secret;&c;</loc></url>
  <url><loc>http://h/b</loc><lastmod>not a date</lastmod></url>
</urlset>"""
    sitemap = parse_sitemap(Page("u", "http://h/s.xml", 200, "application/xml", None, hostile))
    assert sitemap is not None and not sitemap.is_index
    assert [e.loc for e in sitemap.entries] == ["http://h/a", "http://h/b"]
    assert "root:" not in json.dumps([e.loc for e in sitemap.entries])
    assert sitemap.entries[1].lastmod is None
    html = Page("u", "http://h/p", 200, "text/html", "utf-8", article_page(PACT))
    assert parse_sitemap(html) is None
