"""robots.txt, as a publisher writes it for crawlers: fetched once per host, kept for a
lifetime, read with protego (Scrapy's parser), matched on the product token of our User-Agent.

Unavailable files follow RFC 9309: a 4xx answer (no robots.txt) allows everything; a server
error or a network failure disallows everything until the file can be read."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from sift.errors import FetchError

try:
    from protego import Protego
except ImportError as exc:  # pragma: no cover - the `web` extra is not installed
    raise ImportError(
        "reading robots.txt needs the web extra: pip install 'sift-search[web]'"
    ) from exc

log = logging.getLogger("sift.web")

#: The most a robots.txt may weigh; RFC 9309 asks crawlers to read at least 500 KiB.
MAX_ROBOTS_BYTES = 512 * 1024


def agent_token(user_agent: str) -> str:
    """The product token robots.txt groups are matched on: "sift" of "sift/0.1 (+url)". The
    whole header would also match groups named after words of its comment ("bot", "news")."""
    token = user_agent.strip().split("/", 1)[0].split(None, 1)
    return token[0].lower() if token else "sift"


@dataclass(frozen=True)
class RobotsRules:
    """What one host's robots.txt says to us. `parser` is None when it says nothing
    (absent: everything allowed) and `unreachable` names why it could not be read."""

    url: str
    parser: Protego | None
    token: str
    unreachable: str | None = None

    def allows(self, url: str) -> bool:
        if self.unreachable is not None:
            return False
        return self.parser is None or self.parser.can_fetch(url, self.token)

    def delay(self) -> float:
        """Seconds between two requests to the host: Crawl-delay, or what Request-rate means."""
        if self.parser is None:
            return 0.0
        delay = self.parser.crawl_delay(self.token) or 0.0
        rate = self.parser.request_rate(self.token)
        if rate is not None and rate.requests > 0:
            delay = max(delay, rate.seconds / rate.requests)
        return float(delay)

    def why_not(self, url: str) -> str:
        if self.unreachable is not None:
            return f"{self.url} could not be read ({self.unreachable}), so nothing is fetched"
        return f"disallowed by {self.url} for user agent {self.token!r}"


#: Fetches a robots.txt: the (status, body) of the answer; raises FetchError when there is none.
RobotsGetter = Callable[[str], tuple[int, bytes]]


class RobotsCache:
    """robots.txt rules by host (scheme and authority), each kept `lifetime` seconds. One cache
    can outlive many fetchers (the rounds of `sift watch`). Thread-safe."""

    def __init__(self, user_agent: str, lifetime: float = 3600.0):
        self.token = agent_token(user_agent)
        self.lifetime = lifetime
        self._rules: dict[str, tuple[RobotsRules, float]] = {}
        self._lock = threading.Lock()
        self._host_locks: dict[str, threading.Lock] = {}

    @staticmethod
    def robots_url(url: str) -> str:
        parts = urlsplit(url)
        return urlunsplit((parts.scheme, parts.netloc, "/robots.txt", "", ""))

    def cached(self, url: str) -> RobotsRules | None:
        """The host's rules if known and fresh; fetches nothing."""
        key = self.robots_url(url)
        with self._lock:
            entry = self._rules.get(key)
        if entry is None or entry[1] < time.monotonic():
            return None
        return entry[0]

    def rules(self, url: str, get: RobotsGetter) -> RobotsRules:
        """The rules for `url`'s host, fetched with `get` when not cached or expired."""
        key = self.robots_url(url)
        with self._lock:
            host_lock = self._host_locks.setdefault(key, threading.Lock())
        with host_lock:  # one fetch per host, however many threads ask
            known = self.cached(url)
            if known is not None:
                return known
            rules = self._read(key, get)
            with self._lock:
                self._rules[key] = (rules, time.monotonic() + self.lifetime)
            return rules

    def _read(self, robots_url: str, get: RobotsGetter) -> RobotsRules:
        try:
            status, body = get(robots_url)
        except FetchError as exc:
            if exc.status is not None and 400 <= exc.status < 500:
                return RobotsRules(robots_url, None, self.token)
            log.warning(
                "cannot read %s: %s; fetching nothing from that host",
                robots_url,
                exc.reason,
                extra={"url": robots_url},
            )
            return RobotsRules(robots_url, None, self.token, unreachable=exc.reason)
        if not 200 <= status < 300:
            return RobotsRules(robots_url, None, self.token)
        text = body[:MAX_ROBOTS_BYTES].decode("utf-8", errors="replace")
        return RobotsRules(robots_url, Protego.parse(text), self.token)
