"""`sift mcp`: the index's search and article lookup as MCP tools for an agent, over stdio."""

from __future__ import annotations

import sys
from contextlib import redirect_stdout

from sift.cli.common import (
    IndexOpt,
    LogFormatOpt,
    ModelOpt,
    app,
    command_settings,
    errors_to_exit,
    fail,
)
from sift.search.engine import Sift

INSTALL_HINT = "sift mcp needs the MCP SDK, an optional extra: pip install 'sift-search[mcp]'"


@app.command("mcp")
def mcp_cmd(
    index: IndexOpt = None, model: ModelOpt = None, log_format: LogFormatOpt = None
) -> None:
    """Serve search and article lookup to an agent as MCP tools, over stdio.

    The agent starts this command and speaks the Model Context Protocol on its stdin and
    stdout; logs go to stderr. Needs the mcp extra: pip install 'sift-search[mcp]'.
    """
    try:
        from sift.api.mcp_server import build_server
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] != "mcp":
            raise
        fail(INSTALL_HINT)
    settings = command_settings(index, model, log_format=log_format)
    # stdout is the protocol's: anything that loading prints goes to stderr instead.
    with errors_to_exit(), redirect_stdout(sys.stderr):
        engine = Sift(settings)
        engine.warm_up()  # the index and the model, so that the first call is quick
    try:
        build_server(engine).run("stdio")
    except KeyboardInterrupt:
        pass
    finally:
        engine.close()
