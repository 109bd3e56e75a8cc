"""TensorFlow Serving REST API: the same paths, bodies and error shape.

``/v1/models/{name}[/versions/{v} | /labels/{label}]`` (status), ``…/metadata``,
``…:predict`` (row ``instances`` or columnar ``inputs``), ``…:classify`` and
``…:regress`` (``examples``). Versionless requests go to the model's traffic split
when its config.json sets one, else to the latest available version.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response

from service import tensors
from service.dataplane import DataPlane, parse_version
from service.errors import InvalidInput
from service.manifest import Manifest, RawOutput, Task
from service.model import LoadedModel
from service.protocols import routes
from service.protocols.common import (
    Services,
    json_response,
    parse_json,
    read_body,
    require_object,
    services,
)
from service.repository import ModelView, State, VersionStatus

router = APIRouter(tags=["TF-Serving REST"])

_DTYPES = {"float32": "DT_FLOAT", "float64": "DT_DOUBLE", "int64": "DT_INT64",
           "string": "DT_STRING", "bool": "DT_BOOL", "uint8": "DT_UINT8"}
_DTYPE_OF_WIRE = {"FP64": "float64", "FP32": "float32", "INT64": "int64", "BOOL": "bool",
                  "BYTES": "string", "UINT8": "uint8"}


def resolve(plane: DataPlane, name: str, version: str | None,
            label: str | None = None) -> LoadedModel:
    return plane.resolve(name, version, label, label_as_version=False)


# --- status and metadata ------------------------------------------------------------


def _version_status(s: VersionStatus) -> dict[str, Any]:
    failed = s.state is State.END and bool(s.error)
    return {"version": str(s.version), "state": s.state.value,
            "status": {"error_code": "UNKNOWN" if failed else "OK",
                       "error_message": s.error if failed else s.detail}}


def routing_facts(view: ModelView) -> dict[str, Any]:
    """How requests for the model are routed, from its config.json."""
    cfg = view.config
    out: dict[str, Any] = {"version_policy": cfg.version_policy.describe(),
                           "labels": cfg.labels, "traffic": cfg.traffic,
                           "available_versions": [s.version for s in view.available]}
    if view.split is not None:
        total = sum(view.split.weights.values())
        out["traffic_now"] = {str(v): round(w / total, 4) for v, w in view.split.weights.items()}
    if view.config_error:
        out["config_error"] = view.config_error
    return out


@router.get("/v1/models", summary="Every model with its versions and states")
async def list_models(request: Request) -> Response:
    repo = services(request).repository
    views = [repo.view(name) for name in repo.names()]
    return json_response({"models": [
        {"name": v.name, "model_version_status": [_version_status(s) for s in v.listing()],
         "modelserve": routing_facts(v)} for v in views]})


@router.get("/v1/models/{name}", summary="Status of every version of a model; ready or not")
async def model_status(request: Request, name: str) -> Response:
    """TF Serving's ``model_version_status`` and KServe V1's ``{"name", "ready"}`` in one
    answer, so both kinds of client read it. Always 200 for a known model, as TF Serving
    answers while versions load or unload: KServe's client reads ``ready`` from the body
    (and a 503 would break TF Serving's clients, which read the states)."""
    plane = services(request)
    view = plane.repository.view(name)
    return json_response({"name": view.name, "ready": bool(view.available),
                          "model_version_status": [_version_status(s) for s in view.listing()],
                          "modelserve": routing_facts(view) | plane.evidence.status(name)})


@router.get("/v1/models/{name}/versions/{version}", summary="Status of one version")
async def version_status(request: Request, name: str, version: str) -> Response:
    status = services(request).repository.status(name, parse_version(version))  # type: ignore[arg-type]
    return json_response({"model_version_status": [_version_status(status)]})


@router.get("/v1/models/{name}/labels/{label}", summary="Status of the labelled version")
async def label_status(request: Request, name: str, label: str) -> Response:
    repo = services(request).repository
    status = repo.status(name, repo.label_version(name, label))
    return json_response({"model_version_status": [_version_status(status)]})


def _tensor_info(name: str, dtype: str, shape: list[int]) -> dict[str, Any]:
    return {"dtype": _DTYPES[dtype], "name": name,
            "tensor_shape": {"dim": [{"size": str(d), "name": ""} for d in shape],
                             "unknown_rank": False}}


def manifest_facts(m: Manifest) -> dict[str, Any]:
    """Our manifest's extra facts, for metadata responses (kept apart from the
    protocol's own fields)."""
    return {
        "description": m.description,
        "framework": m.framework.value, "framework_version": m.framework_version,
        "task": m.task.value,
        "inputs": [i.model_dump(exclude_none=True) for i in m.inputs],
        "labels": m.labels, "target": m.target.model_dump() if m.target else None,
        "outputs": [o.model_dump() for o in m.outputs],
        "evaluation": m.evaluation.model_dump(),
        "hyperparameters": m.hyperparameters,
        "provenance": m.provenance.model_dump(),
        "created_at": m.created_at.isoformat(),
        "example": {"instances": [m.samples[0].inputs]},
    }


def serving_facts(model: LoadedModel) -> dict[str, Any]:
    """How this process runs the version: engine (a verified lean rebuild or the
    framework's own call) and the call cost measured at warm-up."""
    engine = model.engine
    return {
        "engine": engine.name if engine else None,
        "engine_detail": engine.detail if engine else None,
        "max_relative_difference_from_framework": engine.max_abs_diff if engine else None,
        "warmup_call_ms": {str(rows): round(s * 1000, 4) for rows, s in model.timings.items()},
    }


async def _metadata(request: Request, name: str, version: str | None,
                    label: str | None = None) -> Response:
    model = resolve(services(request), name, version, label)
    m = model.manifest
    signature = {
        "inputs": {name: _tensor_info(name, _DTYPE_OF_WIRE[datatype], shape)
                   for name, datatype, shape in model.signature.tensors()},
        "outputs": {o.name: _tensor_info(o.name, o.dtype, o.shape) for o in m.outputs},
        "method_name": "tensorflow/serving/predict",
    }
    return json_response({
        "model_spec": {"name": m.name, "signature_name": "", "version": str(m.version)},
        "metadata": {"signature_def": {"signature_def": {"serving_default": signature}}},
        "modelserve": {**manifest_facts(m), "serving": serving_facts(model)},
    })


@router.get("/v1/models/{name}/metadata", summary="Signature and manifest facts (latest)")
async def metadata_latest(request: Request, name: str) -> Response:
    return await _metadata(request, name, None)


@router.get("/v1/models/{name}/versions/{version}/metadata", summary="Signature and facts")
async def metadata_version(request: Request, name: str, version: str) -> Response:
    return await _metadata(request, name, version)


@router.get("/v1/models/{name}/labels/{label}/metadata", summary="Signature and facts (label)")
async def metadata_label(request: Request, name: str, label: str) -> Response:
    return await _metadata(request, name, None, label)


# --- predict, classify, regress ---------------------------------------------------------


async def _read_request(request: Request, svc: Services) -> dict[str, Any]:
    body = await read_body(request, svc.settings.max_body_bytes)
    return require_object(parse_json(body))


def _version_header(model: LoadedModel) -> dict[str, str]:
    return {"Model-Name": model.name, "Model-Version": str(model.version)}


def _jsonable(arr: np.ndarray) -> Any:
    # orjson writes numeric arrays natively (float32 as its shortest repr) but not
    # object arrays such as labels.
    return arr.tolist() if arr.dtype == object else arr


def _rows(outputs: dict[str, np.ndarray]) -> Any:
    if len(outputs) == 1:
        return _jsonable(next(iter(outputs.values())))
    n = len(next(iter(outputs.values())))
    return [{k: v[i] for k, v in outputs.items()} for i in range(n)]


def _columns(outputs: dict[str, np.ndarray]) -> Any:
    if len(outputs) == 1:
        return _jsonable(next(iter(outputs.values())))
    return {k: _jsonable(v) for k, v in outputs.items()}


async def _predict(request: Request, name: str, version: str | None,
                   label: str | None = None) -> Response:
    svc = services(request)
    payload = await _read_request(request, svc)
    model = resolve(svc, name, version, label)
    sig = model.signature
    has_rows, has_cols = "instances" in payload, "inputs" in payload
    if has_rows == has_cols:
        raise InvalidInput(
            "Send exactly one of 'instances' (row format) or 'inputs' (columnar format)"
            + (", not both." if has_rows else "; neither was found.")
            + f" Example: {{\"instances\": [{_example(model)}]}}")
    if has_rows:
        batch = tensors.from_rows(sig, payload["instances"], "instances",
                                  svc.settings.max_request_rows)
    else:
        batch = tensors.from_columns(sig, payload["inputs"], svc.settings.max_request_rows)
    outputs = await svc.predict(model, batch)
    body: dict[str, Any] = ({"predictions": _rows(outputs)} if has_rows
                            else {"outputs": _columns(outputs)})
    warnings = tensors.warnings(sig, batch)
    if warnings:
        body["warnings"] = warnings
    return json_response(body, headers=_version_header(model))


def _example(model: LoadedModel) -> str:
    """The first sample as a short instance, for error messages."""
    parts = []
    for key, value in model.manifest.samples[0].inputs.items():
        if isinstance(value, list):
            shown = "[...]" if not value or not isinstance(value[0], list) else (
                f"[[...{len(value[0])} values], ...{len(value)} rows]")
        else:
            shown = orjson.dumps(value).decode()
        parts.append(f"{orjson.dumps(key).decode()}: {shown}")
    return "{" + ", ".join(parts) + "}"


async def _examples_batch(request: Request, name: str, version: str | None, label: str | None,
                          task: Task) -> tuple[LoadedModel, np.ndarray, Services]:
    svc = services(request)
    payload = await _read_request(request, svc)
    model = resolve(svc, name, version, label)
    verb = "classify" if task is Task.CLASSIFICATION else "regress"
    if not model.signature.tabular:
        raise InvalidInput(f"'{verb}' takes named features and '{name}' takes images; "
                           "use ':predict' instead.")
    if model.manifest.task is not task:
        other = "regress" if task is Task.CLASSIFICATION else "classify"
        raise InvalidInput(f"'{name}' is a {model.manifest.task.value} model; use ':{other}'.")
    if "examples" not in payload:
        raise InvalidInput(f"The body needs 'examples': a list of objects of features. "
                           f"Example: {{\"examples\": [{_example(model)}]}}")
    examples = payload["examples"]
    context = payload.get("context", {})
    if not isinstance(context, dict):
        raise InvalidInput("'context' must be an object of features shared by all examples.")
    if context and isinstance(examples, list):
        examples = [{**context, **e} if isinstance(e, dict) else e for e in examples]
    if isinstance(examples, list) and not all(isinstance(e, dict) for e in examples):
        raise InvalidInput("Each entry of 'examples' must be an object of named features.")
    batch = tensors.from_rows(model.signature, examples, "examples",
                              svc.settings.max_request_rows)
    return model, batch, svc


async def _classify(request: Request, name: str, version: str | None,
                    label: str | None = None) -> Response:
    model, batch, svc = await _examples_batch(request, name, version, label,
                                              Task.CLASSIFICATION)
    if model.manifest.raw_output is RawOutput.CLASS_INDEX:
        raise InvalidInput(f"'{name}' gives a label without probabilities (the model has no "
                           "predict_proba); use ':predict'.")
    proba = (await svc.predict(model, batch))["probabilities"]
    labels = model.manifest.labels or []
    body: dict[str, Any] = {"results": [[[label, p] for label, p in zip(labels, row,
                                                                         strict=True)]
                                        for row in proba]}
    warnings = tensors.warnings(model.signature, batch)
    if warnings:
        body["warnings"] = warnings
    return json_response(body, headers=_version_header(model))


async def _regress(request: Request, name: str, version: str | None,
                   label: str | None = None) -> Response:
    model, batch, svc = await _examples_batch(request, name, version, label, Task.REGRESSION)
    values = (await svc.predict(model, batch))["value"]
    body: dict[str, Any] = {"results": values}
    warnings = tensors.warnings(model.signature, batch)
    if warnings:
        body["warnings"] = warnings
    return json_response(body, headers=_version_header(model))


routes.serve("tfserving", {"predict": _predict, "classify": _classify, "regress": _regress},
             router)
