"""Fetching web pages and feeds politely: a timeout, retries with back-off, a size cap, a
User-Agent that says who is asking, robots.txt obeyed, a pause between two requests to one host
(longer when robots.txt asks for it), and conditional requests that a 304 answers for free."""

from __future__ import annotations

import codecs
import logging
import re
import threading
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from importlib.metadata import PackageNotFoundError, version
from types import TracebackType
from urllib.parse import urlsplit

try:
    import httpx
except ImportError as exc:  # pragma: no cover - the `web` extra is not installed
    raise ImportError("fetching URLs needs the web extra: pip install 'sift-search[web]'") from exc

from sift.errors import FetchError, RobotsDisallowed
from sift.index.robots import RobotsCache, RobotsRules
from sift.settings import Settings

log = logging.getLogger("sift.web")

try:
    VERSION = version("sift-search")
except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
    VERSION = "0+unknown"
#: Says what is fetching and where to read about it; .invalid: no real host is named.
USER_AGENT = f"sift/{VERSION} (+https://sift.invalid/bot; news passage indexer)"
#: Answers worth asking again: the server is overloaded or briefly broken.
RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
MAX_REDIRECTS = 5


@dataclass(frozen=True)
class FetchPolicy:
    """How hard to try and how much to take. `timeout` bounds connecting and each wait for bytes;
    a whole body must arrive within 3x that, so a server that drips bytes cannot hold us."""

    timeout: float = 10.0
    retries: int = 3
    backoff: float = 1.0
    max_backoff: float = 60.0
    max_bytes: int = 5 * 1024 * 1024
    delay: float = 0.5
    user_agent: str = USER_AGENT
    obey_robots: bool = True
    robots_lifetime: float = 3600.0

    @classmethod
    def from_settings(cls, settings: Settings) -> FetchPolicy:
        return cls(
            timeout=settings.web_timeout,
            retries=settings.web_retries,
            backoff=settings.web_backoff,
            max_bytes=settings.web_max_bytes,
            delay=settings.web_delay,
            user_agent=settings.web_user_agent or USER_AGENT,
            obey_robots=not settings.web_ignore_robots,
            robots_lifetime=settings.web_robots_lifetime,
        )


@dataclass(frozen=True)
class Page:
    """A fetched resource: its body as bytes, with what the server said about it. A 304 answer
    to a conditional request has no body: `not_modified`."""

    url: str  # as asked for
    final_url: str  # after redirects
    status: int
    media_type: str  # "text/html", lower case, without parameters; "" when not given
    charset: str | None
    body: bytes
    etag: str | None = None
    last_modified: str | None = None

    @property
    def not_modified(self) -> bool:
        return self.status == 304

    def text(self) -> str:
        """The body decoded: the header's charset, else the document's own declaration."""
        charset = self.charset or _declared_charset(self.body[:2048])
        if self.body.startswith(codecs.BOM_UTF8):
            charset = "utf-8-sig"
        return self.body.decode(_known(charset) or "utf-8", errors="replace")


_META_CHARSET = re.compile(rb"""<meta[^>]+charset=["']?([\w.:-]+)""", re.IGNORECASE)
_XML_ENCODING = re.compile(rb"""<\?xml[^>]+encoding=["']([\w.:-]+)""", re.IGNORECASE)


def _declared_charset(head: bytes) -> str | None:
    match = _XML_ENCODING.search(head) or _META_CHARSET.search(head)
    return match.group(1).decode("ascii") if match else None


def _known(charset: str | None) -> str | None:
    if not charset:
        return None
    try:
        return codecs.lookup(charset).name
    except LookupError:
        return None


class HostPacer:
    """When each host was last asked: kept apart from a Fetcher so that the pause holds across
    the rounds of `sift watch`, each with its own client. Thread-safe."""

    def __init__(self) -> None:
        self._last_request: dict[str, float] = {}
        self._lock = threading.Lock()

    def wait(self, url: str, delay: float) -> None:
        """Sleep until `delay` seconds have passed since the host's previous request."""
        host = urlsplit(url).netloc
        with self._lock:
            now = time.monotonic()
            ready = self._last_request.get(host, 0.0) + delay
            self._last_request[host] = max(now, ready)
        if ready > now:
            time.sleep(ready - now)


class Fetcher:
    """One HTTP client for a run: connections are reused, robots.txt is read once per host and
    obeyed (unless the policy says not to), requests to one host are spaced by `policy.delay` or
    the host's Crawl-delay, whichever is longer. Use as a context manager. Thread-safe.

    `robots` and `pacer` may be shared by fetchers that follow one another (`sift watch`)."""

    def __init__(
        self,
        policy: FetchPolicy | None = None,
        robots: RobotsCache | None = None,
        pacer: HostPacer | None = None,
    ):
        self.policy = policy or FetchPolicy()
        self.robots = robots or RobotsCache(self.policy.user_agent, self.policy.robots_lifetime)
        self.pacer = pacer or HostPacer()
        # Redirects are followed here, one hop at a time, so robots.txt is asked about each.
        self.client = httpx.Client(
            headers={"User-Agent": self.policy.user_agent, "Accept-Encoding": "gzip, deflate"},
            timeout=httpx.Timeout(self.policy.timeout),
            follow_redirects=False,
        )

    def __enter__(self) -> Fetcher:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self.client.close()

    def get(
        self,
        url: str,
        accept: str = "*/*",
        etag: str | None = None,
        last_modified: str | None = None,
    ) -> Page:
        """The resource at `url`, trying again after network errors, 429 and 5xx answers.
        With `etag` or `last_modified` (of an earlier answer) the request is conditional: an
        unchanged resource comes back as a Page that is `not_modified`, with no body.
        Raises RobotsDisallowed, before asking, for a URL robots.txt keeps us from."""
        headers = {"Accept": accept}
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        return self._get(url, headers, obey_robots=self.policy.obey_robots)

    def robots_rules(self, url: str) -> RobotsRules:
        """The robots.txt rules of `url`'s host, fetched once per lifetime."""
        return self.robots.rules(url, self._get_robots)

    def delay_for(self, url: str) -> float:
        """Seconds kept between two requests to `url`'s host."""
        rules = self.robots.cached(url) if self.policy.obey_robots else None
        return max(self.policy.delay, rules.delay() if rules is not None else 0.0)

    def _get_robots(self, robots_url: str) -> tuple[int, bytes]:
        page = self._get(robots_url, {"Accept": "text/plain"}, obey_robots=False)
        return page.status, page.body

    def _get(self, url: str, headers: dict[str, str], obey_robots: bool) -> Page:
        if urlsplit(url).scheme not in ("http", "https"):
            raise FetchError(url, "only http and https URLs can be fetched")
        attempt = 0
        while True:
            try:
                return self._get_once(url, headers, obey_robots)
            except _Retryable as exc:
                if attempt >= self.policy.retries:
                    raise FetchError(url, f"{exc.reason} (tried {attempt + 1} times)") from None
                wait = min(exc.wait or self.policy.backoff * 2**attempt, self.policy.max_backoff)
                log.warning(
                    "retrying %s in %.1f s: %s",
                    url,
                    wait,
                    exc.reason,
                    extra={"url": url, "attempt": attempt + 1, "wait_s": round(wait, 2)},
                )
                time.sleep(wait)
                attempt += 1

    def _check_robots(self, url: str, obey: bool) -> None:
        if not obey:
            return
        rules = self.robots_rules(url)
        if not rules.allows(url):
            raise RobotsDisallowed(url, rules.why_not(url))

    def _get_once(self, url: str, headers: dict[str, str], obey_robots: bool) -> Page:
        hop = url
        try:
            for _ in range(MAX_REDIRECTS + 1):
                self._check_robots(hop, obey_robots)
                self.pacer.wait(hop, self.delay_for(hop))
                started = time.monotonic()
                with self.client.stream("GET", hop, headers=headers) as response:
                    if response.next_request is not None:  # a redirect: ask about the next hop
                        hop = str(response.next_request.url)
                        if urlsplit(hop).scheme not in ("http", "https"):
                            raise FetchError(url, f"redirected to a non-web URL: {hop}")
                        continue
                    if response.status_code in RETRY_STATUS:
                        raise _Retryable(_status(response), _retry_after(response))
                    if response.status_code >= 400:
                        raise FetchError(url, _status(response), response.status_code)
                    body = self._read_capped(url, response, started)
                    break
            else:
                raise FetchError(url, f"more than {MAX_REDIRECTS} redirects")
        except httpx.TimeoutException:
            raise _Retryable(f"timed out after {self.policy.timeout:g} s") from None
        except httpx.TransportError as exc:
            raise _Retryable(f"network error: {exc.__class__.__name__}: {exc}") from None
        media_type, _, params = response.headers.get("content-type", "").partition(";")
        charset = re.search(r"charset=[\"']?([\w.:-]+)", params, re.IGNORECASE)
        page = Page(
            url=url,
            final_url=str(response.url),
            status=response.status_code,
            media_type=media_type.strip().lower(),
            charset=charset.group(1) if charset else None,
            body=body,
            etag=response.headers.get("etag"),
            last_modified=response.headers.get("last-modified"),
        )
        log.info(
            "not modified %s" if page.not_modified else "fetched %s",
            url,
            extra={
                "url": url,
                "status": page.status,
                "bytes": len(body),
                "ms": round((time.monotonic() - started) * 1000),
            },
        )
        return page

    def _read_capped(self, url: str, response: httpx.Response, started: float) -> bytes:
        cap = self.policy.max_bytes
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > cap:
            raise FetchError(url, f"body is {int(declared):,} bytes, over the limit of {cap:,}")
        deadline = started + 3 * self.policy.timeout
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_bytes():
            size += len(chunk)
            if size > cap:  # counted after decompression: a small gzip cannot blow up memory
                raise FetchError(url, f"body is over the limit of {cap:,} bytes")
            if time.monotonic() > deadline:
                raise _Retryable(f"body took over {3 * self.policy.timeout:g} s to arrive")
            chunks.append(chunk)
        return b"".join(chunks)


class _Retryable(Exception):
    def __init__(self, reason: str, wait: float | None = None):
        super().__init__(reason)
        self.reason = reason
        self.wait = wait


def _status(response: httpx.Response) -> str:
    return f"HTTP {response.status_code} {response.reason_phrase}".rstrip()


def _retry_after(response: httpx.Response) -> float | None:
    """Retry-After in seconds (a number or an HTTP date), as the server asked; None if absent."""
    value = response.headers.get("retry-after", "").strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        return max(parsedate_to_datetime(value).timestamp() - time.time(), 0.0)
    except (TypeError, ValueError):
        return None
