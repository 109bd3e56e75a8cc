"""Build the service: the repository, the data plane over it, the FastAPI app with the
protocol routers (errors rendered as ``{"error": ...}``), the HTTP gateway in front of
it, and the gRPC server started and stopped with the app's lifespan."""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from service import __version__, console, lifecycle, openapi, security, startup
from service.dataplane import DataPlane
from service.errors import INTERNAL, ApiError, http_body
from service.inference import Inference
from service.observability import logs, metrics
from service.protocols import evidence, health, images, repository_api, tfserving, v2
from service.protocols.common import json_response
from service.protocols.gateway import Gateway
from service.reloader import Reloader
from service.repository import Repository
from service.settings import Settings

log = logging.getLogger("modelserve")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        svc: DataPlane = app.state.services
        loop = asyncio.get_running_loop()
        # The repository calls these from its own thread; batchers belong to the loop.
        svc.repository.on_unload.append(
            lambda model: loop.call_soon_threadsafe(svc.inference.forget, model))
        svc.repository.on_config_change.append(
            lambda name: loop.call_soon_threadsafe(svc.inference.reconfigure, name))
        reloader = Reloader(svc.repository, settings.poll_interval_s, settings.load_workers)

        def load_then_watch() -> None:
            try:
                svc.repository.load_all(settings.load_workers)
            finally:
                startup.finished()  # begun by the server's entry point
            if settings.poll_interval_s > 0:
                reloader.start()

        # Loading runs in threads so /v2/health/live answers while models load.
        task = loop.run_in_executor(None, load_then_watch)
        app.state.loading = task
        if settings.workers > 1:
            # Workers share one listening socket and a worker accepts connections only
            # once its start-up has finished: waiting here means a request never lands
            # on a worker that is still loading while another could serve it.
            await asyncio.shield(task)
        grpc_server = None
        if settings.grpc_port:
            # Imported here only: see service/protocols/grpc/server.py.
            from service.protocols.grpc.server import GrpcServer

            grpc_server = GrpcServer(svc)
            await grpc_server.start()

        def on_drain() -> None:
            # From a signal handler: set a flag and hand the rest to the loop.
            svc.draining = True
            if grpc_server is not None:
                loop.call_soon_threadsafe(grpc_server.drain)

        # SIGTERM (service/server.py): readiness answers 503 while requests drain.
        undrain = lifecycle.on_drain(on_drain)
        try:
            yield
        finally:
            undrain()
            if grpc_server is not None:
                await grpc_server.stop()
            await asyncio.shield(task)
            reloader.stop()
            svc.inference.close()
            # Queued payload log records are written before the process exits.
            await loop.run_in_executor(None, svc.evidence.close)

    app = FastAPI(
        title="modelserve",
        version=__version__,
        description="Versioned Keras and scikit-learn models over the TF-Serving REST API "
                    "and the KServe V2 (Open Inference) protocol, over HTTP here and over "
                    "gRPC on the gRPC port.",
        lifespan=lifespan,
        # Served by service/console/docs.py from the package (no CDN).
        docs_url=None,
        redoc_url=None,
    )
    repository = Repository(settings.repository, lean=settings.lean_runtimes,
                            warm_rows=(1, settings.batch_max_rows),
                            stalled_after_s=settings.incomplete_version_timeout_s)
    app.state.services = DataPlane(settings, repository,
                                   Inference(settings, repository.config))
    app.include_router(health.router)
    app.include_router(tfserving.router)
    app.include_router(v2.router)
    app.include_router(images.router)
    app.include_router(evidence.router)
    app.include_router(repository_api.router)  # admin key; 404 when none configured
    metrics.install(app)  # GET /metrics
    console.install(app)  # /ui, /docs, /redoc
    _install_error_handlers(app)
    openapi.install(app, app.state.services.repository,
                    secured=any(security.configured(settings)))
    return app


def create_asgi(settings: Settings | None = None) -> Gateway:
    """The app uvicorn serves: the HTTP gateway in front of FastAPI."""
    settings = settings or Settings()
    configure_logging(settings)  # again in each worker process (replaces the handler)
    app = create_app(settings)
    return Gateway(app, app.state.services, settings)


def configure_logging(settings: Settings) -> None:
    logs.configure(settings.log_level, settings.log_format)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError):
        return json_response(http_body(exc), status_code=exc.status_code, headers=exc.headers)

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
        return json_response({"error": INTERNAL}, status_code=500)
