"""Images: ``POST /v1/models/{name}[/versions/{v}]:predict_image`` with a PNG or JPEG,
either as the raw body or as a multipart file upload (``-F file=@digit.png``), for any
model whose one input is an image; the manifest declares how a picture becomes that
input (``service/images.py``)."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.datastructures import UploadFile

from service import images
from service.batch import Batch
from service.dataplane import InferenceRequest
from service.errors import InvalidInput, PayloadTooLarge, UnsupportedMediaType
from service.protocols import routes
from service.protocols.common import json_response, read_body, services
from service.protocols.tfserving import resolve

router = APIRouter(tags=["Images"])

_IMAGE_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {"schema": {
                "type": "object", "required": ["file"],
                "properties": {"file": {"type": "string", "format": "binary",
                                        "description": "PNG or JPEG of one digit"}}}},
            "image/png": {"schema": {"type": "string", "format": "binary"}},
            "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}


# Content types a raw body or a multipart part may declare. Unlabelled bytes
# (none, application/octet-stream) are identified by their content.
_DECLARED = {"image/png": "PNG", "image/jpeg": "JPEG", "image/jpg": "JPEG",
             "image/pjpeg": "JPEG"}
_SNIFFED = {"", "application/octet-stream", "image/*", "*/*"}


def _check_declared(ctype: str, fmt: str | None = None) -> None:
    """415 for a body labelled as something other than the image it is: a non-image
    Content-Type, or image/png on a JPEG (and the reverse)."""
    if ctype in _SNIFFED:
        return
    declared = _DECLARED.get(ctype)
    if declared is None:
        raise UnsupportedMediaType(f"Content-Type '{ctype[:40]}' is not accepted; send "
                                   "image/png or image/jpeg (or multipart/form-data with the "
                                   "image as 'file').")
    if fmt is not None and fmt != declared:
        raise UnsupportedMediaType(f"Content-Type says {ctype} but the image is a {fmt}; "
                                   "send the matching Content-Type.")


async def _image_bytes(request: Request, limit: int) -> tuple[bytes, str]:
    # Multipart overhead is small; the body limit keeps parsing bounded either way.
    body = await read_body(request, limit + 64 * 1024)
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "multipart/form-data":
        data, declared = body, ctype
    else:
        async def replay() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        try:
            form = await Request(request.scope, replay).form(max_files=1, max_fields=5)
        except Exception as exc:  # python-multipart raises several types
            raise InvalidInput(f"The multipart body could not be parsed: {exc}.") from None
        files = [v for v in form.values() if isinstance(v, UploadFile)]
        if not files:
            raise InvalidInput("The multipart form has no file; send it as 'file'.")
        data = await files[0].read()
        declared = (files[0].content_type or "").split(";")[0].strip().lower()
    if len(data) > limit:
        raise PayloadTooLarge(f"The image is {len(data)} bytes; the limit is {limit}.")
    _check_declared(declared)
    return data, declared


async def _predict_image(request: Request, name: str, version: str | None,
                         label: str | None = None) -> Response:
    svc = services(request)
    model = resolve(svc, name, version, label)
    inputs = model.manifest.inputs
    if len(inputs) != 1 or inputs[0].kind != "image":
        kind = "named features" if all(i.kind == "tabular" for i in inputs) else "several inputs"
        raise InvalidInput(f"'{name}' takes {kind}, not images; use ':predict'.")
    spec = inputs[0]
    data, declared = await _image_bytes(request, svc.settings.max_image_bytes)
    # Decoding and preprocessing take milliseconds of CPU (Pillow and numpy release the
    # GIL for most of it): on a thread, so the event loop keeps serving meanwhile.
    img = await asyncio.to_thread(images.decode, data, max_pixels=svc.settings.max_image_pixels)
    _check_declared(declared, img.format)
    prepared = await asyncio.to_thread(images.prepare, img, spec)
    pixels = prepared.pixels
    out = (await svc.infer(InferenceRequest(model, Batch({spec.name: pixels[None]}, 1)))).outputs
    body: dict[str, Any] = {"model_name": model.name, "model_version": str(model.version)}
    if "value" in out:
        body["value"] = out["value"][0]
    else:
        body["label"] = out["label"][0]
        body["class_id"] = out["class_id"][0]
    if "probabilities" in out:
        body["probabilities"] = dict(zip(model.manifest.labels or [],
                                         out["probabilities"][0].tolist(), strict=True))
    warnings = [{"message": note} for note in prepared.notes]
    if "probabilities" in out:
        top = float(out["probabilities"][0].max())
        if top < _min_confidence(request, svc.settings.image_min_confidence):
            warnings.append({
                "message": f"low confidence: the likeliest class, '{body['label']}', has "
                           f"probability {top:.2f}; the picture may not show one clear digit "
                           "(try a closer, sharper photo of a single digit)",
                "probability": round(top, 4)})
    if warnings:
        body["warnings"] = warnings
    if request.query_params.get("return_input") in ("1", "true"):
        body["input"] = pixels.round(1)
    return json_response(body)


def _min_confidence(request: Request, default: float) -> float:
    """``?min_confidence=0.9``: a client's own bar for the low-confidence warning."""
    raw = request.query_params.get("min_confidence")
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise InvalidInput(f"min_confidence must be a number from 0 to 1, got '{raw[:20]}'.")
    return value


routes.serve("image", {"predict_image": _predict_image}, router, openapi_extra=_IMAGE_DOC)
