"""Sitemaps (sitemaps.org) and Google News sitemaps as sources of articles: a `<urlset>` lists
pages, with `lastmod` and, in a news sitemap, `news:title`, `news:publication_date` and the
publication's name; a `<sitemapindex>` lists sitemaps, each with its `lastmod`.

The XML comes from other people's servers: lxml parses it with entities left unresolved, no DTD
loaded and no network, so a hostile file cannot read local files, call out, or blow up."""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from lxml import etree
from sift.errors import SitemapError
from sift.index.web import Page

#: Elements are matched by local name: sitemaps in the wild get their namespaces wrong.
SITEMAP_ROOTS = frozenset({"urlset", "sitemapindex"})
MAX_INFLATED = 50 * 1024 * 1024  # sitemaps.org caps an uncompressed sitemap at 50 MB


@dataclass(frozen=True)
class SitemapEntry:
    """One `<url>` of a sitemap."""

    loc: str
    lastmod: str | None = None
    title: str | None = None  # news:title
    published: str | None = None  # news:publication_date
    source: str | None = None  # news:publication/news:name


@dataclass(frozen=True)
class SitemapRef:
    """One `<sitemap>` of a sitemap index."""

    loc: str
    lastmod: str | None = None


@dataclass(frozen=True)
class Sitemap:
    url: str
    is_index: bool
    entries: list[SitemapEntry]  # a urlset's pages
    children: list[SitemapRef]  # a sitemap index's sitemaps


_PARSER_OPTIONS = {
    "resolve_entities": False,
    "no_network": True,
    "load_dtd": False,
    "dtd_validation": False,
    "huge_tree": False,
    "remove_comments": True,
    "remove_pis": True,
}


def _inflated(body: bytes) -> bytes:
    """A gzipped sitemap (sitemap.xml.gz served as a file), unpacked within a bound."""
    if not body.startswith(b"\x1f\x8b"):
        return body
    inflater = zlib.decompressobj(wbits=31)
    try:
        data = inflater.decompress(body, MAX_INFLATED)
    except zlib.error as exc:
        raise SitemapError(f"not a readable gzip file: {exc}") from None
    if inflater.unconsumed_tail:
        raise SitemapError(f"unpacks to over {MAX_INFLATED:,} bytes")
    return data


#: A root element of a sitemap near the start (after the XML declaration and comments).
_SITEMAP_ROOT = re.compile(rb"<([\w.-]+:)?(urlset|sitemapindex)[\s>/]")


def parse_sitemap(page: Page) -> Sitemap | None:
    """The sitemap in `page`, or None when it holds no sitemap."""
    body = _inflated(page.body)
    head = body[:4096].lstrip(b"\xef\xbb\xbf \t\r\n")
    if not head.startswith(b"<") or not _SITEMAP_ROOT.search(head):
        return None
    try:
        root = etree.fromstring(body, etree.XMLParser(**_PARSER_OPTIONS))
    except etree.XMLSyntaxError as exc:
        raise SitemapError(f"not a readable sitemap: {exc}") from None
    name = etree.QName(root).localname
    if name not in SITEMAP_ROOTS:
        return None
    if name == "sitemapindex":
        refs: dict[str, SitemapRef] = {}
        for item in _children(root, "sitemap"):
            if loc := _text(item, "loc"):
                refs.setdefault(loc, SitemapRef(loc, _text(item, "lastmod")))
        return Sitemap(page.url, True, [], list(refs.values()))
    entries: dict[str, SitemapEntry] = {}
    for item in _children(root, "url"):
        loc = _text(item, "loc")
        if not loc:
            continue
        news = next(_children(item, "news"), None)
        publication = next(_children(news, "publication"), None) if news is not None else None
        entries.setdefault(
            loc,
            SitemapEntry(
                loc=loc,
                lastmod=_date(_text(item, "lastmod")),
                title=_text(news, "title") if news is not None else None,
                published=_date(_text(news, "publication_date")) if news is not None else None,
                source=_text(publication, "name") if publication is not None else None,
            ),
        )
    return Sitemap(page.url, False, list(entries.values()), [])


def _children(element: etree._Element, localname: str) -> Iterator[etree._Element]:
    return (
        child
        for child in element
        if isinstance(child.tag, str) and etree.QName(child).localname == localname
    )


def _text(element: etree._Element | None, localname: str) -> str | None:
    if element is None:
        return None
    child = next(_children(element, localname), None)
    text = (child.text or "").strip() if child is not None else ""
    return text or None


def _date(value: str | None) -> str | None:
    """A W3C date-time as ISO 8601, or None when it is not one (sift will not guess)."""
    if not value:
        return None
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return value
