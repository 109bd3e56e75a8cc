"""Prometheus metrics at GET /metrics, over real HTTP against the real service: request
counters by model/version/protocol/status, stage histograms, batch and queue metrics,
model states, and one view over several worker processes."""

from __future__ import annotations

import io
import json
import shutil
import time
from pathlib import Path

import httpx
import pytest
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import MODELS, committed_versions, running

WINE_ROW = [7.4, 0.7, 0.0, 1.9, 0.076, 11.0, 34.0, 0.9978, 3.51, 0.56, 9.4]
HOUSING_ROW = [8.3252, 41, 6.984, 1.024, 322, 2.556, 37.88, -122.23]

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(client: httpx.Client) -> Samples:
    r = client.get("/metrics")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(r.text):  # also checks the format
        for s in family.samples:
            key = (s.name, frozenset(s.labels.items()))
            assert key not in samples, f"duplicate series {key}"
            samples[key] = s.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def _v2_housing(rows: int = 1) -> dict:
    return {"inputs": [{"name": "features", "shape": [rows, 8], "datatype": "FP32",
                        "data": HOUSING_ROW * rows}]}


def _png_digit() -> bytes:
    img = Image.new("L", (56, 56), 255)
    for y in range(10, 46):
        for x in range(26, 31):
            img.putpixel((x, y), 0)
    out = io.BytesIO()
    img.save(out, "PNG")
    return out.getvalue()


def test_request_counters_and_histograms_by_model_version_protocol_status(client):
    before = scrape(client)
    for _ in range(3):  # latest wine version: 2
        r = client.post("/v1/models/wine-quality:predict", json={"instances": [WINE_ROW]})
        assert r.status_code == 200, r.text
    for _ in range(2):
        r = client.post("/v2/models/housing/versions/1/infer", json=_v2_housing(2))
        assert r.status_code == 200, r.text
    r = client.post("/v1/models/housing:regress", json={"examples": [
        dict(zip(["MedInc", "HouseAge", "AveRooms", "AveBedrms", "Population", "AveOccup",
                  "Latitude", "Longitude"], HOUSING_ROW, strict=True))]})
    assert r.status_code == 200, r.text
    r = client.post("/v1/models/digits:predict_image", content=_png_digit(),
                    headers={"content-type": "image/png"})
    assert r.status_code == 200, r.text
    # Failures: a bad body on a resolved version, an unknown version of a known model,
    # unknown models, malformed V2 JSON (fails before the version is resolved).
    r = client.post("/v1/models/wine-quality:predict", json={"instances": [WINE_ROW[:5]]})
    assert r.status_code == 400
    r = client.post("/v1/models/wine-quality/versions/99:predict",
                    json={"instances": [WINE_ROW]})
    assert r.status_code == 404
    for i in range(4):
        r = client.post(f"/v2/models/no-such-model-{i}/infer", json=_v2_housing())
        assert r.status_code == 404
    r = client.post("/v2/models/housing/infer", content=b"{not json")
    assert r.status_code == 400
    after = scrape(client)

    req = "modelserve_inference_requests_total"
    expected = {
        ("wine-quality", "2", "tfserving", "200"): 3,
        ("housing", "1", "v2", "200"): 2,
        ("housing", "2", "tfserving", "200"): 1,
        ("digits", "2", "image", "200"): 1,
        ("wine-quality", "2", "tfserving", "400"): 1,
        ("wine-quality", "", "tfserving", "404"): 1,
        ("_unknown", "", "v2", "404"): 4,
        ("housing", "", "v2", "400"): 1,
    }
    for (model, version, protocol, status), n in expected.items():
        got = delta(before, after, req, model=model, version=version, protocol=protocol,
                    status=status)
        assert got == n, (model, version, protocol, status, got)
    # Names the repository does not know never become label values.
    assert not any("no-such-model" in str(labels) for _, labels in after)

    # One duration observation per request, under the same model/version/protocol.
    duration = "modelserve_inference_request_duration_seconds_count"
    assert delta(before, after, duration, model="wine-quality", version="2",
                 protocol="tfserving") == 4
    assert delta(before, after, duration, model="housing", version="1", protocol="v2") == 2
    assert delta(before, after, duration, model="_unknown", version="", protocol="v2") == 4
    assert value(after, "modelserve_inference_request_duration_seconds_bucket",
                 model="housing", version="1", protocol="v2", le="+Inf") >= 2

    # Every HTTP request, by route template (never the raw path).
    http = "modelserve_http_requests_total"
    assert delta(before, after, http, method="POST", route="/v1/models/{name}:predict",
                 status="200") == 3
    assert delta(before, after, http, method="POST",
                 route="/v2/models/{name}/versions/{version}/infer", status="200") == 2
    assert delta(before, after, http, method="POST", route="/v2/models/{name}/infer",
                 status="404") == 4
    assert delta(before, after, http, method="GET", route="/metrics", status="200") == 1


def test_batch_stage_metrics(client):
    before = scrape(client)
    for _ in range(3):
        r = client.post("/v2/models/housing/versions/1/infer", json=_v2_housing(5))
        assert r.status_code == 200, r.text
    after = scrape(client)
    labels = {"model": "housing", "version": "1"}
    # Rows reach the model whatever the batching: 3 requests x 5 rows.
    assert delta(before, after, "modelserve_inference_rows_total", **labels) == 15
    assert delta(before, after, "modelserve_inference_batch_rows_sum", **labels) == 15
    calls = delta(before, after, "modelserve_inference_executions_total", **labels)
    assert 1 <= calls <= 3
    assert delta(before, after, "modelserve_inference_batch_rows_count", **labels) == calls
    assert delta(before, after, "modelserve_inference_compute_duration_seconds_count",
                 **labels) == calls
    assert delta(before, after, "modelserve_inference_queue_duration_seconds_count",
                 **labels) == 3  # one queue wait per request
    assert value(after, "modelserve_inference_batch_rows_bucket", le="4.0", **labels) \
        <= value(after, "modelserve_inference_batch_rows_bucket", le="8.0", **labels)
    # Nothing waits once every request has been answered.
    assert ("modelserve_queue_rows", frozenset(labels.items())) in after
    assert value(after, "modelserve_queue_rows", **labels) == 0


def test_model_state_load_time_and_process_metrics(client):
    samples = scrape(client)
    for folder in committed_versions():
        labels = {"model": folder.parent.name, "version": folder.name}
        assert value(samples, "modelserve_model_state", state="AVAILABLE", **labels) == 1
        for state in ("START", "LOADING", "END"):
            assert (("modelserve_model_state", frozenset({**labels, "state": state}.items()))
                    in samples)
            assert value(samples, "modelserve_model_state", state=state, **labels) == 0
        assert value(samples, "modelserve_model_load_duration_seconds", **labels) > 0
    assert value(samples, "process_resident_memory_bytes") > 0


def test_metrics_is_open_and_not_in_the_api_schema(client):
    assert "/metrics" not in client.get("/openapi.json").json()["paths"]
    r = client.get("/metrics", headers={"Accept": "application/openmetrics-text"})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/openmetrics-text")
    assert r.text.rstrip().endswith("# EOF")


def _access_pids(log: Path) -> set[int]:
    pids = set()
    for line in log.read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("logger") == "modelserve.access" and record.get("protocol"):
            pids.add(record["pid"])
    return pids


def test_two_workers_share_one_metrics_view(tmp_path):
    shutil.copytree(MODELS / "wine-quality" / "2", tmp_path / "models" / "wine-quality" / "2")
    with running(tmp_path / "models", tmp_path, env={"MODELSERVE_WORKERS": "2"}) as srv:
        sent = 0
        with httpx.Client(base_url=srv.url, timeout=60) as client:
            # A new connection each time, until both workers have answered some.
            while sent < 40 or (len(_access_pids(Path(srv.log.name))) < 2 and sent < 400):
                r = client.post("/v1/models/wine-quality:predict",
                                json={"instances": [WINE_ROW]},
                                headers={"Connection": "close"})
                assert r.status_code == 200, r.text
                sent += 1
            assert len(_access_pids(Path(srv.log.name))) == 2
            # A worker counts a request just after sending its response: let the last
            # one land before requiring exact sums.
            deadline = time.monotonic() + 60
            while value(scrape(client), "modelserve_inference_requests_total",
                        model="wine-quality", version="2", protocol="tfserving",
                        status="200") != sent and time.monotonic() < deadline:
                time.sleep(0.1)
            for _ in range(4):  # whichever worker answers the scrape sees every request
                samples = scrape(client)
                assert value(samples, "modelserve_inference_requests_total",
                             model="wine-quality", version="2", protocol="tfserving",
                             status="200") == sent
                assert value(samples, "modelserve_inference_rows_total",
                             model="wine-quality", version="2") == sent
                workers = [labels for name, labels in samples
                           if name == "modelserve_worker_resident_memory_bytes"]
                assert len(workers) == 2
                assert value(samples, "modelserve_model_state", model="wine-quality",
                             version="2", state="AVAILABLE") == 1


def test_prepare_multiprocess_empties_the_directory(tmp_path, monkeypatch):
    from service.observability.metrics import MULTIPROC_ENV, prepare_multiprocess

    stale = tmp_path / "prom" / "counter_12345.db"
    stale.parent.mkdir()
    stale.write_bytes(b"left over from an earlier run")
    keep = tmp_path / "prom" / "notes.txt"
    keep.write_text("not ours")
    monkeypatch.setenv(MULTIPROC_ENV, str(stale.parent))
    assert prepare_multiprocess(2) == str(stale.parent)
    assert not stale.exists() and keep.exists()

    monkeypatch.delenv(MULTIPROC_ENV)
    assert prepare_multiprocess(1) is None
    made = prepare_multiprocess(2)
    try:
        assert made and Path(made).is_dir()
        import os

        assert os.environ[MULTIPROC_ENV] == made
    finally:
        shutil.rmtree(made, ignore_errors=True)


@pytest.mark.parametrize(("path", "protocol", "template"), [
    ("/v1/models/wine-quality:predict", "tfserving", "/v1/models/{name}:predict"),
    ("/v1/models/wine-quality/versions/2:classify", "tfserving",
     "/v1/models/{name}/versions/{version}:classify"),
    ("/v1/models/digits:predict_image", "image", "/v1/models/{name}:predict_image"),
    ("/v2/models/housing/versions/1/infer", "v2", "/v2/models/{name}/versions/{version}/infer"),
    ("/v2/models/housing/ready", "", ""),
    ("/v1/models/wine-quality", "", ""),
])
def test_classify_paths(path, protocol, template):
    # The protocol modules fill the route table with their handlers as they are imported.
    import service.app  # noqa: F401
    from service.protocols import routes

    match = routes.match(path)
    found = (match.route.protocol, match.route.template) if match else ("", "")
    assert found == (protocol, template)
