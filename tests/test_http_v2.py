"""KServe V2 with the standard client, tritonclient.http, in binary and JSON modes."""

from __future__ import annotations

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
