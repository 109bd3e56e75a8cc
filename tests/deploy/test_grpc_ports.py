"""The deployment files publish the KServe V2 gRPC port (MODELSERVE_GRPC_PORT, 8001) beside
the HTTP port: Dockerfile, docker-compose.yml, the Kubernetes Deployment and Service, and the
KServe InferenceService (where the port's name, h2c, is what tells KServe it is HTTP/2)."""

import shlex
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
GRPC_PORT = 8001
HTTP_PORT = 8000


def _dockerfile_final_stage() -> list[tuple[str, str]]:
    """(instruction, arguments) of the runtime stage, continuation lines joined."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    instructions = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, args = line.partition(" ")
            instructions.append((word.upper(), args.strip()))
    last_from = max(i for i, (word, _) in enumerate(instructions) if word == "FROM")
    return instructions[last_from:]


def _dockerfile_env() -> dict[str, str]:
    env = {}
    for word, args in _dockerfile_final_stage():
        if word == "ENV":
            env.update(item.split("=", 1) for item in shlex.split(args))
    return env


def _k8s(path: str, kind: str) -> dict:
    docs = [d for d in yaml.safe_load_all((ROOT / path).read_text()) if d]
    [doc] = [d for d in docs if d["kind"] == kind]
    return doc


def _env(container: dict) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env", [])}


def test_dockerfile_exposes_and_sets_the_grpc_port():
    exposed = [p for word, args in _dockerfile_final_stage() if word == "EXPOSE"
               for p in args.split()]
    assert str(GRPC_PORT) in exposed and str(HTTP_PORT) in exposed, exposed
    assert _dockerfile_env().get("MODELSERVE_GRPC_PORT") == str(GRPC_PORT)


def test_compose_publishes_the_grpc_port():
    service = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["modelserve"]
    env = {k: str(v) for k, v in service["environment"].items()}
    assert env.get("MODELSERVE_GRPC_PORT") == str(GRPC_PORT)
    container_ports = [str(p).split(":")[-1].split("/")[0] for p in service["ports"]]
    assert str(GRPC_PORT) in container_ports, service["ports"]


def test_kubernetes_deployment_and_service_carry_grpc():
    deployment = _k8s("deploy/k8s/deployment.yaml", "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    named = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert named.get("grpc") == GRPC_PORT, named
    assert named.get("http") == HTTP_PORT, named
    assert _env(container).get("MODELSERVE_GRPC_PORT") == str(GRPC_PORT)

    service = _k8s("deploy/k8s/service.yaml", "Service")
    [grpc] = [p for p in service["spec"]["ports"] if p["name"] == "grpc"]
    assert grpc["port"] == GRPC_PORT
    assert named.get(grpc["targetPort"], grpc["targetPort"]) == GRPC_PORT
    assert grpc["appProtocol"] == "grpc"
    # The HTTP port stays the first one: what a bare `kubectl port-forward svc/...` picks.
    assert service["spec"]["ports"][0]["name"] == "http"


def test_kserve_predictor_declares_h2c_after_http1():
    isvc = _k8s("deploy/k8s/kserve/inferenceservice.yaml", "InferenceService")
    container = isvc["spec"]["predictor"]["containers"][0]
    ports = [(p["name"], p["containerPort"]) for p in container["ports"]]
    # RawDeployment maps the first port to the predictor Service's port 80 and publishes
    # the others as themselves: REST first, gRPC as h2c.
    assert ports == [("http1", HTTP_PORT), ("h2c", GRPC_PORT)], ports
    assert _env(container).get("MODELSERVE_GRPC_PORT") == str(GRPC_PORT)
    annotations = isvc["metadata"]["annotations"]
    assert annotations.get("serving.kserve.io/deploymentMode") == "RawDeployment", \
        "Serverless (Knative) allows one container port only"
