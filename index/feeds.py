"""Live sources: web pages and feeds (RSS, Atom) as articles for `Sift.index_articles`, and the
memory of which feed entries an index has seen, so that a rerun fetches only new ones.

    sources = LiveSources(index_dir, FetchPolicy.from_settings(settings))
    summary = engine.index_articles(sources.read(urls))
    sources.remember(summary)  # only after the commit: a failed run forgets nothing it never did
"""

from __future__ import annotations

import calendar
import hashlib
import logging
import sqlite3
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

try:
    import feedparser
except ImportError as exc:  # pragma: no cover - the `web` extra is not installed
    raise ImportError("reading feeds needs the web extra: pip install 'sift-search[web]'") from exc
from pydantic import ValidationError
from sift.errors import FeedError, FetchError, InputError
from sift.index.ingest import article_or_failure, html_article
from sift.index.manifest import DATABASE_FILE
from sift.index.records import Article, Failure
from sift.index.store import connect
from sift.index.web import Fetcher, FetchPolicy, Page
from sift.index.writer import IndexSummary

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
MAX_ID_CHARS = 512  # Article.id's limit

SCHEMA = """
CREATE TABLE IF NOT EXISTS feed_entries (
    feed_url   TEXT NOT NULL,
    entry_key  TEXT NOT NULL,                -- the entry's guid, else its link
    article_id TEXT NOT NULL,
    seen_at    TEXT NOT NULL,
    PRIMARY KEY (feed_url, entry_key)
);
"""


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
    when = raw.get("published_parsed") or raw.get("updated_parsed")
    published = (
        time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(calendar.timegm(when)))
        if when
        else None
    )
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


class SeenEntries:
    """Which entries of which feeds are in the index: a table in its own sift.db."""

    def __init__(self, directory: Path):
        self.directory = directory

    def _connect(self) -> sqlite3.Connection | None:
        if not (self.directory / DATABASE_FILE).exists():
            return None  # no index yet: nothing seen
        return connect(self.directory)

    def keys(self, feed_url: str) -> set[str]:
        conn = self._connect()
        if conn is None:
            return set()
        try:
            if not _has_table(conn):
                return set()
            rows = conn.execute(
                "SELECT entry_key FROM feed_entries WHERE feed_url = ?", (feed_url,)
            ).fetchall()
            return {row[0] for row in rows}
        finally:
            conn.close()

    def add(self, rows: Iterable[tuple[str, str, str]]) -> int:
        """Remember (feed_url, entry_key, article_id) rows; the index must exist."""
        rows = list(rows)
        if not rows:
            return 0
        conn = connect(self.directory)
        try:
            conn.executescript(SCHEMA)
            seen_at = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(
                "INSERT OR REPLACE INTO feed_entries (feed_url, entry_key, article_id, seen_at) "
                "VALUES (?, ?, ?, ?)",
                [(*row, seen_at) for row in rows],
            )
            conn.execute("COMMIT")
        finally:
            conn.close()
        return len(rows)

    def counts(self) -> dict[str, int]:
        """Entries seen, by feed URL."""
        conn = self._connect()
        if conn is None:
            return {}
        try:
            if not _has_table(conn):
                return {}
            rows = conn.execute("SELECT feed_url, count(*) FROM feed_entries GROUP BY feed_url")
            return {url: n for url, n in rows}
        finally:
            conn.close()


def _has_table(conn: sqlite3.Connection) -> bool:
    query = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'feed_entries'"
    return conn.execute(query).fetchone() is not None


@dataclass
class FeedReport:
    """What one run saw of one feed."""

    url: str
    entries: int = 0
    new: int = 0
    seen: int = 0  # skipped: indexed by an earlier run


@dataclass
class LiveSources:
    """Articles from URLs of pages and feeds, fetched with one policy for one index."""

    directory: Path
    policy: FetchPolicy = field(default_factory=FetchPolicy)
    feeds: list[FeedReport] = field(default_factory=list, init=False)  # of the last read()
    _pending: list[tuple[str, str, str]] = field(default_factory=list, init=False, repr=False)

    def read(self, urls: Iterable[str]) -> Iterator[Article | Failure]:
        """Each page's article; each feed's new entries' articles; or why one failed."""
        self.feeds.clear()
        self._pending.clear()
        seen_here: set[str] = set()
        with Fetcher(self.policy) as fetcher:
            for url in urls:
                if url in seen_here:
                    continue
                seen_here.add(url)
                try:
                    page = fetcher.get(url, accept=ACCEPT)
                    feed = parse_feed(page)
                except (FetchError, FeedError) as exc:
                    yield Failure(url, getattr(exc, "reason", str(exc)))
                    continue
                if feed is None:
                    yield article_or_failure(
                        lambda page=page, url=url: page_article(page, article_id_for(url)), url
                    )
                else:
                    yield from self._feed(fetcher, feed)

    def _feed(self, fetcher: Fetcher, feed: Feed) -> Iterator[Article | Failure]:
        report = FeedReport(feed.url, entries=len(feed.entries))
        self.feeds.append(report)
        seen = SeenEntries(self.directory).keys(feed.url)
        for entry in feed.entries:
            if entry.key in seen:
                report.seen += 1
                continue
            report.new += 1
            article_id = article_id_for(entry.link or entry.key)
            article, failure = self._entry_article(fetcher, feed, entry, article_id)
            if failure is not None:
                yield failure
            if article is not None:
                yield article
                # An entry whose summary stood in for its page stays unseen: next run tries
                # the page again.
                if failure is None:
                    self._pending.append((feed.url, entry.key, article_id))
        log.info(
            "feed %s: %d entries, %d new",
            feed.url,
            report.entries,
            report.new,
            extra={"feed": feed.url, "entries": report.entries, "new": report.new},
        )

    def _entry_article(
        self, fetcher: Fetcher, feed: Feed, entry: Entry, article_id: str
    ) -> tuple[Article | None, Failure | None]:
        where = entry.link or f"{feed.url} entry {entry.key}"
        fields: dict[str, Any] = {
            "id": article_id,
            "title": entry.title,
            "url": entry.link,
            "source": entry.source,
            "published": entry.published,
        }
        metadata: dict[str, Any] = {"feed": feed.url}
        if entry.author:
            metadata["author"] = entry.author
        problem = "the entry links to no page"
        if entry.link:
            try:
                page = page_article(fetcher.get(entry.link), article_id)
                merged = {k: v for k, v in fields.items() if v} | {"text": page.text}
                for key in ("title", "source", "published"):
                    merged.setdefault(key, getattr(page, key))
                return Article(**merged, metadata=page.metadata | metadata), None
            except FetchError as exc:
                problem = exc.reason
            except (InputError, ValidationError, ValueError) as exc:
                problem = str(exc)
        text = self._summary(entry)
        if not text:
            return None, Failure(where, f"{problem}, and the feed gives no text for it")
        fallback = article_or_failure(
            lambda: Article(**fields, text=text, metadata=metadata | {"text_from": "feed"}), where
        )
        if isinstance(fallback, Failure):
            return None, fallback
        # With a page to fetch, a summary is a stand-in: say so, and try again next run.
        failure = Failure(where, f"{problem}; indexed the feed's summary instead")
        return fallback, failure if entry.link else None

    @staticmethod
    def _summary(entry: Entry) -> str:
        if not entry.summary:
            return ""
        return html_to_text(entry.summary) if entry.summary_is_html else entry.summary.strip()

    def remember(self, summary: IndexSummary) -> int:
        """After the commit: remember the entries whose articles are now in the index."""
        stored = set(summary.added) | set(summary.updated) | set(summary.unchanged)
        rows = [row for row in self._pending if row[2] in stored]
        self._pending.clear()
        return SeenEntries(self.directory).add(rows)
