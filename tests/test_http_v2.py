"""KServe V2 with the standard client, tritonclient.http, in binary and JSON modes; and
over raw HTTP, every accepted datatype (FP16, BF16, integers) and compressed bodies (gzip,
deflate) checked against the answer the same values get as uncompressed FP32."""

from __future__ import annotations

import gzip
import json
import zlib

import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from service.loader import read_manifest
from tests.conftest import MODELS, sample_array

MODELS_SERVED = ["digits", "wine-quality", "housing", "auscultation"]


@pytest.fixture(scope="module")
def triton_client(server):
    return triton.InferenceServerClient(server.url.removeprefix("http://"))


def test_server_metadata_and_readiness(triton_client):
    assert triton_client.is_server_live() and triton_client.is_server_ready()
    meta = triton_client.get_server_metadata()
    assert meta["name"] == "modelserve" and "binary_tensor_data" in meta["extensions"]
    assert triton_client.is_model_ready("digits")
    assert triton_client.is_model_ready("digits", "1")
    assert not triton_client.is_model_ready("digits", "99")
    assert not triton_client.is_model_ready("no-such-model")


@pytest.mark.parametrize("name", MODELS_SERVED)
def test_model_metadata(triton_client, name):
    meta = triton_client.get_model_metadata(name)
    m = read_manifest(MODELS / name / meta["versions"][0])
    (spec,) = m.inputs
    want = {"float32": "FP32", "float64": "FP64"}[spec.dtype or spec.features[0].dtype]
    assert meta["inputs"] == [{"name": spec.name, "datatype": want, "shape": spec.shape}]
    assert {o["name"] for o in meta["outputs"]} == {o.name for o in m.outputs}


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
@pytest.mark.parametrize("name", MODELS_SERVED)
def test_infer_reproduces_manifest_samples(triton_client, name, binary):
    m = read_manifest(MODELS / name / "2")
    x = sample_array(m)
    inp = triton.InferInput(m.inputs[0].name, list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=binary)
    outputs = [triton.InferRequestedOutput(o.name, binary_data=binary) for o in m.outputs]
    result = triton_client.infer(name, [inp], model_version="2", outputs=outputs,
                                 request_id=f"req-{name}")
    assert result.get_response()["id"] == f"req-{name}"
    assert result.get_response()["model_version"] == "2"
    if m.task.value == "regression":
        assert result.as_numpy("value") == pytest.approx(
            [s.expected["value"] for s in m.samples], abs=1e-4)
    else:
        labels = [v.decode() if isinstance(v, bytes) else v for v in result.as_numpy("label")]
        assert labels == [s.expected["label"] for s in m.samples]
        assert result.as_numpy("probabilities") == pytest.approx(
            np.asarray([s.expected["probabilities"] for s in m.samples]), abs=1e-4)
        assert list(result.as_numpy("class_id")) == [s.expected["class_id"] for s in m.samples]


def test_default_client_call_without_outputs_gets_binary_outputs(triton_client):
    x = np.zeros((3, 28, 28), dtype=np.float32)
    inp = triton.InferInput("image", [3, 28, 28], "FP32")
    inp.set_data_from_numpy(x)
    result = triton_client.infer("digits", [inp])
    assert result.as_numpy("probabilities").shape == (3, 10)
    assert all("binary_data_size" in o["parameters"] for o in result.get_response()["outputs"])


def test_one_tensor_per_feature(triton_client):
    m = read_manifest(MODELS / "wine-quality" / "2")
    inputs = []
    for name, value in m.samples[0].inputs.items():
        t = triton.InferInput(name, [1], "FP64")
        t.set_data_from_numpy(np.array([value], dtype=np.float64))
        inputs.append(t)
    result = triton_client.infer("wine-quality", inputs)
    assert result.as_numpy("class_id")[0] == m.samples[0].expected["class_id"]


def test_classification_extension(triton_client):
    x = sample_array(read_manifest(MODELS / "auscultation" / "2"))[:1]
    inp = triton.InferInput("features", list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=False)
    out = triton.InferRequestedOutput("probabilities", binary_data=False, class_count=2)
    top = triton_client.infer("auscultation", [inp], outputs=[out]).as_numpy("probabilities")
    assert top.shape == (1, 2)
    first = top[0][0].decode() if isinstance(top[0][0], bytes) else top[0][0]
    score, _index, label = first.split(":")
    assert label in ("normal", "crackles", "wheezes", "both") and float(score) > 0


def test_errors_reach_the_client_as_messages(triton_client):
    inp = triton.InferInput("features", [1, 3], "FP32")
    inp.set_data_from_numpy(np.zeros((1, 3), np.float32))
    with pytest.raises(InferenceServerException, match="expects 11 features"):
        triton_client.infer("wine-quality", [inp])
    inp = triton.InferInput("features", [1, 11], "BYTES")
    inp.set_data_from_numpy(np.array([[b"x"] * 11], dtype=object))
    with pytest.raises(InferenceServerException, match="datatype 'BYTES' is not accepted"):
        triton_client.infer("wine-quality", [inp])
    with pytest.raises(InferenceServerException, match="not found"):
        triton_client.get_model_metadata("nope")


# --- datatypes and compressed bodies, over raw HTTP: the answer must be the one the same
# values get as FP32 ----------------------------------------------------------------------


def _post_infer(client, name: str, tensor: dict, binary: bytes = b"",
                encoding: str | None = None) -> dict[str, np.ndarray]:
    """POST one input tensor (JSON, or JSON header + ``binary``), the body compressed
    with ``encoding``; the outputs of the 200 as arrays."""
    header = json.dumps({"inputs": [tensor]}).encode()
    body, headers = header + binary, {}
    if binary:
        headers["Inference-Header-Content-Length"] = str(len(header))
        headers["Content-Type"] = "application/octet-stream"
    else:
        headers["Content-Type"] = "application/json"
    if encoding == "gzip":
        body = gzip.compress(body)
    elif encoding == "deflate":
        body = zlib.compress(body)  # HTTP's deflate is the zlib format
    if encoding:
        headers["Content-Encoding"] = encoding
    r = client.post(f"/v2/models/{name}/versions/2/infer", content=body, headers=headers)
    assert r.status_code == 200, r.text
    return {o["name"]: np.asarray(o["data"]) for o in r.json()["outputs"]}


def _json_tensor(name: str, x: np.ndarray, datatype: str) -> dict:
    return {"name": name, "shape": list(x.shape), "datatype": datatype,
            "data": x.ravel().tolist()}


def _binary_tensor(name: str, shape: tuple[int, ...], datatype: str,
                   raw: bytes) -> tuple[dict, bytes]:
    return ({"name": name, "shape": list(shape), "datatype": datatype,
             "parameters": {"binary_data_size": len(raw)}}, raw)


def _assert_same_answer(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    assert set(got) == set(want)
    for key, value in want.items():
        if value.dtype.kind in "fc":
            # Equal but for float noise (a CNN's sums can depend on the batch it ran in).
            np.testing.assert_allclose(got[key], value, rtol=1e-5, atol=1e-6, err_msg=key)
        else:
            np.testing.assert_array_equal(got[key], value, err_msg=key)


def _bf16_bits(x: np.ndarray) -> np.ndarray:
    """float32 values as bfloat16 bit patterns (the top half of each, truncated)."""
    return (x.astype("<f4").view("<u4") >> 16).astype("<u2")


@pytest.mark.parametrize("name", ["wine-quality", "housing", "digits"])
def test_fp16_and_bf16_get_the_fp32_answer_for_the_same_values(client, name):
    m = read_manifest(MODELS / name / "2")
    inp = m.inputs[0].name
    x = sample_array(m)
    # FP16: the values FP16 holds, sent as FP16 (JSON and binary) and as FP32.
    x16 = x.astype(np.float16)
    want = _post_infer(client, name, _json_tensor(inp, x16.astype(np.float32), "FP32"))
    _assert_same_answer(_post_infer(client, name, _json_tensor(inp, x16, "FP16")), want)
    _assert_same_answer(_post_infer(client, name, *_binary_tensor(
        inp, x.shape, "FP16", x16.astype("<f2").tobytes())), want)
    # BF16 (binary only): the values BF16 holds, sent as BF16 and as FP32.
    bits = _bf16_bits(x)
    held = (bits.astype("<u4") << 16).view("<f4")
    want = _post_infer(client, name, _json_tensor(inp, held, "FP32"))
    _assert_same_answer(_post_infer(client, name, *_binary_tensor(
        inp, x.shape, "BF16", bits.tobytes())), want)
    # Within BF16's precision (8 bits of mantissa) of the values themselves.
    np.testing.assert_allclose(held, x, rtol=2**-7)


def test_bf16_as_json_is_refused_with_a_message(client):
    x = sample_array(read_manifest(MODELS / "wine-quality" / "2"))[:1]
    r = client.post("/v2/models/wine-quality/infer",
                    json={"inputs": [_json_tensor("features", x, "BF16")]})
    assert r.status_code == 400, r.text
    assert "BF16 can only be sent as binary data" in r.json()["error"]


@pytest.mark.parametrize("datatype", ["INT32", "INT64", "UINT8"])
@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_integer_datatypes_get_the_fp32_answer(client, datatype, binary):
    m = read_manifest(MODELS / "digits" / "2")
    pixels = np.clip(np.rint(sample_array(m)), 0, 255)  # 0..255: every type holds them
    want = _post_infer(client, "digits", _json_tensor("image", pixels, "FP32"))
    ints = pixels.astype({"INT32": "<i4", "INT64": "<i8", "UINT8": "u1"}[datatype])
    if binary:
        got = _post_infer(client, "digits", *_binary_tensor("image", ints.shape, datatype,
                                                             ints.tobytes()))
    else:
        got = _post_infer(client, "digits", _json_tensor("image", ints, datatype))
    _assert_same_answer(got, want)


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
@pytest.mark.parametrize("name", ["wine-quality", "digits"])
def test_compressed_bodies_get_the_uncompressed_answer(client, name, encoding):
    m = read_manifest(MODELS / name / "2")
    inp = m.inputs[0].name
    x = sample_array(m)
    want = _post_infer(client, name, _json_tensor(inp, x, "FP32"))
    _assert_same_answer(_post_infer(client, name, _json_tensor(inp, x, "FP32"),
                                    encoding=encoding), want)
    _assert_same_answer(_post_infer(client, name, *_binary_tensor(
        inp, x.shape, "FP32", x.astype("<f4").tobytes()), encoding=encoding), want)
    x64 = x.astype(np.float64)
    _assert_same_answer(_post_infer(client, name, *_binary_tensor(
        inp, x.shape, "FP64", x64.astype("<f8").tobytes()), encoding=encoding), want)


def test_an_id_orjson_cannot_write_is_echoed_not_a_500(client):
    # A lone surrogate is valid JSON text (the standard library reads it) but not UTF-8:
    # the echoed id must still come back, escaped, with the prediction.
    (spec,) = read_manifest(MODELS / "wine-quality" / "2").inputs
    row = sample_array(read_manifest(MODELS / "wine-quality" / "2"))[:1].tolist()
    body = ('{"id": "\\ud800", "inputs": [{"name": "' + spec.name + '", "datatype": "FP64", '
            f'"shape": [1, {len(row[0])}], "data": {json.dumps(row)}}}]}}')
    r = client.post("/v2/models/wine-quality/versions/2/infer", content=body.encode(),
                    headers={"Content-Type": "application/json"})
    assert r.status_code == 200, r.text
    assert r.json()["id"] == "\ud800"


@pytest.mark.parametrize("path", ["/v1/models/wine-quality:predict%0A",
                                  "/v2/models/wine-quality/versions/2/infer%0A"])
def test_a_path_with_a_final_newline_is_not_a_prediction_route(client, path):
    r = client.post(path, json={"instances": [[0.0] * 11]})
    assert r.status_code == 404, r.text
