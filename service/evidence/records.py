"""One served prediction as evidence: captured on the event loop (references only, no
copies, no encoding) and turned into JSON on the evidence thread.

A record names everything: instances by the manifest's feature (or input) names,
predictions by output name, one entry per instance, so a reader needs no signature to
understand a line. Nothing from the request's headers, path or query string is kept:
no API key or token can reach the log.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from service.batch import Batch
from service.model import LoadedModel
from service.model_config import PayloadLogConfig
from service.observability.logs import iso_utc

_NUMPY = orjson.OPT_SERIALIZE_NUMPY


@dataclass(slots=True)
class Prediction:
    """Written on the event loop, then only read, on the evidence thread."""

    model: LoadedModel
    batch: Batch
    outputs: dict[str, np.ndarray] | None   # None: the model call failed
    request_id: str
    client_id: str | None = None            # the V2 request's own "id"
    label: str = ""                         # the route label that chose the version
    time: float = 0.0                       # epoch seconds, when the request was answered
    protocol: str = ""
    status: int = 0
    seconds: float = 0.0
    error: str = ""
    log: PayloadLogConfig | None = None     # the payload log's policy; None: not logged
    store: bool = False                     # kept in the evidence store for feedback
    drift: bool = False                     # added to the version's drift window
    shadow: str = ""                        # the candidate version to mirror it to
    model_seconds: float = 0.0              # its model call (batcher wait included)

    @property
    def name(self) -> str:
        return self.model.name

    @property
    def version(self) -> int:
        return self.model.version


def stamp(epoch: float) -> str:
    """RFC 3339 UTC with microseconds, e.g. ``2026-12-02T01:23:45.123456Z``."""
    return iso_utc(epoch, 6)


def instances(p: Prediction, images: str = "digest") -> list[dict[str, Any]]:
    """Each instance's inputs by name: tabular features by feature name, an image as its
    pixel rows or, for ``images="digest"``, as a digest and a few statistics."""
    sig = p.model.signature
    rows: list[dict[str, Any]] | None = None
    for inp in sig.inputs:
        arr = p.batch[inp.name]
        if inp.tabular:
            names = [f.name for f in inp.features]
            if [f.column for f in inp.features] != list(range(arr.shape[1])):
                arr = arr[:, [f.column for f in inp.features]]
            # One tolist for the table: per-column slices cost more than the row's JSON.
            named = [dict(zip(names, values, strict=True)) for values in arr.tolist()]
        elif images == "full":
            named = [{inp.name: img} for img in arr.tolist()]
        else:
            named = [{inp.name: _digest(img)} for img in arr]
        if rows is None:
            rows = named
        else:
            for row, more in zip(rows, named, strict=True):
                row.update(more)
    return rows or []


def predictions(p: Prediction) -> list[dict[str, Any]]:
    """Each instance's outputs by name."""
    if p.outputs is None:
        return []
    names = list(p.outputs)
    columns = [arr.tolist() for arr in p.outputs.values()]
    return [dict(zip(names, values, strict=True)) for values in zip(*columns, strict=True)]


def _digest(image: np.ndarray) -> dict[str, Any]:
    data = np.ascontiguousarray(image)
    return {"sha256": hashlib.sha256(data.tobytes()).hexdigest(),
            "shape": list(data.shape), "dtype": data.dtype.name,
            "mean": round(float(data.mean()), 4), "max": round(float(data.max()), 4)}


def line(p: Prediction, preds: list[dict[str, Any]] | None = None) -> bytes:
    """The payload log's JSON line (with its newline); ``preds``: ``predictions(p)`` if
    already computed."""
    policy = p.log or PayloadLogConfig()

    record: dict[str, Any] = {
        "time": stamp(p.time or time.time()), "request_id": p.request_id,
        "model": p.name, "version": p.version, "protocol": p.protocol,
        "status": p.status, "latency_ms": round(p.seconds * 1000, 3),
    }
    if p.label:
        record["label"] = p.label
    if p.client_id is not None:
        record["id"] = p.client_id
    if p.error:
        record["error"] = p.error
    if policy.inputs:
        record["instances"] = instances(p, policy.images)
    if policy.outputs and p.outputs is not None:
        record["predictions"] = predictions(p) if preds is None else preds
    return orjson.dumps(record, option=_NUMPY | orjson.OPT_APPEND_NEWLINE)


def v2_request(p: Prediction) -> dict[str, Any]:
    """The request as a KServe V2 inference request (for the CloudEvents sink)."""
    tensors = []
    for inp in p.model.signature.inputs:
        arr = p.batch[inp.name]
        tensors.append({"name": inp.name, "shape": list(arr.shape),
                        "datatype": _v2_datatype(arr), "data": arr.reshape(-1).tolist()})
    body: dict[str, Any] = {"inputs": tensors}
    if p.client_id is not None:
        body["id"] = p.client_id
    return body


def v2_response(p: Prediction) -> dict[str, Any]:
    """The answer as a KServe V2 inference response (for the CloudEvents sink)."""
    body: dict[str, Any] = {"model_name": p.name, "model_version": str(p.version)}
    if p.client_id is not None:
        body["id"] = p.client_id
    if p.outputs is None:
        body["error"] = p.error or f"status {p.status}"
        return body
    body["outputs"] = [{"name": name, "shape": list(arr.shape), "datatype": _v2_datatype(arr),
                        "data": arr.reshape(-1).tolist()} for name, arr in p.outputs.items()]
    return body


_V2 = {"f": {4: "FP32", 8: "FP64", 2: "FP16"}, "i": {8: "INT64", 4: "INT32", 2: "INT16",
                                                    1: "INT8"},
       "u": {1: "UINT8", 2: "UINT16", 4: "UINT32", 8: "UINT64"}}


def _v2_datatype(arr: np.ndarray) -> str:
    if arr.dtype.kind == "b":
        return "BOOL"
    return _V2.get(arr.dtype.kind, {}).get(arr.dtype.itemsize, "BYTES")
