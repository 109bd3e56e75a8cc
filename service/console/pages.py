"""The console's pages: one HTML shell per kind of page, holding no data (each page's
script fetches it from ``/ui/api/...`` and the model endpoints with the user's key), so
the shells are open like the docs."""

from __future__ import annotations

from functools import cache
from html import escape

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, RedirectResponse

from service import __version__
from service.console.assets import table, url

# Scripts and styles from this origin only; plots fetched with a key become blob: URLs.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
       "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
           "Referrer-Policy": "no-referrer", "Cache-Control": "no-cache"}

_SHELL = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · modelserve</title>
<link rel="icon" href="{icon}" type="image/svg+xml">
<link rel="stylesheet" href="{css}">{page_css}
<script type="module" src="{script}"></script>
</head>
<body data-page="{page}">
<header class="top">
  <a class="brand" href="/ui"><img src="{icon}" alt="" width="24" height="24">modelserve</a>
  <nav aria-label="Console">
    <a href="/ui">Models</a>
    <a href="/ui/live">Live</a>
    <a href="/docs">API docs</a>
  </nav>
  <div id="key-box" class="key-box"></div>
</header>
<main id="main" tabindex="-1">
  <h1 id="title">{title}</h1>
  <p id="status" class="status" role="status" aria-live="polite">Loading…</p>
  <div id="content"></div>
</main>
<footer class="foot">modelserve {version} · <a href="/redoc">ReDoc</a> ·
  <a href="/metrics">metrics</a></footer>
</body>
</html>
"""


def _shell(page: str, title: str) -> str:
    own_css = f"{page}.css"  # a page's own styles, when it has some
    page_css = (f'\n<link rel="stylesheet" href="{url(own_css)}">' if own_css in table()
                else "")
    return _SHELL.format(title=escape(title), page=page, icon=url("icon.svg"),
                         css=url("console.css"), page_css=page_css,
                         script=url(f"{page}.js"), version=escape(__version__))


TITLES = {"catalog": "Models", "model": "Model", "draw": "Draw a digit", "live": "Live"}


@cache
def shell(page: str) -> str:
    return _shell(page, TITLES[page])

router = APIRouter(include_in_schema=False)


def _page(page: str) -> HTMLResponse:
    return HTMLResponse(shell(page), headers=HEADERS)


@router.get("/ui")
async def catalog() -> HTMLResponse:
    return _page("catalog")


@router.get("/ui/")
async def catalog_slash() -> RedirectResponse:
    return RedirectResponse("/ui")


@router.get("/ui/models/{name}")
async def model(name: str) -> HTMLResponse:
    return _page("model")


@router.get("/ui/draw/{name}")
async def draw(name: str) -> HTMLResponse:
    return _page("draw")


@router.get("/ui/live")
async def live() -> HTMLResponse:
    return _page("live")
