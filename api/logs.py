"""Log lines that carry the request id; plain text or one JSON object per line.

The server's own loggers (`uvicorn`, `uvicorn.error`) go through the same handler in JSON mode,
so a log shipper sees one format. uvicorn's access log is switched off: `api.observe` writes
one line per request itself, with the request id and the duration in it.
"""

from __future__ import annotations

import logging
import sys
from contextvars import ContextVar

from sift.logs import JsonFormatter

#: The id of the request being served, for every log line written while serving it.
request_id: ContextVar[str] = ContextVar("request_id", default="-")

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        return True


class _SiftHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Marks the handlers this module installs, so configuring twice replaces, not adds."""


def configure(log_format: str) -> None:
    """Route sift's (and, for JSON, uvicorn's) log lines through one handler on stderr."""
    handler = _SiftHandler(sys.stderr)
    handler.addFilter(RequestIdFilter())
    json_lines = log_format == "json"
    handler.setFormatter(JsonFormatter() if json_lines else logging.Formatter(TEXT_FORMAT))
    names = ["sift", "uvicorn"] if json_lines else ["sift"]
    for name in names:
        logger = logging.getLogger(name)
        keep = [h for h in logger.handlers if not isinstance(h, _SiftHandler)]
        logger.handlers = [handler] if name == "uvicorn" else [*keep, handler]
        logger.setLevel(logging.INFO)
        logger.propagate = False
    logging.getLogger("uvicorn.access").disabled = True
