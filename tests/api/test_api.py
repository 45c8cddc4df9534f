"""The JSON API through a real `sift serve` (uvicorn) on loopback."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sift.search.engine import Sift
from sift.search.results import SearchRequest
from sift.settings import Settings

from tests.api_server import free_port, serve
from tests.helpers import SIFT


@pytest.fixture(scope="module", params=[1, 2], ids=["one-process", "two-workers"])
def api(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, seeded_dir: Path
) -> Iterator[httpx.Client]:
    """Every test here runs against one process, then against `--workers 2`: two processes over
    one index, where a write answered by one must be seen by the other."""
    copy = tmp_path_factory.mktemp("served") / "index"
    shutil.copytree(seeded_dir, copy)
    with serve(copy, "--workers", str(request.param)) as server:
        yield server.client


def test_health_and_stats(api: httpx.Client) -> None:
    health = api.get("/health").json()
    assert health["status"] == "ok" and health["articles"] == 6
    stats = api.get("/stats").json()
    assert stats["model"] == "all-MiniLM-L6-v2" and stats["dimension"] == 384


def test_get_search_equals_the_library_and_cli(api: httpx.Client, seeded: Sift) -> None:
    response = api.get("/search", params={"q": "casualty estimates"})
    assert response.status_code == 200
    body = response.json()
    expected = seeded.search(SearchRequest(q="casualty estimates")).model_dump(mode="json")
    for got, want in zip(body["results"], expected["results"], strict=True):
        assert got == {**want, "score": pytest.approx(want["score"], abs=1e-3)}
    top3 = " ".join(r["passage"] for r in body["results"][:3])
    assert "at least 100 fatalities" in top3 and "nearly 1,000" in top3


def test_post_search_equals_get(api: httpx.Client) -> None:
    params = {"q": "who signed the defence pact", "k": 3, "context": 0}
    got = api.get("/search", params=params).json()
    posted = api.post("/search", json=params).json()
    assert [r["sentence"] for r in posted["results"]] == [r["sentence"] for r in got["results"]]
    assert len(posted["results"]) == 3
    # No context: a passage is its hit sentences (adjacent hits are one passage).
    for r in posted["results"]:
        assert (r["passage_start"], r["passage_end"]) == (
            r["hits"][0]["start"],
            r["hits"][-1]["end"],
        )


def test_articles_add_get_update_delete(api: httpx.Client) -> None:
    article = {
        "id": "api-1",
        "title": "Harbour reopens",
        "text": "The harbour reopened on Monday after the storm. Ferries resumed service.",
        "source": "Test Wire",
        "published": "2025-03-01",
        "metadata": {"desk": "local"},
    }
    added = api.post("/articles", json=article).json()
    assert added["added"] == ["api-1"] and added["sentences"] == 2
    assert api.post("/articles", json=[article]).json()["unchanged"] == ["api-1"]
    hits = api.get("/search", params={"q": "ferries running again after storm", "k": 1}).json()
    assert hits["results"][0]["article_id"] == "api-1"
    stored = api.get("/articles/api-1").json()
    assert stored["metadata"] == {"desk": "local"} and stored["sentences"] == 2
    updated = api.post("/articles", json={**article, "text": "The harbour is still closed."}).json()
    assert updated["updated"] == ["api-1"]
    assert api.get("/articles/api-1").json()["sentences"] == 1
    assert api.delete("/articles/api-1").json()["removed"] == ["api-1"]
    gone = api.get("/articles/api-1")
    assert gone.status_code == 404 and gone.json()["error"] == "not_found"
    assert api.delete("/articles/api-1").status_code == 404


def test_articles_with_ids_that_look_like_paths(api: httpx.Client) -> None:
    api.post("/articles", json={"id": "wire/2025/a.txt", "text": "Path-like ids work."})
    assert api.get("/articles/wire/2025/a.txt").json()["id"] == "wire/2025/a.txt"
    assert api.delete("/articles/wire/2025/a.txt").status_code == 200


@pytest.mark.parametrize(
    ("method", "url", "payload", "status", "needle"),
    [
        ("GET", "/search", {"q": ""}, 422, "q"),
        ("GET", "/search", {"q": "   "}, 422, "query is empty"),
        ("GET", "/search", {"q": "x", "k": 0}, 422, "k"),
        ("GET", "/search", {"q": "x", "k": 5000}, 422, "k"),
        ("GET", "/search", {"q": "x", "k": 500}, 400, "k must be between 1 and 100"),
        ("GET", "/search", {"q": "x", "context": -2}, 422, "context"),
        ("GET", "/search", {}, 422, "q"),
        ("POST", "/search", {"k": 3}, 422, "q"),
        ("POST", "/articles", {"title": "no text"}, 422, "text"),
        ("POST", "/articles", {"text": "   "}, 422, "article has no text"),
        ("POST", "/articles", {"text": "x", "published": "yesterday"}, 422, "ISO date"),
        ("POST", "/articles", [], 422, "no articles"),
        ("GET", "/articles/nope", None, 404, "no article"),
    ],
)
def test_bad_requests_get_4xx_json(
    api: httpx.Client, method: str, url: str, payload: object, status: int, needle: str
) -> None:
    response = api.request(
        method, url, **({"params": payload} if method == "GET" else {"json": payload})
    )
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "message"}
    assert needle in body["message"]


def test_malformed_json_body_is_a_4xx(api: httpx.Client) -> None:
    response = api.post(
        "/articles", content=b'{"text": ', headers={"content-type": "application/json"}
    )
    assert response.status_code == 422 and response.json()["error"] == "invalid_request"


def test_openapi_documents_every_route(api: httpx.Client) -> None:
    schema = api.get("/openapi.json").json()
    ops = {op["operationId"] for path in schema["paths"].values() for op in path.values()}
    assert ops == {
        "health",
        "stats",
        "search",
        "search_post",
        "search_batch",
        "add_articles",
        "get_article",
        "similar_articles",
        "delete_article",
    }
    assert {"SearchResponse", "Hit", "Article", "IndexResult", "ErrorBody"} <= set(
        schema["components"]["schemas"]
    )
    assert api.get("/docs").status_code == 200


def test_batch_search_over_http(api: httpx.Client) -> None:
    searches = [{"q": "casualty estimates", "k": 2}, {"q": "drones", "mode": "keyword", "k": 1}]
    batch = api.post("/search/batch", json={"searches": searches}).json()["results"]
    singles = [api.post("/search", json=s).json() for s in searches]
    strip = lambda r: {k: v for k, v in r.items() if k != "took_ms"}  # noqa: E731
    assert [strip(r) for r in batch] == [strip(r) for r in singles]
    empty = api.post("/search/batch", json={"searches": []})
    assert empty.status_code == 422 and empty.json()["error"] == "invalid_request"


def test_filters_and_modes_over_http(api: httpx.Client) -> None:
    got = api.get(
        "/search", params={"q": "troops", "source": "sift sample", "since": "2025-01-01", "k": 5}
    ).json()
    assert {r["article_id"] for r in got["results"]} == {"brief-drones"}
    grouped = api.get("/search", params={"q": "defence pact", "group": "article", "k": 2}).json()
    assert len(grouped["articles"]) == 2 and grouped["articles"][0]["passages"]
    bad = api.get("/search", params={"q": "x", "mode": "fuzzy"})
    assert bad.status_code == 422 and "mode" in bad.json()["message"]


def test_server_without_an_index_starts_and_creates_one(tmp_path: Path) -> None:
    index = tmp_path / "fresh"
    port = free_port()
    proc = subprocess.Popen(
        [SIFT, "serve", "--port", str(port), "--index", str(index)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            deadline = time.monotonic() + 120
            while True:
                try:
                    health = client.get("/health")
                    break
                except httpx.TransportError:
                    assert time.monotonic() < deadline and proc.poll() is None
                    time.sleep(0.3)
            assert health.json()["status"] == "empty"
            missing = client.get("/search", params={"q": "anything"})
            assert missing.status_code == 404 and missing.json()["error"] == "index_not_found"
            client.post("/articles", json={"id": "first", "text": "The first article ever."})
            results = client.get("/search", params={"q": "first article"}).json()["results"]
            assert results[0]["article_id"] == "first"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert Sift(Settings(index=index)).stats().articles == 1
