"""Liveness and readiness, for probes and for KServe V2 clients (200 = true).

Readiness answers 503 while the service loads, when no version could be loaded, and
from SIGTERM on (draining); liveness stays 200 until the process exits."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from service.protocols.common import json_response, services

router = APIRouter(tags=["Health"])


def _ready_response(request: Request) -> Response:
    ready, why = services(request).readiness()
    if ready:
        return json_response({"ready": True})
    return json_response({"ready": False, "error": why}, status_code=503)


@router.get("/v2/health/live", summary="Server live (KServe V2)")
@router.get("/healthz", summary="Liveness probe")
async def live() -> Response:
    return json_response({"live": True})


@router.get("/", summary="Server live (KServe V1)")
async def root() -> Response:
    # KServe's V1 clients (InferenceRESTClient.is_server_live) read this shape.
    return json_response({"status": "alive"})


@router.get("/v2/health/ready", summary="Server ready (KServe V2)")
@router.get("/readyz", summary="Readiness probe")
async def ready(request: Request) -> Response:
    return _ready_response(request)
