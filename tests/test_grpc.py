"""KServe V2 over gRPC against the real server: health, metadata and inference with
tritonclient.grpc (raw tensors) and with hand-built messages (typed ``contents``), every
error as the right status code with HTTP's message, hostile messages, request ids,
metrics, access control, the repository extension, drain on SIGTERM, and a team's
models with several inputs and every datatype.

Every answer is compared with the HTTP V2 answer to the same tensors: HTTP is asked for
binary outputs, so both carry the outputs as the same raw bytes.

This process imports tritonclient's ``inference`` protobuf package only; the server's
own copy lives in the server subprocess (protobuf refuses both in one process).
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as tgrpc
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pb_grpc

from service.loader import read_manifest
from tests.conftest import MODELS, TEST_LIMITS, Server, running, sample_row
from tests.test_metrics import delta, scrape, value

NAMES = ["wine-quality", "housing", "auscultation", "digits"]
WINE = read_manifest(MODELS / "wine-quality" / "2")
WINE_ROW = sample_row(WINE)
MAX_ROWS = int(TEST_LIMITS["MODELSERVE_MAX_REQUEST_ROWS"])
MAX_BODY = int(TEST_LIMITS["MODELSERVE_MAX_BODY_BYTES"])
C = grpc.StatusCode
# The HTTP status each gRPC code stands for (service/errors.py's mapping).
HTTP_STATUS = {C.INVALID_ARGUMENT: 400, C.UNAUTHENTICATED: 401, C.PERMISSION_DENIED: 403,
               C.NOT_FOUND: 404, C.RESOURCE_EXHAUSTED: 429, C.UNAVAILABLE: 503,
               C.DEADLINE_EXCEEDED: 504}

API_KEY = "gk-Api-6e1f0c93b2d4"
ADMIN_KEY = "gk-Admin-2a7d5e9c1f08"

# --- tensors in every wire form ------------------------------------------------------------

NUMPY = {"FP16": "<f2", "FP32": "<f4", "FP64": "<f8", "INT8": "i1", "INT16": "<i2",
         "INT32": "<i4", "INT64": "<i8", "UINT8": "u1", "UINT16": "<u2", "UINT32": "<u4",
         "UINT64": "<u8", "BOOL": "?"}
# The InferTensorContents field of each datatype (the proto's; FP16 and BF16 have none).
TYPED = {"BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents",
         "INT32": "int_contents", "INT64": "int64_contents", "UINT8": "uint_contents",
         "UINT16": "uint_contents", "UINT32": "uint_contents", "UINT64": "uint64_contents",
         "FP32": "fp32_contents", "FP64": "fp64_contents", "BYTES": "bytes_contents"}


@dataclass
class Tensor:
    name: str
    datatype: str
    data: np.ndarray  # batch first; BYTES: an object array of str
    claimed: list[int] | None = None  # a shape that is not the data's

    @property
    def shape(self) -> list[int]:
        return self.claimed or list(self.data.shape)

    def raw(self) -> bytes:
        if self.datatype == "BYTES":
            return b"".join(struct.pack("<I", len(b)) + b
                            for b in (s.encode() for s in self.data.reshape(-1)))
        if self.datatype == "BF16":  # the upper half of float32 (values chosen exact)
            return (np.asarray(self.data, "<f4").view("<u4") >> 16).astype("<u2").tobytes()
        return np.ascontiguousarray(self.data, NUMPY[self.datatype]).tobytes()

    def values(self) -> list:
        flat = self.data.reshape(-1)
        if self.datatype == "BYTES":
            return [s.encode() for s in flat]
        return flat.astype(NUMPY.get(self.datatype, "<f4")).tolist()

    def json(self) -> dict[str, Any]:
        data = [str(s) for s in self.data.reshape(-1)] if self.datatype == "BYTES" \
            else self.values()
        return {"name": self.name, "datatype": self.datatype, "shape": self.shape, "data": data}


def samples(model: str, version: int, datatype: str = "FP32") -> list[Tensor]:
    """Every manifest sample of a committed version, as one tensor."""
    m = read_manifest(MODELS / model / str(version))
    rows = np.asarray([sample_row(m, i) for i in range(len(m.samples))], dtype=np.float64)
    return [Tensor(m.inputs[0].name, datatype, rows)]


def infer_request(model: str, tensors: list[Tensor], *, typed: bool, version: str = "",
                  outputs: tuple[tuple[str, int], ...] = (), id: str = "") -> Any:
    """A ModelInferRequest with typed contents or raw_input_contents."""
    request = pb.ModelInferRequest(model_name=model, model_version=version, id=id)
    for t in tensors:
        tensor = request.inputs.add(name=t.name, datatype=t.datatype, shape=t.shape)
        if typed:  # an unknown datatype's values as FP32
            getattr(tensor.contents, TYPED.get(t.datatype, "fp32_contents")).extend(t.values())
        else:
            request.raw_input_contents.append(t.raw())
    for name, k in outputs:
        out = request.outputs.add(name=name)
        if k:
            out.parameters["classification"].int64_param = k
    return request


def grpc_answer(response: Any) -> dict[str, Any]:
    """A ModelInferResponse as comparable values: outputs as (datatype, shape, bytes)."""
    warnings = response.parameters["warnings"].string_param \
        if "warnings" in response.parameters else None
    return {"model_name": response.model_name, "model_version": response.model_version,
            "id": response.id, "warnings": warnings,
            "outputs": {o.name: (o.datatype, list(o.shape), raw) for o, raw in
                        zip(response.outputs, response.raw_output_contents, strict=True)}}


def http_infer(client: httpx.Client, model: str, tensors: list[Tensor], *, binary: bool,
               version: str = "", outputs: tuple[tuple[str, int], ...] = (), id: str = "",
               headers: dict[str, str] | None = None) -> httpx.Response:
    """The same request over HTTP V2: JSON tensors, or Triton's binary extension."""
    path = f"/v2/models/{model}" + (f"/versions/{version}" if version else "") + "/infer"
    body: dict[str, Any] = {"inputs": [], "parameters": {"binary_data_output": True}}
    if id:
        body["id"] = id
    if outputs:
        body["outputs"] = [{"name": n, "parameters": {"classification": k} if k else {}}
                           for n, k in outputs]
    blobs = []
    for t in tensors:
        if binary:
            blob = t.raw()
            blobs.append(blob)
            body["inputs"].append({"name": t.name, "datatype": t.datatype, "shape": t.shape,
                                   "parameters": {"binary_data_size": len(blob)}})
        else:
            body["inputs"].append(t.json())
    header = json.dumps(body).encode()
    extra = {"Inference-Header-Content-Length": str(len(header))} if binary else {}
    return client.post(path, content=header + b"".join(blobs),
                       headers={"Content-Type": "application/octet-stream", **extra,
                                **(headers or {})})


def http_answer(r: httpx.Response) -> dict[str, Any]:
    assert r.status_code == 200, r.text
    n = int(r.headers["inference-header-content-length"])
    header, blob = json.loads(r.content[:n]), r.content[n:]
    outputs = {}
    for o in header["outputs"]:
        size = o["parameters"]["binary_data_size"]
        outputs[o["name"]] = (o["datatype"], o["shape"], blob[:size])
        blob = blob[size:]
    return {"model_name": header["model_name"], "model_version": header["model_version"],
            "id": header.get("id", ""), "warnings": header.get("parameters", {}).get("warnings"),
            "outputs": outputs}


def decode(output: tuple[str, list[int], bytes]) -> np.ndarray:
    datatype, shape, raw = output
    if datatype != "BYTES":
        return np.frombuffer(raw, NUMPY[datatype]).reshape(shape)
    out, pos = [], 0
    while pos < len(raw):
        (n,) = struct.unpack_from("<I", raw, pos)
        out.append(raw[pos + 4:pos + 4 + n].decode())
        pos += 4 + n
    return np.array(out, dtype=object).reshape(shape)


# --- calls and refusals ----------------------------------------------------------------


def stub_for(target: str) -> tuple[grpc.Channel, pb_grpc.GRPCInferenceServiceStub]:
    channel = grpc.insecure_channel(target, options=[
        ("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)])
    return channel, pb_grpc.GRPCInferenceServiceStub(channel)


def refused(method: Any, request: Any, code: grpc.StatusCode,
            metadata: tuple = ()) -> str:
    """Call, expect the status code, return its message."""
    with pytest.raises(grpc.RpcError) as info:
        method(request, metadata=metadata, timeout=60)
    err = info.value
    assert err.code() == code, (err.code(), err.details())
    assert err.details()
    return err.details()


def http_error(r: httpx.Response, status: int) -> str:
    assert r.status_code == status, (r.status_code, r.text)
    return r.json()["error"]


def same_refusal(method: Any, request: Any, code: grpc.StatusCode, r: httpx.Response,
                 metadata: tuple = ()) -> str:
    """The gRPC call is refused with ``code`` and the message HTTP gives for ``r``."""
    message = refused(method, request, code, metadata)
    # Where the raw bytes come from is named in each protocol's own terms.
    assert re.sub(r"raw_input_contents\[\d+\]", "binary_data_size", message) \
        == http_error(r, HTTP_STATUS[code])
    return message


def wine_ok(stub: Any, metadata: tuple = ()) -> None:
    """A good call, to show the server still serves."""
    response = stub.ModelInfer(infer_request("wine-quality", [
        Tensor("features", "FP32", np.asarray([WINE_ROW]))], typed=True),
        metadata=metadata, timeout=60)
    assert decode(grpc_answer(response)["outputs"]["label"]).tolist() == [
        WINE.samples[0].expected["label"]]


@pytest.fixture(scope="module")
def stub(server) -> Iterator[Any]:
    channel, s = stub_for(server.grpc_target)
    yield s
    channel.close()


@pytest.fixture(scope="module")
def triton(server) -> Iterator[tgrpc.InferenceServerClient]:
    c = tgrpc.InferenceServerClient(server.grpc_target)
    yield c
    c.close()


# --- health and metadata ---------------------------------------------------------------


def test_health_and_server_metadata(stub, triton, client):
    assert stub.ServerLive(pb.ServerLiveRequest(), timeout=30).live
    assert stub.ServerReady(pb.ServerReadyRequest(), timeout=30).ready
    assert triton.is_server_live() and triton.is_server_ready()
    meta = stub.ServerMetadata(pb.ServerMetadataRequest(), timeout=30)
    assert {"name": meta.name, "version": meta.version, "extensions": list(meta.extensions)} \
        == client.get("/v2").json()


@pytest.mark.parametrize("name", NAMES)
def test_model_ready_and_metadata_equal_http(stub, triton, client, name):
    for version in ("", "1", "2"):
        assert stub.ModelReady(pb.ModelReadyRequest(name=name, version=version),
                               timeout=30).ready
        assert triton.is_model_ready(name, version)
        meta = stub.ModelMetadata(pb.ModelMetadataRequest(name=name, version=version),
                                  timeout=30)
        path = f"/v2/models/{name}" + (f"/versions/{version}" if version else "")
        want = client.get(path).json()
        got = {"name": meta.name, "versions": list(meta.versions), "platform": meta.platform,
               "inputs": [{"name": t.name, "datatype": t.datatype, "shape": list(t.shape)}
                          for t in meta.inputs],
               "outputs": [{"name": t.name, "datatype": t.datatype, "shape": list(t.shape)}
                           for t in meta.outputs]}
        assert got == {k: want[k] for k in got}
        assert sorted(want["versions"]) == (["1", "2"] if not version else [version])
    r = client.get(f"/v2/models/{name}/versions/9/ready")
    same_refusal(stub.ModelReady, pb.ModelReadyRequest(name=name, version="9"), C.NOT_FOUND, r)
    r = client.get(f"/v2/models/{name}/versions/9")
    same_refusal(stub.ModelMetadata, pb.ModelMetadataRequest(name=name, version="9"),
                 C.NOT_FOUND, r)


# --- inference equals HTTP's -----------------------------------------------------------


def _check_expected(model: str, version: int, answer: dict[str, Any]) -> None:
    """Both transports could be wrong alike: the answers are also the manifest's."""
    m = read_manifest(MODELS / model / str(version))
    outputs = {k: decode(v) for k, v in answer["outputs"].items()}
    if "label" in outputs:
        assert outputs["label"].tolist() == [s.expected["label"] for s in m.samples]
    else:
        assert outputs["value"].reshape(-1) == pytest.approx(
            [s.expected["value"] for s in m.samples], abs=1e-4)


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("name", NAMES)
def test_infer_raw_and_typed_equal_http(stub, triton, client, name, version):
    datatype = client.get(f"/v2/models/{name}/versions/{version}").json()[
        "inputs"][0]["datatype"]
    (t,) = samples(name, version, datatype)
    http_binary = http_answer(http_infer(client, name, [t], binary=True, version=str(version),
                                         id="rq-1"))
    http_json = http_answer(http_infer(client, name, [t], binary=False, version=str(version),
                                       id="rq-1"))
    assert http_binary == http_json
    _check_expected(name, version, http_json)
    # tritonclient.grpc: raw_input_contents, as every client sends by default.
    inp = tgrpc.InferInput(t.name, list(t.data.shape), datatype)
    inp.set_data_from_numpy(t.data.astype(NUMPY[datatype]))
    result = triton.infer(name, [inp], model_version=str(version), request_id="rq-1")
    assert grpc_answer(result.get_response()) == http_binary
    # Typed contents (fp32_contents, fp64_contents), which tritonclient never sends.
    response = stub.ModelInfer(infer_request(name, [t], typed=True, version=str(version),
                                             id="rq-1"), timeout=60)
    assert grpc_answer(response) == http_json


@pytest.mark.parametrize("name", ["wine-quality", "auscultation", "digits"])
def test_classification_extension_equals_http(stub, triton, client, name):
    (t,) = samples(name, 2)
    outputs = (("probabilities", 2), ("label", 0))
    want = http_answer(http_infer(client, name, [t], binary=False, outputs=outputs))
    top = decode(want["outputs"]["probabilities"])
    assert top.shape == (len(t.data), 2)
    labels = decode(want["outputs"]["label"]).tolist()
    assert [row[0].split(":")[2] for row in top] == labels  # "<p>:<index>:<label>"
    response = stub.ModelInfer(infer_request(name, [t], typed=True, outputs=outputs),
                               timeout=60)
    assert grpc_answer(response) == want
    inp = tgrpc.InferInput(t.name, list(t.data.shape), "FP32")
    inp.set_data_from_numpy(t.data.astype(np.float32))
    result = triton.infer(name, [inp], outputs=[
        tgrpc.InferRequestedOutput("probabilities", class_count=2),
        tgrpc.InferRequestedOutput("label")])
    assert grpc_answer(result.get_response()) == want


def test_one_tensor_per_feature(stub, client):
    tensors = [Tensor(name, "FP64", np.asarray([value]))
               for name, value in WINE.samples[0].inputs.items()]
    want = http_answer(http_infer(client, "wine-quality", tensors, binary=False))
    for typed in (True, False):
        response = stub.ModelInfer(infer_request("wine-quality", tensors, typed=typed),
                                   timeout=60)
        assert grpc_answer(response) == want
    assert decode(want["outputs"]["label"]).tolist() == [WINE.samples[0].expected["label"]]


# --- every error class, with HTTP's message ------------------------------------------------

OK = Tensor("features", "FP32", np.asarray([WINE_ROW]))


def _t(**change: Any) -> Tensor:
    return Tensor(**{"name": OK.name, "datatype": OK.datatype, "data": OK.data, **change})


# (id, tensors, request fields, needle); sent typed over gRPC and as JSON over HTTP.
INVALID = [
    ("bad datatype", [_t(datatype="FP99")], {}, "Valid datatypes"),
    ("datatype the input cannot take", [_t(datatype="BOOL")], {}, "datatype 'BOOL'"),
    ("unknown input", [_t(name="input0")], {}, "Unknown input 'input0'"),
    ("wrong shape", [_t(claimed=[2, 11])], {}, "holds 22 elements but 'data' has 11"),
    ("count mismatch", [_t(data=np.asarray([WINE_ROW[:10]]))], {},
     "expects 11 features per example, got 10"),
    ("too many rows", [_t(data=np.asarray([WINE_ROW] * (MAX_ROWS + 1)))], {},
     f"maximum per request is {MAX_ROWS}"),
    ("duplicate input", [OK, OK], {}, "appears twice"),
    ("no inputs", [], {}, "non-empty list"),
    ("unknown output", [OK], {"outputs": (("nope", 0),)}, "Unknown output 'nope'"),
    ("classification of a regressor", [_t(data=np.asarray(
        [sample_row(read_manifest(MODELS / "housing" / "2"))]))],
     {"model": "housing", "outputs": (("value", 2),)}, "classification extension"),
    ("bad version", [OK], {"version": "0"}, "positive integer"),
]


@pytest.mark.parametrize("tensors, fields, needle", [c[1:] for c in INVALID],
                         ids=[c[0] for c in INVALID])
def test_invalid_argument_has_the_http_message(stub, client, tensors, fields, needle):
    model = fields.get("model", "wine-quality")
    kw = {"version": fields.get("version", ""), "outputs": fields.get("outputs", ())}
    r = http_infer(client, model, tensors, binary=False, **kw)
    message = same_refusal(stub.ModelInfer, infer_request(model, tensors, typed=True, **kw),
                           C.INVALID_ARGUMENT, r)
    assert needle in message
    wine_ok(stub)


def test_bf16_and_fp16_have_no_typed_contents(stub, client):
    for datatype in ("BF16", "FP16"):
        request = infer_request("wine-quality", [_t(datatype="FP32")], typed=True)
        request.inputs[0].datatype = datatype
        message = refused(stub.ModelInfer, request, C.INVALID_ARGUMENT)
        assert message == (f"inputs[0] ('features'): {datatype} has no typed contents field; "
                           "send it in raw_input_contents.")
    # Over raw bytes both are served, as the same values over HTTP's binary extension.
    row = np.asarray([[8.0, 0.5, 0.25, 2.0, 0.0625, 11.0, 34.0, 1.0, 3.5, 0.5, 9.5]])
    for datatype in ("BF16", "FP16"):
        t = Tensor("features", datatype, row)
        want = http_answer(http_infer(client, "wine-quality", [t], binary=True))
        response = stub.ModelInfer(infer_request("wine-quality", [t], typed=False), timeout=60)
        assert grpc_answer(response) == want
        fp32 = http_answer(http_infer(client, "wine-quality", [_t(data=row)], binary=False))
        assert want["outputs"] == fp32["outputs"]  # the values are exact in 16 bits


def test_values_in_the_wrong_contents_field(stub):
    request = infer_request("wine-quality", [OK], typed=True)
    request.inputs[0].contents.ClearField("fp32_contents")
    request.inputs[0].contents.fp64_contents.extend(WINE_ROW)
    message = refused(stub.ModelInfer, request, C.INVALID_ARGUMENT)
    assert message == ("inputs[0] ('features'): datatype FP32 is carried in "
                       "contents.fp32_contents, but the values are in contents.fp64_contents.")
    wine_ok(stub)


def test_not_found_has_the_http_message(stub, client):
    for model, version, needle in [("nope", "", "Model 'nope' not found"),
                                   ("wine-quality", "9", "no version 9"),
                                   ("wine-quality", "beta", "beta")]:
        r = http_infer(client, model, [OK], binary=False, version=version)
        message = same_refusal(stub.ModelInfer, infer_request(model, [OK], typed=True,
                                                              version=version),
                               C.NOT_FOUND, r)
        assert needle in message
    r = client.get("/v2/models/nope")
    same_refusal(stub.ModelMetadata, pb.ModelMetadataRequest(name="nope"), C.NOT_FOUND, r)
    r = client.get("/v2/models/nope/ready")
    same_refusal(stub.ModelReady, pb.ModelReadyRequest(name="nope"), C.NOT_FOUND, r)
    # No admin key configured: the repository extension is off, as over HTTP.
    r = client.post("/v2/repository/index", json={})
    same_refusal(stub.RepositoryIndex, pb.RepositoryIndexRequest(), C.NOT_FOUND, r)
    r = client.post("/v2/repository/models/wine-quality/load")
    same_refusal(stub.RepositoryModelLoad,
                 pb.RepositoryModelLoadRequest(model_name="wine-quality"), C.NOT_FOUND, r)


# --- hostile messages ----------------------------------------------------------------------


def _raw_request(shape: list[int], raw: list[bytes], datatype: str = "FP32") -> Any:
    request = pb.ModelInferRequest(model_name="wine-quality")
    request.inputs.add(name="features", datatype=datatype, shape=shape)
    request.raw_input_contents.extend(raw)
    return request


def _typed_request(shape: list[int], values: list[float]) -> Any:
    request = pb.ModelInferRequest(model_name="wine-quality")
    request.inputs.add(name="features", datatype="FP32", shape=shape)
    request.inputs[0].contents.fp32_contents.extend(values)
    return request


ROW_BYTES = np.asarray(WINE_ROW, "<f4").tobytes()
HOSTILE = [
    ("huge dims, little data (raw)", _raw_request([2**30, 11], [ROW_BYTES]),
     "needs 47244640256 bytes, raw_input_contents[0] holds 44"),
    ("huge dims, little data (typed)", _typed_request([2**30, 11], WINE_ROW),
     "holds 11811160064 elements but 'data' has 11"),
    ("eight huge dims", _raw_request([2**31 - 1] * 8, [ROW_BYTES]), "holds 44"),
    ("a dim past int32", _raw_request([2**40, 11], [ROW_BYTES]),
     "'shape' must be a list of non-negative integers"),
    ("negative dims", _raw_request([-1, 11], [ROW_BYTES]),
     "'shape' must be a list of non-negative integers"),
    ("nine dims", _raw_request([1] * 8 + [11], [ROW_BYTES]), "'shape' must be a list"),
    ("no dims", _raw_request([], [ROW_BYTES]), "'shape' must be a list"),
    ("empty batch", _raw_request([0, 11], [b""]), "holds no examples"),
    ("truncated raw contents", _raw_request([1, 11], [ROW_BYTES[:20]]),
     "shape [1, 11] of FP32 needs 44 bytes, raw_input_contents[0] holds 20."),
    ("raw contents past the shape", _raw_request([1, 11], [ROW_BYTES + b"\0" * 4]),
     "needs 44 bytes, raw_input_contents[0] holds 48"),
    ("more raw contents than inputs", _raw_request([1, 11], [ROW_BYTES, ROW_BYTES]),
     "raw_input_contents holds 2 tensors for 1 inputs"),
    ("empty tensor name", pb.ModelInferRequest(model_name="wine-quality", inputs=[
        pb.ModelInferRequest.InferInputTensor(name="", datatype="FP32", shape=[1, 11])],
        raw_input_contents=[ROW_BYTES]), "'name' must be a non-empty string"),
]


@pytest.mark.parametrize("request_, needle", [c[1:] for c in HOSTILE],
                         ids=[c[0] for c in HOSTILE])
def test_hostile_messages_are_refused_and_the_server_keeps_serving(stub, request_, needle):
    message = refused(stub.ModelInfer, request_, C.INVALID_ARGUMENT)
    assert needle in message, message
    wine_ok(stub)


def test_an_oversized_message_is_refused_by_size(stub, client):
    blob = b"\0" * (MAX_BODY + 1)
    r = client.post("/v2/models/wine-quality/infer", content=blob)
    assert r.status_code == 413
    message = refused(stub.ModelInfer, _raw_request([1, len(blob) // 4], [blob]),
                      C.RESOURCE_EXHAUSTED)
    assert str(MAX_BODY) in message  # grpcio's own: "... larger than max (n vs. limit)"
    wine_ok(stub)
    assert stub.ServerReady(pb.ServerReadyRequest(), timeout=30).ready


def test_a_client_deadline_cancels_the_call_and_the_server_keeps_serving(stub, client):
    (t,) = samples("digits", 2)
    rows = Tensor("image", "FP32", np.concatenate([t.data] * (MAX_ROWS // len(t.data))))
    before = scrape(client)
    with pytest.raises(grpc.RpcError) as info:
        stub.ModelInfer(infer_request("digits", [rows], typed=False), timeout=0.001)
    assert info.value.code() == C.DEADLINE_EXCEEDED
    wine_ok(stub)
    after = scrape(client)  # the call was cancelled, never answered
    assert delta(before, after, "modelserve_inference_requests_total", model="digits",
                 version="2", protocol="grpc", status="200") == 0


# --- request ids, metrics, access log ------------------------------------------------------


def _trailing_id(metadata: Any) -> str:
    (rid,) = [v for k, v in metadata if k == "x-request-id"]
    return rid


def test_request_id_comes_back_in_trailing_metadata(stub, server):
    request = infer_request("wine-quality", [OK], typed=True)
    _, call = stub.ModelInfer.with_call(request, metadata=(("x-request-id", "rq.grpc-7_A"),),
                                        timeout=60)
    assert _trailing_id(call.trailing_metadata()) == "rq.grpc-7_A"
    _, call = stub.ServerLive.with_call(pb.ServerLiveRequest(),
                                        metadata=(("x-request-id", "rq-live"),), timeout=30)
    assert _trailing_id(call.trailing_metadata()) == "rq-live"
    made = set()
    for metadata in [(), (("x-request-id", "has spaces"),), (("x-request-id", "x" * 129),),
                     (("x-request-id", ""),), (("x-request-id", "a/b"),)]:
        _, call = stub.ModelInfer.with_call(request, metadata=metadata, timeout=60)
        rid = _trailing_id(call.trailing_metadata())
        assert len(rid) == 32 and int(rid, 16) >= 0, rid  # a new uuid4 hex
        made.add(rid)
    assert len(made) == 5
    # On a refusal too.
    with pytest.raises(grpc.RpcError) as info:
        stub.ModelInfer(infer_request("nope", [OK], typed=True),
                        metadata=(("x-request-id", "rq-refused"),), timeout=60)
    assert _trailing_id(info.value.trailing_metadata()) == "rq-refused"
    # And in the access log line of the call.
    deadline = time.monotonic() + 30
    while True:
        lines = [r for r in map(json.loads, (
            line for line in server.log_text().splitlines()
            if "rq.grpc-7_A" in line)) if r.get("logger") == "modelserve.access"]
        if lines or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    (line,) = lines
    assert line["protocol"] == "grpc" and line["grpc_code"] == "OK"
    assert line["path"] == "/inference.GRPCInferenceService/ModelInfer"
    assert line["model"] == "wine-quality" and line["version"] == "2"


def test_metrics_count_grpc_calls(stub, client):
    before = scrape(client)
    for _ in range(2):
        stub.ModelInfer(infer_request("wine-quality", [OK], typed=True), timeout=60)
    stub.ModelInfer(infer_request("housing", samples("housing", 1), typed=False,
                                  version="1"), timeout=60)
    refused(stub.ModelInfer, infer_request("wine-quality", [_t(datatype="BOOL")], typed=True),
            C.INVALID_ARGUMENT)
    refused(stub.ModelInfer, infer_request("wine-quality", [OK], typed=True, version="9"),
            C.NOT_FOUND)
    refused(stub.ModelInfer, infer_request("no-such-model", [OK], typed=True), C.NOT_FOUND)
    stub.ServerLive(pb.ServerLiveRequest(), timeout=30)  # not an inference call
    stub.ModelMetadata(pb.ModelMetadataRequest(name="housing"), timeout=30)
    after = scrape(client)
    req = "modelserve_inference_requests_total"
    expected = {("wine-quality", "2", "200"): 2, ("housing", "1", "200"): 1,
                ("wine-quality", "2", "400"): 1, ("wine-quality", "", "404"): 1,
                ("_unknown", "", "404"): 1}
    for (model, version, status), n in expected.items():
        got = delta(before, after, req, model=model, version=version, protocol="grpc",
                    status=status)
        assert got == n, (model, version, status, got)
    duration = "modelserve_inference_request_duration_seconds_count"
    assert delta(before, after, duration, model="wine-quality", version="2",
                 protocol="grpc") == 3
    assert value(after, "modelserve_inference_request_duration_seconds_bucket",
                 model="housing", version="1", protocol="grpc", le="+Inf") >= 1
    assert not any("no-such-model" in str(labels) for _, labels in after)
    # Rows reach the model as over HTTP: 2 x 1 wine row, 1 x 4 housing rows.
    assert delta(before, after, "modelserve_inference_rows_total", model="housing",
                 version="1") == len(samples("housing", 1)[0].data)


# --- a server with keys, labels, a failed version and a slow model ------------------------


@pytest.fixture(scope="module")
def guarded(tmp_path_factory) -> Iterator[Server]:
    """API and admin keys; wine-quality 1 and 2 labelled stable and canary; housing 2
    and a version 3 that cannot load; digits 2 (the CNN) with a request timeout far
    shorter than any of its calls on a large batch."""
    root = tmp_path_factory.mktemp("guarded")
    repo = root / "models"
    for name, version in [("wine-quality", 1), ("wine-quality", 2), ("housing", 2),
                          ("digits", 2)]:
        shutil.copytree(MODELS / name / str(version), repo / name / str(version))
    (repo / "wine-quality" / "config.json").write_text(json.dumps(
        {"labels": {"stable": 1, "canary": 2}}))
    broken = repo / "housing" / "3"
    shutil.copytree(MODELS / "housing" / "2", broken)
    manifest = json.loads((broken / "manifest.json").read_text())
    (broken / "manifest.json").write_text(json.dumps({**manifest, "version": 3}))
    (broken / "model.joblib").write_bytes(b"garbage")
    # On the inference thread (never called directly) with a deadline of 1 ms: a batch of
    # 250 images keeps the CNN busy for tens of milliseconds, so the batcher's deadline
    # answers first (504), as it would for any slow model.
    (repo / "digits" / "config.json").write_text(json.dumps(
        {"batching": {"execution": "thread", "timeout_ms": 1, "max_rows": 256}}))
    with running(repo, root, env={
            "MODELSERVE_API_KEYS": API_KEY, "MODELSERVE_ADMIN_KEYS": ADMIN_KEY,
            "MODELSERVE_INCOMPLETE_VERSION_TIMEOUT_S": "0"}) as srv:
        yield srv


@pytest.fixture(scope="module")
def gstub(guarded) -> Iterator[Any]:
    channel, s = stub_for(guarded.grpc_target)
    yield s
    channel.close()


@pytest.fixture(scope="module")
def ghttp(guarded) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=guarded.url, timeout=60) as c:
        yield c


KEY = (("authorization", f"Bearer {API_KEY}"),)
AUTH = {"Authorization": f"Bearer {API_KEY}"}
ADMIN = (("x-api-key", ADMIN_KEY),)


def test_keys(gstub, ghttp):
    request = infer_request("wine-quality", [OK], typed=True)
    # Both ways of sending a key, as over HTTP.
    wine_ok(gstub, KEY)
    wine_ok(gstub, (("x-api-key", API_KEY),))
    wine_ok(gstub, ADMIN)  # an admin key may predict too
    for metadata in [(), (("authorization", "Bearer wrong-key"),),
                     (("x-api-key", "wrong-key"),),
                     (("authorization", "Basic dXNlcjpwdw=="),),
                     (("authorization", "Bearer"),)]:
        r = http_infer(ghttp, "wine-quality", [OK], binary=False, headers=dict(metadata))
        same_refusal(gstub.ModelInfer, request, C.UNAUTHENTICATED, r, metadata)
    # Metadata and model readiness need a key; server liveness and readiness do not.
    r = ghttp.get("/v2/models/wine-quality")
    same_refusal(gstub.ModelMetadata, pb.ModelMetadataRequest(name="wine-quality"),
                 C.UNAUTHENTICATED, r)
    r = ghttp.get("/v2/models/wine-quality/ready")
    same_refusal(gstub.ModelReady, pb.ModelReadyRequest(name="wine-quality"),
                 C.UNAUTHENTICATED, r)
    assert gstub.ModelReady(pb.ModelReadyRequest(name="wine-quality"), metadata=KEY,
                            timeout=30).ready
    assert gstub.ServerLive(pb.ServerLiveRequest(), timeout=30).live
    assert gstub.ServerReady(pb.ServerReadyRequest(), timeout=30).ready
    # An API key on the repository extension.
    r = ghttp.post("/v2/repository/index", json={}, headers=AUTH)
    message = same_refusal(gstub.RepositoryIndex, pb.RepositoryIndexRequest(),
                           C.PERMISSION_DENIED, r, KEY)
    assert "admin key" in message


def test_labels(gstub, ghttp):
    (t,) = samples("wine-quality", 1)
    for label, version in [("stable", "1"), ("canary", "2")]:
        want = http_answer(http_infer(ghttp, "wine-quality", [t], binary=False, version=label,
                                      headers=AUTH))
        assert want["model_version"] == version
        response = gstub.ModelInfer(infer_request("wine-quality", [t], typed=True,
                                                  version=label), metadata=KEY, timeout=60)
        assert grpc_answer(response) == want
        _check_expected("wine-quality", int(version), want)
        meta = gstub.ModelMetadata(pb.ModelMetadataRequest(name="wine-quality", version=label),
                                   metadata=KEY, timeout=30)
        assert list(meta.versions) == [version]
        assert gstub.ModelReady(pb.ModelReadyRequest(name="wine-quality", version=label),
                                metadata=KEY, timeout=30).ready
    r = http_infer(ghttp, "wine-quality", [t], binary=False, version="beta", headers=AUTH)
    message = same_refusal(gstub.ModelInfer, infer_request("wine-quality", [t], typed=True,
                                                           version="beta"), C.NOT_FOUND, r, KEY)
    assert "'beta'" in message and "stable" in message


def test_a_failed_version_is_unavailable(gstub, ghttp):
    (t,) = samples("housing", 2)
    r = http_infer(ghttp, "housing", [t], binary=False, version="3", headers=AUTH)
    message = same_refusal(gstub.ModelInfer, infer_request("housing", [t], typed=True,
                                                           version="3"), C.UNAVAILABLE, r, KEY)
    assert "model.joblib" in message
    assert not gstub.ModelReady(pb.ModelReadyRequest(name="housing", version="3"),
                                metadata=KEY, timeout=30).ready
    assert ghttp.get("/v2/models/housing/versions/3/ready", headers=AUTH).status_code == 503
    # Versionless calls use the version that loaded.
    response = gstub.ModelInfer(infer_request("housing", [t], typed=True), metadata=KEY,
                                timeout=60)
    assert response.model_version == "2"
    assert gstub.ModelReady(pb.ModelReadyRequest(name="housing"), metadata=KEY,
                            timeout=30).ready


def test_a_call_past_the_request_timeout_is_deadline_exceeded(gstub, ghttp):
    (t,) = samples("digits", 2)
    big = Tensor(t.name, "FP32", np.resize(t.data, (250, *t.data.shape[1:])))
    r = http_infer(ghttp, "digits", [big], binary=True, headers=AUTH)
    message = same_refusal(gstub.ModelInfer, infer_request("digits", [big], typed=False),
                           C.DEADLINE_EXCEEDED, r, KEY)
    assert "did not answer within" in message
    wine_ok(gstub, KEY)


def _index(gstub: Any) -> list[dict[str, str]]:
    response = gstub.RepositoryIndex(pb.RepositoryIndexRequest(), metadata=ADMIN, timeout=60)
    return [{"name": m.name, "version": m.version, "state": m.state, "reason": m.reason}
            for m in response.models]


def _states(gstub: Any, name: str) -> dict[str, str]:
    return {m["version"]: m["state"] for m in _index(gstub) if m["name"] == name}


def test_repository_extension(gstub, ghttp):
    admin = {"X-API-Key": ADMIN_KEY}
    index = _index(gstub)
    assert index == ghttp.post("/v2/repository/index", json={}, headers=admin).json()
    assert {(m["name"], m["version"], m["state"]) for m in index} >= {
        ("wine-quality", "1", "AVAILABLE"), ("housing", "3", "END")}
    ready = gstub.RepositoryIndex(pb.RepositoryIndexRequest(ready=True), metadata=ADMIN,
                                  timeout=60)
    assert {m.state for m in ready.models} == {"AVAILABLE"}
    assert len(ready.models) == len(index) - 1  # all but housing 3

    gstub.RepositoryModelUnload(pb.RepositoryModelUnloadRequest(model_name="wine-quality"),
                                metadata=ADMIN, timeout=60)
    deadline = time.monotonic() + 60  # in-flight calls finish first (UNLOADING)
    while set(_states(gstub, "wine-quality").values()) != {"END"}:
        assert time.monotonic() < deadline, _index(gstub)
        time.sleep(0.1)
    reasons = {m["reason"] for m in _index(gstub) if m["name"] == "wine-quality"}
    assert reasons == {"unloaded by an administrator"}
    r = http_infer(ghttp, "wine-quality", [OK], binary=False, headers=AUTH)
    code = {404: C.NOT_FOUND, 503: C.UNAVAILABLE}[r.status_code]
    same_refusal(gstub.ModelInfer, infer_request("wine-quality", [OK], typed=True), code, r,
                 KEY)
    assert not gstub.ModelReady(pb.ModelReadyRequest(name="wine-quality"), metadata=KEY,
                                timeout=30).ready

    gstub.RepositoryModelLoad(pb.RepositoryModelLoadRequest(model_name="wine-quality"),
                              metadata=ADMIN, timeout=120)
    assert _states(gstub, "wine-quality") == {"1": "AVAILABLE", "2": "AVAILABLE"}
    wine_ok(gstub, KEY)

    for method, request, path in [
            (gstub.RepositoryModelLoad, pb.RepositoryModelLoadRequest(model_name="nope"),
             "/v2/repository/models/nope/load"),
            (gstub.RepositoryModelUnload, pb.RepositoryModelUnloadRequest(model_name="nope"),
             "/v2/repository/models/nope/unload")]:
        r = ghttp.post(path, headers=admin)
        same_refusal(method, request, C.NOT_FOUND, r, ADMIN)
    # housing 3 cannot load, but version 2 serves: loaded.
    assert ghttp.post("/v2/repository/models/housing/load", headers=admin).status_code == 200
    gstub.RepositoryModelLoad(pb.RepositoryModelLoadRequest(model_name="housing"),
                              metadata=ADMIN, timeout=120)


# --- rate limit and admission ----------------------------------------------------------

RATE_KEY = "gk-Rate-88c1d0e4a7b3"
LOAD_KEY = "gk-Load-3f9e2b6d0c15"
BURST = 10


@pytest.fixture(scope="module")
def limited(tmp_path_factory) -> Iterator[Server]:
    """One call in progress at a time; per key, a burst of BURST calls and then 1 per 100 s."""
    root = tmp_path_factory.mktemp("limited")
    shutil.copytree(MODELS / "digits" / "2", root / "models" / "digits" / "2")
    with running(root / "models", root, env={
            "MODELSERVE_API_KEYS": f"{RATE_KEY},{LOAD_KEY}", "MODELSERVE_MAX_INFLIGHT": "1",
            "MODELSERVE_RATE_LIMIT_PER_S": "0.01",
            "MODELSERVE_RATE_LIMIT_BURST": str(BURST)}) as srv:
        yield srv


def test_rate_limit_is_resource_exhausted(limited):
    channel, s = stub_for(limited.grpc_target)
    key = (("x-api-key", RATE_KEY),)
    try:
        for _ in range(BURST):
            s.ServerMetadata(pb.ServerMetadataRequest(), metadata=key, timeout=30)
        message = refused(s.ServerMetadata, pb.ServerMetadataRequest(), C.RESOURCE_EXHAUSTED,
                          key)
        assert message.startswith(f"Rate limit exceeded for this key (0.01 requests/s, "
                                  f"burst {BURST}); retry after ")
        # Per key: another key is not limited; probes are never.
        s.ServerMetadata(pb.ServerMetadataRequest(), metadata=(("x-api-key", LOAD_KEY),),
                         timeout=30)
        assert s.ServerReady(pb.ServerReadyRequest(), timeout=30).ready
        # One bucket per key in the process, whatever the protocol: HTTP is refused too,
        # with the same message ("retry after <n> s" counts down between the two).
        r = httpx.get(limited.url + "/v2", headers={"X-API-Key": RATE_KEY}, timeout=30)
        assert r.status_code == 429, "gRPC and HTTP keep separate buckets for a key"
        assert message.split("retry after")[0] == r.json()["error"].split("retry after")[0]
    finally:
        channel.close()


def test_admission_overload_is_unavailable_and_admitted_calls_complete(limited):
    """While a big call is in progress (MAX_INFLIGHT=1), other calls are refused at
    once with HTTP's message; probes are not; the admitted call completes."""
    channel, s = stub_for(limited.grpc_target)
    (t,) = samples("digits", 2)
    big = infer_request("digits", [Tensor("image", "FP32", np.concatenate(
        [t.data] * (MAX_ROWS // len(t.data))))], typed=False)
    key = (("x-api-key", LOAD_KEY),)
    grpc_refusal = http_refusal = None
    deadline = time.monotonic() + 120
    try:
        with httpx.Client(base_url=limited.url, timeout=30) as http:
            while grpc_refusal is None or http_refusal is None:
                assert time.monotonic() < deadline, "never saw a call refused for overload"
                call = s.ModelInfer.future(big, metadata=key, timeout=120)
                while not call.done():
                    assert s.ServerReady(pb.ServerReadyRequest(), timeout=30).ready
                    # Without a key: refused for overload, else (admitted) for the key.
                    try:
                        s.ServerMetadata(pb.ServerMetadataRequest(), timeout=30)
                    except grpc.RpcError as err:
                        assert err.code() in (C.UNAVAILABLE, C.UNAUTHENTICATED), err
                        if err.code() == C.UNAVAILABLE:
                            grpc_refusal = err.details()
                    r = http.get("/v2")
                    assert r.status_code in (503, 401), r.text
                    if r.status_code == 503:
                        http_refusal = r.json()["error"]
                        assert r.headers["retry-after"] == "1"
                try:
                    response = call.result()
                except grpc.RpcError as err:  # a key-less call got in first: again
                    assert err.code() == C.UNAVAILABLE, err
                    continue
                labels = decode(grpc_answer(response)["outputs"]["label"]).tolist()
                assert labels == [s_.expected["label"] for s_ in read_manifest(
                    MODELS / "digits" / "2").samples] * (MAX_ROWS // len(t.data))
        assert grpc_refusal == http_refusal == (
            "The server is overloaded: 1 requests are already in progress in this process "
            "(max_inflight). Retry after 1 s.")
    finally:
        channel.close()


# --- drain on SIGTERM ------------------------------------------------------------------


def test_sigterm_finishes_calls_in_flight_then_exits_0(tmp_path):
    shutil.copytree(MODELS / "digits" / "2", tmp_path / "models" / "digits" / "2")
    with running(tmp_path / "models", tmp_path,
                 env={"MODELSERVE_SHUTDOWN_GRACE_S": "60"}) as srv:
        channel, s = stub_for(srv.grpc_target)
        try:
            (t,) = samples("digits", 2)
            rows = 200
            batch = Tensor("image", "FP32", np.concatenate([t.data] * (rows // len(t.data))))
            expected = [x.expected["label"] for x in read_manifest(
                MODELS / "digits" / "2").samples] * (rows // len(t.data))
            calls = [s.ModelInfer.future(infer_request("digits", [batch], typed=False),
                                         timeout=120) for _ in range(12)]
            # Until every call has reached the service: queued in the batcher, running (one
            # at a time: a call is bigger than a batch) or answered. A call still on the wire
            # when the listener stops is cancelled by grpcio, as a request still unread is
            # dropped by an HTTP server: that is not a call in flight.
            deadline = time.monotonic() + 60
            with httpx.Client(base_url=srv.url, timeout=30) as http:
                while True:
                    queued = value(scrape(http), "modelserve_queue_rows", model="digits",
                                   version="2")
                    answered = sum(c.done() for c in calls)
                    if queued + rows * (answered + 1) >= rows * len(calls):
                        break
                    assert time.monotonic() < deadline, "the calls never all reached the batcher"
                    time.sleep(0.02)
                assert not all(c.done() for c in calls), "every call finished before SIGTERM"
            srv.proc.send_signal(signal.SIGTERM)
            for call in calls:
                labels = decode(grpc_answer(call.result())["outputs"]["label"]).tolist()
                assert labels == expected
            # New calls: not ready, or refused.
            deadline = time.monotonic() + 60
            while True:
                assert time.monotonic() < deadline, "still ready after SIGTERM"
                try:
                    if not s.ServerReady(pb.ServerReadyRequest(), timeout=10).ready:
                        break
                except grpc.RpcError as err:
                    assert err.code() == C.UNAVAILABLE, err
                    break
                time.sleep(0.05)
            assert srv.wait_exit(60) == 0, srv.output()
            assert "SIGTERM received: draining" in srv.log_text()
        finally:
            channel.close()


# --- a team's models: several inputs, every datatype -------------------------------------


@pytest.fixture(scope="module")
def user_repo(tmp_path_factory) -> Path:
    """churn (one tensor per feature: FP64, INT64, BOOL, BYTES) and triage (a Keras model
    with two inputs), published with the public API."""
    import modelserve
    from tests import user_models

    repo = tmp_path_factory.mktemp("user-grpc") / "models"
    for build in (user_models.churn, user_models.triage):
        b = build()
        modelserve.publish(b.model, name=b.name, repository=repo, X_test=b.X_test,
                           y_test=b.y_test, **b.publish_args)
    return repo


@pytest.fixture(scope="module")
def user_server(user_repo, tmp_path_factory) -> Iterator[Server]:
    with running(user_repo, tmp_path_factory.mktemp("user-grpc-server")) as srv:
        yield srv


@pytest.fixture(scope="module")
def ustub(user_server) -> Iterator[Any]:
    channel, s = stub_for(user_server.grpc_target)
    yield s
    channel.close()


@pytest.fixture(scope="module")
def uhttp(user_server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=user_server.url, timeout=60) as c:
        yield c


def _churn_tensors(user_repo: Path, rooms: str = "INT64") -> list[Tensor]:
    """Every sample of churn, one tensor per feature; 'rooms' in the given datatype."""
    m = read_manifest(user_repo / "churn" / "1")
    rows = [s.inputs for s in m.samples if None not in s.inputs.values()]
    assert rows
    out = []
    for f in m.inputs[0].features:
        values = [r[f.name] for r in rows]
        if f.name == "rooms":
            out.append(Tensor(f.name, rooms, np.asarray(values, dtype=np.float64)))
        elif f.dtype == "string":
            out.append(Tensor(f.name, "BYTES", np.asarray(values, dtype=object)))
        elif f.dtype == "bool":
            out.append(Tensor(f.name, "BOOL", np.asarray(values, dtype=bool)))
        else:
            out.append(Tensor(f.name, {"float64": "FP64", "int64": "INT64"}[f.dtype],
                              np.asarray(values)))
    return out


def test_churn_takes_one_tensor_per_feature_of_every_kind(user_repo, ustub, uhttp):
    tensors = _churn_tensors(user_repo)
    assert {t.datatype for t in tensors} == {"FP64", "INT64", "BOOL", "BYTES"}
    want = http_answer(http_infer(uhttp, "churn", tensors, binary=False))
    assert want == http_answer(http_infer(uhttp, "churn", tensors, binary=True))
    m = read_manifest(user_repo / "churn" / "1")
    expected = [s.expected["label"] for s in m.samples if None not in s.inputs.values()]
    assert decode(want["outputs"]["label"]).tolist() == expected
    for typed in (True, False):
        response = ustub.ModelInfer(infer_request("churn", tensors, typed=typed), timeout=60)
        assert grpc_answer(response) == want


NUMERIC = ["FP16", "BF16", "FP32", "FP64", "INT8", "INT16", "INT32", "INT64", "UINT8",
           "UINT16", "UINT32", "UINT64"]


@pytest.mark.parametrize("datatype", NUMERIC)
def test_every_numeric_datatype_raw_and_typed(user_repo, ustub, uhttp, datatype):
    """An integer feature sent in each datatype: gRPC raw equals HTTP binary, gRPC typed
    equals HTTP JSON (FP16 and BF16 travel as raw bytes only)."""
    tensors = _churn_tensors(user_repo, rooms=datatype)
    reference = http_answer(http_infer(uhttp, "churn", _churn_tensors(user_repo),
                                       binary=False))
    want = http_answer(http_infer(uhttp, "churn", tensors, binary=True))
    assert want == reference  # small whole numbers are exact in every datatype
    response = ustub.ModelInfer(infer_request("churn", tensors, typed=False), timeout=60)
    assert grpc_answer(response) == want
    if datatype in TYPED:
        response = ustub.ModelInfer(infer_request("churn", tensors, typed=True), timeout=60)
        assert grpc_answer(response) == want


def test_warnings_travel_as_a_parameter(user_repo, ustub, uhttp):
    tensors = _churn_tensors(user_repo)
    city = next(t for t in tensors if t.name == "city")
    city.data = np.asarray(["coimbra"] * len(city.data), dtype=object)
    want = http_answer(http_infer(uhttp, "churn", tensors, binary=False))
    assert want["warnings"] and "coimbra" in want["warnings"]
    response = ustub.ModelInfer(infer_request("churn", tensors, typed=True), timeout=60)
    assert grpc_answer(response) == want


def test_a_model_with_two_inputs(user_repo, ustub, uhttp):
    m = read_manifest(user_repo / "triage" / "1")
    tensors = [Tensor(i.name, "FP32", np.asarray([[s.inputs[f] for f in i.feature_names]
                                                   for s in m.samples]))
               for i in m.inputs]
    assert [t.name for t in tensors] == ["vitals", "history"]
    want = http_answer(http_infer(uhttp, "triage", tensors, binary=False))
    assert decode(want["outputs"]["label"]).tolist() == [s.expected["label"]
                                                         for s in m.samples]
    for typed in (True, False):
        for order in (tensors, tensors[::-1]):
            response = ustub.ModelInfer(infer_request("triage", order, typed=typed),
                                        timeout=60)
            assert grpc_answer(response) == want
    r = http_infer(uhttp, "triage", tensors[:1], binary=False)
    message = same_refusal(ustub.ModelInfer, infer_request("triage", tensors[:1], typed=True),
                           C.INVALID_ARGUMENT, r)
    assert "'admissions'" in message


def _bytes_request(user_repo: Path, colour: bytes, count: int = 1,
                   typed_colour: list[bytes] | None = None) -> tuple[Any, int]:
    """churn's first sample with 'colour' replaced by these raw BYTES (or typed values)."""
    tensors = [Tensor(t.name, t.datatype, t.data[:1]) for t in _churn_tensors(user_repo)]
    request = infer_request("churn", tensors, typed=typed_colour is not None)
    i = [t.name for t in tensors].index("colour")
    request.inputs[i].shape[:] = [count]
    if typed_colour is not None:
        request.inputs[i].contents.ClearField("bytes_contents")
        request.inputs[i].contents.bytes_contents.extend(typed_colour)
    else:
        request.raw_input_contents[i] = colour
    return request, i


BAD_BYTES = [
    ("length prefix past the data", b"\x09\x00\x00\x00re", 1, "BYTES element 0 says 9 bytes"),
    ("bytes past the elements", b"\x03\x00\x00\x00redXX", 1, "2 bytes past its 1 elements"),
    ("a prefix cut short", b"\x03\x00", 1, "1 BYTES elements need at least 4 bytes"),
    ("many elements claimed", b"\x03\x00\x00\x00red", 300_000_000, "need at least"),
    ("not UTF-8", b"\x02\x00\x00\x00\xff\xfe", 1, "BYTES element 0 is not UTF-8 text"),
]


@pytest.mark.parametrize("blob, count, needle", [c[1:] for c in BAD_BYTES],
                         ids=[c[0] for c in BAD_BYTES])
def test_bad_bytes_tensors(user_repo, ustub, uhttp, blob, count, needle):
    request, i = _bytes_request(user_repo, blob, count)
    # The same tensor over HTTP's binary extension.
    tensors = [Tensor(t.name, t.datatype, t.data[:1]) for t in _churn_tensors(user_repo)]
    body: dict[str, Any] = {"inputs": [t.json() for t in tensors]}
    body["inputs"][i] = {"name": "colour", "datatype": "BYTES", "shape": [count],
                         "parameters": {"binary_data_size": len(blob)}}
    header = json.dumps(body).encode()
    r = uhttp.post("/v2/models/churn/infer", content=header + blob,
                   headers={"Inference-Header-Content-Length": str(len(header))})
    message = same_refusal(ustub.ModelInfer, request, C.INVALID_ARGUMENT, r)
    assert needle in message
    good, _ = _bytes_request(user_repo, b"\x03\x00\x00\x00red")
    assert ustub.ModelInfer(good, timeout=60).outputs


def test_bad_typed_values(user_repo, ustub, uhttp):
    request, i = _bytes_request(user_repo, b"", typed_colour=[b"\xff\xfe"])
    message = refused(ustub.ModelInfer, request, C.INVALID_ARGUMENT)
    assert message == f"inputs[{i}] ('colour'): BYTES element 0 is not UTF-8 text."
    # An integer that does not fit its datatype; BOOL carried as raw bytes other than 0/1.
    tensors = [Tensor(t.name, t.datatype, t.data[:1]) for t in _churn_tensors(user_repo,
                                                                              rooms="INT8")]
    rooms = [t.name for t in tensors].index("rooms")
    request = infer_request("churn", tensors, typed=True)
    request.inputs[rooms].contents.int_contents[:] = [300]
    body = {"inputs": [t.json() for t in tensors]}
    body["inputs"][rooms]["data"] = [300]
    r = uhttp.post("/v2/models/churn/infer", json=body)
    assert "does not fit INT8" in same_refusal(ustub.ModelInfer, request, C.INVALID_ARGUMENT,
                                               r)
    tensors = [Tensor(t.name, t.datatype, t.data[:1]) for t in _churn_tensors(user_repo)]
    request = infer_request("churn", tensors, typed=False)
    member = [t.name for t in tensors].index("member")
    request.raw_input_contents[member] = b"\x02"
    assert "BOOL bytes must be 0 or 1" in refused(ustub.ModelInfer, request,
                                                   C.INVALID_ARGUMENT)
    good, _ = _bytes_request(user_repo, b"\x03\x00\x00\x00red")
    assert ustub.ModelInfer(good, timeout=60).outputs


def test_model_ready_with_a_malformed_version_is_invalid_like_http(stub, client):
    for version in ["abc!", "0"]:
        r = client.get(f"/v2/models/wine-quality/versions/{version}/ready")
        same_refusal(stub.ModelReady, pb.ModelReadyRequest(name="wine-quality", version=version),
                     C.INVALID_ARGUMENT, r)


def test_a_model_name_is_escaped_in_the_access_log(stub, server):
    refused(stub.ModelInfer, infer_request("bad\nname status=200", [OK], typed=True),
            C.NOT_FOUND, (("x-request-id", "rq-escaped"),))
    deadline = time.monotonic() + 60
    while True:
        records = [json.loads(line) for line in server.log_text().splitlines()
                   if "rq-escaped" in line]
        access = [r for r in records if r.get("logger") == "modelserve.access"]
        if access or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert access and access[0]["model"] == "bad\\nname status=200", records
