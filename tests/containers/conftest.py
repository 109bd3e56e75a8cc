"""The image run for real with podman: collected only by `make test-containers`
(tests/containers/run.sh sets MODELSERVE_CONTAINER_TESTS=1 after building the images), so
plain `make test` neither runs nor skips them.

One session fixture runs the service's container the way docker-compose.yml does, with two
workers, on free ports of the host's network, its models a read-only copy of models/. The
facts measured on the way (memory) are printed at the end and added to
build/containers.json beside the image's size."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import MODELS, ROOT
from tests.containers.podman import (
    START_DEADLINE_S,
    Container,
    compose_run_args,
    copy_models,
    eventually,
    free_port,
)

if not os.environ.get("MODELSERVE_CONTAINER_TESTS"):
    collect_ignore_glob = ["test_*.py"]

FACTS_FILE = ROOT / "build" / "containers.json"
FACTS: dict[str, object] = {}
NOTES: list[str] = []


@dataclass
class Service:
    container: Container
    url: str
    grpc_target: str
    repository: Path


def wait_ready(url: str, container: Container, timeout: float = START_DEADLINE_S) -> None:
    def ready() -> bool:
        if not container.running():
            raise AssertionError(f"{container.name} exited:\n{container.tail()}")
        try:
            return httpx.get(url + "/v2/health/ready", timeout=5).status_code == 200
        except httpx.TransportError:
            return False

    eventually(ready, f"{container.name} ready", timeout, container.tail)


@pytest.fixture(scope="session")
def service(tmp_path_factory) -> Iterator[Service]:
    repository = copy_models(MODELS, tmp_path_factory.mktemp("service") / "models")
    port, grpc_port = free_port(), free_port()
    container = Container.run(f"modelserve-test-{port}", [
        *compose_run_args(), "--network", "host",
        "-e", "MODELSERVE_WORKERS=2",
        "-e", f"MODELSERVE_PORT={port}", "-e", f"MODELSERVE_GRPC_PORT={grpc_port}",
        "-v", f"{repository}:/opt/modelserve/models:ro"])
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ready(url, container)
        yield Service(container, url, f"127.0.0.1:{grpc_port}", repository)
    finally:
        container.remove()


@pytest.fixture(scope="session")
def client(service) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=service.url, timeout=60) as c:
        yield c


def pytest_terminal_summary(terminalreporter) -> None:
    if not FACTS and not NOTES:
        return
    terminalreporter.section("containers")
    for note in NOTES:
        terminalreporter.write_line(note)
    for key, value in FACTS.items():
        terminalreporter.write_line(f"{key}: {value}")
    if FACTS:
        facts = json.loads(FACTS_FILE.read_text()) if FACTS_FILE.is_file() else {}
        FACTS_FILE.parent.mkdir(exist_ok=True)
        FACTS_FILE.write_text(json.dumps({**facts, **FACTS}, indent=2) + "\n")
