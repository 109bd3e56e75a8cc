"""The web console (``/ui``) and the API docs (``/docs``, ``/redoc``), served from the
package: no CDN, no other server."""

from __future__ import annotations

from fastapi import FastAPI

from service.console import api, assets, docs, pages


def install(app: FastAPI) -> None:
    app.include_router(docs.router)
    app.include_router(assets.router)
    app.include_router(pages.router)
    app.include_router(api.router)
