"""Input limits: the body's size before anything parses it, then the batch and each article."""

from __future__ import annotations

from fastapi import HTTPException
from sift.api.errors import error
from sift.index.records import Article
from sift.settings import Settings
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyTooLarge(HTTPException):
    """Raised from `receive` when a streamed body passes the limit.

    An HTTPException, so FastAPI's body reader passes it on as it is, and the app's handler
    answers 413 in the usual JSON shape.
    """

    def __init__(self, limit: int):
        super().__init__(413, f"request body is larger than {limit} bytes")


class BodyLimit:
    """Answers 413 for a body over `max_bytes`: at once when Content-Length says so, and by
    counting the bytes as they arrive when it does not (a chunked body)."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = error(413, "too_large", f"request body is larger than {self.max_bytes} bytes")
        if self._declared_length(scope) > self.max_bytes:
            await too_large(scope, receive, send)
            return
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            if started:
                raise
            await too_large(scope, receive, send)

    @staticmethod
    def _declared_length(scope: Scope) -> int:
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    return int(value)
                except ValueError:
                    return 0  # the server rejects a malformed length before it gets here
        return 0


def check_batch(batch: list[Article], settings: Settings) -> None:
    """A POST /articles must carry 1 to `max_batch` articles. An article over
    `max_article_chars` is the engine's to refuse, as from the CLI: it is listed in `failed`
    and the rest of the request is indexed."""
    if not batch:
        raise HTTPException(422, "no articles in the request")
    if len(batch) > settings.max_batch:
        raise HTTPException(
            413, f"at most {settings.max_batch} articles per request, got {len(batch)}"
        )
