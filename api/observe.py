"""One pure ASGI middleware around every request: its id, its access-log line, its metrics.

It sits outermost, so 401s, 413s and CORS answers are logged and counted too, and an unhandled
error still gets a JSON 500 that carries the request id.
"""

from __future__ import annotations

import logging
import re
import time
import uuid

from sift.api.errors import error
from sift.api.logs import request_id
from sift.api.metrics import Metrics
from starlette.types import ASGIApp, Message, Receive, Scope, Send

access = logging.getLogger("sift.access")
log = logging.getLogger("sift.api")

HEADER = "x-request-id"
_HEADER_BYTES = HEADER.encode()
#: An id a client or proxy sent is kept when it is this tame; anything else is replaced.
_SANE_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
#: Scraping the metrics does not count as traffic.
_UNCOUNTED = {"/metrics"}


def _incoming_id(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == _HEADER_BYTES:
            text = value.decode("latin-1")
            if _SANE_ID.fullmatch(text):
                return text
    return uuid.uuid4().hex


def _route_template(scope: Scope) -> str:
    """The matched route's template (`/articles/{article_id}`), never the raw path."""
    route = scope.get("route")
    return str(getattr(route, "path_format", None) or getattr(route, "path", "unmatched"))


class Observe:
    def __init__(self, app: ASGIApp, metrics: Metrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = _incoming_id(scope)
        token = request_id.set(rid)
        started = time.perf_counter()
        status = 500
        response_started = recorded = False

        def record() -> None:
            nonlocal recorded
            if not recorded:
                recorded = True
                self._record(scope, status, time.perf_counter() - started)

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status = message["status"]
                response_started = True
                message["headers"] = [*message.get("headers", []), (_HEADER_BYTES, rid.encode())]
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                # Before the last bytes go out: a client that has its answer finds it logged
                # and counted.
                record()
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            log.exception("unhandled error on %s %s", scope["method"], scope["path"])
            if response_started:
                raise
            await error(500, "internal_error", "internal error; see the server log")(
                scope, receive, send_with_id
            )
        finally:
            record()
            request_id.reset(token)

    def _record(self, scope: Scope, status: int, seconds: float) -> None:
        method, path = scope["method"], scope["path"]
        access.info(
            "%s %s %d %.1fms",
            method,
            path,
            status,
            seconds * 1000,
            extra={
                "method": method,
                "path": path,
                "status": status,
                "duration_ms": round(seconds * 1000, 2),
            },
        )
        if path not in _UNCOUNTED:
            self.metrics.observe_request(method, _route_template(scope), status, seconds)
