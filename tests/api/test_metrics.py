"""GET /metrics through a real `sift serve`: counters move by route template, /metrics does not
count itself, the search histogram fills, and the index gauges match /stats."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.api_server import Server, copy_index, serve

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, seeded_dir: Path) -> Iterator[Server]:
    with serve(copy_index(seeded_dir, tmp_path_factory.mktemp("metrics"))) as server:
        yield server


def scrape(api: httpx.Client) -> Samples:
    response = api.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def requests(samples: Samples, method: str, route: str, status: int) -> float:
    labels = frozenset({"method": method, "route": route, "status": str(status)}.items())
    return samples.get(("sift_http_requests_total", labels), 0.0)


def test_counters_move_by_route_template(server: Server) -> None:
    api = server.client
    before = scrape(api)
    for _ in range(2):
        assert api.get("/search", params={"q": "casualty estimates"}).status_code == 200
    assert api.get("/articles/north-korea-casualties.txt").status_code == 200
    assert api.get("/articles/no-such-article").status_code == 404
    assert api.get("/search", params={"q": ""}).status_code == 422
    after = scrape(api)

    def moved(method: str, route: str, status: int) -> float:
        return requests(after, method, route, status) - requests(before, method, route, status)

    assert moved("GET", "/search", 200) == 2
    assert moved("GET", "/search", 422) == 1
    assert moved("GET", "/articles/{article_id}", 200) == 1
    assert moved("GET", "/articles/{article_id}", 404) == 1
    routes = {dict(labels).get("route") for _, labels in after}
    assert not any(route and "north-korea" in route for route in routes)  # never the raw path
    assert "/metrics" not in routes  # scraping is not traffic
    latency = (
        "sift_http_request_duration_seconds_count",
        frozenset({"method": "GET", "route": "/search", "status": "200"}.items()),
    )
    assert after[latency] - before.get(latency, 0.0) == 2


def test_search_time_is_observed_for_searches_that_ran(server: Server) -> None:
    api = server.client
    count = ("sift_search_seconds_count", frozenset())
    total = ("sift_search_seconds_sum", frozenset())
    before = scrape(api)
    api.post("/search", json={"q": "who signed the defence pact", "k": 3})
    api.get("/search", params={"q": "x", "k": 500})  # over max_k: rejected, nothing embedded
    after = scrape(api)
    assert after[count] - before[count] == 1
    assert after[total] > before[total]


def test_index_gauges_follow_the_index(server: Server) -> None:
    api = server.client
    stats = api.get("/stats").json()
    samples = scrape(api)
    assert samples[("sift_index_articles", frozenset())] == stats["articles"] == 6
    assert samples[("sift_index_sentences", frozenset())] == stats["sentences"]
    api.post("/articles", json={"id": "m-1", "text": "One more. Two more."})
    grown = scrape(api)
    assert grown[("sift_index_articles", frozenset())] == 7
    assert grown[("sift_index_sentences", frozenset())] == stats["sentences"] + 2
