"""The FastAPI app: model and index load once, at start."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import version
from typing import Any

from fastapi import Depends, FastAPI, Security
from sift.api import docs, errors, logs
from sift.api.cors import Cors
from sift.api.limits import BodyLimit
from sift.api.metrics import Metrics
from sift.api.observe import Observe
from sift.api.page import page, static, views
from sift.api.routes import ERROR, meta, ops, reads, writes
from sift.api.security import require_key
from sift.errors import IndexNotFound, ReadOnly
from sift.search.engine import Sift
from sift.settings import Settings


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    logs.configure(settings.log_format)
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # torch (embedding POSTed articles) on one thread unless set: the other core keeps
        # answering searches meanwhile (api/batcher.py). A write waits its turn while another
        # worker process (or `sift index`) writes, rather than failing at once.
        engine = Sift(
            settings.model_copy(
                update={
                    "torch_threads": settings.torch_threads or 1,
                    "write_wait": 30.0 if settings.write_wait is None else settings.write_wait,
                }
            )
        )
        try:
            engine.warm_up()
        except IndexNotFound:
            _ = engine.embedder.model  # no index yet: POST /articles will make one
        app.state.engine = engine
        metrics.watch(engine)
        yield
        engine.close()

    app = FastAPI(
        title="sift",
        summary="Semantic passage search over news articles.",
        version=version("sift-search"),
        lifespan=lifespan,
        docs_url=None,  # served by api/docs.py, from installed assets: no CDN
        redoc_url=None,
    )
    docs.install(app)
    app.state.settings = settings
    app.state.metrics = metrics
    errors.install(app)
    _include_routes(app, settings)
    # Added innermost first: Observe wraps CORS wraps the body limit wraps the app, so every
    # answer, a 413 or a CORS preflight too, gets a request id, an access-log line and CORS headers.
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    if settings.cors_origins:
        app.add_middleware(Cors, origins=settings.cors_origins)
    app.add_middleware(Observe, metrics=metrics)
    return app


def _include_routes(app: FastAPI, settings: Settings) -> None:
    """Put the key on what must be guarded, and only there, so OpenAPI tells the truth."""
    guard: dict[str, Any] = {
        "dependencies": [Security(require_key)],
        "responses": {401: ERROR},
    }
    write_guard = guard if settings.api_key else {}
    if settings.read_only:  # before the body is read: a replica refuses every write alike
        write_guard = {
            "dependencies": [Depends(_refuse_writes), *write_guard.get("dependencies", [])],
            "responses": {403: ERROR, **write_guard.get("responses", {})},
        }
    read_guard = guard if settings.api_key and settings.search_needs_key else {}
    app.include_router(meta)
    app.include_router(reads, **read_guard)
    app.include_router(writes, **write_guard)
    app.include_router(ops)
    app.include_router(page)
    app.include_router(views, **read_guard)
    app.mount("/static", static, name="static")


def _refuse_writes() -> None:
    raise ReadOnly(
        "this server is read-only (SIFT_READ_ONLY): send writes to the primary index; "
        "this copy is refreshed by snapshot"
    )
