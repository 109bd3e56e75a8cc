"""The loader verifies every artifact's SHA-256 before deserializing anything."""

from __future__ import annotations

import json

import numpy as np
import pytest

from service.errors import ModelLoadError
from service.loader import load_version
from tests.conftest import sample_array


def test_loads_and_predicts_named_outputs(copy_version):
    model = load_version(copy_version("wine-quality", 2))
    out = model.predict(sample_array(model.manifest))
    assert set(out) == {"probabilities", "class_id", "label"}
    assert out["probabilities"].shape == (len(model.manifest.samples), 2)
    assert np.allclose(out["probabilities"].sum(axis=1), 1, atol=1e-5)
    assert set(out["label"]) <= {"bad", "good"}


def test_regressor_returns_value(copy_version):
    model = load_version(copy_version("housing", 2))
    out = model.predict(sample_array(model.manifest)[:1])
    assert list(out) == ["value"] and out["value"].shape == (1,)


def test_tampered_artifact_is_refused_before_loading(copy_version):
    folder = copy_version("wine-quality", 2)
    artifact = folder / "model.joblib"
    data = bytearray(artifact.read_bytes())
    data[len(data) // 2] ^= 0xFF
    artifact.write_bytes(bytes(data))
    with pytest.raises(ModelLoadError, match=r"model\.joblib: SHA-256 mismatch"):
        load_version(folder)


def test_truncated_artifact_is_refused(copy_version):
    folder = copy_version("digits", 1)
    artifact = folder / "model.keras"
    artifact.write_bytes(artifact.read_bytes()[:1000])
    with pytest.raises(ModelLoadError, match=r"model\.keras: artifact is 1000 bytes"):
        load_version(folder)


def test_manifest_checksum_mismatch_names_the_file(copy_version):
    folder = copy_version("housing", 1)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["artifacts"][0]["sha256"] = "0" * 64
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelLoadError, match=r"housing/1/model\.keras: SHA-256 mismatch"):
        load_version(folder)


def test_missing_artifact(copy_version):
    folder = copy_version("auscultation", 1)
    (folder / "model.joblib").unlink()
    with pytest.raises(ModelLoadError, match="artifact file is missing"):
        load_version(folder)


def test_missing_or_broken_manifest(copy_version):
    folder = copy_version("auscultation", 2)
    (folder / "manifest.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match=r"manifest\.json: manifest is not valid JSON"):
        load_version(folder)
    (folder / "manifest.json").unlink()
    with pytest.raises(ModelLoadError, match=r"manifest\.json is missing"):
        load_version(folder)


def test_folder_must_match_manifest_version(copy_version):
    folder = copy_version("wine-quality", 1)
    moved = folder.rename(folder.parent / "7")
    with pytest.raises(ModelLoadError, match="manifest says version 1"):
        load_version(moved)


def test_folder_must_match_manifest_name(copy_version, tmp_path):
    folder = copy_version("wine-quality", 1)
    other = tmp_path / "models" / "housing"
    other.mkdir(parents=True)
    moved = folder.rename(other / "1")
    with pytest.raises(ModelLoadError, match="manifest says 'wine-quality'"):
        load_version(moved)


def test_self_check_catches_wrong_expected_outputs(copy_version):
    folder = copy_version("housing", 2)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["samples"][0]["expected"]["value"] += 1.0
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelLoadError, match=r"self-check .* sample 0: value"):
        load_version(folder)
