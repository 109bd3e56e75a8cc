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

import math
import struct
import zlib
from typing import Any

import numpy as np
import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response

from service import __version__, tensors
from service.batch import Batch
from service.errors import InvalidInput, UnsupportedMediaType, detail
from service.manifest import Framework
from service.model import LoadedModel
from service.model_config import LABEL_RE
from service.protocols.common import (
    BytesResponse,
    Services,
    json_response,
    parse_json,
    read_body,
    require_object,
    services,
)
from service.protocols.tfserving import manifest_facts, parse_version, serving_facts
from service.repository import State
from service.signature import Signature

router = APIRouter(tags=["KServe V2"])

HEADER_LENGTH = "inference-header-content-length"
EXTENSIONS = ["binary_tensor_data", "classification"]

# V2 datatype -> little-endian numpy dtype. BF16 is decoded by hand (numpy has no
# bfloat16); BOOL is one byte per value and BYTES length-prefixed strings.
NUMERIC = {
    "FP16": "<f2", "FP32": "<f4", "FP64": "<f8", "BF16": "<u2",
    "INT8": "i1", "INT16": "<i2", "INT32": "<i4", "INT64": "<i8",
    "UINT8": "u1", "UINT16": "<u2", "UINT32": "<u4", "UINT64": "<u8",
}
ALL_DATATYPES = [*NUMERIC, "BOOL", "BYTES"]
OUTPUT_DATATYPES = {"float32": "FP32", "float64": "FP64", "int64": "INT64",
                    "string": "BYTES"}
PLATFORMS = {Framework.KERAS: "tensorflow_keras", Framework.SKLEARN: "sklearn_joblib"}


# --- server and model metadata ---------------------------------------------------------


@router.get("/v2", summary="Server metadata")
async def server_metadata() -> Response:
    return json_response({"name": "modelserve", "version": __version__,
                          "extensions": EXTENSIONS})


def resolve(svc: Services, name: str, version: str | None) -> LoadedModel:
    """The version a V2 path names: a number, a label, or (None) the default route."""
    if version is not None and not version.isdigit() and LABEL_RE.match(version):
        return svc.repository.resolve(name, label=version)
    return svc.repository.resolve(name, parse_version(version))


def _model_metadata(svc: Services, name: str, version: str | None) -> dict[str, Any]:
    model = resolve(svc, name, version)
    m = model.manifest
    versions = [str(s.version) for s in svc.repository.statuses(name)
                if s.state is State.AVAILABLE]
    return {
        "name": m.name,
        "versions": versions if version is None else [str(m.version)],
        "platform": PLATFORMS[m.framework],
        "inputs": input_metadata(model.signature),
        "outputs": [{"name": o.name, "datatype": OUTPUT_DATATYPES[o.dtype], "shape": o.shape}
                    for o in m.outputs],
        "parameters": {"version": str(m.version)},
        "modelserve": {**manifest_facts(m), "serving": serving_facts(model)},
    }


def input_metadata(sig: Signature) -> list[dict[str, Any]]:
    return [{"name": n, "datatype": d, "shape": s} for n, d, s in sig.tensors()]


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


def _ready(svc: Services, name: str, version: str | None) -> Response:
    resolve(svc, name, version)  # 404 / 503 when not ready
    return Response(status_code=200)


@router.get("/v2/models/{name}/ready", summary="Model ready (latest version)")
async def model_ready(request: Request, name: str) -> Response:
    return _ready(services(request), name, None)


@router.get("/v2/models/{name}/versions/{version}/ready", summary="Model ready (one version)")
async def model_version_ready(request: Request, name: str, version: str) -> Response:
    return _ready(services(request), name, version)


# --- inference ---------------------------------------------------------------------------


@router.post("/v2/models/{name}/infer", summary="Inference (latest version)")
async def infer(request: Request, name: str) -> Response:
    return await _infer(request, name, None)


@router.post("/v2/models/{name}/versions/{version}/infer", summary="Inference (one version)")
async def infer_version(request: Request, name: str, version: str) -> Response:
    return await _infer(request, name, version)


async def _infer(request: Request, name: str, version: str | None) -> Response:
    svc = services(request)
    body = _decode_content(request, await read_body(request, svc.settings.max_body_bytes),
                           svc.settings.max_body_bytes)
    header, binary = _split_body(request, body)
    payload = require_object(parse_json(header, "inference request header"),
                             "inference request")
    model = resolve(svc, name, version)
    request_id = payload.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise InvalidInput("'id' must be a string.")
    params = _parameters(payload, "parameters")
    batch = _decode_inputs(model, payload.get("inputs"), binary, svc.settings.max_batch_rows)
    requested = _requested_outputs(model, payload.get("outputs"),
                                   bool(params.get("binary_data_output", False)))
    outputs = await svc.inference.predict(model, batch)
    return _encode_response(model, request_id, outputs, requested,
                            tensors.warnings(model.signature, batch))


# Public: service.fastlane serves this same handler without FastAPI's routing.
infer_handler = _infer


def _decode_content(request: Request, body: bytes, limit: int) -> bytes:
    encoding = request.headers.get("content-encoding", "identity").lower()
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
    raw = request.headers.get(HEADER_LENGTH)
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
        raise InvalidInput("'inputs' must be a non-empty list of tensors "
                           f"({{\"name\", \"shape\", \"datatype\", \"data\"}}); "
                           f"{sig.model} takes {_takes(sig)}.")
    offset = 0
    arrays: dict[str, np.ndarray] = {}
    for i, tensor in enumerate(inputs):
        arr, offset = _decode_tensor(sig, tensor, i, binary, offset)
        name = tensor["name"]
        if name in arrays:
            raise InvalidInput(f"Input '{name[:40]}' appears twice.")
        arrays[name] = arr
    if offset != len(binary):
        raise InvalidInput(f"The body holds {len(binary) - offset} bytes of binary data that "
                           "no input claims (check binary_data_size).")
    for name, arr in arrays.items():
        if arr.ndim == 0 or arr.shape[0] == 0:
            raise InvalidInput(f"Input '{name[:40]}' holds no examples: the batch is empty; "
                               "send at least one example.")
        if arr.shape[0] > max_rows:
            raise InvalidInput(f"The batch holds {arr.shape[0]} examples; the maximum per "
                               f"request is {max_rows}.")
    return tensors.from_arrays(sig, arrays, "inputs", max_rows)


def _takes(sig: Signature) -> str:
    parts = []
    for inp in sig.inputs:
        text = f"'{inp.name}' with shape {[-1, *inp.sample_shape]}"
        if inp.tabular:
            if inp.v2_datatype() is None:
                text = "one tensor per feature: "
            else:
                text += " or one tensor per feature: "
            text += ", ".join(f"'{f.name}'" for f in inp.features[:30])
        parts.append(text)
    return "; ".join(parts)


def _target(sig: Signature, name: str, where: str) -> tuple[str, str, set[str]]:
    """What a tensor named ``name`` feeds, its datatype in the model's metadata, and the
    datatypes that can carry it."""
    inp = sig.by_name.get(name)
    if inp is not None:
        datatype = inp.v2_datatype()
        if datatype is None:
            raise InvalidInput(f"{where}: input '{name}' has features of different types; "
                               "send one tensor per feature: "
                               + ", ".join(f"'{f.name}' ({f.wire})"
                                           for f in inp.features[:30]) + ".")
        what = "images" if not inp.tabular else f"input '{name}'"
        return what, datatype, _CARRIERS[datatype]
    feature = sig.features.get(name)
    if feature is not None:
        return f"feature '{name}'", feature.wire, _CARRIERS[feature.wire]
    raise InvalidInput(f"Unknown input {name[:40]!r} for {sig.model}; it takes {_takes(sig)}.",
                       [detail(f"inputs[{name[:40]}]", "unknown input")])


# Which V2 datatypes can carry a value of each kind (numbers convert exactly or, for
# integers, are checked to be whole).
_NUMBERS = set(NUMERIC)
_CARRIERS = {"FP64": _NUMBERS, "FP32": _NUMBERS, "INT64": _NUMBERS, "UINT8": _NUMBERS,
             "BOOL": {"BOOL"}, "BYTES": {"BYTES"}}


def _decode_tensor(sig: Signature, tensor: Any, i: int, binary: bytes,
                   offset: int) -> tuple[np.ndarray, int]:
    if not isinstance(tensor, dict):
        raise InvalidInput(f"inputs[{i}] must be an object with name, shape, datatype, data.")
    name, shape, datatype = tensor.get("name"), tensor.get("shape"), tensor.get("datatype")
    where = f"inputs[{i}]" + (f" ('{name[:40]}')" if isinstance(name, str) else "")
    if not isinstance(name, str) or not name:
        raise InvalidInput(f"{where}: 'name' must be a non-empty string.")
    if (not isinstance(shape, list) or not shape or len(shape) > 8
            or not all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d < 2**31
                       for d in shape)):
        raise InvalidInput(f"{where}: 'shape' must be a list of non-negative integers, "
                           f"got {str(shape)[:60]}.")
    if not isinstance(datatype, str) or datatype not in ALL_DATATYPES:
        raise InvalidInput(f"{where}: datatype {str(datatype)[:20]!r} is not a V2 datatype. "
                           f"Valid datatypes: {', '.join(ALL_DATATYPES)}.",
                           [detail(where, "wrong datatype", got=str(datatype)[:20])])
    what, wire, carriers = _target(sig, name, where)
    if datatype not in carriers:
        want = "numbers" if carriers is _NUMBERS else (
            "true/false" if "BOOL" in carriers else "strings")
        send = ("any numeric datatype" if carriers is _NUMBERS else next(iter(carriers)))
        raise InvalidInput(f"{where}: datatype {datatype!r} is not accepted; {what} takes "
                           f"{want}. Send {send}.",
                           [detail(where, "wrong datatype", expected=wire, got=datatype)])
    count = math.prod(shape)  # exact Python ints: np.prod costs µs and can overflow
    params = _parameters(tensor, f"{where}.parameters")
    if "binary_data_size" in params:
        size = params["binary_data_size"]
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise InvalidInput(f"{where}: binary_data_size must be a non-negative integer.")
        if offset + size > len(binary):
            raise InvalidInput(f"{where}: binary data is truncated: {size} bytes expected, "
                               f"{len(binary) - offset} left in the body.")
        if datatype == "BYTES":
            arr = _bytes_elements(binary[offset:offset + size], count, where)
        else:
            itemsize = 1 if datatype == "BOOL" else np.dtype(NUMERIC[datatype]).itemsize
            if size != count * itemsize:
                raise InvalidInput(f"{where}: shape {shape} of {datatype} needs "
                                   f"{count * itemsize} bytes, binary_data_size says {size}.")
            raw = np.frombuffer(binary, dtype="u1" if datatype == "BOOL" else NUMERIC[datatype],
                                count=count, offset=offset)
            if datatype == "BOOL":
                if np.count_nonzero(raw > 1):
                    raise InvalidInput(f"{where}: BOOL bytes must be 0 or 1.")
                raw = raw.astype(bool)
            arr = raw
        offset += size
    else:
        if "data" not in tensor:
            raise InvalidInput(f"{where}: needs 'data' (or parameters.binary_data_size).")
        if datatype == "BF16":
            raise InvalidInput(f"{where}: BF16 can only be sent as binary data.")
        arr = _json_data(tensor["data"], where, datatype)
        if arr.size != count:
            raise InvalidInput(f"{where}: shape {shape} holds {count} elements but 'data' has "
                               f"{arr.size}.",
                               [detail(where, "element count does not match shape",
                                       expected=count, got=int(arr.size))])
    if datatype == "BF16":
        arr = (arr.astype(np.uint32) << 16).view(np.float32)
    return arr.reshape(shape), offset


def _bytes_elements(blob: bytes, count: int, where: str) -> np.ndarray:
    """Triton's BYTES encoding: each element a 4-byte little-endian length and its bytes."""
    if count * 4 > len(blob):  # before allocating anything the shape claims
        raise InvalidInput(f"{where}: {count} BYTES elements need at least {count * 4} bytes, "
                           f"binary_data_size says {len(blob)}.")
    out = np.empty(count, dtype=object)
    pos = 0
    for k in range(count):
        if pos + 4 > len(blob):
            raise InvalidInput(f"{where}: BYTES data is truncated at element {k} of {count}.")
        (n,) = struct.unpack_from("<I", blob, pos)
        pos += 4
        if pos + n > len(blob):
            raise InvalidInput(f"{where}: BYTES element {k} says {n} bytes but only "
                               f"{len(blob) - pos} are left.")
        out[k] = _text(blob[pos:pos + n], where, k)
        pos += n
    if pos != len(blob):
        raise InvalidInput(f"{where}: BYTES data holds {len(blob) - pos} bytes past its "
                           f"{count} elements (check the shape).")
    return out


def _text(raw: bytes, where: str, k: int) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput(f"{where}: BYTES element {k} is not UTF-8 text.") from None


def _json_data(data: Any, where: str, datatype: str) -> np.ndarray:
    if not isinstance(data, list):
        data = [data]
    if datatype in ("BYTES", "BOOL"):
        flat: list[Any] = []
        _flatten(data, flat, where)
        out = np.empty(len(flat), dtype=object)
        out[:] = flat
        if datatype == "BOOL" and all(type(v) is bool for v in flat):
            return out.astype(bool)
        return out  # checked value by value against the feature (strings, nulls)
    try:
        arr = np.asarray(data)
    except (ValueError, TypeError):
        raise InvalidInput(f"{where}: 'data' is ragged; send a flat list or a regular "
                           "nested list.") from None
    if arr.dtype.kind not in "iuf":
        if arr.dtype == object and all(v is None or (isinstance(v, (int, float))
                                                     and not isinstance(v, bool))
                                       for v in arr.reshape(-1)):
            return arr.reshape(-1)  # nulls: allowed where the feature is nullable
        raise InvalidInput(f"{where}: 'data' must hold only numbers.",
                           [detail(where, "not a number")])
    if datatype[0] in "IU":  # integers must be whole and fit the declared datatype
        info = np.iinfo(NUMERIC[datatype])
        if arr.dtype.kind == "f" and np.count_nonzero(np.floor(arr) != arr):
            raise InvalidInput(f"{where}: {datatype} data must be whole numbers.")
        if arr.size and (arr.min() < info.min or arr.max() > info.max):
            raise InvalidInput(f"{where}: a value does not fit {datatype} "
                               f"([{info.min}, {info.max}]).")
    return arr.reshape(-1)


def _flatten(node: Any, out: list[Any], where: str, depth: int = 0) -> None:
    if depth > 8:
        raise InvalidInput(f"{where}: 'data' is nested too deeply.")
    for item in node:
        if isinstance(item, list):
            _flatten(item, out, where, depth + 1)
        else:
            out.append(item)


# --- outputs ---------------------------------------------------------------------------


def _requested_outputs(model: LoadedModel, outputs: Any,
                       binary_default: bool) -> list[tuple[str, bool, int]]:
    """(output name, as binary, classification top-k or 0) per requested output."""
    names = [o.name for o in model.manifest.outputs]
    if outputs is None:
        return [(n, binary_default, 0) for n in names]
    if not isinstance(outputs, list):
        raise InvalidInput("'outputs' must be a list of {\"name\": ...} objects.")
    out = []
    for i, o in enumerate(outputs):
        if not isinstance(o, dict) or not isinstance(o.get("name"), str):
            raise InvalidInput(f"outputs[{i}] must be an object with a 'name'.")
        if o["name"] not in names:
            raise InvalidInput(f"Unknown output '{o['name'][:40]}'; {model.name} has "
                               + ", ".join(f"'{n}'" for n in names) + ".")
        params = _parameters(o, f"outputs[{i}].parameters")
        k = params.get("classification", 0)
        if k:
            if model.manifest.labels is None or o["name"] != "probabilities":
                raise InvalidInput("The classification extension applies to the "
                                   "'probabilities' output of a classifier.")
            if not isinstance(k, int) or isinstance(k, bool) or k < 0:
                raise InvalidInput("'classification' must be a positive integer.")
        out.append((o["name"], bool(params.get("binary_data", binary_default)), int(k)))
    return out


def _encode_response(model: LoadedModel, request_id: str | None,
                     outputs: dict[str, np.ndarray], requested: list[tuple[str, bool, int]],
                     warnings: list[dict[str, Any]]) -> Response:
    labels = model.manifest.labels or []
    datatypes = model.signature.output_datatypes
    tensors_out, blobs = [], []
    for name, as_binary, top_k in requested:
        arr = outputs[name]
        datatype = OUTPUT_DATATYPES[datatypes[name]]
        if top_k:
            arr = _classification(arr, labels, top_k)
            datatype = "BYTES"
        entry: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(arr.shape)}
        if as_binary:
            blob = _to_bytes(arr, datatype)
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = arr.reshape(-1).tolist() if datatype == "BYTES" else arr.reshape(-1)
        tensors_out.append(entry)
    body: dict[str, Any] = {"model_name": model.name, "model_version": str(model.version),
                            "outputs": tensors_out}
    if request_id is not None:
        body["id"] = request_id
    if warnings:
        body["parameters"] = {"warnings": orjson.dumps(warnings).decode()}
    header = orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)
    if not blobs:
        return BytesResponse(header)
    return BytesResponse(header + b"".join(blobs), media_type="application/octet-stream",
                         headers={"Inference-Header-Content-Length": str(len(header))})


def _classification(proba: np.ndarray, labels: list[str], k: int) -> np.ndarray:
    k = min(k, proba.shape[1])
    top = np.argsort(-proba, axis=1, kind="stable")[:, :k]
    return np.array([[f"{row[j]:g}:{j}:{labels[j]}" for j in idx]
                     for row, idx in zip(proba, top, strict=True)], dtype=object)


def _to_bytes(arr: np.ndarray, datatype: str) -> bytes:
    if datatype == "BYTES":
        parts = []
        for item in arr.reshape(-1):
            raw = str(item).encode()
            parts.append(struct.pack("<I", len(raw)) + raw)
        return b"".join(parts)
    return np.ascontiguousarray(arr, dtype=NUMERIC[datatype]).tobytes()

