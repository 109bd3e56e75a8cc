"""Every committed version, replayed as a client would: its trainer's held-out set is
rebuilt from the datasets, sent through the running service, and scored. The served
metrics must equal the model card's, and beat the card's baselines (and chance), so
a served version can neither drift from what was evaluated (float32 narrowing cost
housing v2 2% of MSE once) nor be a retrain that regressed.

Then the held-out labels are fed back for the replayed predictions
(``POST /v1/models/<name>:feedback``), and the live scores the service computes from
its evidence store must equal the card too.
"""

from __future__ import annotations

import importlib
import json
import shutil
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
import tritonclient.http as triton

from service.loader import read_manifest
from service.manifest import Task
from tests.conftest import committed_versions, eventually, running
from training.publishing import evaluate

CHUNK = 250  # rows per request, under the test server's 300-row limit
DEADLINE_S = 120.0


def _split(manifest, data_dir):
    trainer, recipe = manifest.provenance.trainer.split(" recipe=")
    module = importlib.import_module(trainer)
    return module.split(recipe, data_dir)


def _rid(manifest, start: int) -> str:
    return f"quality-{manifest.name}-{manifest.version}-{start}"


def _served(client, triton_client, manifest, x: np.ndarray) -> dict[str, np.ndarray]:
    (spec,) = manifest.inputs
    url = f"/v1/models/{manifest.name}/versions/{manifest.version}:predict"
    outs = []
    for start in range(0, len(x), CHUNK):
        part = x[start:start + CHUNK]
        rid = {"x-request-id": _rid(manifest, start)}
        if spec.kind == "image":  # KServe V2 binary tensors, as tritonclient sends them
            t = triton.InferInput(spec.name, list(part.shape), "FP32")
            t.set_data_from_numpy(np.ascontiguousarray(part, dtype=np.float32))
            result = triton_client.infer(manifest.name, [t], model_version=str(manifest.version),
                                         headers=rid)
            outs.append({k: result.as_numpy(k) for k in ("probabilities", "class_id")})
            continue
        # TF-Serving columns by feature name, the values as JSON numbers (exact float64).
        columns = {n: part[:, j].tolist() for j, n in enumerate(spec.feature_names)}
        r = client.post(url, json={"inputs": columns}, headers=rid)
        assert r.status_code == 200, r.text
        body = r.json()["outputs"]
        outs.append({k: np.asarray(v) for k, v in body.items()} if isinstance(body, dict)
                    else {"value": np.asarray(body)})
    return {k: np.concatenate([o[k] for o in outs]) for k in outs[0]}


def _feed_back(client, manifest, y: np.ndarray) -> None:
    """The held-out truths, for the predictions _served made (its request ids)."""
    for start in range(0, len(y), CHUNK):
        truths = y[start:start + CHUNK].tolist()
        r = client.post(f"/v1/models/{manifest.name}:feedback", json={"feedback": [
            {"request_id": _rid(manifest, start), "instance": i, "truth": t}
            for i, t in enumerate(truths)]})
        assert r.status_code == 200, r.text
        assert r.json()["versions"] == {str(manifest.version): len(truths)}


def _live_scores(client, manifest) -> dict[str, float]:
    def covered() -> dict[str, float] | None:
        r = client.get(f"/v1/models/{manifest.name}")
        assert r.status_code == 200, r.text
        live = r.json()["modelserve"]["feedback"]["versions"].get(str(manifest.version), {})
        return live if live.get("joined") == manifest.evaluation.test_rows else None
    return eventually(covered, DEADLINE_S, f"live scores of {manifest.name} "
                      f"v{manifest.version} covering the held-out set")


@pytest.fixture(scope="module")
def quality_server(tmp_path_factory) -> Iterator[httpx.Client]:
    """Every committed version, with feedback on for every model."""
    root = tmp_path_factory.mktemp("quality")
    for folder in committed_versions():
        shutil.copytree(folder, root / "models" / folder.parent.name / folder.name)
    for model in (root / "models").iterdir():
        (model / "config.json").write_text(json.dumps({"feedback": {"window": 20000}}))
    with running(root / "models", root) as srv, \
            httpx.Client(base_url=srv.url, timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def client(quality_server):
    return quality_server


@pytest.fixture(scope="module")
def triton_client(quality_server):
    return triton.InferenceServerClient(str(quality_server.base_url).removeprefix(
        "http://").rstrip("/"))


@pytest.mark.parametrize("folder", committed_versions(), ids=lambda p: f"{p.parent.name}-{p.name}")
def test_served_metrics_equal_the_card_and_beat_its_baselines(folder, client, triton_client,
                                                              data_dir):
    m = read_manifest(folder)
    split = _split(m, data_dir)
    assert len(split.x_test) == m.evaluation.test_rows
    outputs = _served(client, triton_client, m, np.asarray(split.x_test))
    got = evaluate.task_metrics(m.task, split.y_test, outputs, len(m.labels or []))
    # Schema-1 cards round each metric to 6 decimals (up to 5e-7 off).
    tolerance = 6e-7 if m.evaluation.test_set_sha256 is None else 0.0
    for key, card in m.evaluation.test_metrics.items():
        assert got[key] == pytest.approx(card, rel=1e-6, abs=tolerance), (key, got[key], card)
    assert evaluate.beats(m.task, got, m.evaluation.baselines) == []
    if m.labels:
        assert got["balanced_accuracy"] > 1 / len(m.labels)  # chance

    y = np.asarray(split.y_test)
    _feed_back(client, m, y.astype(np.int64) if m.task is Task.CLASSIFICATION else y)
    live = _live_scores(client, m)
    for key, card in m.evaluation.test_metrics.items():
        assert live[key] == pytest.approx(card, rel=1e-6, abs=tolerance), (key, live[key], card)
