"""/docs and /redoc work on a machine without internet: their assets come from the installed
package, and a real browser that may reach nothing but the server renders the operations."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, Route, expect

from tests.api_server import Server, copy_index, serve


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, seeded_dir: Path) -> Iterator[Server]:
    with serve(copy_index(seeded_dir, tmp_path_factory.mktemp("docs"))) as server:
        yield server


@pytest.fixture
def offline_page(browser: Browser, server: Server) -> Iterator[tuple[Page, list[str]]]:
    """A page whose every request off the server is refused (and recorded), as offline."""
    context = browser.new_context(base_url=server.url)
    elsewhere: list[str] = []

    def only_the_server(route: Route) -> None:
        if route.request.url.startswith(server.url):
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    context.route("**/*", only_the_server)
    yield context.new_page(), elsewhere
    context.close()


def test_swagger_ui_lists_the_operations_offline(offline_page: tuple[Page, list[str]]) -> None:
    page, elsewhere = offline_page
    page.goto("/docs")
    operations = page.locator(".opblock-summary-path")
    expect(operations.first).to_be_visible(timeout=20_000)
    paths = set(operations.all_inner_texts())
    assert {"/search", "/articles", "/health"} <= {p.replace("\u200b", "") for p in paths}
    assert not elsewhere, elsewhere


def test_redoc_lists_the_operations_offline(offline_page: tuple[Page, list[str]]) -> None:
    page, elsewhere = offline_page
    page.goto("/redoc")
    expect(page.get_by_text("/search/batch").first).to_be_attached(timeout=20_000)
    assert not elsewhere, elsewhere


def test_the_assets_are_served_by_sift(server: Server) -> None:
    response = server.client.get("/redoc")
    assert "default-src 'self'" in response.headers["content-security-policy"]
    html = server.client.get("/docs").text
    assert "cdn" not in html.lower() and "/docs-assets/swagger-ui-bundle.js" in html
    assert server.client.get("/docs-assets/swagger-ui-bundle.js").status_code == 200
    assert server.client.get("/docs-assets/redoc.standalone.js").status_code == 200
