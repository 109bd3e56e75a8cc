"""The soak test's traffic: every endpoint it rotates through, the bodies, and the checks.

Bodies come from the sample inputs in the committed manifests (through ``payloads``' own
builders where one exists), so every request is valid and its answer is known: the
manifest records what each version returned for each sample. A prediction therefore
passes only if it is a 200, parses, has the protocol's shape, was answered by the version
the body was built for, and gives the manifest's class (or value, within 1e-3). A wrong
answer under sustained concurrent load (rows of one request mixed up with another's in a
merged batch, say) is a failure just like a 500 would be.

Each endpoint has a few variants (one per manifest sample) that are sent in turn, and a
weight: predictions appear ``PREDICT_WEIGHT`` times per rotation, metadata, health and
metrics GETs once, so most of the load is inference and the rest is what probes and
dashboards send alongside it.
"""

from __future__ import annotations

import io
import json
import math
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import payloads
from PIL import Image

PREDICT_WEIGHT = 4
JSON_HEADERS = {"Content-Type": "application/json"}
VALUE_RTOL = 1e-3  # lean runtimes match the framework within 1e-5; JSON keeps float32 digits
BOUNDARY = "soakboundary7d1f"


@dataclass(frozen=True)
class Expected:
    version: int
    class_id: int | None = None  # classifiers
    value: float | None = None  # regressors


@dataclass(frozen=True)
class Variant:
    body: bytes | None
    headers: Mapping[str, str]
    expected: Expected | None  # None: only the status and the shape are checked


# (status, response headers, response body, variant) -> failure reason, or None if fine
Checker = Callable[[int, Mapping[str, str], bytes, Variant], str | None]


@dataclass(frozen=True)
class Endpoint:
    key: str  # how it is reported: protocol, model, version
    method: str
    path: str
    variants: tuple[Variant, ...]
    check: Checker
    weight: int
    prediction: bool


# --- checks ---------------------------------------------------------------------------


class Mismatch(Exception):
    """A 200 whose body is not what the protocol (or the manifest) says it should be."""


def _status(status: int, body: bytes) -> str | None:
    if status != 200:
        return f"HTTP {status}: {body[:160].decode(errors='replace')}"
    return None


def _compare(expected: Expected | None, version: int, class_id: Any, value: Any) -> None:
    if expected is None:
        return
    if version != expected.version:
        raise Mismatch(f"answered by version {version}, body built for {expected.version}")
    if expected.class_id is not None and class_id != expected.class_id:
        raise Mismatch(f"class_id {class_id!r}, manifest says {expected.class_id}")
    if expected.value is not None and not (
            isinstance(value, int | float)
            and math.isclose(value, expected.value, rel_tol=VALUE_RTOL, abs_tol=VALUE_RTOL)):
        raise Mismatch(f"value {value!r}, manifest says {expected.value}")


def _checked(parse: Callable[[Mapping[str, str], bytes, Variant], None]) -> Checker:
    """Wrap a parser that raises on a bad body into a Checker returning the reason."""
    def check(status: int, headers: Mapping[str, str], body: bytes,
              variant: Variant) -> str | None:
        reason = _status(status, body)
        if reason:
            return reason
        try:
            parse(headers, body, variant)
        except Mismatch as exc:
            return f"wrong answer: {exc}"
        # A body that is not JSON, or JSON of another shape, fails the same way.
        except (ValueError, KeyError, IndexError, TypeError, struct.error) as exc:
            return f"unparseable 200: {type(exc).__name__}: {exc}"[:240]
        return None
    return check


def _result(pred: Any) -> tuple[Any, Any]:
    """(class_id, value) from one TF-Serving prediction, row or column form."""
    if isinstance(pred, dict):
        class_id = pred.get("class_id")
        value = pred.get("value")
        if isinstance(class_id, list):
            class_id = class_id[0]
        if isinstance(value, list):
            value = value[0]
        if class_id is None and value is None:
            raise KeyError("neither 'class_id' nor 'value' in the prediction")
        return class_id, value
    if isinstance(pred, list):
        return _result(pred[0])
    if isinstance(pred, int | float):
        return None, pred
    raise TypeError(f"prediction of type {type(pred).__name__}")


def _tfs_predict(headers: Mapping[str, str], body: bytes, variant: Variant) -> None:
    obj = json.loads(body)
    version = int(headers["model-version"])
    if "predictions" in obj:  # row format answers row format
        preds = obj["predictions"]
        if len(preds) != 1:
            raise Mismatch(f"{len(preds)} predictions for 1 instance")
        class_id, value = _result(preds[0])
    else:
        class_id, value = _result(obj["outputs"])
    _compare(variant.expected, version, class_id, value)


def _tfs_classify(headers: Mapping[str, str], body: bytes, variant: Variant) -> None:
    results = json.loads(body)["results"]
    if len(results) != 1:
        raise Mismatch(f"{len(results)} results for 1 example")
    scores = [float(p) for _label, p in results[0]]
    _compare(variant.expected, int(headers["model-version"]),
             int(np.argmax(scores)), None)


def _tfs_regress(headers: Mapping[str, str], body: bytes, variant: Variant) -> None:
    results = json.loads(body)["results"]
    if len(results) != 1:
        raise Mismatch(f"{len(results)} results for 1 example")
    _compare(variant.expected, int(headers["model-version"]), None, results[0])


def _v2_outputs(outputs: list[dict[str, Any]]) -> tuple[Any, Any]:
    named = {o["name"]: o for o in outputs}
    class_id = named["class_id"]["data"][0] if "class_id" in named else None
    value = named["value"]["data"][0] if "value" in named else None
    if class_id is None and value is None:
        raise KeyError("neither 'class_id' nor 'value' among the outputs")
    return class_id, value


def _v2_json(headers: Mapping[str, str], body: bytes, variant: Variant) -> None:
    obj = json.loads(body)
    class_id, value = _v2_outputs(obj["outputs"])
    _compare(variant.expected, int(obj["model_version"]), class_id, value)


_BINARY_FORMATS = {"INT64": "<q", "INT32": "<i", "FP32": "<f", "FP64": "<d"}


def _v2_binary(headers: Mapping[str, str], body: bytes, variant: Variant) -> None:
    # Triton's binary extension: a JSON header of the given length, then each output
    # flagged with binary_data_size as raw little-endian bytes, in the header's order.
    size = int(headers["inference-header-content-length"])
    head = json.loads(body[:size])
    offset, outputs = size, []
    for out in head["outputs"]:
        nbytes = (out.get("parameters") or {}).get("binary_data_size")
        if nbytes is None:
            outputs.append(out)
            continue
        raw = body[offset:offset + nbytes]
        if len(raw) != nbytes:
            raise Mismatch(f"output {out['name']!r} truncated: {len(raw)} of {nbytes} bytes")
        offset += nbytes
        fmt = _BINARY_FORMATS.get(out["datatype"])
        data = [struct.unpack_from(fmt, raw)[0]] if fmt else []  # BYTES: not needed here
        outputs.append(out | {"data": data})
    if offset != len(body):
        raise Mismatch(f"{len(body) - offset} bytes after the last binary output")
    class_id, value = _v2_outputs(outputs)
    _compare(variant.expected, int(head["model_version"]), class_id, value)


def _image(headers: Mapping[str, str], body: bytes, variant: Variant) -> None:
    obj = json.loads(body)
    if sorted(obj["probabilities"]) != [str(d) for d in range(10)]:
        raise Mismatch(f"probabilities for {sorted(obj['probabilities'])}")
    if str(obj["class_id"]) != obj["label"]:
        raise Mismatch(f"class_id {obj['class_id']} but label {obj['label']!r}")
    # The upload is resized and re-centred, so the label is not asserted; the version is.
    if variant.expected and int(obj["model_version"]) != variant.expected.version:
        raise Mismatch(f"answered by version {obj['model_version']}, "
                       f"asked for {variant.expected.version}")


def _json_get(headers: Mapping[str, str], body: bytes, variant: Variant) -> None:
    if not isinstance(json.loads(body), dict):
        raise TypeError("not a JSON object")


def _empty_ok(headers: Mapping[str, str], body: bytes, variant: Variant) -> None:
    pass  # V2 per-model readiness is the status alone, with an empty body


def _metrics(headers: Mapping[str, str], body: bytes, variant: Variant) -> None:
    if b"# TYPE " not in body:
        raise Mismatch("no Prometheus '# TYPE' line")


CHECK_TFS_PREDICT = _checked(_tfs_predict)
CHECK_CLASSIFY = _checked(_tfs_classify)
CHECK_REGRESS = _checked(_tfs_regress)
CHECK_V2_JSON = _checked(_v2_json)
CHECK_V2_BINARY = _checked(_v2_binary)
CHECK_IMAGE = _checked(_image)
CHECK_JSON_GET = _checked(_json_get)
CHECK_METRICS = _checked(_metrics)
CHECK_STATUS = _checked(_empty_ok)


# --- bodies ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Version:
    model: str
    version: int
    features: list[str] | None  # None: an image model
    samples: list[tuple[Any, Expected]]  # (inputs, what the manifest says it returns)


def _load(models: Path, name: str, version: int) -> _Version:
    from service.loader import read_manifest  # any schema version, as the service reads it

    manifest = read_manifest(models / name / str(version))
    (spec,) = manifest.inputs
    features = spec.feature_names or None
    samples = [([s.inputs[f] for f in features] if features else s.inputs[spec.name],
                Expected(version, s.expected.get("class_id"), s.expected.get("value")))
               for s in manifest.samples]
    return _Version(name, version, features, samples)


def _png(image: list[list[float]], size: int = 112) -> bytes:
    """A sample digit as a phone photo of paper would give it: dark ink on white, larger."""
    pixels = np.clip(np.asarray(image, dtype=np.float32), 0, 255).astype(np.uint8)
    ink = Image.fromarray(255 - pixels).resize((size, size), Image.Resampling.BILINEAR)
    out = io.BytesIO()
    ink.save(out, "PNG")
    return out.getvalue()


def _multipart(png: bytes) -> bytes:
    # Built once here rather than by the client per request: the load generator's CPU
    # goes to sending requests, not to re-encoding the same form.
    return (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"digit.png\"\r\nContent-Type: image/png\r\n\r\n").encode() \
        + png + f"\r\n--{BOUNDARY}--\r\n".encode()


def _variants(v: _Version, make: Callable[[Any], bytes],
              headers: Mapping[str, str] = JSON_HEADERS,
              checked: bool = True) -> tuple[Variant, ...]:
    return tuple(Variant(make(inputs), headers, expected if checked else
                         Expected(expected.version))
                 for inputs, expected in v.samples)


def build(models: Path) -> list[Endpoint]:
    """Every endpoint of the rotation, for the latest version and version 1 of each model."""
    names = sorted(p.name for p in models.iterdir() if p.is_dir() and not p.name.startswith("."))
    endpoints: list[Endpoint] = []

    def add(key: str, path: str, variants: tuple[Variant, ...], check: Checker) -> None:
        endpoints.append(Endpoint(key, "POST", path, variants, check, PREDICT_WEIGHT, True))

    def get(path: str, check: Checker = CHECK_JSON_GET) -> None:
        endpoints.append(Endpoint(f"GET {path}", "GET", path, (Variant(None, {}, None),),
                                  check, 1, False))

    for name in names:
        versions = sorted(int(p.name) for p in (models / name).iterdir() if p.name.isdigit())
        latest = _load(models, name, versions[-1])
        first = _load(models, name, versions[0])
        for v, prefix, label in ((latest, f"/v1/models/{name}", "latest"),
                                 (first, f"/v1/models/{name}/versions/{first.version}",
                                  f"v{first.version}")):
            features = v.features
            # TF-Serving :predict. Latest: named-feature objects (tabular) or the columnar
            # "inputs" form (housing); version 1: plain row lists.
            if features and label == "latest" and name == "housing":
                def make(x: Any) -> bytes:
                    return payloads._json({"inputs": [x]})
            elif features and label == "latest":
                def make(x: Any, f: list[str] = features) -> bytes:
                    return payloads._json({"instances": [dict(zip(f, x, strict=True))]})
            else:
                def make(x: Any) -> bytes:
                    return payloads._json({"instances": [x]})
            add(f"tfs predict {name} {label}", f"{prefix}:predict", _variants(v, make),
                CHECK_TFS_PREDICT)

            # KServe V2 JSON: one [1, n] tensor (or [1, 28, 28] image); wine-quality v1
            # sends one tensor per feature, the other form the protocol allows.
            v2_prefix = prefix.replace("/v1/", "/v2/")
            if features and name == "wine-quality" and label != "latest":
                def make_v2(x: Any, f: list[str] = features) -> bytes:
                    return payloads._json({"inputs": [
                        {"name": n, "shape": [1], "datatype": "FP32", "data": [val]}
                        for n, val in zip(f, x, strict=True)]})
            elif features:
                def make_v2(x: Any) -> bytes:
                    return payloads._v2_json("features", [x])
            else:
                def make_v2(x: Any) -> bytes:
                    return payloads._v2_json_image("image", [x])
            add(f"v2 infer {name} {label}", f"{v2_prefix}/infer", _variants(v, make_v2),
                CHECK_V2_JSON)

            if features is None:  # the image model: binary tensors and PNG uploads
                binary = []
                for inputs, expected in v.samples:
                    body, header_len = payloads._v2_binary("image", [inputs])
                    binary.append(Variant(body, {
                        "Content-Type": "application/octet-stream",
                        "Inference-Header-Content-Length": str(header_len)}, expected))
                add(f"v2 binary {name} {label}", f"{v2_prefix}/infer", tuple(binary),
                    CHECK_V2_BINARY)
                if label == "latest":  # multipart upload, as `curl -F file=@digit.png`
                    upload = _variants(v, lambda x: _multipart(_png(x)), {
                        "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
                        checked=False)
                else:  # raw body, as `--data-binary @digit.png`
                    upload = _variants(v, _png, {"Content-Type": "image/png"},
                                       checked=False)
                add(f"png upload {name} {label}", f"{prefix}:predict_image", upload,
                    CHECK_IMAGE)

        if latest.features is not None:  # :classify / :regress take named features
            f = latest.features
            verb = "regress" if latest.samples[0][1].value is not None else "classify"
            add(f"tfs {verb} {name} latest", f"/v1/models/{name}:{verb}", _variants(
                latest, lambda x, f=f: payloads._json({"examples": [dict(zip(f, x,
                                                                              strict=True))]})),
                CHECK_REGRESS if verb == "regress" else CHECK_CLASSIFY)

    for path in ("/v2/health/live", "/v2/health/ready", "/healthz", "/readyz", "/v2",
                 "/v1/models", "/v1/models/housing", "/v1/models/wine-quality/metadata",
                 "/v1/models/digits/versions/1/metadata", "/v2/models/housing",
                 "/v2/models/auscultation/versions/1"):
        get(path)
    get("/v2/models/digits/versions/2/ready", CHECK_STATUS)
    get("/metrics", CHECK_METRICS)  # what a Prometheus scrape costs, under load
    return endpoints


def rotation(endpoints: list[Endpoint]) -> list[Endpoint]:
    """One cycle of the traffic mix, each endpoint ``weight`` times, spread out.

    Interleaved (every endpoint of weight >= k in the k-th pass) so that no model gets a
    burst of consecutive requests: the mix each moment is the mix of the whole run.
    """
    top = max(e.weight for e in endpoints)
    return [e for k in range(top) for e in endpoints if e.weight > k]
