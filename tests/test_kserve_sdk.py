"""KServe's own SDK (kserve 0.21.0) as a second real client: InferenceRESTClient over V1
and V2 (JSON and binary tensors) and InferenceGRPCClient, against the real server.
Answers must equal ours over HTTP (TF-Serving predictions, V2 outputs).

The SDK runs in a subprocess (tests/kserve_client.py): its copy of the ``inference``
protobuf package cannot share this process with tritonclient's.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from service.loader import read_manifest
from tests.conftest import MODELS, ROOT, Server, running, sample_row

# Looked up, never imported here (see above).
if importlib.util.find_spec("kserve") is None:
    pytest.skip("kserve is not installed (`make install` installs it, --no-deps)",
                allow_module_level=True)

NAMES = ["wine-quality", "housing", "auscultation", "digits"]
NUMPY = {"FP32": np.float32, "FP64": np.float64, "INT64": np.int64}


def sdk(srv: Server, calls: list[dict[str, Any]]) -> list[Any]:
    """Make the calls with the SDK in a subprocess; each result's value, or its error."""
    done = subprocess.run([sys.executable, str(ROOT / "tests" / "kserve_client.py"), srv.url,
                           srv.grpc_target], input=json.dumps(calls), capture_output=True,
                          text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout)
    assert len(results) == len(calls)
    return results


def ok(results: list[Any]) -> list[Any]:
    for r in results:
        assert "ok" in r, r
    return [r["ok"] for r in results]


def _rows(name: str, version: int = 2) -> list:
    m = read_manifest(MODELS / name / str(version))
    return [sample_row(m, i) for i in range(len(m.samples))]


def _tensor(client, name: str, version: int = 2) -> dict[str, Any]:
    meta = client.get(f"/v2/models/{name}/versions/{version}").json()
    (inp,) = meta["inputs"]
    rows = np.asarray(_rows(name, version))
    return {"name": inp["name"], "datatype": inp["datatype"], "shape": list(rows.shape),
            "data": rows.reshape(-1).tolist()}


def _outputs(outputs: list[dict[str, Any]]) -> dict[str, Any]:
    """V2 outputs as comparable values (numbers through their datatype: JSON writes a
    float32 in fewer digits than the float64 a client reads it into)."""
    out = {}
    for o in outputs:
        data = o["data"]
        if o["datatype"] in NUMPY:
            data = np.asarray(data, NUMPY[o["datatype"]]).tolist()
        out[o["name"]] = (o["datatype"], o["shape"], data)
    return out


def _ours(client, name: str, tensor: dict[str, Any], version: str = "", id: str = "") -> dict:
    path = f"/v2/models/{name}" + (f"/versions/{version}" if version else "") + "/infer"
    r = client.post(path, json={"inputs": [tensor], **({"id": id} if id else {})})
    assert r.status_code == 200, r.text
    return r.json()


# --- V1 ----------------------------------------------------------------------------------


def test_v1_readiness_and_predictions(server, client):
    calls = [{"client": "v1", "call": "is_model_ready", "args": {"model": n}} for n in NAMES]
    calls += [{"client": "v1", "call": "infer",
               "args": {"model": n, "body": {"instances": _rows(n)}}} for n in NAMES]
    results = ok(sdk(server, calls))
    assert results[:len(NAMES)] == [True] * len(NAMES)
    for name, got in zip(NAMES, results[len(NAMES):], strict=True):
        want = client.post(f"/v1/models/{name}:predict", json={"instances": _rows(name)})
        assert want.status_code == 200, want.text
        assert got == want.json()
        samples = read_manifest(MODELS / name / "2").samples
        if "label" in samples[0].expected:  # and both are the manifest's
            assert [p["label"] for p in got["predictions"]] == [
                s.expected["label"] for s in samples]


def test_v1_server_live(server):
    # KServe's V1 liveness reads {"status": "alive"} at GET /.
    (result,) = sdk(server, [{"client": "v1", "call": "is_server_live"}])
    assert result == {"ok": True}


@pytest.fixture(scope="module")
def failing(tmp_path_factory) -> Iterator[Server]:
    """wine-quality, and housing whose only version cannot load."""
    root = tmp_path_factory.mktemp("kserve-failing")
    repo = root / "models"
    shutil.copytree(MODELS / "wine-quality" / "2", repo / "wine-quality" / "2")
    broken = repo / "housing" / "2"
    shutil.copytree(MODELS / "housing" / "2", broken)
    (broken / "model.joblib").write_bytes(b"garbage")
    with running(repo, root, env={"MODELSERVE_INCOMPLETE_VERSION_TIMEOUT_S": "0"}) as srv:
        yield srv


def test_readiness_of_a_model_whose_only_version_failed(failing):
    calls = [{"client": c, "call": "is_model_ready", "args": {"model": n}}
             for c in ("v1", "v2", "grpc") for n in ("wine-quality", "housing")]
    assert ok(sdk(failing, calls)) == [True, False] * 3


# --- V2 REST -------------------------------------------------------------------------------


def test_v2_rest_health(server):
    calls = [{"client": "v2", "call": c} for c in ("is_server_live", "is_server_ready")]
    calls += [{"client": "v2", "call": "is_model_ready", "args": {"model": n}}
              for n in [*NAMES, "no-such-model"]]
    assert ok(sdk(server, calls)) == [True, True, True, True, True, True, False]


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_v2_rest_infer_equals_ours(server, client, binary):
    tensors = {n: _tensor(client, n) for n in NAMES}
    calls = [{"client": "v2", "call": "infer",
              "args": {"model": n, "inputs": [t], "binary": binary, "id": f"kserve-{n}"}}
             for n, t in tensors.items()]
    for name, got in zip(NAMES, ok(sdk(server, calls)), strict=True):
        want = _ours(client, name, tensors[name], id=f"kserve-{name}")
        assert got["id"] == want["id"] == f"kserve-{name}"
        assert got["model_name"] == name
        assert _outputs(got["outputs"]) == _outputs(want["outputs"])


# --- gRPC ----------------------------------------------------------------------------------


def test_grpc_health_and_infer_equal_ours(server, client):
    calls: list[dict[str, Any]] = [{"client": "grpc", "call": c}
                                   for c in ("is_server_live", "is_server_ready")]
    calls += [{"client": "grpc", "call": "is_model_ready", "args": {"model": n}}
              for n in NAMES]
    tensors = {(n, v): _tensor(client, n, v) for n in NAMES for v in (1, 2)}
    calls += [{"client": "grpc", "call": "infer",
               "args": {"model": n, "version": str(v), "inputs": [t], "id": f"g-{n}-{v}"}}
              for (n, v), t in tensors.items()]
    results = ok(sdk(server, calls))
    assert results[:2 + len(NAMES)] == [True] * (2 + len(NAMES))
    for ((name, version), tensor), got in zip(tensors.items(), results[2 + len(NAMES):],
                                              strict=True):
        want = _ours(client, name, tensor, version=str(version), id=f"g-{name}-{version}")
        assert got["id"] == want["id"] == f"g-{name}-{version}"
        assert _outputs(got["outputs"]) == _outputs(want["outputs"])


def test_grpc_errors_reach_the_sdk(server):
    (unknown, bad) = sdk(server, [
        {"client": "grpc", "call": "infer", "args": {"model": "nope", "inputs": [
            {"name": "features", "datatype": "FP32", "shape": [1, 1], "data": [0.0]}]}},
        {"client": "grpc", "call": "infer", "args": {"model": "wine-quality", "inputs": [
            {"name": "features", "datatype": "FP32", "shape": [1, 3], "data": [0.0] * 3}]}}])
    assert "Model 'nope' not found" in unknown["message"], unknown
    assert "expects 11 features" in bad["message"], bad
