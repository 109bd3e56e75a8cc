"""Build the FastAPI app: load the repository at start-up, mount the protocol routers,
and render every error as ``{"error": ...}``."""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from service import __version__, openapi
from service.errors import ApiError
from service.inference import Inference
from service.protocols import health, images, tfserving, v2
from service.protocols.common import Services, json_response
from service.repository import Repository
from service.settings import Settings

log = logging.getLogger("modelserve")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        svc: Services = app.state.services
        # Loading runs in threads so /v2/health/live answers while models load.
        task = asyncio.get_running_loop().run_in_executor(
            None, svc.repository.load_all, settings.load_workers)
        app.state.loading = task
        try:
            yield
        finally:
            await asyncio.shield(task)
            svc.inference.close()

    app = FastAPI(
        title="modelserve",
        version=__version__,
        description="Versioned Keras and scikit-learn models over the TF-Serving REST API "
                    "and the KServe V2 (Open Inference) protocol.",
        lifespan=lifespan,
    )
    app.state.services = Services(settings=settings, repository=Repository(settings.repository),
                                  inference=Inference())
    app.include_router(health.router)
    app.include_router(tfserving.router)
    app.include_router(v2.router)
    app.include_router(images.router)
    _install_error_handlers(app)
    openapi.install(app, app.state.services.repository)
    return app


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError):
        return json_response(exc.body(), status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        if exc.status_code == 404:
            message = f"No endpoint at {request.method} {request.url.path[:200]}; see /docs."
        elif exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path[:200]}."
        else:
            message = str(exc.detail)
        return json_response({"error": message}, status_code=exc.status_code,
                             headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        details = [{"field": ".".join(str(p) for p in e["loc"]), "problem": e["msg"]}
                   for e in exc.errors()]
        first = details[0] if details else {"field": "request", "problem": "invalid"}
        return json_response({"error": f"{first['field']}: {first['problem']}",
                              "details": details}, status_code=400)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return json_response({"error": "Internal server error; the server log has details."},
                             status_code=500)
