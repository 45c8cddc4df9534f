"""The API's guard rails through a real `sift serve`: the key, CORS, size limits, request ids,
JSON logs, and a schemathesis run against the app's own OpenAPI document."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance
from sift.api.app import create_app
from sift.settings import Settings

from tests.api_server import Server, copy_index, serve

KEY = "test-key-0123456789"
ORIGIN = "https://newsroom.example"
LIMITS = {"max_body_bytes": "4096", "max_batch": "3", "max_article_chars": "200"}


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory, seeded_dir: Path) -> Iterator[Server]:
    index = copy_index(seeded_dir, tmp_path_factory.mktemp("keyed"))
    with serve(
        index, api_key=KEY, cors_origins=json.dumps([ORIGIN]), log_format="json", **LIMITS
    ) as server:
        yield server


@pytest.fixture(scope="module")
def api(keyed: Server) -> httpx.Client:
    return keyed.client


def assert_error(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "message"} and body["error"] == code
    return str(body["message"])


# -- the API key -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [{}, {"X-API-Key": "wrong"}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}],
)
def test_writes_without_the_key_get_401(api: httpx.Client, headers: dict[str, str]) -> None:
    response = api.post("/articles", json={"id": "k-1", "text": "Locked out."}, headers=headers)
    assert "X-API-Key" in assert_error(response, 401, "unauthorized")
    assert response.headers["www-authenticate"] == "Bearer"
    assert_error(
        api.delete("/articles/north-korea-casualties.txt", headers=headers), 401, "unauthorized"
    )
    assert api.get("/articles/k-1").status_code == 404


@pytest.mark.parametrize("headers", [{"X-API-Key": KEY}, {"Authorization": f"Bearer {KEY}"}])
def test_writes_with_the_key_succeed(api: httpx.Client, headers: dict[str, str]) -> None:
    added = api.post("/articles", json={"id": "k-2", "text": "Let in."}, headers=headers)
    assert added.status_code == 200 and added.json()["added"] == ["k-2"]
    assert api.delete("/articles/k-2", headers=headers).json()["removed"] == ["k-2"]


def test_search_and_reads_stay_open(api: httpx.Client) -> None:
    assert api.get("/search", params={"q": "casualty estimates", "k": 2}).status_code == 200
    assert api.post("/search", json={"q": "casualty estimates"}).status_code == 200
    for path in ("/health", "/stats", "/articles/north-korea-casualties.txt", "/", "/metrics"):
        assert api.get(path).status_code == 200, path


def test_openapi_documents_the_key_where_it_is_needed(api: httpx.Client) -> None:
    schema = api.get("/openapi.json").json()
    schemes = schema["components"]["securitySchemes"]
    assert {"type": "apiKey", "in": "header", "name": "X-API-Key"}.items() <= schemes[
        "APIKeyHeader"
    ].items()
    assert schemes["HTTPBearer"]["scheme"] == "bearer"
    ops = {op["operationId"]: op for path in schema["paths"].values() for op in path.values()}
    for guarded in ("add_articles", "delete_article"):
        assert ops[guarded]["security"] == [{"APIKeyHeader": []}, {"HTTPBearer": []}]
        assert "401" in ops[guarded]["responses"]
    for open_op in ("search", "search_post", "get_article", "stats", "health"):
        assert "security" not in ops[open_op]


def test_search_needs_key_guards_reads_but_not_health(tmp_path: Path, seeded_dir: Path) -> None:
    index = copy_index(seeded_dir, tmp_path)
    with serve(index, api_key=KEY, search_needs_key="true") as server:
        api = server.client
        assert_error(api.get("/search", params={"q": "treaty"}), 401, "unauthorized")
        assert_error(api.get("/articles/north-korea-casualties.txt"), 401, "unauthorized")
        assert_error(api.get("/view/north-korea-casualties.txt"), 401, "unauthorized")
        ok = api.get("/search", params={"q": "treaty"}, headers={"X-API-Key": KEY})
        assert ok.status_code == 200 and ok.json()["results"]
        assert api.get("/health").status_code == 200
        schema = api.get("/openapi.json").json()
        assert "security" in schema["paths"]["/search"]["get"]


# -- CORS --------------------------------------------------------------------------------------


def test_cors_preflight_allows_the_configured_origin(api: httpx.Client) -> None:
    response = api.options(
        "/articles",
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "x-api-key, content-type",
        },
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == ORIGIN
    assert "POST" in response.headers["access-control-allow-methods"]
    assert "x-api-key" in response.headers["access-control-allow-headers"].lower()


def test_cors_answers_carry_the_origin_and_expose_the_request_id(api: httpx.Client) -> None:
    response = api.get("/search", params={"q": "drones"}, headers={"Origin": ORIGIN})
    assert response.headers["access-control-allow-origin"] == ORIGIN
    assert "x-request-id" in response.headers["access-control-expose-headers"].lower()
    denied = api.post("/articles", json={"text": "x"}, headers={"Origin": ORIGIN})
    assert denied.status_code == 401  # a browser can read why
    assert denied.headers["access-control-allow-origin"] == ORIGIN


def test_cors_ignores_other_origins(api: httpx.Client) -> None:
    response = api.get("/health", headers={"Origin": "https://elsewhere.example"})
    assert "access-control-allow-origin" not in response.headers
    preflight = api.options(
        "/search",
        headers={"Origin": "https://elsewhere.example", "Access-Control-Request-Method": "GET"},
    )
    assert "access-control-allow-origin" not in preflight.headers
    assert_error(preflight, 400, "cors_rejected")


# -- input limits ------------------------------------------------------------------------------

AUTH = {"X-API-Key": KEY}


def test_a_body_over_the_limit_is_refused_before_parsing(api: httpx.Client) -> None:
    # Not even valid JSON: a 422 would mean it was parsed.
    body = b"{" + b"x" * 5000
    response = api.post(
        "/articles", content=body, headers={**AUTH, "content-type": "application/json"}
    )
    assert "4096 bytes" in assert_error(response, 413, "too_large")


def test_a_chunked_body_over_the_limit_is_refused(api: httpx.Client) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"text": "'
        for _ in range(5):
            yield b"y" * 1000
        yield b'"}'

    response = api.post(
        "/articles", content=chunks(), headers={**AUTH, "content-type": "application/json"}
    )
    assert response.request.headers.get("transfer-encoding") == "chunked"
    assert "4096 bytes" in assert_error(response, 413, "too_large")


def test_a_body_under_the_limit_passes(api: httpx.Client) -> None:
    response = api.post(
        "/search",
        content=json.dumps({"q": "treaty"}).encode(),
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 200


def test_too_many_articles_in_one_post(api: httpx.Client) -> None:
    batch = [{"id": f"b-{i}", "text": f"Article {i}."} for i in range(4)]
    message = assert_error(api.post("/articles", json=batch, headers=AUTH), 413, "too_large")
    assert message == "at most 3 articles per request, got 4"


def test_an_article_text_over_the_limit_fails_alone(api: httpx.Client) -> None:
    """One rule for the CLI and the API: the long article is refused, the rest is indexed."""
    batch = [{"id": "long-1", "text": "word " * 60}, {"id": "short-1", "text": "A short one."}]
    response = api.post("/articles", json=batch, headers=AUTH)
    assert response.status_code == 200
    body = response.json()
    assert body["added"] == ["short-1"]
    assert body["failed"] == [
        {
            "where": "long-1",
            "reason": "article is 300 characters, over the limit of 200 (SIFT_MAX_ARTICLE_CHARS)",
        }
    ]
    assert api.get("/articles/long-1").status_code == 404


# -- request ids and logs ----------------------------------------------------------------------


def test_a_sane_request_id_is_echoed(api: httpx.Client) -> None:
    response = api.get("/health", headers={"X-Request-ID": "trace-42.a:b"})
    assert response.headers["x-request-id"] == "trace-42.a:b"


@pytest.mark.parametrize("sent", [None, "has space", "x" * 200, "<script>"])
def test_otherwise_an_id_is_made(api: httpx.Client, sent: str | None) -> None:
    headers = {"X-Request-ID": sent} if sent else {}
    first = api.get("/health", headers=headers).headers["x-request-id"]
    second = api.get("/health", headers=headers).headers["x-request-id"]
    assert first != second and len(first) == 32 and int(first, 16) >= 0


def test_errors_carry_a_request_id_too(api: httpx.Client) -> None:
    response = api.get("/no/such/route", headers={"X-Request-ID": "lost-1"})
    assert_error(response, 404, "not_found")
    assert response.headers["x-request-id"] == "lost-1"


def test_log_lines_are_json_with_an_access_line_per_request(keyed: Server) -> None:
    keyed.client.get("/search", params={"q": "pact"}, headers={"X-Request-ID": "log-1"})
    keyed.client.post("/articles", json={"text": "x"}, headers={"X-Request-ID": "log-2"})
    # No waiting: the access line is written before the answer's last bytes go out.
    lines = [json.loads(line) for line in keyed.log_lines() if line.strip()]
    assert {"ts", "level", "logger", "message"} <= lines[0].keys()
    assert any(line["logger"].startswith("uvicorn") for line in lines)
    access = {line["request_id"]: line for line in lines if line["logger"] == "sift.access"}
    search, denied = access["log-1"], access["log-2"]
    assert (search["method"], search["path"], search["status"]) == ("GET", "/search", 200)
    assert (denied["method"], denied["path"], denied["status"]) == ("POST", "/articles", 401)
    assert isinstance(search["duration_ms"], float) and search["duration_ms"] > 0
    assert "pact" not in json.dumps(search)  # queries stay out of the log


def test_an_unexpected_error_is_a_json_500_without_a_trace(tmp_path: Path) -> None:
    # In process: a real server has no route that fails on purpose.
    app = create_app(Settings(index=tmp_path / "index"))

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("secret detail in /srv/sift/config.py")

    client = TestClient(app, raise_server_exceptions=False)  # no lifespan: no model needed
    response = client.get("/boom", headers={"X-Request-ID": "boom-1"})
    assert assert_error(response, 500, "internal_error") == "internal error; see the server log"
    assert "secret" not in response.text and "Traceback" not in response.text
    assert response.headers["x-request-id"] == "boom-1"


# -- the OpenAPI contract, fuzzed --------------------------------------------------------------

#: Cases per operation: a small budget in CI; `FUZZ_EXAMPLES=200 pytest ...` for a long run.
FUZZ_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "15"))


@pytest.fixture(scope="module")
def live_schema(keyed: Server) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{keyed.url}/openapi.json")


# schemathesis' lazy pytest integration (`from_fixture`) does not run on pytest 9 yet, so each
# operation gets a Hypothesis test of its own, built from the live schema.
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/health"),
        ("GET", "/stats"),
        ("GET", "/search"),
        ("POST", "/search"),
        ("POST", "/search/batch"),
        ("GET", "/articles/{article_id}"),
        ("POST", "/articles"),
        ("DELETE", "/articles/{article_id}"),
    ],
)
def test_every_operation_keeps_its_contract(
    live_schema: schemathesis.BaseSchema, method: str, path: str
) -> None:
    """No 5xx, and every answer (errors too) matches the status and schema it documents."""
    operation = live_schema[path][method]

    @given(case=operation.as_strategy())
    @settings(
        max_examples=FUZZ_EXAMPLES,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    def check(case: schemathesis.Case) -> None:
        # Rejecting schema-valid input is allowed here: the settings lower the schema's hard
        # ceilings (k <= 1000 in the schema, max_k = 100 by default), and that is a 400.
        case.call_and_validate(headers=AUTH, excluded_checks=[positive_data_acceptance])

    check()
