"""The console's JSON, under ``/ui/api/``: what the model endpoints do not already say
in one answer. Keyed like ``/v1/models`` (``config`` is open: the page asks it whether
to ask for a key)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from service import __version__, security
from service.console import card, live
from service.dataplane import DataPlane, parse_version
from service.errors import UnsupportedMediaType
from service.manifest import Manifest
from service.protocols.common import json_response, services
from service.protocols.tfserving import routing_facts, serving_facts
from service.repository import State, VersionStatus

router = APIRouter(prefix="/ui/api", include_in_schema=False)

CONFIG_PATH = "/ui/api/config"


@router.get("/config")
async def config(request: Request) -> Response:
    plane = services(request)
    api_keys, admin_keys = security.configured(plane.settings)
    return json_response({"version": __version__, "api_keys": api_keys,
                          "admin_keys": admin_keys,
                          "grpc_port": plane.settings.grpc_port or None})


def headline(m: Manifest) -> dict[str, Any] | None:
    """The metric a card leads with: the manifest's primary metric, else accuracy for a
    classifier and R² (or MAE) for a regressor."""
    metrics = m.evaluation.test_metrics
    order = [m.evaluation.primary_metric, "accuracy", "r2", "mae", *metrics]
    for name in order:
        if name and name in metrics:
            return {"metric": name, "value": metrics[name]}
    return None


def _version(s: VersionStatus) -> dict[str, Any]:
    out: dict[str, Any] = {
        "version": s.version, "state": s.state.value, "failed": s.failed,
        "reason": s.error or s.detail, "load_seconds": round(s.load_seconds, 3) or None,
        "loaded_at": s.loaded_at or None}
    model = s.model
    if model is not None and s.state is not State.END:
        m = model.manifest
        out |= {"description": m.description, "task": m.task.value,
                "framework": m.framework.value,
                "input_kind": m.inputs[0].kind if len(m.inputs) == 1 else "several",
                "created_at": m.created_at.isoformat(), "headline": headline(m),
                "test_metrics": m.evaluation.test_metrics,
                "serving": serving_facts(model)}
        if model.reference is not None and m.task.value == "regression":
            # Context for one answer: the deciles of its predictions on the training data.
            out["prediction_deciles"] = model.reference.predictions.edges
    return out


def catalog_entry(plane: DataPlane, name: str) -> dict[str, Any]:
    view = plane.repository.view(name)
    versions = [_version(s) for s in view.listing()]
    latest = next((v for v in versions if "description" in v), {})
    return {"name": name, "ready": bool(view.available),
            "description": latest.get("description", ""), "task": latest.get("task"),
            "input_kind": latest.get("input_kind"), "routing": routing_facts(view),
            "evidence": plane.evidence.status(name), "versions": versions}


@router.get("/catalog")
async def catalog(request: Request) -> Response:
    plane = services(request)
    return json_response({"models": [catalog_entry(plane, name)
                                     for name in plane.repository.names()]})


def _folder(request: Request, name: str, version: str):
    status = services(request).repository.status(name, parse_version(version))  # type: ignore[arg-type]
    return status.folder


@router.get("/models/{name}/versions/{version}/card")
async def model_card(request: Request, name: str, version: str) -> Response:
    return json_response(card.render(_folder(request, name, version)))


@router.get("/models/{name}/versions/{version}/files/{file}")
async def model_file(request: Request, name: str, version: str, file: str) -> Response:
    path = card.plot_path(_folder(request, name, version), file)
    data = path.read_bytes()
    if not data.startswith(card.PNG_MAGIC):
        raise UnsupportedMediaType(f"{file!r} is not a PNG image.")
    return Response(data, media_type="image/png",
                    headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"})


@router.get("/live")
async def live_metrics(request: Request) -> Response:
    return json_response(live.jsonable(live.snapshot(request.app.state.metrics)))
