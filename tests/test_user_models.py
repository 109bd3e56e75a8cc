"""A team's own models through the public path: ``modelserve.publish`` (and the
``modelserve publish`` command for models saved to disk), then the real server over
every protocol. The four models come from tests/user_models.py (bundled or generated
data): a ColumnTransformer pipeline with strings, integers, booleans and missing values,
a regressor fitted on a DataFrame, a Keras model with two inputs, and a Keras CNN on
8x8 images with its upload preprocessing declared.

The served metrics are the card's: replaying each held-out set through the running
service gives the manifest's numbers.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
import tritonclient.http as triton
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import modelserve
from service.errors import ModelLoadError
from service.loader import load_version, read_manifest
from service.manifest import Task
from tests import user_models
from tests.conftest import ROOT, running
from tests.test_fuzz import check
from tests.test_lean_runtimes import mapped_frameworks
from training.publishing import PublishError, evaluate

CHUNK = 250  # rows per request, under the test server's 300-row limit
MODELS = ["churn", "diabetes", "triage", "digits8", "tags", "cultivar"]
TABULAR_REPLAY = ("churn", "diabetes", "tags", "cultivar")


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """Every user model published with the Python API (version 1), and two with the
    command line from files on disk (churn from a joblib pickle, a Parquet sample and a
    CSV test set; digits8 from a .keras file and .npz arrays: version 2)."""
    repo = tmp_path_factory.mktemp("user") / "models"
    files = repo.parent / "files"
    files.mkdir()
    built = {}
    for build in user_models.BUILDERS:
        b = build()
        modelserve.publish(b.model, name=b.name, repository=repo, X_test=b.X_test,
                           y_test=b.y_test, **b.publish_args)
        built[b.name] = b

    churn = built["churn"]
    import joblib

    joblib.dump(churn.model, files / "churn.joblib")
    # Parquet keeps pandas' dtypes (Int64); a CSV test set reads its integers with a
    # missing value as floats, which the integer feature still takes.
    churn.publish_args["inputs"].assign(y=churn.publish_args["y_train"]).to_parquet(
        files / "train.parquet")
    churn.X_test.assign(y=churn.y_test).to_csv(files / "test.csv", index=False)
    (files / "features.json").write_text(json.dumps(churn.publish_args["features"]))
    _cli("publish", files / "churn.joblib", "--name", "churn", "--sample",
         files / "train.parquet", "--test", files / "test.csv", "--target", "y", "--features",
         files / "features.json",
         "--repository", repo)

    digits = built["digits8"]
    digits.model.save(files / "digits8.keras")
    np.savez(files / "train.npz", image=digits.publish_args["inputs"],
             y=digits.publish_args["y_train"])
    np.savez(files / "test.npz", image=digits.X_test, y=digits.y_test)
    _cli("publish", files / "digits8.keras", "--name", "digits8", "--sample",
         files / "train.npz", "--test", files / "test.npz", "--image-preprocessing",
         "ink:8:box", "--repository", repo)
    return repo, built


def _cli(*args: object) -> str:
    out = subprocess.run([sys.executable, "-m", "service.cli", *map(str, args)], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


@pytest.fixture(scope="module")
def user_server(published, tmp_path_factory):
    repo, _ = published
    with running(repo, tmp_path_factory.mktemp("user-server")) as srv:
        yield srv


@pytest.fixture(scope="module")
def http(user_server):
    with httpx.Client(base_url=user_server.url, timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def tc(user_server):
    return triton.InferenceServerClient(user_server.url.removeprefix("http://"))


def _manifest(repo: Path, name: str, version: int = 1):
    return read_manifest(repo / name / str(version))


# --- what publishing derived -----------------------------------------------------------


def test_the_manifest_describes_real_inputs(published):
    repo, _ = published
    churn = _manifest(repo, "churn")
    (spec,) = churn.inputs
    assert spec.layout == "frame"  # a pipeline fitted on a DataFrame is called with one
    feats = {f.name: f for f in spec.features}
    assert {n: f.dtype for n, f in feats.items()} == {
        "age": "float64", "income": "float64", "rooms": "int64", "member": "bool",
        "colour": "string", "city": "string", "visits": "int64"}
    assert feats["age"].nullable and feats["city"].nullable and feats["visits"].nullable
    assert feats["visits"].frame_dtype == "Int64"  # pandas' nullable integer, rebuilt as such
    # An integer column the model takes any value of is a number, not a category.
    assert feats["rooms"].categories is None and feats["visits"].categories is None
    assert not feats["income"].nullable and not feats["colour"].nullable
    assert feats["colour"].categories == ["blue", "green", "red"]
    # Probed at publish time: one encoder refuses an unseen value, the other ignores it.
    assert feats["colour"].unknown_categories == "error"
    assert feats["city"].unknown_categories == "warn"
    assert feats["age"].unit == "years" and feats["rooms"].min == 1 and feats["rooms"].max == 6

    triage = _manifest(repo, "triage")
    assert [i.name for i in triage.inputs] == ["vitals", "history"]
    assert triage.inputs[1].feature_names == ["admissions", "smoker_years", "bmi"]
    assert triage.raw_output.value == "positive_probability"
    assert triage.labels == ["home", "admit"]

    digits = _manifest(repo, "digits8")
    (image,) = digits.inputs
    assert image.shape == [-1, 8, 8, 1] and image.image.channels == 1
    assert (image.image.value_min, image.image.value_max) == (0.0, 16.0)
    pre = image.image.preprocessing
    assert (pre.mode, pre.box, pre.centre) == ("ink", 8, "box")
    # Measured on the training images: the bundled digits' strokes are a quarter of their
    # size (MNIST's: a seventh), so uploads are brought to that.
    low, median, high = pre.stroke
    assert 0.15 < low < median < high < 0.45

    diabetes = _manifest(repo, "diabetes")
    assert diabetes.outputs[0].dtype == "float64"  # served as scikit-learn computes it

    # int32 ids of an embedding: the network's dtype is kept, and only the ids it has
    # embeddings for are served (found by calling it with ids it never saw).
    (ids,) = _manifest(repo, "tags").inputs
    assert ids.dtype == "int32"
    assert [(f.dtype, f.categories, f.unknown_categories) for f in ids.features] == [
        ("int64", list(range(10)), "error")] * 2

    cultivar = _manifest(repo, "cultivar")  # a classifier without predict_proba
    assert cultivar.raw_output.value == "class_index" and cultivar.labels == ["0", "1", "2"]
    assert [o.name for o in cultivar.outputs] == ["class_id", "label"]
    for name in MODELS:
        m = _manifest(repo, name)
        assert m.evaluation.test_set_sha256 and m.evaluation.primary_metric
        assert (repo / name / "1" / "MODEL_CARD.md").is_file()
        assert list((repo / name / "1").glob("*.png"))


def test_the_command_line_publishes_the_same_model(published):
    repo, _ = published
    for name in ("churn", "digits8"):
        api, cli = _manifest(repo, name, 1), _manifest(repo, name, 2)
        assert cli.provenance.trainer.startswith("modelserve publish")
        assert [_schema(i) for i in cli.inputs] == [_schema(i) for i in api.inputs]
        assert cli.evaluation.test_metrics == pytest.approx(api.evaluation.test_metrics,
                                                            rel=1e-6)
        assert cli.evaluation.test_set_sha256 == api.evaluation.test_set_sha256


def _schema(spec) -> dict:
    """An input without its prose (the command line was given no image description)."""
    out = spec.model_dump()
    if out["image"]:
        out["image"].pop("description")
    return out


# --- the served metrics are the card's ---------------------------------------------------


def _replay_tabular(http: httpx.Client, name: str, X: pd.DataFrame) -> dict[str, np.ndarray]:
    """TF-Serving columnar requests, one column per feature, as a client sends them."""
    outs = []
    for start in range(0, len(X), CHUNK):
        part = X.iloc[start:start + CHUNK]
        # Missing values (NaN, pandas' <NA>) go as JSON null.
        columns = {c: [None if pd.isna(v) else v for v in part[c].tolist()]
                   for c in part.columns}
        r = http.post(f"/v1/models/{name}/versions/1:predict", json={"inputs": columns})
        assert r.status_code == 200, r.text
        outs.append(r.json()["outputs"])
    if isinstance(outs[0], dict):
        return {k: np.concatenate([np.asarray(o[k]) for o in outs]) for k in outs[0]}
    return {"value": np.concatenate([np.asarray(o) for o in outs])}


def _replay_v2(tc, name: str, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """KServe V2 binary tensors through tritonclient, one tensor per input."""
    n = len(next(iter(arrays.values())))
    outs = []
    for start in range(0, n, CHUNK):
        inputs = []
        for key, arr in arrays.items():
            part = np.ascontiguousarray(arr[start:start + CHUNK], dtype=np.float32)
            t = triton.InferInput(key, list(part.shape), "FP32")
            t.set_data_from_numpy(part)
            inputs.append(t)
        result = tc.infer(name, inputs, model_version="1")
        outs.append({k: result.as_numpy(k) for k in ("probabilities", "class_id")})
    return {k: np.concatenate([o[k] for o in outs]) for k in outs[0]}


@pytest.mark.parametrize("name", MODELS)
def test_served_metrics_equal_the_card(published, http, tc, name):
    repo, built = published
    b = built[name]
    m = _manifest(repo, name)
    if name in TABULAR_REPLAY:
        outputs = _replay_tabular(http, name, b.X_test)
    elif name == "triage":
        outputs = _replay_v2(tc, name, {k: v.to_numpy() for k, v in b.X_test.items()})
    else:
        outputs = _replay_v2(tc, name, {"image": b.X_test})
    y = b.y_test
    if m.task is Task.CLASSIFICATION and y.dtype.kind not in "iu":
        y = np.searchsorted(np.asarray(m.labels), y)  # churn: class names -> ids
    got = evaluate.task_metrics(m.task, y, outputs, len(m.labels or []))
    card = m.evaluation.test_metrics
    assert set(got) == set(card)
    for key, value in card.items():
        assert got[key] == pytest.approx(value, rel=1e-6, abs=1e-12), key
    # ...and it beats the trivial baseline on the held-out set.
    assert evaluate.beats(m.task, got, m.evaluation.baselines) == []


# --- every protocol --------------------------------------------------------------------


def _check(expected: dict, got: dict) -> None:
    for key, want in expected.items():
        if key in ("label", "class_id"):
            assert got[key] == want, (key, got)
        else:
            assert np.allclose(got[key], want, atol=1e-4), (key, got)


@pytest.mark.parametrize("name", MODELS)
def test_tfserving_rows_columns_and_examples(published, http, name):
    repo, _ = published
    m = _manifest(repo, name)
    rows = [s.inputs for s in m.samples]
    r = http.post(f"/v1/models/{name}:predict", json={"instances": rows})
    assert r.status_code == 200, r.text
    predictions = r.json()["predictions"]
    for sample, got in zip(m.samples, predictions, strict=True):
        _check(sample.expected, got if isinstance(got, dict) else {"value": got})
    columns = {k: [row[k] for row in rows] for k in rows[0]}
    r = http.post(f"/v1/models/{name}:predict", json={"inputs": columns})
    assert r.status_code == 200, r.text
    if m.task is Task.REGRESSION:
        assert np.allclose(r.json()["outputs"], [s.expected["value"] for s in m.samples])
    else:
        assert r.json()["outputs"]["label"] == [s.expected["label"] for s in m.samples]
    if m.inputs[0].kind == "tabular":
        verb = "classify" if m.task is Task.CLASSIFICATION else "regress"
        r = http.post(f"/v1/models/{name}:{verb}", json={"examples": rows[:2]})
        if m.raw_output.value == "class_index":  # :classify answers with scores
            assert r.status_code == 400 and "use ':predict'" in r.json()["error"], r.text
            return
        assert r.status_code == 200, r.text
        if verb == "regress":
            assert np.allclose(r.json()["results"], [s.expected["value"] for s in m.samples[:2]])
        else:
            top = [max(res, key=lambda p: p[1])[0] for res in r.json()["results"]]
            assert top == [s.expected["label"] for s in m.samples[:2]]


def _v2_tensors(m, binary: bool) -> list:
    """The samples as V2 tensors: per input where the input has one datatype, else one
    tensor per feature (BYTES for strings, BOOL, INT64, FP64 with NaN for missing)."""
    meta = {t["name"]: t for t in _meta_inputs(m)}
    rows = [s.inputs for s in m.samples]
    out = []
    for name, t in meta.items():
        if name in rows[0]:
            values = [row[name] for row in rows]
        else:  # a whole tabular input, from its features
            spec = next(i for i in m.inputs if i.name == name)
            values = [[row[f] for f in spec.feature_names] for row in rows]
        datatype = t["datatype"]
        if datatype == "BYTES":
            assert None not in values  # a missing string has no V2 binary encoding
            arr = np.array([v.encode() for v in values], dtype=object)
        elif datatype == "BOOL":
            arr = np.array(values, dtype=bool)
        elif datatype == "INT64":
            arr = np.array(values, dtype=np.int64)
        else:
            arr = np.array([np.nan if v is None else v for v in values] if
                           not isinstance(values[0], list) else values, dtype=np.float64)
            if datatype == "FP32":
                arr = arr.astype(np.float32)
        shape = list(arr.shape)
        tensor = triton.InferInput(name, shape, datatype)
        tensor.set_data_from_numpy(arr, binary_data=binary)
        out.append(tensor)
    return out


def _meta_inputs(m) -> list[dict]:
    from service.protocols.v2 import input_metadata
    from service.signature import Signature

    return input_metadata(Signature.of(m))


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
@pytest.mark.parametrize("name", MODELS)
def test_v2_with_tritonclient(published, tc, name, binary):
    repo, _ = published
    m = _manifest(repo, name)
    assert tc.get_model_metadata(name, "1")["inputs"] == _meta_inputs(m)
    result = tc.infer(name, _v2_tensors(m, binary), model_version="1")
    for i, sample in enumerate(m.samples):
        got = {}
        for key in sample.expected:
            arr = result.as_numpy(key)
            v = arr[i]
            got[key] = v.decode() if isinstance(v, bytes) else (
                v.tolist() if isinstance(v, np.ndarray) else v.item())
        _check(sample.expected, got)


def test_missing_values_and_unknown_categories(published, http):
    repo, _ = published
    row = dict(_manifest(repo, "churn").samples[0].inputs)
    url = "/v1/models/churn:predict"
    # Nullable features take null; a city the pipeline ignores is served with a warning.
    r = http.post(url, json={"instances": [{**row, "age": None, "city": None},
                                           {**row, "city": "coimbra"}]})
    assert r.status_code == 200, r.text
    (warning,) = r.json()["warnings"]
    assert warning["instance"] == 1 and warning["feature"] == "city"
    assert "coimbra" in warning["message"] and "braga" in warning["known_categories"]
    # A colour the pipeline cannot encode is refused, naming the known ones.
    r = http.post(url, json={"instances": [{**row, "colour": "purple"}]})
    assert r.status_code == 400
    assert "'colour'" in r.json()["error"] and "'purple'" in r.json()["error"]
    assert r.json()["details"][0]["expected"] == ["blue", "green", "red"]


@pytest.mark.parametrize("change, needles", [
    ({"income": None}, ["'income'", "got null", "cannot be missing"]),
    ({"income": "high"}, ["'income'", "expected a number", "got string"]),
    ({"rooms": 2.5}, ["'rooms'", "expected an integer", "2.5"]),
    ({"rooms": True}, ["'rooms'", "got boolean"]),
    ({"member": "yes"}, ["'member'", "expected true or false", "got string"]),
    ({"member": 1}, ["'member'", "expected true or false", "got number"]),
    ({"colour": 3}, ["'colour'", "expected a string", "got number"]),
    ({"colour": None}, ["'colour'", "got null"]),
    ({"city": ["porto"]}, ["'city'", "expected a string or null", "got array"]),
    ({"rooms": 9.223372036854776e18}, ["'rooms'", "an integer within int64"]),
    ({"rooms": 2**64}, ["'rooms'", "an integer within int64"]),
    ({"visits": 2.5}, ["'visits'", "expected an integer or null"]),
    ({"visits": "3"}, ["'visits'", "got string"]),
])
def test_bad_values_for_each_dtype(published, http, change, needles):
    repo, _ = published
    row = {**_manifest(repo, "churn").samples[0].inputs, **change}
    for body in ({"instances": [row]}, {"inputs": {k: [v] for k, v in row.items()}}):
        r = http.post("/v1/models/churn:predict", json=body)
        assert r.status_code == 400, r.text
        for needle in needles:
            assert needle in r.json()["error"], (needle, r.json())


def test_v2_datatypes_must_fit_the_feature(published, http):
    repo, _ = published
    m = _manifest(repo, "churn")

    def infer(tensors):
        return http.post("/v2/models/churn/infer", json={"inputs": tensors})

    good = [{"name": t["name"], "datatype": t["datatype"], "shape": [1],
             "data": [m.samples[0].inputs[t["name"]]]} for t in _meta_inputs(m)]
    assert infer(good).status_code == 200, infer(good).text
    cases = [("colour", {"datatype": "FP32", "data": [1.0]}, "feature 'colour' takes strings"),
             ("income", {"datatype": "BYTES", "data": ["x"]}, "feature 'income' takes numbers"),
             ("member", {"datatype": "INT64", "data": [1]}, "takes true/false"),
             ("rooms", {"datatype": "FP64", "data": [2.5]}, "expected an integer"),
             ("colour", {"datatype": "BYTES", "data": [None]}, "got null")]
    for feature, change, needle in cases:
        tensors = [{**t, **change} if t["name"] == feature else t for t in good]
        r = infer(tensors)
        assert r.status_code == 400 and needle in r.json()["error"], (feature, r.text)
    r = infer([t for t in good if t["name"] != "city"])
    assert r.status_code == 400 and "missing 'city'" in r.json()["error"]
    # Triton's binary BYTES for 'colour': a length prefix that runs past the data, then
    # bytes that are not UTF-8.
    header = json.dumps({"inputs": [t for t in good if t["name"] != "colour"] + [
        {"name": "colour", "datatype": "BYTES", "shape": [1],
         "parameters": {"binary_data_size": 6}}]}).encode()
    for blob, needle in ((b"\x09\x00\x00\x00re", "BYTES element 0"),
                         (b"\x02\x00\x00\x00\xff\xfe", "not UTF-8")):
        r = http.post("/v2/models/churn/infer", content=header + blob,
                      headers={"Inference-Header-Content-Length": str(len(header))})
        assert r.status_code == 400 and needle in r.json()["error"], r.text


def test_values_the_model_cannot_hold_are_refused(published, http):
    repo, _ = published
    row = _manifest(repo, "triage").samples[0].inputs
    r = http.post("/v1/models/triage:predict", json={"instances": [{**row, "spo2": 1e39}]})
    assert r.status_code == 400 and "too large for the model's float32 input" in r.text
    r = http.post("/v2/models/triage/infer", json={"inputs": [
        {"name": "vitals", "datatype": "FP64", "shape": [1, 4], "data": [1e39, 0, 0, 0]},
        {"name": "history", "datatype": "FP64", "shape": [1, 3], "data": [0, 0, 0]}]})
    assert r.status_code == 400 and "float32" in r.json()["error"], r.text
    for bad in (10, -1, 4294967305):  # ids with no embedding, or past int32
        r = http.post("/v1/models/tags:predict", json={"instances": [{"first": bad,
                                                                      "second": 3}]})
        assert r.status_code == 400 and "'first'" in r.json()["error"], r.text
    r = http.post("/v2/models/tags/infer", json={"inputs": [
        {"name": "ids", "datatype": "INT8", "shape": [1, 2], "data": [300, 1]}]})
    assert r.status_code == 400 and "does not fit INT8" in r.json()["error"], r.text


def test_malformed_tensors_are_refused_cheaply(published, http):
    repo, _ = published
    # Three hundred million BYTES elements announced in 7 bytes: refused before anything
    # is allocated for them.
    header = json.dumps({"inputs": [{"name": "colour", "datatype": "BYTES",
                                     "shape": [300_000_000],
                                     "parameters": {"binary_data_size": 7}}]}).encode()
    r = http.post("/v2/models/churn/infer", content=header + b"\x03\x00\x00\x00red",
                  headers={"Inference-Header-Content-Length": str(len(header))})
    assert r.status_code == 400 and "need at least" in r.json()["error"], r.text
    header = json.dumps({"inputs": [{"name": "member", "datatype": "BOOL", "shape": [1],
                                     "parameters": {"binary_data_size": 1}}]}).encode()
    r = http.post("/v2/models/churn/infer", content=header + b"\x02",
                  headers={"Inference-Header-Content-Length": str(len(header))})
    assert r.status_code == 400 and "0 or 1" in r.json()["error"], r.text
    row = list(_manifest(repo, "churn").samples[0].inputs.values())
    r = http.post("/v1/models/churn:predict", json={"instances": [row, row[:1]]})
    assert r.status_code == 400 and "ragged" in r.json()["error"]
    assert "instances[1] holds 1 values" in r.json()["error"]
    image = np.zeros((8, 8, 1)).tolist()
    r = http.post("/v1/models/digits8:predict", json={"inputs": {"image": image}})
    assert r.status_code == 400 and "one image, not a batch" in r.json()["error"], r.text


def test_several_inputs_are_named(published, http):
    repo, _ = published
    m = _manifest(repo, "triage")
    row = m.samples[0].inputs
    r = http.post("/v1/models/triage:predict", json={"instances": [list(row.values())]})
    assert r.status_code == 400 and "several inputs" in r.json()["error"]
    vitals = [row[n] for n in m.inputs[0].feature_names]
    history = {n: row[n] for n in m.inputs[1].feature_names}
    # One input whole, the other by feature.
    r = http.post("/v1/models/triage:predict", json={"instances": [{"vitals": vitals,
                                                                    **history}]})
    assert r.status_code == 200, r.text
    assert r.json()["predictions"][0]["label"] == m.samples[0].expected["label"]
    r = http.post("/v1/models/triage:predict", json={"instances": [{"vitals": vitals}]})
    assert r.status_code == 400 and "missing 'admissions'" in r.json()["error"]
    r = http.post("/v2/models/triage/infer", json={"inputs": [
        {"name": "vitals", "datatype": "FP32", "shape": [1, 4], "data": vitals}]})
    assert r.status_code == 400 and "'admissions'" in r.json()["error"]


def test_uploaded_pictures_use_the_declared_preprocessing(published, http):
    """8x8 test digits drawn large, dark on light, somewhere on a bigger white page."""
    _, built = published
    b = built["digits8"]
    rng = np.random.default_rng(3)
    n, correct = 60, 0
    for i in range(n):
        digit = (255 - b.X_test[i, :, :, 0] * 255 / 16).astype(np.uint8)
        size = int(rng.integers(40, 120))
        ink = Image.fromarray(digit).resize((size, size), Image.Resampling.BILINEAR)
        page = Image.new("L", (size + 60, size + 60), 255)
        page.paste(ink, (int(rng.integers(0, 60)), int(rng.integers(0, 60))))
        out = io.BytesIO()
        page.save(out, "PNG")
        r = http.post("/v1/models/digits8:predict_image?return_input=true",
                      content=out.getvalue(), headers={"content-type": "image/png"})
        assert r.status_code == 200, r.text
        body = r.json()
        assert np.asarray(body["input"]).shape == (8, 8, 1)
        correct += body["label"] == str(b.y_test[i])
    assert correct / n >= 0.8, correct / n
    r = http.post("/v1/models/triage:predict_image", content=out.getvalue())
    assert r.status_code == 400 and "not images" in r.json()["error"]


# --- publishing refuses what it cannot stand behind -----------------------------------


def test_a_model_that_does_not_beat_the_baseline_is_refused(tmp_path):
    from sklearn.dummy import DummyClassifier

    b = user_models.churn()
    dummy = DummyClassifier(strategy="prior").fit(b.publish_args["inputs"],
                                                  b.publish_args["y_train"])
    args = {**b.publish_args, "name": "dummy", "repository": tmp_path}
    with pytest.raises(PublishError, match="does not beat 'majority class"):
        modelserve.publish(dummy, X_test=b.X_test, y_test=b.y_test, **args)
    assert not (tmp_path / "dummy" / "1").exists()
    assert not list((tmp_path / "dummy").glob(".staging-*"))
    folder = modelserve.publish(dummy, X_test=b.X_test, y_test=b.y_test,
                                allow_below_baseline=True, **args)
    assert "Below a baseline" in (folder / "MODEL_CARD.md").read_text()


def test_publish_explains_what_it_cannot_serve(tmp_path):
    from sklearn.linear_model import LogisticRegression

    b = user_models.diabetes()
    with pytest.raises(PublishError, match="not fitted"):
        modelserve.publish(LogisticRegression(), name="x", inputs=b.X_test,
                           repository=tmp_path)
    with pytest.raises(PublishError, match="lowercase"):
        modelserve.publish(b.model, name="Bad Name", inputs=b.X_test, repository=tmp_path)
    with pytest.raises(PublishError, match="fitted on columns"):
        modelserve.publish(b.model, name="x", inputs=b.X_test.drop(columns=["bmi"]),
                           repository=tmp_path)


def test_a_published_version_with_a_wrong_checksum_is_refused(published, tmp_path):
    repo, _ = published
    folder = tmp_path / "churn" / "1"
    shutil.copytree(repo / "churn" / "1", folder)
    data = bytearray((folder / "model.joblib").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (folder / "model.joblib").write_bytes(bytes(data))
    with pytest.raises(ModelLoadError, match=r"model\.joblib: SHA-256 mismatch"):
        load_version(folder)


# What publishing wrote and how the server runs each model: a lean form where the lean
# operations cover the model, else the framework, imported for that version, with why.
LEAN_FORMS = {"diabetes": "compiled-trees", "digits8": "numpy-conv"}
FRAMEWORK_CALLS = {"churn": ("sklearn", "not plain numbers"),
                   "triage": ("keras", "several inputs"),
                   "tags": ("keras", "not plain numbers"),  # int32 ids into an Embedding
                   "cultivar": ("sklearn", "estimator LinearSVC")}


@pytest.mark.parametrize("name", sorted(LEAN_FORMS))
def test_publishing_writes_a_lean_form_that_serves(published, http, name):
    repo, _ = published
    manifest = _manifest(repo, name)
    assert manifest.lean == "lean.npz"
    assert [a.path for a in manifest.artifacts][1:] == ["lean.npz"]  # checksummed too
    facts = http.get(f"/v1/models/{name}/metadata").json()["modelserve"]["serving"]
    assert facts["engine"] == LEAN_FORMS[name], facts
    assert "lean.npz: verified" in facts["engine_detail"]


@pytest.mark.parametrize("name", sorted(FRAMEWORK_CALLS))
def test_models_without_a_lean_form_are_served_by_their_framework(published, http, name):
    repo, _ = published
    assert _manifest(repo, name).lean is None
    assert not (repo / name / "1" / "lean.npz").exists()
    facts = http.get(f"/v1/models/{name}/metadata").json()["modelserve"]["serving"]
    framework, reason = FRAMEWORK_CALLS[name]
    assert facts["engine"] == framework, facts
    assert reason in facts["engine_detail"], facts


def test_the_frameworks_are_imported_for_the_versions_that_need_them(user_server, http):
    # The other side of tests/test_lean_runtimes.py's check on the committed repository:
    # the same check does see the frameworks when a version needs them.
    assert http.get("/v1/models/tags/metadata").status_code == 200
    assert {"tensorflow", "sklearn"} <= mapped_frameworks(user_server.proc.pid)


# --- fuzzing the new input types ---------------------------------------------------------

_VALUES = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=8),
                    st.floats(allow_nan=True, allow_infinity=True),
                    st.sampled_from([2**63, -2**63 - 1, 2**64, 1e308, "red", "porto", 3.0]),
                    st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=3),
                                                                         st.integers(),
                                                                         max_size=2))
_DATATYPES = st.sampled_from(["FP64", "FP32", "FP16", "BF16", "INT64", "INT8", "UINT64",
                              "BOOL", "BYTES", "FOO"])


@st.composite
def _churn_bodies(draw) -> tuple[str, dict]:
    names = ["age", "income", "rooms", "member", "colour", "city"]
    row = {n: draw(_VALUES) for n in names if draw(st.integers(0, 9))}
    if draw(st.booleans()):
        row[draw(st.text(max_size=6))] = draw(_VALUES)
    kind = draw(st.sampled_from(["instances", "inputs", "examples", "v2"]))
    if kind == "v2":
        tensors = [{"name": n, "datatype": draw(_DATATYPES),
                    "shape": draw(st.sampled_from([[1], [1, 1], [2], [0], []])),
                    "data": draw(st.one_of(st.lists(_VALUES, max_size=3), _VALUES))}
                   for n in row]
        return "/v2/models/churn/infer", {"inputs": tensors}
    if kind == "inputs":
        return "/v1/models/churn:predict", {"inputs": {k: draw(st.one_of(
            st.just([v]), st.just(v), st.lists(_VALUES, max_size=3))) for k, v in row.items()}}
    verb = "classify" if kind == "examples" else "predict"
    return f"/v1/models/churn:{verb}", {kind: draw(st.lists(st.just(row), max_size=3))}


@settings(max_examples=250, derandomize=True, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
@given(case=_churn_bodies())
def test_fuzz_mixed_types_never_5xx(http, case):
    url, body = case
    check(http.post(url, content=json.dumps(body, allow_nan=True)), "user_fuzz")


@settings(max_examples=120, derandomize=True, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
@given(blob=st.binary(max_size=40), count=st.integers(0, 3), size=st.integers(0, 48),
       name=st.sampled_from(["colour", "city", "member", "rooms", "vitals", "image"]),
       datatype=_DATATYPES)
def test_fuzz_binary_tensors_never_5xx(published, http, blob, count, size, name, datatype):
    repo, _ = published
    good = {t["name"]: t for t in _meta_inputs(_manifest(repo, "churn"))}
    row = _manifest(repo, "churn").samples[0].inputs
    tensors = [{"name": n, "datatype": t["datatype"], "shape": [1], "data": [row[n]]}
               for n, t in good.items() if n != name]
    tensors.append({"name": name, "datatype": datatype, "shape": [count],
                    "parameters": {"binary_data_size": size}})
    header = json.dumps({"inputs": tensors}).encode()
    for model in ("churn", "triage", "digits8"):
        check(http.post(f"/v2/models/{model}/infer", content=header + blob,
                        headers={"Inference-Header-Content-Length": str(len(header))}),
              "user_fuzz")


@settings(max_examples=120, derandomize=True, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
@given(value=st.recursive(_VALUES, lambda inner: st.lists(inner, max_size=4), max_leaves=20),
       key=st.sampled_from(["vitals", "history", "heart_rate", "image", "bmi"]))
def test_fuzz_several_inputs_and_images_never_5xx(http, value, key):
    for model in ("triage", "digits8"):
        check(http.post(f"/v1/models/{model}:predict",
                        content=json.dumps({"instances": [{key: value}]}, allow_nan=True)),
              "user_fuzz")
        check(http.post(f"/v1/models/{model}:predict",
                        content=json.dumps({"inputs": {key: value}}, allow_nan=True)),
              "user_fuzz")
