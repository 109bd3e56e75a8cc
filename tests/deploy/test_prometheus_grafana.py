"""promtool accepts the Prometheus config and alerts; the dashboard and alerts use
only the service's metrics and cover what operators watch."""

from __future__ import annotations

import json
import re
import subprocess

import yaml

from tests.deploy.files import (
    ALERTS_YML,
    DASHBOARD,
    DRIFT_ONLY,
    METRICS,
    MULTIPROCESS_ONLY,
    PROMETHEUS_YML,
    tool,
)
from tests.deploy.promql import base_metric, promql_metrics


def test_promtool_checks_the_prometheus_config_and_alerts():
    promtool = tool("promtool", "apt-get install prometheus: `make test-tools`")
    result = subprocess.run([promtool, "check", "config", str(PROMETHEUS_YML)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "alerts.yml" in result.stdout + result.stderr



def dashboard_exprs() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [(p["title"], t["expr"]) for p in dashboard["panels"] for t in p.get("targets", [])]
    for var in dashboard.get("templating", {}).get("list", []):
        query = var.get("query")
        exprs.append((f"variable {var['name']}", query["query"] if isinstance(query, dict)
                      else query))
    return exprs


def alert_exprs() -> list[tuple[str, str]]:
    rules = yaml.safe_load(ALERTS_YML.read_text())
    return [(r["alert"], r["expr"]) for g in rules["groups"] for r in g["rules"]]


def test_promql_metric_extraction():
    assert promql_metrics('histogram_quantile(0.99, sum by (le, model) (rate('
                          'modelserve_inference_request_duration_seconds_bucket'
                          '{model=~"$model", status=~"5.."}[$__rate_interval])))') == \
        {"modelserve_inference_request_duration_seconds_bucket"}
    assert promql_metrics("a_total / on (x) b_total > 1e3") == {"a_total", "b_total"}


def test_dashboard_and_alerts_use_only_the_services_metrics():
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"] and dashboard["panels"]
    used = set()
    for where, expr in dashboard_exprs() + alert_exprs():
        names = promql_metrics(expr)
        assert names, f"{where}: no metric in {expr!r}"
        for name in names:
            if name == "up":  # Prometheus's own per-target metric
                continue
            base = base_metric(name)
            assert base, f"{where}: {name} is not a metric of the service ({expr!r})"
            used.add(base)
    assert not set(METRICS) - used, f"metrics no panel or alert shows: {set(METRICS) - used}"


def test_dashboard_panels_cover_what_operators_watch():
    titles = " | ".join(p["title"].lower() for p in json.loads(DASHBOARD.read_text())["panels"])
    for topic in ("requests / s", "error ratio", "end to end", "queue wait", "compute",
                  "rows per model call", "queue depth", "state", "load time", "memory",
                  "feature psi", "out of the training range", "prediction drift",
                  "feedback scores", "joined", "payload log", "payload sink"):
        assert topic in titles, f"no panel about {topic!r}: {titles}"


def test_dashboard_panels_have_unique_ids_one_datasource_and_do_not_overlap():
    dashboard = json.loads(DASHBOARD.read_text())
    panels = dashboard["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), f"duplicate panel ids: {sorted(ids)}"
    datasource = dashboard["templating"]["list"][0]["datasource"]
    cells: dict[tuple[int, int], str] = {}
    for p in panels:
        for source in [p.get("datasource")] + [t.get("datasource") for t in p.get("targets", [])]:
            assert source in (None, datasource), f"{p['title']}: datasource {source}"
        box = p["gridPos"]
        assert box["x"] >= 0 and box["x"] + box["w"] <= 24, f"{p['title']}: {box}"
        for x in range(box["x"], box["x"] + box["w"]):
            for y in range(box["y"], box["y"] + box["h"]):
                assert (x, y) not in cells, f"{p['title']} overlaps {cells[x, y]}"
                cells[x, y] = p["title"]


def test_dashboard_metrics_are_in_the_real_metrics_response(client):
    client.post("/v1/models/housing:predict",
                json={"instances": [[8.3252, 41, 6.984, 1.024, 322, 2.556, 37.88, -122.23]]})
    r = client.get("/metrics")
    assert r.status_code == 200, r.text[:300]
    types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", r.text, re.M))
    for name, kind in METRICS.items():
        if name in MULTIPROCESS_ONLY or (name in DRIFT_ONLY and name not in types):
            continue
        assert name in types, f"{name} is not in GET /metrics"
        assert types[name] == kind, f"{name} is a {types[name]}, expected {kind}"
