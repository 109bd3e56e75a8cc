"""Every client mistake is a clear 4xx with {"error": ...} naming the problem; never a 500."""

from __future__ import annotations

import io
import json
import shutil

import numpy as np
import pytest
from PIL import Image

from service.loader import read_manifest
from tests.conftest import MODELS, TEST_LIMITS, running, sample_row

WINE = read_manifest(MODELS / "wine-quality" / "2")
ROW = sample_row(WINE)
NAMED = dict(zip(WINE.feature_names, ROW, strict=True))


def _error(r, status: int, *needles: str) -> dict:
    assert r.status_code == status, r.text
    body = r.json()
    assert isinstance(body["error"], str) and body["error"]
    for needle in needles:
        assert needle in body["error"], (needle, body["error"])
    return body


def test_unknown_model_and_version(client):
    _error(client.get("/v1/models/nope"), 404, "Model 'nope' not found", "wine-quality")
    _error(client.post("/v1/models/nope:predict", json={"instances": [ROW]}), 404, "'nope'")
    _error(client.get("/v1/models/wine-quality/versions/9"), 404, "no version 9", "1, 2")
    _error(client.post("/v1/models/wine-quality/versions/9:predict", json={"instances": [ROW]}),
           404, "no version 9")
    _error(client.get("/v1/models/wine-quality/versions/abc"), 400, "positive integer")
    _error(client.get("/v2/models/nope"), 404, "not found")
    _error(client.get("/no/such/endpoint"), 404, "No endpoint")


def test_malformed_json_and_wrong_body(client):
    url = "/v1/models/wine-quality:predict"
    _error(client.post(url, content=b'{"instances": [1, 2'), 400, "not valid JSON")
    _error(client.post(url, content=b""), 400, "empty")
    _error(client.post(url, json=[ROW]), 400, "must be a JSON object")
    _error(client.post(url, json={"instances": [ROW], "inputs": [ROW]}), 400, "not both")
    _error(client.post(url, json={"rows": [ROW]}), 400, "neither was found", "alcohol")
    _error(client.post(url, json={"instances": {"a": 1}}), 400, "must be a list")


def test_feature_names(client):
    url = "/v1/models/wine-quality:predict"
    bad = {**NAMED, "colour": 1.0}
    body = _error(client.post(url, json={"instances": [bad]}), 400, "unknown feature 'colour'",
                  "Valid features", "'alcohol'")
    assert body["details"][0]["field"] == "instances[0].colour"
    missing = dict(NAMED)
    del missing["pH"]
    _error(client.post(url, json={"instances": [missing]}), 400, "missing 'pH'")
    cols = {k: [v] for k, v in NAMED.items() if k != "density"}
    _error(client.post(url, json={"inputs": cols}), 400, "missing 'density'")


def test_counts_and_shapes(client):
    url = "/v1/models/wine-quality:predict"
    body = _error(client.post(url, json={"instances": [ROW[:10]]}), 400,
                  "expects 11 features per example, got 10")
    assert body["details"][0]["expected"] == [-1, 11]
    _error(client.post(url, json={"instances": ROW}), 400, "flat list of 11 values")
    _error(client.post(url, json={"instances": [ROW, ROW[:5]]}), 400, "ragged")
    _error(client.post("/v1/models/digits:predict", json={"instances": [[0] * 784]}), 400,
           "images of shape 28x28")


@pytest.mark.parametrize("value, needle", [("9.4", "got string"), (None, "got null"),
                                           (True, "got boolean"), ([1], "ragged")])
def test_non_numeric_values_are_named(client, value, needle):
    row = list(ROW)
    row[10] = value
    r = client.post("/v1/models/wine-quality:predict", json={"instances": [row]})
    _error(r, 400, needle)
    if needle != "ragged":
        assert "feature 'alcohol'" in r.json()["error"]


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_values(client, literal):
    body = json.dumps({"instances": [ROW]}).replace(json.dumps(ROW[3]), literal, 1)
    _error(client.post("/v1/models/wine-quality:predict", content=body), 400,
           "feature 'residual sugar'", "not a valid value")


def test_batch_limits(client):
    url = "/v1/models/wine-quality:predict"
    _error(client.post(url, json={"instances": []}), 400, "empty")
    limit = int(TEST_LIMITS["MODELSERVE_MAX_REQUEST_ROWS"])
    _error(client.post(url, json={"instances": [ROW] * (limit + 1)}), 400,
           f"holds {limit + 1} examples", f"maximum per request is {limit}")


def test_body_size_limit(client):
    limit = int(TEST_LIMITS["MODELSERVE_MAX_BODY_BYTES"])
    r = client.post("/v1/models/wine-quality:predict", content=b" " * (limit + 1))
    _error(r, 413, "limit")


def test_classify_regress_misuse(client):
    _error(client.post("/v1/models/housing:classify", json={"examples": [{}]}), 400,
           "regression model", ":regress")
    _error(client.post("/v1/models/digits:classify", json={"examples": [{}]}), 400,
           "takes images")
    _error(client.post("/v1/models/wine-quality:classify", json={"instances": [ROW]}), 400,
           "'examples'")


def test_image_errors(client):
    url = "/v1/models/digits:predict_image"
    _error(client.post(url, content=b"definitely not an image"), 415, "PNG or JPEG")
    png = io.BytesIO()
    Image.new("L", (40, 40), 255).save(png, "PNG")
    _error(client.post(url, content=png.getvalue()), 400, "No digit found")
    _error(client.post(url, content=png.getvalue()[:60]), 400, "truncated or corrupt")
    _error(client.post("/v1/models/wine-quality:predict_image", content=png.getvalue()), 400,
           "not images")
    huge = io.BytesIO()
    Image.new("L", (2500, 2000), 255).save(huge, "PNG")  # 5 Mpx, a few KB compressed
    _error(client.post(url, content=huge.getvalue()), 413, "pixels")
    gif = io.BytesIO()
    Image.new("L", (30, 30)).save(gif, "GIF")
    _error(client.post(url, content=gif.getvalue(), headers={"content-type": "image/png"}),
           415, "PNG or JPEG", "GIF")


def _v2(client, inputs, model="wine-quality", **extra):
    return client.post(f"/v2/models/{model}/infer", json={"inputs": inputs, **extra})


def test_v2_errors(client):
    ok = {"name": "features", "shape": [1, 11], "datatype": "FP32", "data": ROW}
    assert _v2(client, [ok]).status_code == 200
    _error(_v2(client, [{**ok, "shape": [2, 11]}]), 400, "holds 22 elements", "has 11")
    _error(_v2(client, [{**ok, "datatype": "BOOL"}]), 400, "datatype 'BOOL'")
    _error(_v2(client, [{**ok, "datatype": "FP99"}]), 400, "Valid datatypes")
    _error(_v2(client, [{**ok, "name": "input0"}]), 400, "Unknown input 'input0'", "'features'")
    _error(_v2(client, [{**ok, "shape": "1,11"}]), 400, "'shape' must be a list")
    _error(_v2(client, []), 400, "non-empty list")
    _error(_v2(client, [ok], outputs=[{"name": "nope"}]), 400, "Unknown output 'nope'")
    _error(_v2(client, [ok], id=5), 400, "'id' must be a string")
    header = json.dumps({"inputs": [{"name": "features", "shape": [1, 11], "datatype": "FP32",
                                     "parameters": {"binary_data_size": 44}}]}).encode()
    body = header + np.asarray(ROW, np.float32).tobytes()[:20]
    r = client.post("/v2/models/wine-quality/infer", content=body,
                    headers={"Inference-Header-Content-Length": str(len(header))})
    _error(r, 400, "truncated")
    r = client.post("/v2/models/wine-quality/infer", content=header,
                    headers={"Inference-Header-Content-Length": str(len(header) + 5)})
    _error(r, 400, "holds only")


def test_a_broken_version_does_not_stop_the_others(tmp_path):
    repo = tmp_path / "models"
    shutil.copytree(MODELS / "wine-quality" / "2", repo / "wine-quality" / "2")
    shutil.copytree(MODELS / "housing" / "2", repo / "housing" / "2")
    broken = repo / "housing" / "3"
    shutil.copytree(MODELS / "housing" / "2", broken)
    manifest = json.loads((broken / "manifest.json").read_text())
    (broken / "manifest.json").write_text(json.dumps({**manifest, "version": 3}))
    (broken / "model.joblib").write_bytes(b"garbage")
    # A truncated file, not a copy still in progress (which would be waited for).
    with running(repo, tmp_path, env={"MODELSERVE_INCOMPLETE_VERSION_TIMEOUT_S": "0"}) as server:
        import httpx

        with httpx.Client(base_url=server.url, timeout=60) as c:
            assert c.get("/v2/health/ready").status_code == 200
            status = c.get("/v1/models/housing").json()["model_version_status"]
            v3 = next(s for s in status if s["version"] == "3")
            assert v3["state"] == "END" and "model.joblib" in v3["status"]["error_message"]
            # Versionless requests skip the failed version and use the latest good one.
            r = c.post("/v1/models/housing:predict", json={"instances": [
                sample_row(read_manifest(MODELS / "housing" / "2"))]})
            assert r.status_code == 200 and r.headers["model-version"] == "2"
            _error(c.post("/v1/models/housing/versions/3:predict", json={"instances": [[0] * 8]}),
                   503, "not available", "model.joblib")
            assert c.post("/v1/models/wine-quality:predict",
                          json={"instances": [ROW]}).status_code == 200
