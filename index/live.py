"""Following live sources: what one run fetches of the pages, feeds and sitemaps it is given, and
what it remembers of them afterwards (`index.feed_state`), so that a rerun fetches only what is
new or changed and asks conditionally for the rest. Reading a feed or a page is `index.feeds`.

    sources = LiveSources(index_dir, FetchPolicy.from_settings(settings))
    summary = engine.index_articles(sources.read(urls))
    sources.remember(summary)  # only after the commit: a failed run forgets nothing it never did
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from sift.errors import FeedError, FetchError, InputError, RobotsDisallowed, SitemapError
from sift.index.feed_state import (
    COUNTERS,
    EntryRow,
    FeedState,
    KnownEntry,
    KnownSource,
    SourceRow,
)
from sift.index.feeds import (
    ACCEPT,
    SITEMAP_ACCEPT,
    Entry,
    article_id_for,
    html_to_text,
    page_article,
    parse_feed,
    sitemap_entry,
)
from sift.index.ingest import article_or_failure
from sift.index.records import Article, Failure
from sift.index.robots import RobotsCache
from sift.index.sitemaps import Sitemap, parse_sitemap
from sift.index.web import Fetcher, FetchPolicy, HostPacer
from sift.index.writer import IndexSummary

log = logging.getLogger("sift.feeds")


@dataclass
class SourceReport:
    """What one run saw of one URL it was given: a feed, a sitemap (index) or a page.

    `entries` the source listed; `new`, `updated` (changed since seen: fetched again) and `seen`
    (known and unchanged: not fetched) split them. `fetched` counts downloads, `not_modified`
    the 304 answers to conditional requests (and sitemaps whose `lastmod` has not moved),
    `robots` what robots.txt kept us from, `failed` what could not be fetched or indexed."""

    url: str
    kind: str = "unknown"  # feed, sitemap, page; unknown: never read
    entries: int = 0
    new: int = 0
    updated: int = 0
    seen: int = 0
    fetched: int = 0
    not_modified: int = 0
    robots: int = 0
    failed: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


FeedReport = SourceReport  # its name before sitemaps and pages had reports


@dataclass(frozen=True)
class Skip:
    """A URL not fetched on purpose, and why: robots.txt, or a 304 for a page."""

    where: str
    reason: str


@dataclass
class _Doc:
    """A feed, sitemap or page fetched this run: its validators are stored after the commit
    only if everything it led to was indexed, so that a 304 never hides an entry to retry."""

    row: SourceRow
    article_id: str | None = None  # a page: stored only if its article was
    complete: bool = True
    children: list[_Doc] = field(default_factory=list)


@dataclass
class LiveSources:
    """Articles from URLs of pages, feeds and sitemaps, fetched with one policy for one index.
    One instance may read many rounds (`sift watch`): robots.txt and the pause between two
    requests to a host carry over from one round to the next."""

    directory: Path
    policy: FetchPolicy = field(default_factory=FetchPolicy)
    sources: list[SourceReport] = field(default_factory=list, init=False)  # of the last read()
    skipped: list[Skip] = field(default_factory=list, init=False)
    _entries: list[tuple[EntryRow, _Doc]] = field(default_factory=list, init=False, repr=False)
    _docs: list[_Doc] = field(default_factory=list, init=False, repr=False)

    def __post_init__(self) -> None:
        self.state = FeedState(self.directory)
        self.robots = RobotsCache(self.policy.user_agent, self.policy.robots_lifetime)
        self.pacer = HostPacer()

    @property
    def feeds(self) -> list[SourceReport]:
        """The reports of feeds and sitemaps (and of URLs never read), not of plain pages."""
        return [r for r in self.sources if r.kind != "page"]

    def read(self, urls: Iterable[str]) -> Iterator[Article | Failure]:
        """Each page's article; each feed's or sitemap's new and changed entries' articles; or
        why one failed. What was skipped on purpose is in `skipped`, the counts in `sources`."""
        self.sources.clear()
        self.skipped.clear()
        self._entries.clear()
        self._docs.clear()
        with Fetcher(self.policy, self.robots, self.pacer) as fetcher:
            for url in dict.fromkeys(urls):
                report = SourceReport(url)
                self.sources.append(report)
                yield from self._source(fetcher, report)

    def _source(self, fetcher: Fetcher, report: SourceReport) -> Iterator[Article | Failure]:
        url = report.url
        known = self.state.source(url)
        etag = last_modified = None
        if known is not None:
            report.kind = known.kind
            article_id = article_id_for(url)
            if known.kind != "page" or self.state.present([article_id]):
                etag, last_modified = known.etag, known.last_modified
        try:
            page = fetcher.get(url, ACCEPT, etag, last_modified)
        except RobotsDisallowed as exc:
            report.robots += 1
            self.skipped.append(Skip(url, exc.reason))
            return
        except FetchError as exc:
            report.failed += 1
            yield Failure(url, exc.reason)
            return
        if page.not_modified:
            report.not_modified += 1
            if report.kind == "page":
                self.skipped.append(Skip(url, "not modified since the last run (HTTP 304)"))
            return
        report.fetched += 1
        try:
            sitemap = parse_sitemap(page)
            feed = parse_feed(page) if sitemap is None else None
        except (FeedError, SitemapError) as exc:
            report.failed += 1
            yield Failure(url, str(exc))
            return
        report.kind = "sitemap" if sitemap is not None else "feed" if feed is not None else "page"
        doc = _Doc(SourceRow(url, report.kind, None, page.etag, page.last_modified))
        self._docs.append(doc)
        if sitemap is not None:
            yield from self._sitemap(fetcher, report, sitemap, doc)
        elif feed is not None:
            items = [(entry, doc) for entry in feed.entries]
            yield from self._entries_of(fetcher, report, items, {"feed": url})
        else:
            doc.article_id = article_id_for(url)
            item = article_or_failure(lambda: page_article(page, article_id_for(url)), url)
            if isinstance(item, Failure):
                report.failed += 1
            yield item

    def _sitemap(
        self, fetcher: Fetcher, report: SourceReport, sitemap: Sitemap, doc: _Doc
    ) -> Iterator[Article | Failure]:
        if not sitemap.is_index:
            items = [(sitemap_entry(e), doc) for e in sitemap.entries]
            yield from self._entries_of(fetcher, report, items, {"sitemap": report.url})
            return
        items: list[tuple[Entry, _Doc]] = []
        for ref in sitemap.children:
            known = self.state.source(ref.loc)
            if known is not None and ref.lastmod and known.lastmod == ref.lastmod:
                report.not_modified += 1  # the index says it has not changed since it was read
                doc.children.append(_Doc(_known_row(ref.loc, report.url, known)))
                continue
            try:
                page = fetcher.get(
                    ref.loc,
                    SITEMAP_ACCEPT,
                    known.etag if known else None,
                    known.last_modified if known else None,
                )
            except FetchError as exc:
                doc.complete = False
                if isinstance(exc, RobotsDisallowed):
                    report.robots += 1
                    self.skipped.append(Skip(ref.loc, exc.reason))
                else:
                    report.failed += 1
                    yield Failure(ref.loc, exc.reason)
                continue
            row = SourceRow(
                ref.loc, "sitemap", report.url, page.etag, page.last_modified, ref.lastmod
            )
            if page.not_modified:
                report.not_modified += 1
                assert known is not None  # only a conditional request is answered 304
                row = replace(
                    row,
                    etag=page.etag or known.etag,
                    last_modified=page.last_modified or known.last_modified,
                )
                doc.children.append(_Doc(row))
                continue
            report.fetched += 1
            try:
                child = parse_sitemap(page)
            except SitemapError as exc:
                child, problem = None, str(exc)
            else:
                problem = "not a sitemap of pages (sitemap indexes inside one are not followed)"
            if child is None or child.is_index:
                doc.complete = False
                report.failed += 1
                yield Failure(ref.loc, problem)
                continue
            child_doc = _Doc(row)
            doc.children.append(child_doc)
            items.extend((sitemap_entry(e), child_doc) for e in child.entries)
        unique = list({entry.key: (entry, d) for entry, d in reversed(items)}.values())[::-1]
        yield from self._entries_of(fetcher, report, unique, {"sitemap": report.url})

    def _entries_of(
        self,
        fetcher: Fetcher,
        report: SourceReport,
        items: list[tuple[Entry, _Doc]],
        metadata: dict[str, Any],
    ) -> Iterator[Article | Failure]:
        known = self.state.entries(report.url)
        report.entries = len(items)
        changed = [known[e.key].article_id for e, _ in items if e.key in known]
        present = self.state.present(changed) if changed else set()
        for entry, doc in items:
            fingerprint = entry.fingerprint()
            prior = known.get(entry.key)
            if prior is not None and prior.entry_hash in (None, fingerprint):
                report.seen += 1
                if prior.entry_hash is None:  # remembered before fingerprints: adopt, unfetched
                    row = EntryRow(
                        report.url, entry.key, prior.article_id, entry.updated, fingerprint
                    )
                    self._entries.append((replace(row, needs_article=False), doc))
                continue
            if prior is None:
                report.new += 1
            else:
                report.updated += 1
            yield from self._entry(fetcher, report, entry, doc, prior, present, metadata)
        log.info(
            "%s %s: %d entries, %d new, %d updated",
            report.kind,
            report.url,
            report.entries,
            report.new,
            report.updated,
            extra={"source": report.url, "entries": report.entries, "new": report.new},
        )

    def _entry(
        self,
        fetcher: Fetcher,
        report: SourceReport,
        entry: Entry,
        doc: _Doc,
        prior: KnownEntry | None,
        present: set[str],
        metadata: dict[str, Any],
    ) -> Iterator[Article | Failure]:
        article_id = prior.article_id if prior else article_id_for(entry.link or entry.key)
        where = entry.link or f"{report.url} entry {entry.key}"
        row = EntryRow(report.url, entry.key, article_id, entry.updated, entry.fingerprint())
        fields: dict[str, Any] = {
            "id": article_id,
            "title": entry.title,
            "url": entry.link,
            "source": entry.source,
            "published": entry.published,
        }
        metadata = metadata | ({"author": entry.author} if entry.author else {})
        problem = "the entry links to no page"
        if entry.link:
            # Ask conditionally only for a page whose article the index still holds.
            kept = prior is not None and prior.article_id in present
            try:
                page = fetcher.get(
                    entry.link,
                    etag=prior.etag if kept and prior else None,
                    last_modified=prior.last_modified if kept and prior else None,
                )
            except RobotsDisallowed as exc:
                report.robots += 1
                self.skipped.append(Skip(entry.link, exc.reason))
                return
            except FetchError as exc:
                problem = exc.reason
            else:
                if page.not_modified:
                    report.not_modified += 1
                    assert prior is not None  # only a conditional request is answered 304
                    done = replace(
                        row,
                        etag=page.etag or prior.etag,
                        last_modified=page.last_modified or prior.last_modified,
                        needs_article=False,
                    )
                    self._entries.append((done, doc))
                    return
                report.fetched += 1
                try:
                    found = page_article(page, article_id)
                    merged = {k: v for k, v in fields.items() if v} | {"text": found.text}
                    for key in ("title", "source", "published"):
                        merged.setdefault(key, getattr(found, key))
                    article = Article(**merged, metadata=found.metadata | metadata)
                except (InputError, ValidationError, ValueError) as exc:
                    problem = str(exc)
                else:
                    self._entries.append(
                        (replace(row, etag=page.etag, last_modified=page.last_modified), doc)
                    )
                    yield article
                    return
        if entry.link and prior is not None:  # a summary must not replace the page's text
            yield _failed(report, doc, where, f"{problem}; the article indexed before is kept")
            return
        text = self._summary(entry)
        if not text:
            yield _failed(report, doc, where, f"{problem}, and the feed gives no text for it")
            return
        fallback = article_or_failure(
            lambda: Article(**fields, text=text, metadata=metadata | {"text_from": "feed"}), where
        )
        if isinstance(fallback, Failure):
            yield _failed(report, doc, fallback.where, fallback.reason)
        elif not entry.link:  # the summary is all the entry has: it is the article
            self._entries.append((row, doc))
            yield fallback
        else:  # a stand-in for the page: say so, and try the page again next run
            yield _failed(report, doc, where, f"{problem}; indexed the feed's summary instead")
            yield fallback

    @staticmethod
    def _summary(entry: Entry) -> str:
        if not entry.summary:
            return ""
        return html_to_text(entry.summary) if entry.summary_is_html else entry.summary.strip()

    def remember(self, summary: IndexSummary) -> int:
        """After the commit: remember the entries whose articles are now in the index, the
        validators of sources all of whose entries are, and this run's counts."""
        stored = set(summary.added) | set(summary.updated) | set(summary.unchanged)
        reports = {r.url: r for r in self.sources}
        rows = []
        for row, doc in self._entries:
            if row.needs_article and row.article_id not in stored:
                doc.complete = False
                reports[row.source].failed += 1  # the writer refused it (see summary.failed)
                continue
            rows.append(row)
        sources: list[SourceRow] = []
        for doc in self._docs:
            if doc.article_id is not None and doc.article_id not in stored:
                doc.complete = False
            for child in doc.children:
                sources.append(_settled(child))
            doc.complete = doc.complete and all(c.complete for c in doc.children)
            sources.append(_settled(doc))
        counters = {r.url: {c: getattr(r, c) for c in COUNTERS} for r in self.sources}
        self._entries.clear()
        self._docs.clear()
        return self.state.record(rows, sources, counters)


def _known_row(url: str, parent: str, known: KnownSource) -> SourceRow:
    return SourceRow(url, "sitemap", parent, known.etag, known.last_modified, known.lastmod)


def _failed(report: SourceReport, doc: _Doc, where: str, reason: str) -> Failure:
    """An entry not indexed from its page: counted, and its source asked for in full next run
    (a 304 would hide the entry from the retry)."""
    report.failed += 1
    doc.complete = False
    return Failure(where, reason)


def _settled(doc: _Doc) -> SourceRow:
    """The row to store: with its validators only if all it led to is in the index."""
    if doc.complete:
        return doc.row
    return replace(doc.row, etag=None, last_modified=None, lastmod=None)
