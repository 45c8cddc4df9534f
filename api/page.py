"""The search page at `/` and a plain article view at `/view/{id}`: server-rendered HTML.

The page is a form and a script (`static/search.js`) that calls GET /search; nothing comes
from another origin, so a strict Content-Security-Policy holds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from sift.api.deps import EngineDep, SettingsDep
from sift.errors import IndexNotFound

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
static = StaticFiles(directory=HERE / "static")

HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}

page = APIRouter(include_in_schema=False)
views = APIRouter(include_in_schema=False)


@page.get("/", response_class=HTMLResponse)
def search_page(request: Request, engine: EngineDep, settings: SettingsDep) -> HTMLResponse:
    try:
        articles = engine.stats().articles
    except IndexNotFound:
        articles = 0
    context = {"articles": articles, "settings": settings}
    return templates.TemplateResponse(request, "search.html", context, headers=HEADERS)


@views.get("/view/{article_id:path}", response_class=HTMLResponse)
def article_page(
    request: Request,
    engine: EngineDep,
    article_id: str,
    start: Annotated[int | None, Query(ge=0)] = None,
    end: Annotated[int | None, Query(ge=0)] = None,
) -> HTMLResponse:
    article = engine.article(article_id)
    if article is None:
        raise HTTPException(404, f"no article with id {article_id!r}")
    text = article.text
    lo = min(start or 0, len(text))
    hi = max(lo, min(end if end is not None else lo, len(text)))
    context = {
        "article": article,
        "parts": (text[:lo], text[lo:hi], text[hi:]),
        "link": article.url if _is_web_link(article.url) else None,
    }
    return templates.TemplateResponse(request, "article.html", context, headers=HEADERS)


def _is_web_link(url: str | None) -> bool:
    """Only http(s) links go into an href: escaping does not make `javascript:` safe."""
    return bool(url) and urlsplit(url or "").scheme in ("http", "https")
