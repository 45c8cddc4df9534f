"""The FastAPI app: model and index load once, at start."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import version

from fastapi import FastAPI

from api import errors
from api.routes import router
from index.settings import Settings
from index.store import IndexNotFound
from search.engine import Sift


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = Sift(settings)
        try:
            engine.warm_up()
        except IndexNotFound:
            _ = engine.embedder.model  # no index yet: POST /articles will make one
        app.state.engine = engine
        yield
        engine.close()

    app = FastAPI(
        title="sift",
        summary="Semantic passage search over news articles.",
        version=version("sift-search"),
        lifespan=lifespan,
    )
    errors.install(app)
    app.include_router(router)
    return app
