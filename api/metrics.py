"""Prometheus metrics: requests by route template, search time, and the index's size.

Each app has a registry of its own, so two apps in one process (tests) do not collide.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sift.errors import IndexNotFound, StoreError
from sift.search.engine import Sift

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class IndexSize(Collector):
    """Reads the index's size when scraped, so the numbers are never stale."""

    def __init__(self, engine: Sift):
        self.engine = engine

    def collect(self) -> Iterable[Metric]:
        try:
            stats = self.engine.stats()
            articles, sentences = stats.articles, stats.sentences
        except IndexNotFound:
            articles = sentences = 0
        except StoreError:
            return  # no numbers beats wrong numbers; /health says what is wrong
        yield GaugeMetricFamily("sift_index_articles", "Articles in the index.", value=articles)
        yield GaugeMetricFamily("sift_index_sentences", "Sentences in the index.", value=sentences)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._size: IndexSize | None = None
        labels = ("method", "route", "status")
        self.requests = Counter(
            "sift_http_requests", "HTTP requests served.", labels, registry=self.registry
        )
        self.latency = Histogram(
            "sift_http_request_duration_seconds",
            "Time to serve an HTTP request.",
            labels,
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.search_seconds = Histogram(
            "sift_search_seconds",
            "Time in the engine's search: embedding the query, then ranking.",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )

    def watch(self, engine: Sift) -> None:
        """Report this engine's index size (replacing the last engine's, after a restart)."""
        if self._size is not None:
            self.registry.unregister(self._size)
        self._size = IndexSize(engine)
        self.registry.register(self._size)

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route, str(status)).observe(seconds)

    @contextmanager
    def timing_search(self) -> Iterator[None]:
        """Observes successful searches only: a rejected request embeds nothing."""
        started = time.perf_counter()
        yield
        self.search_seconds.observe(time.perf_counter() - started)

    def render(self) -> bytes:
        return generate_latest(self.registry)
