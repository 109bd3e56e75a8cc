"""The deployment files' locations, the service's facts they must agree with, and
parsers for them (Dockerfile instructions, compose, Kubernetes documents, durations and
quantities)."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import sys
from functools import cache
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT

DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
COMPOSE = ROOT / "docker-compose.yml"
DEPLOY = ROOT / "deploy"
PROMETHEUS_YML = DEPLOY / "prometheus" / "prometheus.yml"
ALERTS_YML = DEPLOY / "prometheus" / "alerts.yml"
GRAFANA = DEPLOY / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "modelserve.json"
K8S = DEPLOY / "k8s"
ISVC = K8S / "kserve" / "inferenceservice.yaml"

# The service's metrics (service/observability/metrics.py), by type. The dashboard and the
# alerts may use these and nothing else (plus Prometheus's own `up`).
METRICS = {
    "modelserve_inference_requests_total": "counter",
    "modelserve_inference_request_duration_seconds": "histogram",
    "modelserve_inference_queue_duration_seconds": "histogram",
    "modelserve_inference_compute_duration_seconds": "histogram",
    "modelserve_inference_batch_rows": "histogram",
    "modelserve_inference_rows_total": "counter",
    "modelserve_inference_executions_total": "counter",
    "modelserve_queue_rows": "gauge",
    "modelserve_model_load_duration_seconds": "gauge",
    "modelserve_model_state": "gauge",
    "modelserve_http_requests_total": "counter",
    "process_resident_memory_bytes": "gauge",
    # Several workers only (MODELSERVE_WORKERS > 1), where process_* is not available.
    "modelserve_worker_resident_memory_bytes": "gauge",
    # Evidence on versions (issue 15): payload log, ground-truth feedback, input drift.
    "modelserve_payload_log_records_total": "counter",
    "modelserve_payload_sink_events_total": "counter",
    "modelserve_feedback_items_total": "counter",
    "modelserve_shadow_requests_total": "counter",
    "modelserve_shadow_rows_total": "counter",
    "modelserve_feedback_joined": "gauge",
    "modelserve_feedback_score": "gauge",
    "modelserve_drift_window_rows": "gauge",
    "modelserve_drift_feature_psi": "gauge",
    "modelserve_drift_out_of_range_ratio": "gauge",
    "modelserve_drift_prediction_psi": "gauge",
}
MULTIPROCESS_ONLY = {"modelserve_worker_resident_memory_bytes"}
# Served only while some model has drift on: a server without one may leave them out.
DRIFT_ONLY = {"modelserve_drift_window_rows", "modelserve_drift_feature_psi",
              "modelserve_drift_out_of_range_ratio", "modelserve_drift_prediction_psi"}

# Documented defaults of the drain settings, used where a file does not set them.
DRAIN_DEFAULTS = {"MODELSERVE_SHUTDOWN_DELAY_S": 0.0, "MODELSERVE_SHUTDOWN_GRACE_S": 30.0}

K8S_VERSIONS = ["1.28", "1.37"]  # the oldest we claim, and kubernetes-validate's newest



# --- parsing helpers -------------------------------------------------------------------


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    out, pending = [], ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    assert not pending, "Dockerfile ends in a continuation line"
    return out


def final_stage() -> list[tuple[str, str]]:
    instructions = dockerfile()
    last_from = max(i for i, (word, _) in enumerate(instructions) if word == "FROM")
    return instructions[last_from:]


def docker_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for word, args in final_stage():
        if word == "ENV":
            for item in shlex.split(args):
                key, _, val = item.partition("=")
                env[key] = val
    return env


def docker_exec(word: str) -> list[str]:
    """An exec-form (JSON array) instruction of the final stage."""
    found = [args for w, args in final_stage() if w == word]
    assert len(found) == 1, f"expected one {word} in the final stage, found {len(found)}"
    args = found[0]
    if word == "HEALTHCHECK":
        args = args[args.index("CMD ") + 4:]
    value = json.loads(args)  # shell form would not be JSON
    assert isinstance(value, list) and all(isinstance(v, str) for v in value)
    return value


def docker_run_commands(stage_index: int = 0) -> list[str]:
    """Every shell command of the RUN instructions of one stage, split at &&."""
    stages: list[list[tuple[str, str]]] = []
    for word, args in dockerfile():
        if word == "FROM":
            stages.append([])
        elif stages:
            stages[-1].append((word, args))
    return [" ".join(part.split()) for word, args in stages[stage_index] if word == "RUN"
            for part in args.split("&&")]


@cache
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def compose_env(service: str = "modelserve") -> dict[str, str]:
    env = compose()["services"][service].get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def k8s_documents() -> list[tuple[Path, dict]]:
    docs = []
    for path in sorted(K8S.rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                docs.append((path, doc))
    return docs


def k8s(kind: str) -> dict:
    found = [doc for _, doc in k8s_documents() if doc["kind"] == kind]
    assert len(found) == 1, f"expected one {kind} in deploy/k8s, found {len(found)}"
    return found[0]


def pod_specs() -> dict[str, dict]:
    """The pod specs that run the service: the Deployment's and the KServe predictor's
    (whose PodSpec fields sit inline in spec.predictor)."""
    return {"Deployment": k8s("Deployment")["spec"]["template"]["spec"],
            "InferenceService": k8s("InferenceService")["spec"]["predictor"]}


def env_of(container: dict) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env", [])}


def duration_s(value: str | int | float) -> float:
    """Compose durations: 40s, 1m30s, 500ms."""
    if isinstance(value, int | float):
        return float(value)
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", value)
    assert parts and "".join(n + u for n, u in parts) == value, f"bad duration {value!r}"
    return sum(float(n) * units[u] for n, u in parts)


def quantity(value: str | int | float) -> float:
    """Kubernetes resource quantities: 1, 500m, 1Gi, 1536Mi, 1G."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(m|k|M|G|T|Ki|Mi|Gi|Ti)?", str(value))
    assert m, f"not a Kubernetes quantity: {value!r}"
    factor = {None: 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
              "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}[m.group(2)]
    return float(m.group(1)) * factor


def tool(name: str, install_hint: str) -> str:
    """Path of a command-line tool (the venv's bin first), or skip saying how to get it."""
    local = Path(sys.executable).parent / name
    path = str(local) if local.exists() else shutil.which(name)
    if not path:
        pytest.skip(f"{name} is not installed ({install_hint}); this check did not run")
    return path


def settings_fields() -> dict:
    from service.settings import ENV_PREFIX, Settings

    return {ENV_PREFIX + name.upper(): field for name, field in Settings.model_fields.items()}


def drain(env: dict[str, str]) -> tuple[float, float]:
    """(shutdown delay, shutdown grace) in seconds as a container with ``env`` runs."""
    fields = settings_fields()

    def get(key: str) -> float:
        if key in env:
            return float(env[key])
        if key in fields:
            return float(fields[key].default)
        return DRAIN_DEFAULTS[key]

    return get("MODELSERVE_SHUTDOWN_DELAY_S"), get("MODELSERVE_SHUTDOWN_GRACE_S")

