"""CORS through Starlette's middleware, with its refusals in the API's error shape."""

from __future__ import annotations

from sift.api.errors import error
from sift.api.observe import HEADER
from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response
from starlette.types import ASGIApp

#: Headers a response brings along that describe its own body, which the JSON body replaces.
_BODY_HEADERS = {"content-length", "content-type"}


class Cors(CORSMiddleware):
    def __init__(self, app: ASGIApp, origins: list[str]):
        super().__init__(
            app,
            allow_origins=origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Content-Type", "Authorization", "X-API-Key", HEADER],
            expose_headers=[HEADER],
        )

    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code != 400:
            return response
        kept = {k: v for k, v in response.headers.items() if k not in _BODY_HEADERS}
        return error(400, "cors_rejected", bytes(response.body).decode(), kept)
