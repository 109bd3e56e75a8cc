"""KServe V2 / Open Inference Protocol over HTTP, with Triton's binary tensor extension.

``tritonclient.http`` sends binary tensors by default: the body is the JSON header
followed by raw little-endian tensor bytes, ``Inference-Header-Content-Length`` says
where the JSON ends, and each binary input carries ``parameters.binary_data_size``
instead of ``data``. It sets no Content-Type, so none is required here.

``/versions/{v}`` also takes a version label from the model's config.json
(``/v2/models/wine-quality/versions/canary/infer``): V2 has no label route of its own.

A tabular input is sent either as one tensor named after it (``features``, shape
``[n, k]``, when its features share a numeric or boolean dtype) or as one tensor per
feature (``alcohol``, shape ``[n]`` or ``[n, 1]``; strings as BYTES, booleans as BOOL).
A model with several inputs takes one tensor (or set of feature tensors) per input.
"""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import Response

from service.batch import Batch
from service.dataplane import (  # noqa: F401  (input_metadata: re-exported)
    DataPlane,
    InferenceRequest,
    InferenceResult,
    OutputRequest,
    input_metadata,
)
from service.errors import InvalidInput, UnsupportedMediaType
from service.model import LoadedModel
from service.protocols import routes
from service.protocols import v2_tensors as wire
from service.protocols.common import (
    BytesResponse,
    dumps,
    header,
    json_response,
    parse_json,
    read_body,
    require_object,
    services,
)
from service.protocols.tfserving import manifest_facts, serving_facts

router = APIRouter(tags=["KServe V2"])

HEADER_LENGTH = b"inference-header-content-length"


# --- server and model metadata ---------------------------------------------------------


@router.get("/v2", summary="Server metadata")
async def server_metadata(request: Request) -> Response:
    return json_response(services(request).server_metadata())


def _model_metadata(plane: DataPlane, name: str, version: str | None) -> dict[str, Any]:
    model, meta = plane.model_metadata(name, version)
    meta["parameters"] = {"version": str(model.version)}
    meta["modelserve"] = {**manifest_facts(model.manifest), "serving": serving_facts(model)}
    return meta


def example_inputs(model: LoadedModel) -> list[dict[str, Any]]:
    """The first manifest sample as V2 JSON tensors (per input, or per feature)."""
    sample = model.manifest.samples[0].inputs
    out: list[dict[str, Any]] = []
    for inp in model.signature.inputs:
        datatype = inp.v2_datatype()
        if datatype is None:
            out.extend({"name": f.name, "datatype": f.wire, "shape": [1],
                        "data": [sample[f.name]]} for f in inp.features)
            continue
        value = sample[inp.name] if inp.name in sample else [sample[n]
                                                             for n in inp.feature_names]
        flat = np.asarray(value).reshape(-1).tolist()
        out.append({"name": inp.name, "datatype": datatype,
                    "shape": [1, *inp.sample_shape], "data": flat})
    return out


@router.get("/v2/models/{name}", summary="Model metadata (latest version)")
async def model_metadata(request: Request, name: str) -> Response:
    return json_response(_model_metadata(services(request), name, None))


@router.get("/v2/models/{name}/versions/{version}", summary="Model metadata (one version)")
async def model_version_metadata(request: Request, name: str, version: str) -> Response:
    return json_response(_model_metadata(services(request), name, version))


def _ready(plane: DataPlane, name: str, version: str | None) -> Response:
    plane.resolve(name, version)  # 404 / 503 when not ready
    return Response(status_code=200)


@router.get("/v2/models/{name}/ready", summary="Model ready (latest version)")
async def model_ready(request: Request, name: str) -> Response:
    return _ready(services(request), name, None)


@router.get("/v2/models/{name}/versions/{version}/ready", summary="Model ready (one version)")
async def model_version_ready(request: Request, name: str, version: str) -> Response:
    return _ready(services(request), name, version)


# --- inference ---------------------------------------------------------------------------


async def infer(request: Request, name: str, version: str | None = None,
                label: str | None = None) -> Response:
    plane = services(request)
    limit = plane.settings.max_body_bytes
    body = _decode_content(request, await read_body(request, limit), limit)
    header, binary = _split_body(request, body)
    payload = require_object(parse_json(header, "inference request header"),
                             "inference request")
    model = plane.resolve(name, version)
    request_id = payload.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise InvalidInput("'id' must be a string.")
    params = _parameters(payload, "parameters")
    batch = _decode_inputs(model, payload.get("inputs"), binary, plane.settings.max_request_rows)
    binary = bool(params.get("binary_data_output", False))
    outputs = _requested_outputs(payload.get("outputs"), binary)
    if outputs is None:
        outputs = [OutputRequest(o.name, 0, binary) for o in model.manifest.outputs]
    else:
        plane.output_requests(model, outputs)
    result = await plane.infer(InferenceRequest(model, batch, outputs, params, request_id))
    return _encode_response(result)


routes.serve("v2", {"infer": infer}, router)


def _decode_content(request: Request, body: bytes, limit: int) -> bytes:
    encoding = (header(request, b"content-encoding") or "identity").lower()
    if encoding in ("identity", ""):
        return body
    if encoding not in ("gzip", "deflate"):
        raise UnsupportedMediaType(f"Content-Encoding '{encoding[:20]}' is not supported; "
                                   "use gzip, deflate or none.")
    # Bounded inflate: a small compressed body must not expand past the body limit.
    inflater = zlib.decompressobj(wbits=31 if encoding == "gzip" else 15)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise InvalidInput(f"The body is not valid {encoding} data: {exc}.") from None
    if len(out) > limit or inflater.unconsumed_tail:
        raise InvalidInput(f"The decompressed body exceeds the limit of {limit} bytes.")
    return out


def _split_body(request: Request, body: bytes) -> tuple[bytes, bytes]:
    raw = header(request, HEADER_LENGTH)
    if raw is None:
        return body, b""
    if not (raw.strip().isascii() and raw.strip().isdigit()) or len(raw) > 18:
        raise InvalidInput(f"Inference-Header-Content-Length must be a byte count, "
                           f"got '{raw[:20]}'.")
    n = int(raw)
    if n == 0:
        raise InvalidInput("Raw binary requests (Inference-Header-Content-Length: 0) are not "
                           "supported; send the JSON inference header first.")
    if n > len(body):
        raise InvalidInput(f"Inference-Header-Content-Length is {n} but the body holds only "
                           f"{len(body)} bytes.")
    return body[:n], body[n:]


def _parameters(obj: dict[str, Any], field: str) -> dict[str, Any]:
    params = obj.get("parameters") or {}
    if not isinstance(params, dict):
        raise InvalidInput(f"'{field}' must be an object.")
    return params


def _decode_inputs(model: LoadedModel, inputs: Any, binary: bytes, max_rows: int) -> Batch:
    sig = model.signature
    if not isinstance(inputs, list) or not inputs:
        raise wire.no_inputs(sig)
    offset = 0
    arrays: dict[str, np.ndarray] = {}
    for i, tensor in enumerate(inputs):
        if not isinstance(tensor, dict):
            raise InvalidInput(f"inputs[{i}] must be an object with name, shape, datatype, "
                               "data.")
        name, shape, datatype = tensor.get("name"), tensor.get("shape"), tensor.get("datatype")
        where = wire.check_header(name, shape, datatype, i)
        wire.check_target(sig, name, datatype, where)
        params = _parameters(tensor, f"{where}.parameters")
        if "binary_data_size" in params:
            size = params["binary_data_size"]
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise InvalidInput(f"{where}: binary_data_size must be a non-negative integer.")
            if offset + size > len(binary):
                raise InvalidInput(f"{where}: binary data is truncated: {size} bytes expected, "
                                   f"{len(binary) - offset} left in the body.")
            arr = wire.decode_raw(memoryview(binary)[offset:offset + size], datatype, shape,
                                  where, "binary_data_size")
            offset += size
        else:
            if "data" not in tensor:
                raise InvalidInput(f"{where}: needs 'data' (or parameters.binary_data_size).")
            arr = wire.decode_list(tensor["data"], datatype, shape, where)
        if name in arrays:
            raise wire.duplicate(name)
        arrays[name] = arr
    if offset != len(binary):
        raise InvalidInput(f"The body holds {len(binary) - offset} bytes of binary data that "
                           "no input claims (check binary_data_size).")
    return wire.to_batch(sig, arrays, max_rows)


# --- outputs ---------------------------------------------------------------------------


def _requested_outputs(outputs: Any, binary_default: bool) -> list[OutputRequest] | None:
    if outputs is None:
        return None
    if not isinstance(outputs, list):
        raise InvalidInput("'outputs' must be a list of {\"name\": ...} objects.")
    out = []
    for i, o in enumerate(outputs):
        if not isinstance(o, dict) or not isinstance(o.get("name"), str):
            raise InvalidInput(f"outputs[{i}] must be an object with a 'name'.")
        params = _parameters(o, f"outputs[{i}].parameters")
        k = params.get("classification", 0)
        if k and (not isinstance(k, int) or isinstance(k, bool) or k < 0):
            raise InvalidInput("'classification' must be a positive integer.")
        out.append(OutputRequest(o["name"], int(k or 0),
                                 bool(params.get("binary_data", binary_default))))
    return out


def _encode_response(result: InferenceResult) -> Response:
    model = result.model
    tensors_out, blobs = [], []
    for t in result.tensors:
        arr, datatype = t.data, t.datatype
        entry: dict[str, Any] = {"name": t.name, "datatype": datatype, "shape": list(arr.shape)}
        if t.binary:
            blob = wire.to_bytes(arr, datatype)
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = arr.reshape(-1).tolist() if datatype == "BYTES" else arr.reshape(-1)
        tensors_out.append(entry)
    body: dict[str, Any] = {"model_name": model.name, "model_version": str(model.version),
                            "outputs": tensors_out}
    if result.id is not None:
        body["id"] = result.id
    if result.warnings:
        body["parameters"] = {"warnings": dumps(result.warnings).decode()}
    header = dumps(body)
    if not blobs:
        return BytesResponse(header)
    return BytesResponse(header + b"".join(blobs), media_type="application/octet-stream",
                         headers={"Inference-Header-Content-Length": str(len(header))})
