"""Model management: the KServe/Triton model repository extension, and a full re-scan.

- ``POST /v2/repository/index``: every model version with its state and reason
  (body optional; ``{"ready": true}`` lists only AVAILABLE versions);
- ``POST /v2/repository/models/{name}/load``: serve the model again if an administrator
  unloaded it, re-scan the repository now, and report the model's versions (200 when one
  is available, else 503 with the reasons);
- ``POST /v2/repository/models/{name}/unload``: stop serving the model until it is
  loaded again (its versions go UNLOADING, in-flight requests finish, then END with
  "unloaded by an administrator"). Held in this process's memory: a restart (or another
  worker) serves it again;
- ``POST /admin/reload``: re-scan the whole repository now (as hot reload does every
  ``poll_interval_s``) and return the index.

Labels and traffic splits are changed by editing ``<model>/config.json`` (hot reload),
so there is no label API. These routes need an admin key (``service/security.py`` checks
it and marks the request); with no admin key configured they answer 404.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from service.errors import Forbidden, NotFound, Unavailable
from service.protocols.common import Services, json_response, parse_json, read_body, services
from service.security import ADMIN, ADMIN_OFF, ROLE_KEY, configured

router = APIRouter(tags=["Model repository (admin key)"])


def _admin(request: Request) -> Services:
    """The services, once the access-control layer has accepted an admin key (checked
    again here, so these routes never serve without it, however the app is wrapped)."""
    svc = services(request)
    if not configured(svc.settings)[1]:
        raise NotFound(ADMIN_OFF)
    if request.scope.get(ROLE_KEY) != ADMIN:
        raise Forbidden("This endpoint needs an admin key.")
    return svc


@router.post("/v2/repository/index", summary="Every model version, its state and reason")
async def index(request: Request) -> Response:
    svc = _admin(request)
    body = await read_body(request, svc.settings.max_body_bytes)
    ready_only = False
    if body.strip():
        parsed = parse_json(body)
        ready_only = bool(parsed.get("ready", False)) if isinstance(parsed, dict) else False
    return json_response(svc.index(ready_only))


@router.post("/v2/repository/models/{name}/load",
             summary="Re-scan the repository and serve the model (again)")
async def load(request: Request, name: str) -> Response:
    svc = _admin(request)
    try:
        versions = await svc.load(name)  # 404 when the repository has no such model
    except Unavailable as exc:
        return json_response({"error": exc.message, "name": name, "ready": False,
                              "versions": svc.versions(name)}, status_code=503)
    return json_response({"name": name, "ready": True, "versions": versions})


@router.post("/v2/repository/models/{name}/unload",
             summary="Stop serving the model until it is loaded again")
async def unload(request: Request, name: str) -> Response:
    svc = _admin(request)
    versions = await svc.unload(name)
    return json_response({"name": name, "ready": False, "versions": versions})


@router.post("/admin/reload", summary="Re-scan the whole repository now")
async def reload(request: Request) -> Response:
    svc = _admin(request)
    await svc.rescan()
    return json_response({"models": svc.index()})
