"""`sift`: the command line, a thin layer over the engine (`sift.search.engine.Sift`).

Exit codes: 0 ok; 1 some inputs failed (the rest was indexed) or an id was not found;
2 bad usage or input that nothing could be done with (one line on stderr says which).
"""

# Importing a command module registers its commands on `app`; help lists them in this order.
# isort: off
from sift.cli import index_cmds
from sift.cli import search_cmds  # noqa: F401
from sift.cli import admin_cmds  # noqa: F401
from sift.cli import mcp_cmd  # noqa: F401

# isort: on
import sys

from sift.cli.common import app

__all__ = ["app", "main"]


def main() -> None:
    app(args=index_cmds.ray_alone_means_local(sys.argv[1:]), prog_name="sift")


if __name__ == "__main__":
    main()
