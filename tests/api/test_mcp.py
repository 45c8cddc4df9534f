"""`sift mcp` as an agent meets it: a real subprocess over stdio, driven by the MCP SDK's own
client (`mcp.client.stdio` and its ClientSession), against a copy of the seeded index."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pytest

pytest.importorskip("mcp", reason="the mcp extra is not installed: pip install -e '.[dev]'")

from anyio.from_thread import BlockingPortal, start_blocking_portal
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp_types import CallToolResult, Tool

from tests.api_server import copy_index
from tests.helpers import SIFT

CASUALTIES = "north-korea-casualties.txt"


def _server_env() -> dict[str, str]:
    """The SDK hands a server only a few safe variables; ours also needs the test run's
    model and cache settings (offline weights, the shared ONNX export)."""
    return {k: v for k, v in os.environ.items() if k.startswith(("SIFT_", "HF_", "TRANSFORMERS_"))}


@dataclass
class Agent:
    """A connected MCP client session, callable from synchronous tests."""

    portal: BlockingPortal
    session: ClientSession
    tools: list[Tool]
    #: Whatever the client could not read as protocol on the server's stdout.
    stray: list[Exception] = field(default_factory=list)

    def call(self, name: str, **arguments: Any) -> CallToolResult:
        return self.portal.call(self.session.call_tool, name, arguments)


@asynccontextmanager
async def _connect(index: Path, errlog: IO[str], portal: BlockingPortal) -> AsyncIterator[Agent]:
    stray: list[Exception] = []

    async def on_message(message: Any) -> None:
        if isinstance(message, Exception):
            stray.append(message)

    server = StdioServerParameters(
        command=SIFT, args=["mcp", "--index", str(index)], env=_server_env()
    )
    async with (
        stdio_client(server, errlog=errlog) as (read, write),
        ClientSession(read, write, message_handler=on_message) as session,
    ):
        await session.initialize()
        tools = (await session.list_tools()).tools
        yield Agent(portal, session, tools, stray)


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory, seeded_dir: Path) -> Iterator[Agent]:
    where = tmp_path_factory.mktemp("mcp")
    index = copy_index(seeded_dir, where)
    with (
        open(where / "server.log", "w") as errlog,
        start_blocking_portal() as portal,
        portal.wrap_async_context_manager(_connect(index, errlog, portal)) as connected,
    ):
        yield connected
    log = (where / "server.log").read_text()
    assert "Traceback" not in log, log


def _error_text(result: CallToolResult) -> str:
    assert result.is_error, result
    return " ".join(getattr(block, "text", "") for block in result.content)


def test_tools_are_listed_with_typed_inputs_and_outputs(agent: Agent) -> None:
    tools = {tool.name: tool for tool in agent.tools}
    assert {"search", "get_article", "index_stats"} <= set(tools)
    search = tools["search"]
    assert search.input_schema["required"] == ["query"]
    properties = search.input_schema["properties"]
    assert {"query", "k", "mode", "source", "since", "until", "context"} <= set(properties)
    assert all(p.get("description") for p in properties.values())
    assert properties["k"]["minimum"] == 1 and properties["k"]["maximum"] == 100
    assert properties["mode"]["enum"] == ["hybrid", "dense", "keyword"]
    assert search.output_schema is not None and "results" in search.output_schema["properties"]
    assert tools["get_article"].input_schema["required"] == ["id"]
    assert tools["search"].annotations and tools["search"].annotations.read_only_hint


def test_search_finds_the_casualties_article_and_get_article_reads_it(agent: Agent) -> None:
    result = agent.call("search", query="casualty estimates", k=5)
    assert not result.is_error, result.content
    hits = result.structured_content["results"]
    assert len(hits) == 5
    assert CASUALTIES in [hit["article_id"] for hit in hits[:3]]
    top = next(hit for hit in hits if hit["article_id"] == CASUALTIES)
    assert top["title"] and top["score"] > 0 and top["passage"]

    article = agent.call("get_article", id=CASUALTIES)
    assert not article.is_error, article.content
    view = article.structured_content
    assert view["id"] == CASUALTIES and view["title"] == top["title"]
    # The offsets a search gives point into the text that get_article returns.
    assert view["text"][top["start"] : top["end"]] == top["sentence"]
    assert view["text"][top["passage_start"] : top["passage_end"]] == top["passage"]


def test_search_filters_and_context_are_applied(agent: Agent) -> None:
    plain = agent.call("search", query="casualty estimates", k=3, context=0)
    for hit in plain.structured_content["results"]:  # no context: the hit sentences alone
        assert hit["passage_start"] == min(h["start"] for h in hit["hits"])
        assert hit["passage_start"] + len(hit["passage"]) == max(h["end"] for h in hit["hits"])
    far_future = agent.call("search", query="casualty estimates", since="2999-01-01")
    assert not far_future.is_error and far_future.structured_content["results"] == []


def test_index_stats(agent: Agent) -> None:
    stats = agent.call("index_stats")
    assert not stats.is_error
    assert stats.structured_content["articles"] == 6
    assert stats.structured_content["model"] == "all-MiniLM-L6-v2"


def test_bad_calls_are_tool_errors_and_the_server_carries_on(agent: Agent) -> None:
    assert "no article with id 'no-such-article'" in _error_text(
        agent.call("get_article", id="no-such-article")
    )
    assert "query" in _error_text(agent.call("search", query=""))
    assert "query is empty" in _error_text(agent.call("search", query="   "))
    assert "k must be between 1 and 100" in _error_text(agent.call("search", query="drones", k=500))
    assert "greater than or equal to 1" in _error_text(agent.call("search", query="drones", k=0))
    assert "since must be an ISO date" in _error_text(
        agent.call("search", query="drones", since="last week")
    )
    assert not agent.call("search", query="drones", k=1).is_error


def test_stdout_carries_only_the_protocol(agent: Agent) -> None:
    agent.call("search", query="drones", k=1)
    assert agent.stray == []


def test_a_missing_index_is_a_clear_error(tmp_path: Path) -> None:
    run = subprocess.run(
        [SIFT, "mcp", "--index", str(tmp_path / "none")],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    assert run.returncode == 2, run.stderr
    assert "no sift index at" in run.stderr and "Traceback" not in run.stderr
    assert run.stdout == ""


def test_without_the_extra_it_says_how_to_install() -> None:
    hide_mcp = (
        "import sys; sys.modules['mcp'] = None; sys.argv = ['sift', 'mcp']; "
        "from sift.cli.main import main; main()"
    )
    run = subprocess.run(
        [sys.executable, "-c", hide_mcp], capture_output=True, text=True, stdin=subprocess.DEVNULL
    )
    assert run.returncode == 2, run.stderr
    assert "pip install 'sift-search[mcp]'" in " ".join(run.stderr.split())
    assert run.stdout == ""
