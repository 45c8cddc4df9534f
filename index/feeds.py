"""Reading live sources: a feed (RSS, Atom) into entries, a sitemap entry into one, a fetched page
into an article, and the id a URL's article gets. Following them run after run is `index.live`."""

from __future__ import annotations

import calendar
import hashlib
import logging
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin

try:
    import feedparser
except ImportError as exc:  # pragma: no cover - the `web` extra is not installed
    raise ImportError("reading feeds needs the web extra: pip install 'sift-search[web]'") from exc
from sift.errors import FeedError, InputError
from sift.index.ingest import html_article
from sift.index.records import Article
from sift.index.sitemaps import SitemapEntry
from sift.index.web import Page

log = logging.getLogger("sift.feeds")

FEED_TYPES = frozenset(
    {
        "application/rss+xml",
        "application/atom+xml",
        "application/rdf+xml",
        "application/feed+json",
    }
)
XML_TYPES = frozenset({"application/xml", "text/xml"})
HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
ACCEPT = (
    "application/rss+xml, application/atom+xml, application/xml;q=0.9, text/html;q=0.8, */*;q=0.5"
)
SITEMAP_ACCEPT = "application/xml, text/xml;q=0.9, */*;q=0.5"
MAX_ID_CHARS = 512  # Article.id's limit


@dataclass(frozen=True)
class Entry:
    """One item of a feed, as the feed describes it."""

    key: str
    link: str | None
    title: str | None
    published: str | None
    source: str | None
    author: str | None
    summary: str | None  # HTML or text: the entry's content, else its summary
    summary_is_html: bool = True
    updated: str | None = None  # when the source says the entry last changed

    def fingerprint(self) -> str:
        """Changes when what the source says of the entry changes: a new `updated` date, an
        edited title or summary."""
        fields = (self.link, self.title, self.published, self.updated, self.summary)
        return hashlib.sha256("\x1f".join(f or "" for f in fields).encode()).hexdigest()


@dataclass(frozen=True)
class Feed:
    url: str
    title: str | None
    entries: list[Entry]


def parse_feed(page: Page) -> Feed | None:
    """The feed in `page`, or None when the page is not a feed (by its type or its body)."""
    declared = page.media_type in FEED_TYPES
    head = page.body[:512].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    sniffed = head.startswith((b"<?xml", b"<rss", b"<feed", b"<rdf"))
    if not (declared or page.media_type in XML_TYPES or sniffed):
        return None
    parsed = feedparser.parse(
        page.body,
        response_headers={
            "content-type": page.media_type or "application/xml",
            "content-location": page.final_url,
        },
    )
    if not parsed.get("version"):
        if declared:
            raise FeedError(f"not a readable feed: {parsed.get('bozo_exception') or 'no entries'}")
        return None
    title = parsed.feed.get("title") or None
    entries: dict[str, Entry] = {}
    for raw in parsed.entries:
        entry = _entry(raw, page.final_url, title)
        entries.setdefault(entry.key, entry)  # a feed that lists an item twice: once
    return Feed(url=page.url, title=title, entries=list(entries.values()))


def _entry(raw: Any, base: str, feed_title: str | None) -> Entry:
    link = urljoin(base, raw["link"]) if raw.get("link") else None
    content = raw.get("content") or []
    body = content[0] if content else raw.get("summary_detail")
    summary = (body or {}).get("value") or raw.get("summary") or None
    is_html = (body or {}).get("type", "text/html") != "text/plain"
    published = _iso(raw.get("published_parsed") or raw.get("updated_parsed"))
    source = (raw.get("source") or {}).get("title") or feed_title
    key = raw.get("id") or link
    if not key:  # neither guid nor link: what it says is who it is
        key = "sha-" + hashlib.sha256(f"{raw.get('title')}|{summary}".encode()).hexdigest()[:24]
    return Entry(
        key=key,
        link=link,
        title=raw.get("title") or None,
        published=published,
        source=source,
        author=raw.get("author") or None,
        summary=summary,
        summary_is_html=is_html,
        # dict.get: feedparser's own get answers published_parsed when updated_parsed is absent
        updated=_iso(dict.get(raw, "updated_parsed")),
    )


def _iso(when: Any) -> str | None:
    if not when:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(calendar.timegm(when)))


def sitemap_entry(item: SitemapEntry) -> Entry:
    """A sitemap's page as a feed entry: no summary, its page gives the text."""
    return Entry(
        key=item.loc,
        link=item.loc,
        title=item.title,
        published=item.published,
        source=item.source,
        author=None,
        summary=None,
        updated=item.lastmod,
    )


def page_article(page: Page, article_id: str) -> Article:
    """The article a fetched page holds: its main text (HTML) or all of it (plain text)."""
    if page.media_type in HTML_TYPES or (not page.media_type and page.body.lstrip()[:1] == b"<"):
        return html_article(page.text(), article_id, url=page.final_url)
    if page.media_type == "text/plain":
        text = page.text()
        return Article(id=article_id, title=_first_line(text), text=text, url=page.final_url)
    raise InputError(f"cannot index content of type {page.media_type or 'unknown'}")


def html_to_text(fragment: str) -> str:
    """The words of an HTML fragment (a feed's summary), one paragraph a block."""
    import lxml.html  # trafilatura's own parser, already installed with it

    try:
        root = lxml.html.fragment_fromstring(fragment, create_parent="div")
    except (ValueError, lxml.etree.ParserError):
        return fragment
    for element in root.iter("p", "div", "br", "li", "h1", "h2", "h3", "h4", "h5", "h6"):
        element.tail = "\n\n" + (element.tail or "")
    lines = (" ".join(line.split()) for line in root.text_content().split("\n\n"))
    return "\n\n".join(line for line in lines if line)


def _first_line(text: str) -> str | None:
    return next((line.strip()[:200] for line in text.splitlines() if line.strip()), None)


def article_id_for(url: str) -> str:
    """A URL is its article's id; one too long for an id is known by its hash."""
    if len(url) <= MAX_ID_CHARS:
        return url
    return "url-sha256-" + hashlib.sha256(url.encode()).hexdigest()
