"""The API key: a header `X-API-Key`, or `Authorization: Bearer KEY`.

`create_app` attaches `require_key` to the write routes when a key is set, and to the read
routes too when `search_needs_key` is, so the OpenAPI document shows exactly what is enforced.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import HTTPException, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

api_key_header = APIKeyHeader(
    name="X-API-Key", auto_error=False, description="The server's SIFT_API_KEY."
)
bearer = HTTPBearer(auto_error=False, description="The server's SIFT_API_KEY as a bearer token.")


def _matches(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def require_key(
    request: Request,
    key: Annotated[str | None, Security(api_key_header)],
    token: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)],
) -> None:
    expected: str | None = request.app.state.settings.api_key
    if not expected:
        return
    if not (_matches(key, expected) or _matches(token.credentials if token else None, expected)):
        raise HTTPException(
            401,
            "this route needs the API key: send it as X-API-Key or Authorization: Bearer",
            headers={"WWW-Authenticate": "Bearer"},
        )
