"""docker-compose.yml: valid, and wired to the image, Prometheus and Grafana."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from urllib.parse import urlparse

import yaml

from tests.conftest import ROOT
from tests.deploy.files import (
    COMPOSE,
    DASHBOARD,
    GRAFANA,
    PROMETHEUS_YML,
    compose,
    docker_env,
    tool,
)


def test_docker_compose_config_is_valid():
    exe = tool("docker-compose", "apt-get install docker-compose: `make test-tools`")
    result = subprocess.run([exe, "-f", str(COMPOSE), "config", "--quiet"], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    # ...and the tool does reject a broken file.
    broken = COMPOSE.read_text().replace("stop_grace_period:", "stop_grace_periode:")
    bad = subprocess.run([exe, "-f", "-", "config", "--quiet"], cwd=ROOT, input=broken,
                         capture_output=True, text=True)
    assert bad.returncode != 0


def _mounts(service: str) -> dict[str, tuple[str, str]]:
    """container path -> (host path or volume, mode)"""
    out = {}
    for spec in compose()["services"][service].get("volumes", []):
        parts = spec.split(":")
        out[parts[1]] = (parts[0], parts[2] if len(parts) > 2 else "rw")
    return out


def test_compose_wiring():
    services = compose()["services"]
    svc = services["modelserve"]
    assert svc["build"] in (".", {"context": "."}, {"context": ".", "dockerfile": "Dockerfile"})
    assert svc["restart"] == "unless-stopped"
    # The models mount lands where the image's repository is, read-only.
    repo = docker_env()["MODELSERVE_REPOSITORY"]
    assert _mounts("modelserve")[repo] == ("./models", "ro")
    for name, s in services.items():
        image = s["image"]
        assert ":" in image and not image.endswith(":latest"), f"{name}: pin the image tag"
    # Prometheus reads deploy/prometheus.
    prom = services["prometheus"]
    config = next(a.split("=", 1)[1] for a in prom["command"] if a.startswith("--config.file="))
    folder, mode = _mounts("prometheus")[str(Path(config).parent)]
    assert (ROOT / folder / Path(config).name).resolve() == PROMETHEUS_YML and mode == "ro"
    # Grafana: provisioning folder, and the dashboards where the provider looks.
    mounts = _mounts("grafana")
    assert (ROOT / mounts["/etc/grafana/provisioning"][0]).resolve() == GRAFANA / "provisioning"
    provider = yaml.safe_load((GRAFANA / "provisioning/dashboards/modelserve.yml").read_text())
    path = provider["providers"][0]["options"]["path"]
    assert (ROOT / mounts[path][0]).resolve() == DASHBOARD.parent
    datasource = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yml")
                                .read_text())["datasources"][0]
    url = urlparse(datasource["url"])
    assert url.hostname == "prometheus" and url.port == 9090
    assert any("9090" in str(p) for p in prom["ports"])
    # Every panel and query uses the provisioned datasource.
    dashboard = json.loads(DASHBOARD.read_text())
    for panel in dashboard["panels"]:
        for ds in [panel.get("datasource")] + [t.get("datasource") for t in
                                                panel.get("targets", [])]:
            if ds is not None:
                assert ds["uid"] == datasource["uid"], panel["title"]
