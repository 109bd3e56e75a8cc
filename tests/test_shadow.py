"""Shadow traffic and the comparison of two versions, over real HTTP: the held-out wine
rows answered by v2 and mirrored to v1 give the agreement computed offline from the two
versions' own predictions; the answers are v2's and unchanged; a missing candidate only
counts errors; the report and ``modelserve compare`` say it in sentences."""

from __future__ import annotations

import importlib
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from service.loader import load_version, read_manifest
from tests.conftest import MODELS, ROOT, eventually, running
from training.publishing import evaluate

DEADLINE_S = 60.0
WINE = read_manifest(MODELS / "wine-quality" / "2")
NAMES = WINE.inputs[0].feature_names


@pytest.fixture(scope="module")
def held_out(data_dir) -> tuple[np.ndarray, np.ndarray]:
    trainer, recipe = WINE.provenance.trainer.split(" recipe=")
    split = importlib.import_module(trainer).split(recipe, data_dir)
    return np.asarray(split.x_test, dtype=np.float64), np.asarray(split.y_test)


@pytest.fixture(scope="module")
def srv(tmp_path_factory) -> Iterator[Any]:
    root = tmp_path_factory.mktemp("shadow")
    repo = root / "models"
    for v in ("1", "2"):
        shutil.copytree(MODELS / "wine-quality" / v, repo / "wine-quality" / v)
    (repo / "wine-quality" / "config.json").write_text(json.dumps({
        "labels": {"stable": 2, "candidate": 1},
        "shadow": {"version": "candidate", "percent": 100}, "feedback": {}}))
    with running(repo, root) as s:
        yield s


def _offline(folder: Path, x: np.ndarray) -> np.ndarray:
    model = load_version(folder)
    data = {n: x[:, j] for j, n in enumerate(NAMES)}
    return evaluate.predict_all(model, evaluate.batches(model.signature, data, len(x)))[
        "class_id"]


def _shadow(srv) -> dict[str, Any]:
    r = httpx.get(f"{srv.url}/v1/models/wine-quality")
    assert r.status_code == 200, r.text
    return r.json()["modelserve"]["shadow"]


def _wait_rows(srv, pair: str, rows: int) -> dict[str, Any]:
    return eventually(lambda: (s := _shadow(srv)["pairs"].get(pair))
                      and s["rows"] + s["errors"] >= rows and s, DEADLINE_S,
                      lambda: f"shadow never reached {rows} rows: {_shadow(srv)}")


def test_shadow_agreement_equals_the_offline_agreement(srv, held_out):
    x, y = held_out
    answered = []
    for start in range(0, len(x), 100):
        part = x[start:start + 100]
        r = httpx.post(f"{srv.url}/v1/models/wine-quality:predict",  # the newest: v2
                       json={"inputs": {n: part[:, j].tolist() for j, n in enumerate(NAMES)}},
                       headers={"x-request-id": f"sh-{start}"})
        assert r.status_code == 200, r.text
        assert r.headers["Model-Version"] == "2"
        answered += r.json()["outputs"]["class_id"]
    stats = _wait_rows(srv, "2 vs 1", len(x))
    v2 = _offline(MODELS / "wine-quality" / "2", x)
    v1 = _offline(MODELS / "wine-quality" / "1", x)
    assert answered == v2.tolist()  # the callers got v2's answers, untouched
    assert stats["requests"] == 4 and stats["rows"] == len(x) and stats["errors"] == 0
    assert stats["agreement"] == float(np.mean(v1 == v2))
    assert stats["primary_ms"] > 0 and stats["shadow_ms"] > 0

    # Truth for the served answers: v2 gets live scores, v1 (shadow only) none.
    for start in range(0, len(x), 100):
        r = httpx.post(f"{srv.url}/v1/models/wine-quality:feedback", json={"feedback": [
            {"request_id": f"sh-{start}", "instance": i, "truth": int(t)}
            for i, t in enumerate(y[start:start + 100])]})
        assert r.status_code == 200, r.text
    report = eventually(lambda: (r := httpx.get(
        f"{srv.url}/v1/models/wine-quality/compare",
        params={"baseline": "stable", "candidate": "candidate"}).json())["feedback"]["2"][
        "joined"] == len(x) and r, DEADLINE_S, "the live scores of v2")
    assert report["baseline"] == 2 and report["candidate"] == 1
    assert report["shadow"]["2 vs 1"]["agreement"] == stats["agreement"]
    summary = " ".join(report["summary"])
    assert f"agreed on {np.mean(v1 == v2):.1%} of {len(x)} rows" in summary
    assert "Not enough fed-back truth" in summary and "v1 has 0" in summary
    assert report["feedback"]["2"]["balanced_accuracy"] == pytest.approx(
        WINE.evaluation.test_metrics["balanced_accuracy"], rel=1e-6)


def test_modelserve_compare_prints_the_report(srv, held_out):
    _wait_rows(srv, "2 vs 1", 1)
    out = subprocess.run([sys.executable, "-m", "service.cli", "compare", "wine-quality",
                          "--baseline", "2", "--candidate", "1", "--url", srv.url],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "wine-quality: v2 (baseline) vs v1 (candidate)" in out.stdout
    assert "agreed on" in out.stdout and "feedback joined" in out.stdout
    bad = subprocess.run([sys.executable, "-m", "service.cli", "compare", "wine-quality",
                          "--baseline", "2", "--candidate", "7", "--url", srv.url],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "404" in bad.stderr and "version 7" in bad.stderr


@pytest.mark.parametrize("params, status, words", [
    ({}, 400, ["baseline"]),
    ({"baseline": "2"}, 400, ["candidate"]),
    ({"baseline": "2", "candidate": "9"}, 404, ["version 9"]),
    ({"baseline": "2", "candidate": "nope"}, 404, ["nope"]),
])
def test_compare_refuses_bad_versions_clearly(srv, params, status, words):
    r = httpx.get(f"{srv.url}/v1/models/wine-quality/compare", params=params)
    assert r.status_code == status, r.text
    for word in words:
        assert word in r.json()["error"]
    r = httpx.get(f"{srv.url}/v1/models/no-such/compare", params={"baseline": "1",
                                                                    "candidate": "2"})
    assert r.status_code == 404


def test_a_missing_candidate_costs_nothing_but_errors(tmp_path):
    repo = tmp_path / "models"
    shutil.copytree(MODELS / "wine-quality" / "2", repo / "wine-quality" / "2")
    (repo / "wine-quality" / "config.json").write_text(json.dumps(
        {"shadow": {"version": 5, "percent": 100}}))
    with running(repo, tmp_path) as s:
        for i in range(5):
            r = httpx.post(f"{s.url}/v1/models/wine-quality:predict",
                           json={"instances": [WINE.samples[i % 4].inputs]})
            assert r.status_code == 200, r.text
        stats = _wait_rows(s, "2 vs 5", 5)
        assert stats["errors"] == 5 and "no version 5" in stats["last_error"]
