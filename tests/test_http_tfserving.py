"""TF-Serving REST API and health, against the real server and committed models."""

from __future__ import annotations

import json

import pytest

from service.loader import read_manifest
from tests.conftest import MODELS

MODELS_SERVED = ["digits", "wine-quality", "housing", "auscultation"]


def _manifest(name: str, version: int):
    return read_manifest(MODELS / name / str(version))


def _named(name: str, version: int) -> tuple[dict, dict]:
    """A sample as a named-feature object, and the outputs its manifest expects."""
    m = _manifest(name, version)
    sample = m.samples[0]
    return dict(sample.inputs), sample.expected


def test_health(client):
    assert client.get("/v2/health/live").status_code == 200
    assert client.get("/healthz").status_code == 200
    assert client.get("/v2/health/ready").status_code == 200
    assert client.get("/readyz").json() == {"ready": True}


def test_list_models_shows_every_version(client):
    body = client.get("/v1/models").json()
    names = {m["name"]: m for m in body["models"]}
    assert set(names) == set(MODELS_SERVED)
    for model in names.values():
        states = {s["version"]: s["state"] for s in model["model_version_status"]}
        assert len(states) >= 2 and set(states.values()) == {"AVAILABLE"}


def test_model_status_tfserving_shape(client):
    body = client.get("/v1/models/wine-quality").json()
    assert body["model_version_status"][0] == {
        "version": "2", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
    one = client.get("/v1/models/wine-quality/versions/1").json()
    assert [s["version"] for s in one["model_version_status"]] == ["1"]


@pytest.mark.parametrize("name", MODELS_SERVED)
def test_metadata_signature_and_manifest_facts(client, name):
    body = client.get(f"/v1/models/{name}/metadata").json()
    m = _manifest(name, int(body["model_spec"]["version"]))
    sig = body["metadata"]["signature_def"]["signature_def"]["serving_default"]
    (input_name, tensor), = sig["inputs"].items()
    (spec,) = m.inputs
    # Features reach the model in the dtype it was fitted with: float64 for scikit-learn.
    want = {"float32": "DT_FLOAT", "float64": "DT_DOUBLE"}[
        spec.dtype or spec.features[0].dtype]
    assert input_name == spec.name and tensor["dtype"] == want
    assert [d["size"] for d in tensor["tensor_shape"]["dim"]] == [str(d) for d in spec.shape]
    assert set(sig["outputs"]) == {o.name for o in m.outputs}
    facts = body["modelserve"]
    assert facts["evaluation"]["test_metrics"] == m.evaluation.test_metrics
    if spec.features:
        assert [f["name"] for f in facts["inputs"][0]["features"]] == spec.feature_names


@pytest.mark.parametrize("name", MODELS_SERVED)
@pytest.mark.parametrize("version", [1, 2])
def test_predict_row_format_reproduces_manifest_samples(client, name, version):
    m = _manifest(name, version)
    r = client.post(f"/v1/models/{name}/versions/{version}:predict",
                    json={"instances": [s.inputs for s in m.samples]})
    assert r.status_code == 200, r.text
    assert r.headers["model-version"] == str(version)
    for got, sample in zip(r.json()["predictions"], m.samples, strict=True):
        if m.task.value == "regression":
            assert got == pytest.approx(sample.expected["value"], abs=1e-4)
        else:
            assert got["label"] == sample.expected["label"]
            assert got["class_id"] == sample.expected["class_id"]
            assert got["probabilities"] == pytest.approx(sample.expected["probabilities"],
                                                         abs=1e-4)


def test_predict_named_feature_instances(client):
    named, expected = _named("wine-quality", 2)
    r = client.post("/v1/models/wine-quality:predict", json={"instances": [named, named]})
    assert r.status_code == 200, r.text
    assert [p["label"] for p in r.json()["predictions"]] == [expected["label"]] * 2


def test_predict_columnar_named_and_plain(client):
    named, expected = _named("housing", 2)
    columns = {k: [v, v] for k, v in named.items()}
    r = client.post("/v1/models/housing:predict", json={"inputs": columns})
    assert r.status_code == 200, r.text
    assert r.json()["outputs"] == pytest.approx([expected["value"]] * 2, abs=1e-4)
    r = client.post("/v1/models/housing:predict", json={"inputs": [list(named.values())]})
    assert r.json()["outputs"] == pytest.approx([expected["value"]], abs=1e-4)


def test_classify_and_regress(client):
    named, expected = _named("wine-quality", 2)
    r = client.post("/v1/models/wine-quality:classify", json={"examples": [named]})
    assert r.status_code == 200, r.text
    (result,) = r.json()["results"]
    assert [label for label, _ in result] == ["bad", "good"]
    assert [p for _, p in result] == pytest.approx(expected["probabilities"], abs=1e-4)

    named, expected = _named("housing", 1)
    context = {"Latitude": named.pop("Latitude")}
    r = client.post("/v1/models/housing/versions/1:regress",
                    json={"context": context, "examples": [named]})
    assert r.status_code == 200, r.text
    assert r.json()["results"] == pytest.approx([expected["value"]], abs=1e-4)


def test_out_of_range_feature_is_served_with_a_warning(client):
    named, _ = _named("wine-quality", 2)
    named["alcohol"] = 30.0
    r = client.post("/v1/models/wine-quality:predict", json={"instances": [named]})
    assert r.status_code == 200
    (warning,) = r.json()["warnings"]
    assert warning["instance"] == 0 and warning["feature"] == "alcohol"
    assert warning["value"] == 30.0 and len(warning["training_range"]) == 2


def test_nan_literal_is_parsed_and_rejected_by_name(client):
    named, _ = _named("housing", 2)
    values = list(named.values())
    body = json.dumps({"instances": [values]}).replace(str(values[7]), "NaN", 1)
    r = client.post("/v1/models/housing:predict", content=body)
    assert r.status_code == 400
    assert "Longitude" in r.json()["error"] and "NaN" in r.json()["error"]


def test_openapi_has_a_working_example_for_every_model(client):
    schema = client.get("/openapi.json").json()
    predict = schema["paths"]["/v1/models/{name}:predict"]["post"]
    examples = predict["requestBody"]["content"]["application/json"]["examples"]
    assert set(examples) == set(MODELS_SERVED)
    for name, example in examples.items():
        r = client.post(f"/v1/models/{name}:predict", json=example["value"])
        assert r.status_code == 200, (name, r.text)
    infer = schema["paths"]["/v2/models/{name}/infer"]["post"]
    for name, example in infer["requestBody"]["content"]["application/json"]["examples"].items():
        assert client.post(f"/v2/models/{name}/infer", json=example["value"]).status_code == 200
    assert client.get("/docs").status_code == 200
