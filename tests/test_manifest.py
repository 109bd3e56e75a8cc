"""The manifest schema: one pydantic model shared by training and serving."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from service.loader import parse_manifest
from service.manifest import Manifest
from tests.conftest import committed_versions


def _committed_manifest() -> dict:
    return json.loads((committed_versions()[0] / "manifest.json").read_text())


@pytest.mark.parametrize("folder", committed_versions(), ids=lambda p: f"{p.parent.name}-{p.name}")
def test_committed_manifest_round_trips(folder):
    raw = json.loads((folder / "manifest.json").read_text())
    manifest = parse_manifest(raw)  # schema 1 on disk, upgraded in memory
    again = Manifest.model_validate_json(manifest.model_dump_json())
    assert again == manifest
    assert manifest.name == folder.parent.name
    assert manifest.version == int(folder.name)


def test_unknown_key_is_refused():
    raw = _committed_manifest()
    raw["evalution"] = {}
    with pytest.raises(ValidationError, match="evalution"):
        parse_manifest(raw)


@pytest.mark.parametrize("path", ["../escape.joblib", "/etc/passwd", "a/../../b", ""])
def test_artifact_path_must_stay_inside_the_folder(path):
    raw = _committed_manifest()
    raw["artifacts"][0]["path"] = path
    with pytest.raises(ValidationError, match="plain path inside the version folder"):
        parse_manifest(raw)


def test_checksum_must_be_hex():
    raw = _committed_manifest()
    raw["artifacts"][0]["sha256"] = "not-a-digest"
    with pytest.raises(ValidationError, match="64 lowercase hex"):
        parse_manifest(raw)


def test_task_and_outputs_must_agree():
    raw = json.loads((next(p for p in committed_versions() if p.parent.name == "housing")
                      / "manifest.json").read_text())
    raw["target"] = None
    with pytest.raises(ValidationError, match="regressor names its target"):
        parse_manifest(raw)


def test_tabular_shape_matches_features():
    raw = json.loads((next(p for p in committed_versions() if p.parent.name == "wine-quality")
                      / "manifest.json").read_text())
    raw["inputs"]["shape"] = [-1, 10]
    with pytest.raises(ValidationError, match=r"tabular shape must be \[-1, 11\]"):
        parse_manifest(raw)


# --- schema 2 ----------------------------------------------------------------------------

from service.manifest import Feature, InputSpec  # noqa: E402
from service.signature import Signature  # noqa: E402
from service.tensors import from_columns, warnings  # noqa: E402


def _table(*features: Feature, layout: str = "array") -> InputSpec:
    return InputSpec(name="features", kind="tabular", shape=[-1, len(features)],
                     layout=layout, features=list(features))


def test_feature_rules():
    with pytest.raises(ValidationError, match="both min and max"):
        Feature(name="x", min=0.0)
    with pytest.raises(ValidationError, match="only numbers have a training range"):
        Feature(name="x", dtype="string", min=0.0, max=1.0)
    with pytest.raises(ValidationError, match="categories must be string"):
        Feature(name="x", dtype="string", categories=[1, 2])
    with pytest.raises(ValidationError, match="only string and int64 features"):
        Feature(name="x", dtype="float64", categories=["a"])
    with pytest.raises(ValidationError, match="frame_dtype"):
        _table(Feature(name="x"), layout="frame")


def test_names_are_one_namespace_across_inputs():
    raw = json.loads(Manifest.model_validate(parse_manifest(_committed_manifest()))
                     .model_dump_json())
    spec = raw["inputs"][0]
    raw["inputs"] = [spec, {**spec, "name": "other"}]
    raw["framework"] = "keras"
    with pytest.raises(ValidationError, match="unique across inputs"):
        Manifest.model_validate(raw)


def test_one_tensor_datatype_per_input_even_with_missing_integers():
    # A nullable integer travels as FP64 (NaN = missing), so it shares the tensor of
    # float64 features; a plain integer beside floats needs a tensor of its own.
    sig = Signature("t", [_table(Feature(name="visits", dtype="int64", nullable=True,
                                         min=0, max=9),
                                 Feature(name="weight", min=1.0, max=2.0))])
    assert sig.inputs[0].v2_datatype() == "FP64"
    sig = Signature("t", [_table(Feature(name="visits", dtype="int64", min=0, max=9),
                                 Feature(name="weight", min=1.0, max=2.0))])
    assert sig.inputs[0].v2_datatype() is None


def test_an_unseen_integer_category_inside_the_range_is_warned_about():
    sig = Signature("t", [_table(Feature(name="seats", dtype="int64", min=1, max=5,
                                         categories=[1, 2, 4, 5], unknown_categories="warn"))])
    batch = from_columns(sig, {"seats": [2, 3]}, 10)
    (warning,) = warnings(sig, batch)
    assert warning["instance"] == 1 and warning["known_categories"] == [1, 2, 4, 5]
    refusing = Signature("t", [_table(Feature(name="seats", dtype="int64", min=1, max=5,
                                              categories=[1, 2, 4, 5]))])
    with pytest.raises(Exception, match="3 is not a known category"):
        from_columns(refusing, {"seats": [3]}, 10)
