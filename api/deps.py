"""Dependencies of the routes, as `Annotated` aliases."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from search.engine import Sift


def get_engine(request: Request) -> Sift:
    return request.app.state.engine  # type: ignore[no-any-return]


EngineDep = Annotated[Sift, Depends(get_engine)]
