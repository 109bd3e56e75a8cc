"""The evidence routes: ground truth for kept predictions, TF-Serving style
(``:feedback``) and V2 style (``/feedback``) with the same body and answer
(service/evidence/feedback.py), and two versions compared (service/evidence/compare.py)."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from service.errors import Unavailable
from service.protocols.common import json_response, parse_json, read_body, services

router = APIRouter(tags=["Evidence"])

_EXAMPLE = {"feedback": [{"request_id": "3f0c9a", "instance": 0, "truth": "good"}]}


@router.post("/v1/models/{name}:feedback", summary="Ground truth for logged predictions",
             openapi_extra={"requestBody": {"content": {"application/json": {
                 "example": _EXAMPLE}}}})
@router.post("/v2/models/{name}/feedback", summary="Ground truth for logged predictions (V2)",
             openapi_extra={"requestBody": {"content": {"application/json": {
                 "example": _EXAMPLE}}}})
async def post_feedback(request: Request, name: str) -> Response:
    plane = services(request)
    body = parse_json(await read_body(request, plane.settings.max_body_bytes))
    view = plane.repository.view(name)  # NotFound for an unknown model
    if not view.available:
        raise Unavailable(f"Model '{name}' has no available version to check the feedback "
                          "against.")
    # Truths are checked against the newest available version's task and labels.
    manifest = plane.repository.resolve(name, view.available[0].version).manifest
    return json_response(await plane.evidence.feedback(name, manifest, body))


@router.get("/v1/models/{name}/compare", summary="Two versions side by side: agreement on "
            "shadow traffic, live quality from feedback, model time, drift")
async def compare(request: Request, name: str,
                  baseline: str = Query("", description="Version number or label."),
                  candidate: str = Query("", description="Version number or label.")
                  ) -> Response:
    return json_response(services(request).evidence.compare(name, baseline, candidate))
