"""deploy/k8s/ played with `podman kube play`: the Deployment and the Service (what podman
supports; the HPA and the PodDisruptionBudget have no podman equivalent and stay checked
statically by tests/deploy/), its probes' paths answering on the port they name.

Rendered for this machine: the image is the one just built (kustomization.yaml's tag kept),
one replica, the service's ports moved to free ones (the env variables and containerPorts
together, so the probes' named ports follow). The pod is on podman's bridge network, which
publishes every containerPort on the host at the same number (`--network host` refuses
port mappings).

What podman 4.3 does not do as Kubernetes would, and so is not checked here: the probes
(it turns the livenessProbe into a `curl` healthcheck on port 0, named ports unresolved,
and the image has no curl), and terminationGracePeriodSeconds (its containers get podman's
10 s stop timeout: the test stops the pod with the manifest's grace period itself)."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import tritonclient.grpc as tgrpc
import yaml

from tests.containers.conftest import wait_ready
from tests.containers.podman import (
    IMAGE,
    START_DEADLINE_S,
    Container,
    eventually,
    free_port,
    podman,
)
from tests.deploy.files import K8S, env_of, quantity

PROBES = ("startupProbe", "readinessProbe", "livenessProbe")
KUBE_NETWORK = "podman-default-kube-network"


@dataclass
class Pod:
    container: Container
    spec: dict  # the rendered container spec
    ports: dict[str, int]  # containerPorts by name, as rendered
    grace_s: int  # terminationGracePeriodSeconds


def _documents(name: str) -> list[dict]:
    return [d for d in yaml.safe_load_all((K8S / name).read_text()) if d]


def _render(folder: Path) -> tuple[Path, dict, dict[str, int], int]:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert {"deployment.yaml", "service.yaml"} <= set(kustomization["resources"])
    (deployment,) = _documents("deployment.yaml")
    (service,) = _documents("service.yaml")
    deployment = copy.deepcopy(deployment)
    deployment["spec"]["replicas"] = 1
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    (image,) = kustomization["images"]
    assert container["image"] == f"{image['name']}:{image['newTag']}"
    assert IMAGE.endswith(":" + image["newTag"]), (IMAGE, image)
    container["image"] = IMAGE
    env = env_of(container)
    moved = {"http": "MODELSERVE_PORT", "grpc": "MODELSERVE_GRPC_PORT"}
    ports = {}
    for port in container["ports"]:
        old = port["containerPort"]
        assert env[moved[port["name"]]] == str(old), (port, env)
        port["containerPort"] = ports[port["name"]] = free_port()
    for item in container["env"]:
        for name, var in moved.items():
            if item["name"] == var:
                item["value"] = str(ports[name])
    path = folder / "modelserve-k8s.yaml"
    path.write_text(yaml.safe_dump_all([deployment, service], sort_keys=False))
    return path, container, ports, deployment["spec"]["template"]["spec"][
        "terminationGracePeriodSeconds"]


@pytest.fixture(scope="module")
def pod(tmp_path_factory) -> Iterator[Pod]:
    rendered, spec, ports, grace_s = _render(tmp_path_factory.mktemp("kube"))
    labels = _documents("deployment.yaml")[0]["spec"]["template"]["metadata"]["labels"]
    # kube play's network, made on first use: removed after if this test made it.
    made_network = podman("network", "exists", KUBE_NETWORK, check=False).returncode != 0
    try:
        podman("kube", "play", "--replace", str(rendered), timeout=START_DEADLINE_S)
        found = json.loads(podman("ps", "--all", "--format", "json").stdout)
        names = [c["Names"][0] for c in found if not c.get("IsInfra")
                 and labels.items() <= (c.get("Labels") or {}).items()
                 and c["Names"][0].endswith("-" + spec["name"])]
        assert len(names) == 1, f"one container for {spec['name']}: {found}"
        container = Container(names[0])
        wait_ready(f"http://127.0.0.1:{ports['http']}", container)
        yield Pod(container, spec, ports, grace_s)
    finally:
        podman("kube", "down", str(rendered), check=False, timeout=300)
        if made_network:
            podman("network", "rm", KUBE_NETWORK, check=False)


@pytest.mark.parametrize("probe", PROBES)
def test_the_probes_paths_answer_on_their_port(pod, probe):
    get = pod.spec[probe]["httpGet"]
    port = pod.ports[get["port"]] if isinstance(get["port"], str) else get["port"]
    r = httpx.get(f"http://127.0.0.1:{port}{get['path']}", timeout=pod.spec[probe].get(
        "timeoutSeconds", 2) + 10)
    assert r.status_code == 200, r.text


def test_the_grpc_port_answers(pod):
    client = tgrpc.InferenceServerClient(f"127.0.0.1:{pod.ports['grpc']}")
    try:
        eventually(client.is_server_ready, "gRPC ready")
        assert client.is_model_ready("wine-quality")
    finally:
        client.close()


def test_the_pod_runs_with_the_manifests_security_and_limits(pod):
    info = pod.container.inspect()
    security = pod.spec["securityContext"]
    assert info["HostConfig"]["ReadonlyRootfs"] is security["readOnlyRootFilesystem"] is True
    assert info["Config"]["User"].split(":")[0] == "10001"
    assert info["HostConfig"]["Memory"] == quantity(pod.spec["resources"]["limits"]["memory"])
    assert any(m["Destination"] == "/tmp" for m in info["Mounts"]) \
        or "/tmp" in (info["HostConfig"].get("Tmpfs") or {}), info["Mounts"]
    r = podman("exec", pod.container.name, "touch", "/tmp/written", check=False)
    assert r.returncode == 0, r.stderr


def test_stopping_the_pod_drains_and_exits_0(pod):
    """Last: stops the pod, with the manifest's grace period."""
    pod_id = pod.container.inspect()["Pod"]
    podman("pod", "stop", "--time", str(pod.grace_s), pod_id, timeout=pod.grace_s + 60)
    state = pod.container.inspect()["State"]
    assert state["ExitCode"] == 0 and not state["OOMKilled"], pod.container.tail()
    assert "SIGTERM received: draining" in pod.container.logs()
