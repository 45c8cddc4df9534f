"""Every failure becomes a JSON body `{"error": code, "message": ...}` with a 4xx/5xx status:
sift's own (`sift.errors`) by the status and code each class carries, HTTP ones by status.

No stack trace ever reaches a client.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sift.errors import SiftError, validation_message
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("sift.api")

_HTTP_CODES = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    422: "invalid_request",
}


def error(
    status: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        status_code=status, content={"error": code, "message": message}, headers=headers
    )


def install(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error(422, "invalid_request", validation_message(exc, limit=3))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        # Headers carry part of the answer: Allow on a 405, WWW-Authenticate on a 401.
        return error(exc.status_code, code, str(exc.detail), exc.headers)

    @app.exception_handler(SiftError)
    async def _sift(_: Request, exc: SiftError) -> JSONResponse:
        # The one mapping of sift's failures: each class names its status and code.
        return error(exc.http_status, exc.code, str(exc))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error(500, "internal_error", "internal error; see the server log")
