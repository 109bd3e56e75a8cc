"""Drift end to end: the held-out wine rows and the same rows with alcohol shifted by
+2 %vol go through a real server; its /metrics, read back as Prometheus series, are fed to
the shipped alert rules with `promtool test rules`: the input drift alert fires for the
shifted stream, on alcohol, and stays quiet for the normal one."""

from __future__ import annotations

import importlib
import json
import shutil
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from service.loader import read_manifest
from tests.conftest import MODELS, eventually, running
from tests.deploy.files import ALERTS_YML
from tests.deploy.rules import run_rule_test

WINDOW = 400  # the held-out set: a window of it is the whole of it
DEADLINE_S = 60.0
WINE = read_manifest(MODELS / "wine-quality" / "2")
LABELS = {"model": "wine-quality", "version": "2"}


@pytest.fixture(scope="module")
def srv(tmp_path_factory) -> Iterator[Any]:
    root = tmp_path_factory.mktemp("drift")
    repo = root / "models"
    shutil.copytree(MODELS / "wine-quality" / "2", repo / "wine-quality" / "2")
    # Every request into the window: this test counts them.
    (repo / "wine-quality" / "config.json").write_text(json.dumps(
        {"drift": {"window": WINDOW, "max_requests_per_s": 1e6}}))
    with running(repo, root) as s:
        yield s


@pytest.fixture(scope="module")
def held_out(data_dir) -> np.ndarray:
    trainer, recipe = WINE.provenance.trainer.split(" recipe=")
    x = np.asarray(importlib.import_module(trainer).split(recipe, data_dir).x_test,
                   dtype=np.float64)
    assert len(x) == WINDOW
    return x


def _send(srv, x: np.ndarray) -> None:
    names = WINE.inputs[0].feature_names
    for start in range(0, len(x), 200):
        part = x[start:start + 200]
        r = httpx.post(f"{srv.url}/v1/models/wine-quality/versions/2:predict",
                       json={"inputs": {n: part[:, j].tolist() for j, n in enumerate(names)}})
        assert r.status_code == 200, r.text


def _drift(srv) -> dict[str, Any]:
    r = httpx.get(f"{srv.url}/v1/models/wine-quality")
    assert r.status_code == 200, r.text
    return r.json()["modelserve"]["drift"]


def _window_after(srv, seen: int) -> dict[str, Any]:
    return eventually(lambda: (v := _drift(srv)["versions"].get("2")) and v["seen"] >= seen
                      and v, DEADLINE_S, lambda: f"the window never saw {seen} rows: "
                      f"{_drift(srv)}")


def _series(srv) -> dict[str, float]:
    """The drift gauges of /metrics as promtool input series."""
    text = httpx.get(f"{srv.url}/metrics").text
    out = {}
    for family in text_string_to_metric_families(text):
        if not family.name.startswith("modelserve_drift_"):
            continue
        for s in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            out[f"{s.name}{{{labels}}}"] = s.value
    return out


def test_drift_alert_fires_for_shifted_alcohol_and_not_for_held_out_rows(srv, held_out):
    _send(srv, held_out)
    normal = _window_after(srv, WINDOW)
    assert normal["rows"] == WINDOW
    normal_series = _series(srv)
    assert len([k for k in normal_series if "feature_psi" in k]) == 11
    run_rule_test(ALERTS_YML, normal_series, {"ModelserveInputDrift": []})

    shifted = held_out.copy()
    alcohol = WINE.inputs[0].feature_names.index("alcohol")
    shifted[:, alcohol] += 2.0
    _send(srv, shifted)  # replaces the whole window
    drifted = _window_after(srv, 2 * WINDOW)
    assert drifted["features"]["alcohol"]["psi"] > normal["features"]["alcohol"]["psi"]
    assert drifted["features"]["alcohol"]["out_of_range"] > 0
    run_rule_test(ALERTS_YML, _series(srv), {"ModelserveInputDrift": [
        {**LABELS, "feature": "alcohol", "severity": "warning"}]})


def test_drift_status_names_every_feature_and_versions_without_reference(srv):
    drift = _drift(srv)
    assert drift["enabled"] and drift["window"] == WINDOW
    assert drift["without_reference"] == []
    names = set(drift["versions"]["2"]["features"])
    assert names == set(WINE.inputs[0].feature_names)


def test_windows_count_each_row_once_across_wraps_and_skip_missing_values():
    from service.batch import Batch
    from service.evidence.drift import DriftWindow
    from service.loader import load_version

    model = load_version(MODELS / "wine-quality" / "2")
    window = DriftWindow(model.signature, model.manifest.task, model.reference, 5)
    rows = np.tile(np.asarray([list(WINE.samples[0].inputs.values())], dtype=np.float64),
                   (7, 1))
    name = WINE.inputs[0].name

    def add(x: np.ndarray) -> None:
        batch = Batch({name: x}, len(x))
        window.add(batch, model.predict(batch))

    add(rows[:3])
    add(rows[3:7])  # crosses the end of the ring: the two oldest rows leave
    scores = window.scores()
    assert (scores.rows, scores.seen) == (5, 7)
    assert all(0.0 <= out <= 1.0 for _, out in scores.features.values() if out is not None)
    missing = rows[:2].copy()
    missing[0, 0] = np.nan
    add(missing)
    assert window.scores().rows == 5
    first = WINE.inputs[0].feature_names[0]
    # The NaN is counted nowhere a score reads: the rest of that feature's bins hold 4 rows.
    counts = window._counts[0]
    assert counts[:-1].sum() == 4 and counts[-1] == 1, (first, counts)
