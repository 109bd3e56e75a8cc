"""config.json parsing, version policies, the weighted split, and folder completeness."""

from __future__ import annotations

import json
import shutil
from collections import Counter

import pytest

from service.folders import fingerprint, incomplete
from service.model_config import ConfigError, ModelConfig, read_model_config
from service.repository import WeightedSplit
from tests.conftest import MODELS


@pytest.mark.parametrize("policy, expected", [
    ({"all": {}}, {1, 2, 5}),
    ({"latest": {"num_versions": 2}}, {2, 5}),
    ({"latest": {}}, {5}),
    ({"specific": {"versions": [1, 7]}}, {1}),
])
def test_version_policy_chooses(policy, expected):
    cfg = ModelConfig.model_validate({"version_policy": policy})
    assert cfg.version_policy.choose([1, 2, 5]) == expected


@pytest.mark.parametrize("config, problem", [
    ({"version_policy": {"all": {}, "latest": {}}}, "exactly one"),
    ({"version_policy": {}}, "exactly one"),
    ({"version_policy": {"newest": {}}}, "newest"),
    ({"labels": {"Stable": 1}}, "lowercase"),
    ({"labels": {"stable": 0}}, "positive"),
    ({"labels": {"stable": 1}, "traffic": {"canary": 1}}, "neither a version"),
    ({"traffic": {"1": -1}}, "negative"),
    ({"traffic": {"1": 0}}, "all be zero"),
    ({"batching": {"max_batch_rows": 0}}, "greater than 0"),
    ({"unknown": 1}, "unknown"),
])
def test_bad_configs_are_refused_with_the_reason(tmp_path, config, problem):
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError) as err:
        read_model_config(tmp_path)
    assert problem in str(err.value)
    assert "config.json" in str(err.value)


def test_missing_config_is_the_default_and_broken_json_is_an_error(tmp_path):
    assert read_model_config(tmp_path) == ModelConfig()
    (tmp_path / "config.json").write_text("{")
    with pytest.raises(ConfigError):
        read_model_config(tmp_path)


def test_traffic_by_label_and_version_adds_up():
    cfg = ModelConfig.model_validate({"labels": {"stable": 1, "canary": 2},
                                      "traffic": {"stable": 80, "canary": 15, "2": 5}})
    assert cfg.traffic_by_version() == {1: 80, 2: 20}


def test_weighted_split_is_exact_over_each_cycle_and_interleaves():
    split = WeightedSplit({1: 3, 2: 1, 3: 0})
    picks = [split.pick() for _ in range(400)]
    assert Counter(picks) == {1: 300, 2: 100}
    for i in range(0, 400, 4):  # every window of one cycle follows the weights
        assert Counter(picks[i:i + 4]) == {1: 3, 2: 1}


def test_incomplete_names_what_is_missing(tmp_path):
    src = MODELS / "wine-quality" / "2"
    dst = tmp_path / "2"
    dst.mkdir()
    assert "no manifest.json" in incomplete(dst)
    (dst / "manifest.json").write_text('{"artifacts": [')
    assert "not readable JSON" in incomplete(dst)
    shutil.copy2(src / "manifest.json", dst / "manifest.json")
    assert "model.joblib is missing" in incomplete(dst)
    data = (src / "model.joblib").read_bytes()
    (dst / "model.joblib").write_bytes(data[:100])
    assert f"model.joblib is 100 of {len(data)} bytes" in incomplete(dst)
    before = fingerprint(dst)
    (dst / "model.joblib").write_bytes(data)
    assert incomplete(dst) == ""
    assert fingerprint(dst) != before
    assert fingerprint(tmp_path / "gone") is None
