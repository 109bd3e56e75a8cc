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

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from service.errors import Forbidden, NotFound
from service.protocols.common import Services, json_response, parse_json, read_body, services
from service.repository import State
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


def _versions(svc: Services, name: str) -> list[dict[str, Any]]:
    return [{"name": name, "version": str(s.version), "state": str(s.state),
             "reason": s.error or s.detail} for s in svc.repository.statuses(name)]


def _all_versions(svc: Services) -> list[dict[str, Any]]:
    out = []
    for name in svc.repository.names():
        try:
            out.extend(_versions(svc, name))
        except NotFound:  # removed since names() was read
            continue
    return out


async def _rescan(svc: Services) -> None:
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, lambda: svc.repository.poll(
        workers=svc.settings.load_workers))


@router.post("/v2/repository/index", summary="Every model version, its state and reason")
async def index(request: Request) -> Response:
    svc = _admin(request)
    body = await read_body(request, svc.settings.max_body_bytes)
    ready_only = False
    if body.strip():
        parsed = parse_json(body)
        ready_only = bool(parsed.get("ready", False)) if isinstance(parsed, dict) else False
    out = _all_versions(svc)
    if ready_only:
        out = [v for v in out if v["state"] == State.AVAILABLE]
    return json_response(out)


@router.post("/v2/repository/models/{name}/load",
             summary="Re-scan the repository and serve the model (again)")
async def load(request: Request, name: str) -> Response:
    svc = _admin(request)
    svc.repository.hold(name, False)
    await _rescan(svc)
    versions = _versions(svc, name)  # 404 when the repository has no such model
    if any(v["state"] == State.AVAILABLE for v in versions):
        return json_response({"name": name, "ready": True, "versions": versions})
    reasons = "; ".join(f"version {v['version']}: {v['reason'] or v['state']}"
                        for v in versions) or "no version folder"
    return json_response({"error": f"Model '{name}' has no available version after the "
                                   f"re-scan ({reasons}).", "name": name, "ready": False,
                          "versions": versions}, status_code=503)


@router.post("/v2/repository/models/{name}/unload",
             summary="Stop serving the model until it is loaded again")
async def unload(request: Request, name: str) -> Response:
    svc = _admin(request)
    svc.repository.view(name)  # 404 for an unknown model
    svc.repository.hold(name, True)
    await _rescan(svc)
    return json_response({"name": name, "ready": False, "versions": _versions(svc, name)})


@router.post("/admin/reload", summary="Re-scan the whole repository now")
async def reload(request: Request) -> Response:
    svc = _admin(request)
    await _rescan(svc)
    return json_response({"models": _all_versions(svc)})
