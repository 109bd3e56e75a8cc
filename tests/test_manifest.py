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
