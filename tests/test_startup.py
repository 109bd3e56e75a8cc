"""What a server process does first to be ready sooner (service/startup.py): the garbage
collector paused until the models are loaded, models built at first use, pydantic.v1
kept out."""

from __future__ import annotations

import gc
import importlib
import json
import re
import subprocess
import sys
from collections.abc import Iterator

import pytest
from pydantic import BaseModel

from service import startup

from .conftest import ROOT, eventually


@pytest.fixture
def collector_state(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The test process's collector, pydantic default and allocator as they were,
    whatever a test does to them."""
    monkeypatch.setattr(startup, "_tune_malloc", lambda: None)
    enabled = gc.isenabled()
    v1 = sys.modules.get("pydantic.v1", "absent")
    defer = BaseModel.model_config.get("defer_build")
    yield
    if startup._timer is not None:
        startup._timer.cancel()
    startup._began_at, startup._gc_paused, startup._timer = None, False, None
    gc.unfreeze()
    if enabled:
        gc.enable()
    else:
        gc.disable()
    if v1 == "absent":
        sys.modules.pop("pydantic.v1", None)
    else:
        sys.modules["pydantic.v1"] = v1
    if defer is None:
        BaseModel.model_config.pop("defer_build", None)
    else:
        BaseModel.model_config["defer_build"] = defer


def test_the_real_server_resumes_collection_once_its_models_are_loaded(server, client):
    assert client.get("/v2/health/ready").status_code == 200
    # Readiness comes a moment before the line: wait for it.
    lines = eventually(lambda: [line for line in server.log_text().splitlines()
                                if "garbage collection resumed" in line], what=server.output)
    # Once per process: paused by the entry point, resumed after the initial load.
    assert len(lines) == 1, server.output()
    frozen = int(re.search(r"(\d+) objects built during start-up frozen", lines[0]).group(1))
    assert frozen > 10_000  # classes, schemas and routes: what start-up built


def test_begin_pauses_collection_and_defers_models_until_finished(collector_state):
    sys.modules.pop("pydantic.v1", None)  # as in a fresh server process
    gc.enable()
    before = gc.get_freeze_count()
    startup.begin()
    assert not gc.isenabled()
    assert BaseModel.model_config["defer_build"] is True
    assert sys.modules["pydantic.v1"] is None
    startup.begin()  # a second entry point on the way (cli, then server.main)
    startup.app_built()
    assert gc.get_freeze_count() > before  # what start-up built, frozen
    assert not gc.isenabled()  # until the models are loaded
    startup.finished()
    assert gc.isenabled()
    assert BaseModel.model_config["defer_build"] is False
    frozen = gc.get_freeze_count()
    startup.finished()  # once only
    assert gc.get_freeze_count() == frozen


def test_collection_resumes_even_if_loading_never_ends(collector_state, monkeypatch):
    monkeypatch.setattr(startup, "RESUME_AFTER_S", 0.2)
    gc.enable()
    startup.begin()
    startup.app_built()
    assert not gc.isenabled()
    eventually(gc.isenabled, what="the collector back on with the models still loading")
    startup.finished()  # the load ends later: nothing more
    assert gc.isenabled()


def test_finished_leaves_a_collector_it_did_not_pause_as_it_was(collector_state):
    before = gc.get_freeze_count()
    gc.disable()  # an embedding application's choice
    startup.begin()
    startup.app_built()
    startup.finished()
    assert not gc.isenabled()
    assert BaseModel.model_config["defer_build"] is False
    assert gc.get_freeze_count() == before
    gc.enable()
    startup.finished()  # without begin (create_app in a test process): nothing
    assert gc.isenabled()


def test_a_framework_load_lifts_the_pydantic_v1_block(collector_state):
    sys.modules.pop("pydantic.v1", None)  # as in a fresh server process
    startup.begin()
    with pytest.raises(ImportError):
        importlib.import_module("pydantic.v1")
    startup.allow_pydantic_v1()  # what service/runtimes does before a framework loads
    assert importlib.import_module("pydantic.v1").BaseModel is not None


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
