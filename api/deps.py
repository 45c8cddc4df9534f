"""Dependencies of the routes, as `Annotated` aliases."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from sift.api.batcher import SearchBatcher
from sift.api.metrics import Metrics
from sift.search.engine import Sift
from sift.settings import Settings


def get_engine(request: Request) -> Sift:
    return request.app.state.engine  # type: ignore[no-any-return]


def get_settings(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


def get_metrics(request: Request) -> Metrics:
    return request.app.state.metrics  # type: ignore[no-any-return]


async def get_batcher(request: Request) -> SearchBatcher:
    """The app's search batcher, for its current engine (async: made in the event loop)."""
    state = request.app.state
    batcher: SearchBatcher | None = getattr(state, "batcher", None)
    if batcher is None or batcher.engine is not state.engine:
        batcher = state.batcher = SearchBatcher(state.engine)
    return batcher


EngineDep = Annotated[Sift, Depends(get_engine)]
BatcherDep = Annotated[SearchBatcher, Depends(get_batcher)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
