"""A small news site on 127.0.0.1 for the web and feed tests: article pages with navigation,
scripts and footers around the story, RSS and Atom feeds, news sitemaps and sitemap indexes,
resources that answer conditional requests, and endpoints that misbehave (slow, flaky,
oversized). It counts the requests for each path and keeps every request with its headers."""

from __future__ import annotations

import gzip
import hashlib
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from html import escape
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

Route = Callable[["Request"], tuple[int, dict[str, str], bytes]]


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    count: int  # how many times this path was asked for, this one included
    at: float = 0.0  # time.monotonic() when it arrived


@dataclass
class Story:
    slug: str
    title: str
    published: str  # RFC 822, as RSS has it
    iso: str
    paragraphs: list[str]
    summary: str


STORIES = [
    Story(
        "pact",
        "Leaders sign a mutual defence pact",
        "Wed, 19 Jun 2024 08:30:00 GMT",
        "2024-06-19",
        [
            "The two leaders signed a mutual defence pact in Pyongyang on Wednesday, pledging "
            "to come to each other's aid if either country is attacked.",
            "Officials described the agreement as the most significant between the two "
            "countries in decades, and analysts said it could reshape security in the region.",
            "The ceremony followed a day of talks in which both sides praised their growing "
            "cooperation in trade, energy and military technology.",
        ],
        "Two leaders sign a defence pact.",
    ),
    Story(
        "drones",
        "Cheap drones reshape the battlefield",
        "Tue, 18 Jun 2024 14:00:00 GMT",
        "2024-06-18",
        [
            "Small commercial drones costing a few hundred dollars are now destroying armoured "
            "vehicles worth millions, commanders on the front line said this week.",
            "Both armies have set up workshops that assemble thousands of the aircraft every "
            "month, fitting them with grenades and simple cameras.",
            "Military planners abroad are studying the conflict closely to learn how to defend "
            "against swarms of inexpensive flying weapons.",
        ],
        "Commercial drones change the war.",
    ),
    Story(
        "harvest",
        "Farmers bring in a record wheat harvest",
        "Thu, 20 Jun 2024 06:00:00 GMT",
        "2024-06-20",
        [
            "Farmers across the plains brought in the largest wheat harvest in a decade after "
            "an unusually wet spring and a warm, dry early summer.",
            "Grain prices fell on the news, and exporters said ports were already booking "
            "extra ships to carry the surplus overseas before the autumn.",
            "Agricultural economists warned that lower prices could squeeze smaller farms that "
            "borrowed heavily to buy fertiliser last year.",
        ],
        "The wheat harvest is the best in ten years.",
    ),
]


def article_page(story: Story) -> bytes:
    """A page as news sites make them: the story inside menus, scripts, asides and footers."""
    body = "\n".join(f"      <p>{escape(p)}</p>" for p in story.paragraphs)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>{escape(story.title)} | The Daily Planet</title>
  <meta property="og:site_name" content="The Daily Planet">
  <meta name="author" content="Lois Lane">
  <meta property="article:published_time" content="{story.iso}T08:00:00Z">
  <script>window.dataLayer = [{{"event": "pageview", "section": "world"}}];</script>
  <style>body {{ font-family: serif; }} nav a {{ margin: 0 1em; }}</style>
</head>
<body>
  <div class="cookie-banner">We use cookies to improve your experience. Accept all cookies</div>
  <header>
    <nav><a href="/">Home</a> <a href="/world/">World</a> <a href="/business/">Business</a>
      <a href="/sport/">Sport</a> <a href="/subscribe">Subscribe today for unlimited access</a>
    </nav>
  </header>
  <main>
    <article>
      <h1>{escape(story.title)}</h1>
      <p class="byline">By Lois Lane, <time datetime="{story.iso}">{story.iso}</time></p>
{body}
    </article>
    <aside><h2>Most read</h2><ul><li><a href="/x">Celebrity chef opens a new
      restaurant</a></li><li><a href="/y">Ten tips for a better night's sleep</a></li></ul>
    </aside>
  </main>
  <footer><p>Copyright 2024 The Daily Planet. All rights reserved. Privacy policy. Terms of
    use. Contact us.</p></footer>
  <script src="/static/analytics.js"></script>
</body>
</html>
""".encode()


def rss(base: str, stories: list[Story]) -> bytes:
    items = "\n".join(
        f"""    <item>
      <title>{escape(s.title)}</title>
      <link>{base}/world/{s.slug}.html</link>
      <guid isPermaLink="false">planet-{s.slug}</guid>
      <pubDate>{s.published}</pubDate>
      <description>{escape(f"<p>{s.summary}</p>")}</description>
    </item>"""
        for s in stories
    )
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0">
  <channel>
    <title>The Daily Planet: World</title>
    <link>{base}/world/</link>
    <description>World news from the Daily Planet</description>
{items}
  </channel>
</rss>
""".encode()


def atom(entries: list[tuple[str, str, str, str]]) -> bytes:
    """Entries of (id, title, relative link, summary); links resolve against the feed's URL."""
    body = "\n".join(
        f"""  <entry>
    <id>{escape(entry_id)}</id>
    <title>{escape(title)}</title>
    <link rel="alternate" href="{escape(link)}"/>
    <updated>2024-06-21T09:00:00Z</updated>
    <summary type="html">{escape(f"<p>{summary}</p>")}</summary>
  </entry>"""
        for entry_id, title, link, summary in entries
    )
    return f"""<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom">
  <title>Planet Wire</title>
  <id>urn:planet:wire</id>
  <updated>2024-06-21T09:00:00Z</updated>
{body}
</feed>
""".encode()


@dataclass
class Site:
    base: str = ""
    routes: dict[str, Route] = field(default_factory=dict)
    hits: Counter[str] = field(default_factory=Counter)
    agents: list[str] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str) -> str:
        return self.base + path

    def page(self, path: str, body: bytes, content_type: str = "text/html; charset=utf-8") -> None:
        self.routes[path] = lambda _: (200, {"Content-Type": content_type}, body)

    def asked(self, path: str) -> list[Request]:
        return [r for r in self.requests if r.path == path]

    def _answer(self, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        with self._lock:
            self.hits[path] += 1
            self.agents.append(headers.get("User-Agent", ""))
            request = Request(path, headers, self.hits[path], time.monotonic())
            self.requests.append(request)
        route = self.routes.get(path)
        if route is None:
            return 404, {"Content-Type": "text/html"}, b"<h1>Not found</h1>"
        return route(request)


def _handler(site: Site) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, headers, body = site._answer(self.path, dict(self.headers))
            try:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                if "Content-Length" not in headers and not headers.get("X-No-Length"):
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (a timeout test): nothing to tell it

        def log_message(self, *args: object) -> None:
            pass

    return Handler


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass


@contextmanager
def serve(site: Site) -> Iterator[Site]:
    server = _Server(("127.0.0.1", 0), _handler(site))
    site.base = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield site
    finally:
        server.shutdown()
        server.server_close()


def slow(seconds: float, body: bytes = b"<p>late</p>") -> Route:
    def route(_: Request) -> tuple[int, dict[str, str], bytes]:
        time.sleep(seconds)
        return 200, {"Content-Type": "text/html"}, body

    return route


def failing_first(times: int, body: bytes, status: int = 503) -> Route:
    """`status` for the first `times` requests, then the page."""

    def route(request: Request) -> tuple[int, dict[str, str], bytes]:
        if request.count <= times:
            return status, {"Content-Type": "text/plain", "Retry-After": "0"}, b"busy"
        return 200, {"Content-Type": "text/html; charset=utf-8"}, body

    return route


@dataclass
class Versioned:
    """A resource with an ETag and a Last-Modified date that answers conditional requests with
    304; `change()` gives it a new body (and so new validators). Counts its 304 answers."""

    body: bytes
    content_type: str = "text/html; charset=utf-8"
    modified: int = 1718870400  # 2024-06-20T08:00:00Z
    not_modified: int = 0

    @property
    def etag(self) -> str:
        return '"' + hashlib.sha256(self.body).hexdigest()[:16] + '"'

    @property
    def last_modified(self) -> str:
        return time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(self.modified))

    def change(self, body: bytes) -> None:
        self.body = body
        self.modified += 3600

    def __call__(self, request: Request) -> tuple[int, dict[str, str], bytes]:
        validators = {"ETag": self.etag, "Last-Modified": self.last_modified}
        given = request.headers.get("If-None-Match")
        since = request.headers.get("If-Modified-Since")
        if (given == self.etag) if given is not None else (since == self.last_modified):
            self.not_modified += 1
            return 304, validators, b""
        return 200, {"Content-Type": self.content_type, **validators}, self.body


def news_sitemap(base: str, stories: list[Story], lastmod: str = "2024-06-20T09:00:00Z") -> bytes:
    """A Google News sitemap of the stories' pages under /world/."""
    urls = "\n".join(
        f"""  <url>
    <loc>{base}/world/{s.slug}.html</loc>
    <lastmod>{lastmod}</lastmod>
    <news:news>
      <news:publication><news:name>Planet News</news:name><news:language>en</news:language>
      </news:publication>
      <news:publication_date>{s.iso}T07:15:00+00:00</news:publication_date>
      <news:title>{escape(s.summary)}</news:title>
    </news:news>
  </url>"""
        for s in stories
    )
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"
        xmlns:news="http://www.google.com/schemas/sitemap-news/0.9">
{urls}
</urlset>
""".encode()


def sitemap_index(base: str, sitemaps: list[tuple[str, str]]) -> bytes:
    """A sitemap index of (path, lastmod)."""
    items = "\n".join(
        f"  <sitemap><loc>{base}{path}</loc><lastmod>{lastmod}</lastmod></sitemap>"
        for path, lastmod in sitemaps
    )
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">
{items}
</sitemapindex>
""".encode()


def gzipped(body: bytes) -> bytes:
    return gzip.compress(body)
