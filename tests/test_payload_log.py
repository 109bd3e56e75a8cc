"""The payload log over real HTTP and gRPC: one JSON line per logged prediction in the
rotating files, the same prediction as two KServe-format CloudEvents at a real HTTP sink,
no secret ever written, and predictions untouched when the disk or the sink fails."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.grpc as tgrpc

from service.evidence.files import RotatingFiles
from service.loader import read_manifest
from tests.conftest import (
    MODELS,
    eventually,
    running,
    running_in_process,
    sample_row,
    write_config,
)
from tests.test_metrics import scrape, value

API_KEY = "pl-Secret-4f7d2a9c1e"
QUERY_SECRET = "qs-Token-91b3c7"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
DEADLINE_S = 60.0
WINE = read_manifest(MODELS / "wine-quality" / "2")
DIGITS = read_manifest(MODELS / "digits" / "1")
HOUSING = read_manifest(MODELS / "housing" / "2")


def _wait(what: str, probe: Callable[[], Any]) -> Any:
    return eventually(probe, DEADLINE_S, what)


class Sink:
    """A CloudEvents receiver: every POST's headers and JSON body, answered 200."""

    def __init__(self) -> None:
        self.events: list[tuple[dict[str, str], Any]] = []
        events = self.events

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                events.append(({k.lower(): v for k, v in self.headers.items()},
                               json.loads(body)))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}/events"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def for_id(self, request_id: str) -> dict[str, Any]:
        return {h["ce-type"].rsplit(".", 1)[1]: (h, body) for h, body in list(self.events)
                if h.get("ce-id") == request_id}


@pytest.fixture(scope="module")
def logged(tmp_path_factory) -> Iterator[tuple[Any, Path, Sink, Path]]:
    root = tmp_path_factory.mktemp("payload-log")
    repo = root / "models"
    for name, version in (("wine-quality", 2), ("digits", 1), ("housing", 2)):
        shutil.copytree(MODELS / name / str(version), repo / name / str(version))
    write_config(repo, "wine-quality", {"payload_log": {}})
    write_config(repo, "digits", {"payload_log": {"images": "digest"}})
    sink = Sink()
    logs = root / "payloads"
    with running(repo, root, {"MODELSERVE_API_KEYS": API_KEY,
                              "MODELSERVE_PAYLOAD_LOG_DIR": str(logs),
                              "MODELSERVE_PAYLOAD_SINK_URL": sink.url,
                              "MODELSERVE_POLL_INTERVAL_S": "0.2"}) as srv:
        yield srv, logs, sink, repo
    sink.http.shutdown()


def _lines(logs: Path) -> list[dict[str, Any]]:
    out = []
    for path in sorted(logs.glob("payloads-*.jsonl")):
        out += [json.loads(line) for line in path.read_text().splitlines() if line]
    return out


def _record(logs: Path, request_id: str) -> dict[str, Any]:
    return _wait(f"the payload log line of {request_id}", lambda: next(
        (r for r in _lines(logs) if r["request_id"] == request_id), None))


def _v2_wine(rows: list[list[float]]) -> dict[str, Any]:
    return {"id": "client-7", "inputs": [{"name": "features", "shape": [len(rows), 11],
                                          "datatype": "FP64", "data": rows}]}


def test_v2_prediction_is_one_named_line_and_two_cloudevents(logged):
    srv, logs, sink, _ = logged
    rows = [sample_row(WINE, 0), sample_row(WINE, 1)]
    r = httpx.post(f"{srv.url}/v2/models/wine-quality/versions/2/infer?token={QUERY_SECRET}",
                   json=_v2_wine(rows), headers={**AUTH, "x-request-id": "pl-v2-1"})
    assert r.status_code == 200, r.text
    answer = {o["name"]: o["data"] for o in r.json()["outputs"]}

    rec = _record(logs, "pl-v2-1")
    assert (rec["model"], rec["version"], rec["protocol"], rec["status"]) == (
        "wine-quality", 2, "v2", 200)
    assert rec["id"] == "client-7" and rec["latency_ms"] > 0
    assert rec["time"].endswith("Z")
    names = [f.name for f in WINE.inputs[0].features]
    assert [list(i) for i in rec["instances"]] == [names, names]
    logged_rows = [[i[n] for n in names] for i in rec["instances"]]
    assert np.allclose(logged_rows, rows)
    assert [p["label"] for p in rec["predictions"]] == answer["label"]
    assert [p["class_id"] for p in rec["predictions"]] == answer["class_id"]
    flat = [x for p in rec["predictions"] for x in p["probabilities"]]
    assert flat == pytest.approx(answer["probabilities"], abs=1e-6)

    events = _wait("both CloudEvents", lambda: (e := sink.for_id("pl-v2-1")) and len(e) == 2
                   and e)
    (req_h, req), (res_h, res) = events["request"], events["response"]
    for h in (req_h, res_h):
        assert h["ce-specversion"] == "1.0" and h["ce-source"]
        assert h["ce-inferenceservicename"] == "wine-quality"
        assert h["ce-modelversion"] == "2" and h["content-type"] == "application/json"
    assert req_h["ce-type"] == "org.kubeflow.serving.inference.request"
    assert res_h["ce-type"] == "org.kubeflow.serving.inference.response"
    assert req["id"] == "client-7" and req["inputs"][0]["shape"] == [2, 11]
    assert req["inputs"][0]["data"] == pytest.approx([x for row in rows for x in row])
    assert {o["name"]: o["data"] for o in res["outputs"]}["label"] == answer["label"]


def test_tfserving_and_grpc_predictions_are_logged_under_their_protocol(logged):
    srv, logs, _, _ = logged
    row = sample_row(WINE, 2)
    r = httpx.post(f"{srv.url}/v1/models/wine-quality:predict", json={"instances": [row]},
                   headers={**AUTH, "x-request-id": "pl-tfs-1"})
    assert r.status_code == 200, r.text
    rec = _record(logs, "pl-tfs-1")
    assert rec["protocol"] == "tfserving" and rec["status"] == 200
    assert rec["predictions"][0]["label"] == r.json()["predictions"][0]["label"]

    client = tgrpc.InferenceServerClient(srv.grpc_target)
    try:
        inp = tgrpc.InferInput("features", [1, 11], "FP32")
        inp.set_data_from_numpy(np.array([row], dtype=np.float32))
        result = client.infer("wine-quality", [inp], model_version="2",
                              request_id="pl-grpc-1",
                              headers={"authorization": f"Bearer {API_KEY}",
                                       "x-request-id": "pl-grpc-1"})
    finally:
        client.close()
    rec = _record(logs, "pl-grpc-1")
    assert rec["protocol"] == "grpc" and rec["status"] == 200 and rec["id"] == "pl-grpc-1"
    assert rec["predictions"][0]["class_id"] == int(result.as_numpy("class_id")[0])


def test_images_are_logged_as_a_digest(logged):
    srv, logs, _, _ = logged
    image = np.asarray(sample_row(DIGITS, 0), dtype=np.float32)
    body = {"inputs": [{"name": "image", "shape": [1, *image.shape], "datatype": "FP32",
                        "data": image.reshape(-1).tolist()}]}
    r = httpx.post(f"{srv.url}/v2/models/digits/versions/1/infer", json=body,
                   headers={**AUTH, "x-request-id": "pl-digits-1"})
    assert r.status_code == 200, r.text
    rec = _record(logs, "pl-digits-1")
    digest = rec["instances"][0]["image"]
    served = image.reshape(digest["shape"]).astype(digest["dtype"])
    assert digest["sha256"] == hashlib.sha256(served.tobytes()).hexdigest()
    assert "predictions" in rec and len(json.dumps(rec)) < 2000  # not 784 pixels


def test_no_secret_is_ever_written(logged):
    srv, logs, sink, _ = logged
    r = httpx.post(f"{srv.url}/v1/models/wine-quality/versions/2:predict?key={QUERY_SECRET}",
                   json={"instances": [sample_row(WINE, 3)]},
                   headers={"x-api-key": API_KEY, "x-request-id": "pl-secret-1"})
    assert r.status_code == 200, r.text
    _record(logs, "pl-secret-1")
    _wait("the CloudEvents", lambda: len(sink.for_id("pl-secret-1")) == 2)
    written = "".join(p.read_text() for p in logs.glob("payloads-*.jsonl"))
    written += json.dumps(sink.events)
    for secret in (API_KEY, QUERY_SECRET, "Bearer", "authorization", "x-api-key"):
        assert secret.lower() not in written.lower(), secret


def test_models_without_payload_log_are_not_logged_and_config_edits_apply(logged):
    srv, logs, _, repo = logged
    body = {"instances": [sample_row(HOUSING, 0)]}

    def predict(rid: str) -> None:
        r = httpx.post(f"{srv.url}/v1/models/housing/versions/2:predict", json=body,
                       headers={**AUTH, "x-request-id": rid})
        assert r.status_code == 200, r.text

    status = httpx.get(f"{srv.url}/v1/models/housing", headers=AUTH).json()
    assert status["modelserve"]["payload_log"] == {"enabled": False}
    predict("pl-housing-off")
    write_config(repo, "housing", {"payload_log": {"keep": "outputs"}})
    _wait("the config edit", lambda: httpx.get(
        f"{srv.url}/v1/models/housing", headers=AUTH).json()["modelserve"][
        "payload_log"]["enabled"])
    predict("pl-housing-on")
    rec = _record(logs, "pl-housing-on")
    assert "instances" not in rec and rec["predictions"][0]["value"] > 0
    assert not any(r["request_id"] == "pl-housing-off" for r in _lines(logs))


def test_status_and_metrics_count_what_was_written(logged):
    srv, _, sink, _ = logged
    with httpx.Client(base_url=srv.url, headers=AUTH, timeout=30) as c:
        log = c.get("/v1/models/wine-quality").json()["modelserve"]["payload_log"]
        assert log["enabled"] and log["sample"] == 1.0 and log["keep"] == "both"
        assert log["written"] >= 1 and log["failed"] == 0 and log["last_error"] == ""
        assert log["sink"]["url"] == sink.url and log["sink"]["failed"] == 0
        samples = scrape(c)
        assert value(samples, "modelserve_payload_log_records_total",
                     model="wine-quality", outcome="written") >= 1
        assert value(samples, "modelserve_payload_sink_events_total", outcome="sent") >= 2


def test_an_unusable_directory_and_a_dead_sink_never_cost_a_prediction(tmp_path):
    repo = tmp_path / "models"
    shutil.copytree(MODELS / "wine-quality" / "2", repo / "wine-quality" / "2")
    write_config(repo, "wine-quality", {"payload_log": {}})
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("a file where the log directory should be")
    dead = Sink()
    dead.http.shutdown()
    dead.http.server_close()  # nothing listens there any more
    with running_in_process(repo, payload_log_dir=blocked / "payloads",
                            payload_sink_url=dead.url, poll_interval_s=0) as srv, \
            httpx.Client(base_url=srv.url, timeout=30) as c:
        for i in range(20):
            r = c.post("/v1/models/wine-quality:predict",
                       json={"instances": [sample_row(WINE, i % 4)]})
            assert r.status_code == 200, r.text
        log = _wait("the failures in the status", lambda: (
            s := c.get("/v1/models/wine-quality").json()["modelserve"]["payload_log"])
            ["failed"] == 20 and s)
        assert log["written"] == 0 and "not-a-directory" in log["last_error"]
        assert value(scrape(c), "modelserve_payload_log_records_total",
                     model="wine-quality", outcome="failed") == 20

    # The same server with a writable directory: the sink fails, the files do not.
    with running_in_process(repo, payload_log_dir=tmp_path / "payloads",
                            payload_sink_url=dead.url, poll_interval_s=0) as srv, \
            httpx.Client(base_url=srv.url, timeout=30) as c:
        for i in range(5):
            assert c.post("/v1/models/wine-quality:predict",
                          json={"instances": [sample_row(WINE, i % 4)]}).status_code == 200
        sink = _wait("the sink's failures", lambda: (
            s := c.get("/v1/models/wine-quality").json()["modelserve"]["payload_log"])
            ["sink"]["failed"] + s["sink"]["dropped"] == 10 and s["sink"])
        assert sink["sent"] == 0 and sink["last_error"]
    assert len(_lines(tmp_path / "payloads")) == 5


def test_files_rotate_by_size_and_are_pruned_by_total_and_age(tmp_path):
    files = RotatingFiles(tmp_path, file_bytes=1000, total_bytes=3500, max_age_s=3600)
    line = b"x" * 99 + b"\n"
    for _ in range(60):  # 6000 bytes: six files of 1000, the oldest pruned
        files.write([line])
    files.close()
    kept = sorted(tmp_path.glob("payloads-*.jsonl"))
    assert sum(p.stat().st_size for p in kept) <= 3500
    assert all(p.stat().st_size <= 1000 for p in kept) and len(kept) >= 3

    old = kept[0]
    stale = time.time() - 7200
    os.utime(old, (stale, stale))
    RotatingFiles(tmp_path, 1000, 10_000, max_age_s=3600).prune()
    assert not old.exists() and all(p.exists() for p in kept[1:])
