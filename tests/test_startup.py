"""What a server process does first to be ready sooner (service/startup.py): the garbage
collector paused until the models are loaded, pydantic.v1 kept out."""

from __future__ import annotations

import gc
import json
import re
import subprocess
import sys

import pytest
from pydantic import BaseModel

from service import startup

from .conftest import ROOT


@pytest.fixture
def collector_state():
    """The test process's collector as it was, whatever a test does to it."""
    enabled = gc.isenabled()
    v1 = sys.modules.get("pydantic.v1", "absent")
    defer = BaseModel.model_config.get("defer_build")
    yield
    startup._began_at, startup._gc_paused = None, False
    if defer is None:
        BaseModel.model_config.pop("defer_build", None)
    else:
        BaseModel.model_config["defer_build"] = defer
    gc.unfreeze()
    if enabled:
        gc.enable()
    else:
        gc.disable()
    if v1 == "absent":
        sys.modules.pop("pydantic.v1", None)
    else:
        sys.modules["pydantic.v1"] = v1


def test_the_real_server_resumes_collection_once_its_models_are_loaded(server, client):
    assert client.get("/v2/health/ready").status_code == 200
    lines = [line for line in server.log_text().splitlines()
             if "garbage collection resumed" in line]
    # Once per process: paused by the entry point, resumed after the initial load.
    assert len(lines) == 1, server.output()
    frozen = int(re.search(r"(\d+) objects built during start-up frozen", lines[0]).group(1))
    assert frozen > 10_000  # classes, schemas, routes and models: what start-up built


def test_finished_freezes_and_reenables_what_begin_turned_off(collector_state):
    gc.enable()
    before = gc.get_freeze_count()
    startup.begin()
    assert not gc.isenabled()
    assert BaseModel.model_config["defer_build"] is True
    startup.begin()  # a second entry point on the way (cli, then server.main)
    startup.finished()
    assert gc.isenabled()
    assert BaseModel.model_config["defer_build"] is False
    assert gc.get_freeze_count() > before
    frozen = gc.get_freeze_count()
    startup.finished()  # once only
    assert gc.get_freeze_count() == frozen


def test_finished_leaves_a_collector_it_did_not_pause_as_it_was(collector_state):
    before = gc.get_freeze_count()
    gc.disable()  # an embedding application's choice
    startup.begin()
    startup.finished()
    assert not gc.isenabled()
    assert BaseModel.model_config["defer_build"] is False
    gc.enable()
    startup.finished()  # without begin (create_app in a test process): nothing
    assert gc.isenabled()
    assert gc.get_freeze_count() == before


# Builds the app as the entry point does, serves a request on every GET route (FastAPI
# builds an included router's routes at their first request), then builds every model
# still deferred, and reports.
_SERVE_AS_THE_ENTRY_POINT_DOES = """
import json, sys, time, warnings
warnings.simplefilter("ignore")
from service import startup
startup.begin()
from fastapi.testclient import TestClient
from pydantic import BaseModel
from service.app import create_asgi
from service.settings import Settings

def models(cls=BaseModel):
    for sub in cls.__subclasses__():
        yield sub
        yield from models(sub)

app = create_asgi(Settings(repository=sys.argv[1], grpc_port=0, log_level="warning"))
with TestClient(app) as client:
    deadline = time.monotonic() + 120
    while client.get("/v2/health/ready").status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.05)
    deferred = sorted({f"{m.__module__}.{m.__qualname__}" for m in models()
                       if not m.__pydantic_complete__})
    paths = [p for p, ops in client.get("/openapi.json").json()["paths"].items()
             if "get" in ops and "{" not in p] + ["/ui", "/docs", "/healthz", "/nowhere"]
    statuses = {p: client.get(p).status_code for p in paths}
    metadata = client.get("/v2/models/wine-quality").status_code
broken = []
for m in models():
    if m.__module__.startswith(("service.", "fastapi.")):
        try:
            m.model_rebuild(raise_errors=True)
        except Exception as exc:
            broken.append(f"{m.__qualname__}: {exc}")
print(json.dumps({"statuses": statuses, "metadata": metadata, "deferred": deferred,
                  "broken": broken, "v1": repr(sys.modules.get("pydantic.v1", "absent"))}))
"""


def test_the_app_serves_as_the_entry_point_starts_it():
    """Models built at first use, pydantic.v1 kept out: every GET route answers, and
    every model left unbuilt at readiness builds."""
    out = subprocess.run([sys.executable, "-c", _SERVE_AS_THE_ENTRY_POINT_DOES,
                          str(ROOT / "models")],
                         capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["v1"] == "None"  # still kept out: never imported on the way
    assert got["metadata"] == 200
    codes = got["statuses"]
    assert codes.pop("/nowhere") == 404
    assert codes and all(code < 400 for code in codes.values()), codes
    # Deferred until first use, then built: FastAPI's OpenAPI models among them.
    assert "fastapi.openapi.models.OpenAPI" in got["deferred"], got["deferred"]
    assert got["broken"] == []
