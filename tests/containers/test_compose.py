"""docker-compose.yml's service and Prometheus up together under podman-compose, Prometheus
scraping the service with the repository's deploy/prometheus/ files, checked through
Prometheus's HTTP API.

The override changes only what this machine needs: the host's network on free ports
(no bridge networking; the ports: lists are reset), the scrape target's host name
(`modelserve` resolves on a compose network only: a copy of prometheus.yml names
127.0.0.1 instead, everything else as committed, alerts.yml beside it), Prometheus's image
built from Debian's package (deploy/podman/prometheus.Dockerfile), and the models a
readable copy. Grafana's image cannot be had here: it is not started, and deploy/grafana/
stays checked statically by tests/deploy/."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

from tests.conftest import MODELS
from tests.containers.conftest import NOTES, wait_ready
from tests.containers.podman import (
    IMAGE,
    PROMETHEUS_IMAGE,
    START_DEADLINE_S,
    Container,
    compose_memory_limit,
    copy_models,
    eventually,
    free_port,
    podman,
)
from tests.deploy.files import COMPOSE, PROMETHEUS_YML, compose, tool


@dataclass
class Stack:
    url: str
    prometheus: str
    containers: dict[str, Container]


def _override(folder: Path, port: int, grpc_port: int, prometheus_port: int) -> Path:
    models = copy_models(MODELS, folder / "models")
    config = folder / "prometheus"
    shutil.copytree(PROMETHEUS_YML.parent, config)
    settings = yaml.safe_load(PROMETHEUS_YML.read_text())
    (job,) = settings["scrape_configs"]
    (static,) = job["static_configs"]
    assert static["targets"] == ["modelserve:8000"], "the committed target changed"
    static["targets"] = [f"127.0.0.1:{port}"]
    (config / "prometheus.yml").write_text(yaml.safe_dump(settings, sort_keys=False))
    config.chmod(0o755)
    command = [*compose()["services"]["prometheus"]["command"],
               f"--web.listen-address=127.0.0.1:{prometheus_port}"]
    env = {"MODELSERVE_PORT": str(port), "MODELSERVE_GRPC_PORT": str(grpc_port)}
    # JSON is YAML: only the !reset tags need YAML's own syntax.
    text = f"""services:
  modelserve:
    image: {json.dumps(IMAGE)}
    network_mode: host
    ports: !reset []
    environment: {json.dumps(env)}
    volumes: {json.dumps([f"{models}:/opt/modelserve/models:ro"])}
  prometheus:
    image: {json.dumps(PROMETHEUS_IMAGE)}
    network_mode: host
    ports: !reset []
    command: {json.dumps(command)}
    volumes: {json.dumps([f"{config}:/etc/prometheus:ro"])}
"""
    path = folder / "compose.override.yml"
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[Stack]:
    podman_compose = tool("podman-compose", "pip install podman-compose: the dev extra")
    folder = tmp_path_factory.mktemp("compose")
    port, grpc_port, prometheus_port = free_port(), free_port(), free_port()
    project = f"modelserve-test-{port}"
    base = [podman_compose, "--project-name", project, "--in-pod", "false",
            "-f", str(COMPOSE), "-f", str(_override(folder, port, grpc_port, prometheus_port))]

    def run(*args: str) -> subprocess.CompletedProcess:
        result = subprocess.run([*base, *args], capture_output=True, text=True,
                                timeout=START_DEADLINE_S)
        assert result.returncode == 0, (f"podman-compose {' '.join(args)}:\n"
                                        f"{result.stdout[-3000:]}{result.stderr[-3000:]}")
        return result

    NOTES.append("compose: Grafana not started (its image cannot be had here); "
                 "deploy/grafana/ is checked statically by tests/deploy/")
    try:
        run("up", "--detach", "--no-build", "modelserve", "prometheus")
        names = {s: json.loads(podman("ps", "--all", "--format", "json", "--filter",
                                      f"label=com.docker.compose.service={s}", "--filter",
                                      f"label=com.docker.compose.project={project}").stdout)
                 for s in ("modelserve", "prometheus")}
        containers = {s: Container(found[0]["Names"][0])
                      for s, found in names.items() if found}
        assert set(containers) == {"modelserve", "prometheus"}, names
        url = f"http://127.0.0.1:{port}"
        wait_ready(url, containers["modelserve"])
        yield Stack(url, f"http://127.0.0.1:{prometheus_port}", containers)
    finally:
        # podman-compose gives each container the service's stop_grace_period.
        subprocess.run([*base, "down", "--volumes"], capture_output=True, timeout=300)


def _query(stack: Stack, promql: str) -> list[dict]:
    r = httpx.get(stack.prometheus + "/api/v1/query", params={"query": promql}, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()["data"]["result"]


def test_the_service_runs_as_the_compose_file_says(stack):
    spec = compose()["services"]["modelserve"]
    info = stack.containers["modelserve"].inspect()
    assert info["HostConfig"]["ReadonlyRootfs"] is spec["read_only"] is True
    assert info["HostConfig"]["Memory"] == compose_memory_limit()
    assert "/tmp" in info["HostConfig"]["Tmpfs"]
    assert info["Config"]["User"] == "10001:10001"
    r = httpx.get(stack.url + "/v1/models/wine-quality", timeout=30)
    assert r.status_code == 200, r.text
    # The compose file's healthcheck, as podman-compose passed it on, reaches the service.
    eventually(lambda: stack.containers["modelserve"].healthcheck() == "healthy",
               "the compose healthcheck healthy", START_DEADLINE_S,
               lambda: podman("healthcheck", "run", stack.containers["modelserve"].name,
                              check=False).stderr)


def test_prometheus_scrapes_the_service_with_the_repositorys_config(stack):
    def up() -> list[dict]:
        return [s for s in _query(stack, 'up{job="modelserve"}') if s["value"][1] == "1"]

    # The scrape interval is the committed one (15 s): wait for the first scrapes.
    eventually(up, "Prometheus scraping the service (up == 1)", START_DEADLINE_S,
               lambda: httpx.get(stack.prometheus + "/api/v1/targets", timeout=30).text)
    series = eventually(lambda: _query(stack, 'modelserve_model_state{state="AVAILABLE"} == 1'),
                        "a modelserve_ series in Prometheus")
    assert {s["metric"]["model"] for s in series} >= {"wine-quality", "housing", "digits",
                                                     "auscultation"}
    # alerts.yml, beside the config, is loaded.
    r = httpx.get(stack.prometheus + "/api/v1/rules", timeout=30)
    rules = [rule["name"] for group in r.json()["data"]["groups"] for rule in group["rules"]]
    assert "ModelserveInputDrift" in rules, rules
