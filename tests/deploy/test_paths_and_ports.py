"""Probes and scrapes hit paths the service serves, healthchecks work, ports agree,
resources fit the measured memory."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

from tests.conftest import _free_port
from tests.deploy.files import (
    PROMETHEUS_YML,
    compose,
    compose_env,
    docker_env,
    docker_exec,
    env_of,
    k8s,
    pod_specs,
    quantity,
)


def _probe_paths() -> dict[str, str]:
    """Every HTTP path something outside the service calls: where → path."""
    paths = {}
    url = re.search(r"'http://[^']*?(/[^']*)'", docker_exec("HEALTHCHECK")[-1])
    assert url, "HEALTHCHECK has no URL"
    paths["Dockerfile HEALTHCHECK"] = url.group(1)
    test = compose()["services"]["modelserve"]["healthcheck"]["test"]
    url = re.search(r"'http://[^']*?(/[^']*)'", test[-1])
    assert url, "compose healthcheck has no URL"
    paths["compose healthcheck"] = url.group(1)
    for kind, spec in pod_specs().items():
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            paths[f"{kind} {probe}"] = spec["containers"][0][probe]["httpGet"]["path"]
    deployment = k8s("Deployment")
    paths["Deployment prometheus.io/path"] = \
        deployment["spec"]["template"]["metadata"]["annotations"]["prometheus.io/path"]
    paths["InferenceService prometheus.kserve.io/path"] = \
        k8s("InferenceService")["metadata"]["annotations"]["prometheus.kserve.io/path"]
    paths["prometheus.yml metrics_path"] = \
        yaml.safe_load(PROMETHEUS_YML.read_text())["scrape_configs"][0]["metrics_path"]
    return paths


def test_probe_and_scrape_paths_are_routes_of_the_app(tmp_path):
    from starlette.routing import Match

    from service.app import create_app
    from service.settings import Settings

    app = create_app(Settings(repository=tmp_path))

    def served(path: str) -> bool:
        scope = {"type": "http", "method": "GET", "path": path, "root_path": "",
                 "path_params": {}, "headers": [], "query_string": b""}
        return any(route.matches(scope)[0] is Match.FULL for route in app.routes)

    assert not served("/no/such/path")
    for where, path in _probe_paths().items():
        assert served(path), f"{where} calls GET {path}, which the service does not serve"
    # Readiness where it matters (the load balancer), liveness only for liveness.
    for kind, spec in pod_specs().items():
        c = spec["containers"][0]
        assert c["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready", kind
        assert c["startupProbe"]["httpGet"]["path"] == "/v2/health/ready", kind
        assert c["livenessProbe"]["httpGet"]["path"] == "/v2/health/live", kind


def test_probe_and_scrape_paths_answer_200_on_the_real_service(client):
    for where, path in _probe_paths().items():
        r = client.get(path)
        assert r.status_code == 200, f"{where}: GET {path} -> {r.status_code} {r.text[:200]}"


def _healthcheck_argv(argv: list[str]) -> list[str]:
    assert argv[0] == "/opt/venv/bin/python" and argv[1] == "-c"
    return [sys.executable, *argv[1:]]


def test_healthcheck_commands_pass_when_ready_and_fail_otherwise(server):
    compose_test = compose()["services"]["modelserve"]["healthcheck"]["test"]
    assert compose_test[0] == "CMD", "exec form: the slim image has no curl, use python"
    assert compose_test[1:] == docker_exec("HEALTHCHECK"), "compose and image healthchecks differ"
    argv = _healthcheck_argv(docker_exec("HEALTHCHECK"))
    ok = subprocess.run(argv, env={**os.environ, "MODELSERVE_PORT": str(server.port)},
                        capture_output=True, text=True, timeout=30)
    assert ok.returncode == 0, ok.stderr
    down = subprocess.run(argv, env={**os.environ, "MODELSERVE_PORT": str(_free_port())},
                          capture_output=True, text=True, timeout=30)
    assert down.returncode != 0


def test_ports_agree_everywhere():
    port = int(docker_env()["MODELSERVE_PORT"])
    grpc_port = int(docker_env()["MODELSERVE_GRPC_PORT"])  # tests/deploy/test_grpc_ports.py
    # compose: published port maps to the container port
    ports = [str(p) for p in compose()["services"]["modelserve"]["ports"]]
    assert any(p.split(":")[-1].split("/")[0] == str(port) for p in ports), ports
    assert compose_env().get("MODELSERVE_PORT", str(port)) == str(port)
    # Prometheus scrapes the compose service on that port.
    targets = yaml.safe_load(PROMETHEUS_YML.read_text())["scrape_configs"][0][
        "static_configs"][0]["targets"]
    assert targets == [f"modelserve:{port}"], targets
    assert "modelserve" in compose()["services"]
    # Kubernetes: container port, env, Service target, scrape annotations.
    deployment = k8s("Deployment")
    pod = deployment["spec"]["template"]
    container = pod["spec"]["containers"][0]
    named = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert list(named.values()) == [port, grpc_port]
    assert env_of(container).get("MODELSERVE_PORT", str(port)) == str(port)
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == str(port)
    service = k8s("Service")
    target = service["spec"]["ports"][0]["targetPort"]
    assert named.get(target, target) == port
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        p = container[probe]["httpGet"]["port"]
        assert named.get(p, p) == port, probe
    isvc = k8s("InferenceService")
    kc = isvc["spec"]["predictor"]["containers"][0]
    assert [p["containerPort"] for p in kc["ports"]] == [port, grpc_port]
    assert isvc["metadata"]["annotations"]["prometheus.kserve.io/port"] == str(port)


def test_container_resources_fit_the_measured_memory(server):
    """Requests and limits against the RSS of a real server with every committed model
    (the session's server): the limit leaves headroom, the request is about the usage."""
    rss_kib = next(int(line.split()[1]) for line in
                   Path(f"/proc/{server.proc.pid}/status").read_text().splitlines()
                   if line.startswith("VmRSS:"))
    rss = rss_kib * 1024
    for kind, spec in pod_specs().items():
        res = spec["containers"][0]["resources"]
        req, lim = res["requests"], res["limits"]
        assert quantity(req["memory"]) <= quantity(lim["memory"]), kind
        assert quantity(req["cpu"]) <= quantity(lim["cpu"]), kind
        assert quantity(lim["memory"]) >= 1.25 * rss, \
            f"{kind}: memory limit {lim['memory']} vs measured RSS {rss / 2**20:.0f} MiB"
        assert quantity(req["memory"]) >= 0.9 * rss, \
            f"{kind}: memory request {req['memory']} vs measured RSS {rss / 2**20:.0f} MiB"
    limit = compose()["services"]["modelserve"]["mem_limit"]
    assert quantity(limit.replace("m", "Mi").replace("g", "Gi")) >= 1.25 * rss
