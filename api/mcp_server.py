"""sift for agents: search and article lookup as Model Context Protocol tools (`sift mcp`).

A thin adapter like the HTTP routes: each tool parses its arguments, makes one engine call and
returns the engine's own typed answer (SearchResponse, ArticleView, IndexStats), which the SDK
sends as structured JSON with its schema. Needs the `mcp` extra: pip install 'sift-search[mcp]'.
"""

# No `from __future__ import annotations`: two argument types are made per server (their limits
# come from its settings), and the SDK must see the tools' annotations as objects, not names.

from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import version
from typing import Annotated, Any, Literal

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import ToolAnnotations
from pydantic import Field, ValidationError
from sift.errors import NotFound, SiftError, validation_message
from sift.search.engine import Sift
from sift.search.results import ArticleView, IndexStats, SearchResponse

INSTRUCTIONS = (
    "sift searches a collection of news articles by meaning. Call `search` with a question or "
    "topic in plain words; each result is a passage (the matching sentence with its "
    "neighbours) and the id, title, source and date of its article. Call `get_article` with "
    "an article id to read the whole article."
)

# What an agent sees of the arguments. The limits are shown in the schema but checked by sift's
# own request model, against the settings, so a bad value is reported in the same words as by
# the CLI and the API.
Query = Annotated[
    str, Field(description="What to look for, in plain words.", json_schema_extra={"minLength": 1})
]
Mode = Annotated[
    Literal["hybrid", "dense", "keyword"],
    Field(description="hybrid: meaning and exact words fused (best); dense: meaning; keyword."),
]
Sources = Annotated[
    list[str] | None, Field(description="Only articles from these sources (e.g. 'bbc').")
]
Since = Annotated[
    str | None, Field(description="Only articles published on or after this ISO date.")
]
Until = Annotated[
    str | None, Field(description="Only articles published on or before this ISO date.")
]
ArticleId = Annotated[str, Field(description="An article id, as a search result gives it.")]


def _bounded(description: str, low: int, high: int) -> Any:
    """An integer argument whose range is in the schema, for sift to check."""
    return Annotated[
        int, Field(description=description, json_schema_extra={"minimum": low, "maximum": high})
    ]


READ_ONLY = ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False)


@contextmanager
def _tool_errors() -> Iterator[None]:
    """sift's known failures become tool errors whose message the agent can act on: the one
    place where this room maps `sift.errors`. Anything else is a crash, which the SDK reports
    without its details."""
    try:
        yield
    except SiftError as exc:
        raise ToolError(str(exc)) from exc
    except ValidationError as exc:
        message = validation_message(exc)
        # The request model calls the query `q`; the tool calls it `query`.
        raise ToolError(f"query: {message[3:]}" if message.startswith("q: ") else message) from exc


def build_server(engine: Sift) -> MCPServer:
    """An MCP server with sift's tools over `engine` (opened, and best warmed up, by the caller)."""
    server: MCPServer = MCPServer(
        "sift",
        title="sift",
        description="Semantic passage search over news articles.",
        instructions=INSTRUCTIONS,
        version=version("sift-search"),
        log_level="WARNING",
    )
    limits = engine.settings
    K = _bounded("How many passages to return.", 1, limits.max_k)
    Context = _bounded(
        "Sentences of context either side of the matching one.", 0, limits.max_context
    )

    @server.tool(annotations=READ_ONLY)
    def search(
        query: Query,
        k: K = 5,
        mode: Mode = "hybrid",
        source: Sources = None,
        since: Since = None,
        until: Until = None,
        context: Context = 1,
    ) -> SearchResponse:
        """Find the passages of the indexed news articles that best answer a query, best first.
        Each result has the article's id (for get_article), title, source, date and url, the
        matching sentence and its passage, their character offsets in the article, and a
        score (higher is better; compare scores within one answer only)."""
        with _tool_errors():
            return engine.search(
                query,
                k=k,
                mode=mode,
                source=source or [],
                since=since,
                until=until,
                context=context,
            )

    @server.tool(annotations=READ_ONLY)
    def get_article(id: ArticleId) -> ArticleView:
        """The whole text of one article, with its title, source, url, date and metadata."""
        with _tool_errors():
            article = engine.article(id)
            if article is None:
                raise NotFound(f"no article with id {id!r} in this index")
            return article

    @server.tool(annotations=READ_ONLY)
    def index_stats() -> IndexStats:
        """What the index holds: articles, sentences, the model, and when it was last updated."""
        with _tool_errors():
            return engine.stats()

    return server
