"""A real Prometheus scrapes the real service with the repository's configuration
(deploy/prometheus/prometheus.yml, its target pointed at the test server), and answers
the dashboard's and the alerts' queries.

Needs the `prometheus` command (Debian package `prometheus`, installed by
`make test-tools`); skips, saying so, when it is not there.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time

import httpx
import pytest
import yaml

from tests.conftest import _free_port
from tests.deploy.files import ALERTS_YML, DASHBOARD, PROMETHEUS_YML

HOUSING_ROW = [8.3252, 41, 6.984, 1.024, 322, 2.556, 37.88, -122.23]
WINE_ROW = [7.4, 0.7, 0.0, 1.9, 0.076, 11.0, 34.0, 0.9978, 3.51, 0.56, 9.4]
TIMEOUT_S = 60  # deadline of every wait on Prometheus: generous


@pytest.fixture
def prometheus(server, tmp_path):
    """Prometheus on a free port, scraping the session's server every second."""
    exe = shutil.which("prometheus")
    if exe is None:
        pytest.skip("prometheus is not installed (apt-get install prometheus: "
                    "`make test-tools`); the real-Prometheus test did not run")
    config = yaml.safe_load(PROMETHEUS_YML.read_text())
    config["global"]["scrape_interval"] = "1s"
    config["global"]["evaluation_interval"] = "1s"
    jobs = [job for job in config["scrape_configs"] if job["job_name"] == "modelserve"]
    assert len(jobs) == 1, "deploy/prometheus/prometheus.yml has no modelserve job"
    jobs[0].pop("scrape_interval", None)
    jobs[0]["static_configs"] = [{"targets": [f"127.0.0.1:{server.port}"]}]
    for rule_file in config.get("rule_files", []):  # relative to the config file
        shutil.copy(PROMETHEUS_YML.parent / rule_file, tmp_path / rule_file)
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))

    port = _free_port()
    log = open(tmp_path / "prometheus.log", "w+")  # noqa: SIM115
    proc = subprocess.Popen(
        [exe, f"--config.file={tmp_path / 'prometheus.yml'}",
         f"--storage.tsdb.path={tmp_path / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)

    def output() -> str:
        log.flush()
        log.seek(0)
        return log.read()[-3000:]

    api = httpx.Client(base_url=f"http://127.0.0.1:{port}/api/v1", timeout=5)
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"prometheus exited ({proc.returncode}): {output()}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/-/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"prometheus not ready in {TIMEOUT_S} s: {output()}")
            time.sleep(0.3)
        api.output = output  # type: ignore[attr-defined]
        yield api
    finally:
        api.close()
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def query(api: httpx.Client, expr: str) -> list[dict]:
    r = api.get("/query", params={"query": expr})
    body = r.json()
    assert r.status_code == 200 and body["status"] == "success", f"{expr!r}: {r.text[:500]}"
    return body["data"]["result"]


def wait_for(api: httpx.Client, expr: str, ok, what: str) -> list[dict]:
    deadline = time.monotonic() + TIMEOUT_S
    result: list[dict] = []
    while time.monotonic() < deadline:
        result = query(api, expr)
        if ok(result):
            return result
        time.sleep(0.5)
    targets = api.get("/targets").text[:1500]
    pytest.fail(f"{what}: not seen in {TIMEOUT_S} s; last result {result}; targets {targets}; "
                f"log {api.output()}")  # type: ignore[attr-defined]


def test_prometheus_scrapes_the_service_with_the_repositorys_config(client, prometheus):
    for _ in range(3):
        r = client.post("/v1/models/housing:predict", json={"instances": [HOUSING_ROW]})
        assert r.status_code == 200, r.text
        r = client.post("/v2/models/wine-quality/infer", json={"inputs": [
            {"name": "features", "shape": [1, 11], "datatype": "FP32", "data": WINE_ROW}]})
        assert r.status_code == 200, r.text

    result = wait_for(prometheus, "modelserve_inference_requests_total",
                      lambda res: {"housing", "wine-quality"} <= {s["metric"].get("model")
                                                                 for s in res},
                      "modelserve_inference_requests_total for housing and wine-quality")
    housing = [s for s in result if s["metric"]["model"] == "housing"]
    assert any(float(s["value"][1]) >= 3 and s["metric"]["status"] == "200" for s in housing)
    assert all(s["metric"]["job"] == "modelserve" for s in result)

    up = query(prometheus, 'up{job="modelserve"}')
    assert [float(s["value"][1]) for s in up] == [1.0]

    # The dashboard's latency query once there are two scrapes to take a rate over.
    wait_for(prometheus,
             'histogram_quantile(0.99, sum by (le, model) (rate('
             'modelserve_inference_request_duration_seconds_bucket{model="housing"}[1m])))',
             lambda res: len(res) == 1, "p99 latency of housing")


def _grafana_to_promql(expr: str) -> str:
    return (expr.replace("$__rate_interval", "1m").replace("$model", ".*")
            .replace("$__interval", "15s"))


def test_every_dashboard_and_alert_query_runs_on_real_prometheus(prometheus):
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [(p["title"], t["expr"]) for p in dashboard["panels"] for t in p.get("targets", [])]
    assert exprs
    for title, expr in exprs:
        r = prometheus.get("/query", params={"query": _grafana_to_promql(expr)})
        assert r.status_code == 200, f"panel {title!r}: {expr!r}: {r.text[:300]}"
    # The alert rules loaded and evaluate without errors.
    names = {r["alert"] for g in yaml.safe_load(ALERTS_YML.read_text())["groups"]
             for r in g["rules"]}
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        groups = prometheus.get("/rules").json()["data"]["groups"]
        rules = {r["name"]: r for g in groups for r in g["rules"]}
        evaluated = {n for n, r in rules.items() if r.get("lastEvaluation", "").startswith("2")
                     and not r["lastEvaluation"].startswith("0001")}
        if names <= evaluated or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert set(rules) == names
    bad = {n: r.get("lastError") for n, r in rules.items() if r.get("health") == "err"}
    assert not bad, bad
    assert names <= evaluated, f"rules never evaluated: {names - evaluated}"
    assert not re.search(r"level=error", prometheus.output())  # type: ignore[attr-defined]
