"""What a server process does to start quickly: the garbage collector paused from the
entry point until the models are loaded (service/collector.py)."""

from __future__ import annotations

import gc
import re

import pytest

from service import collector


@pytest.fixture
def collector_state():
    """The test process's collector as it was, whatever a test does to it."""
    enabled = gc.isenabled()
    yield
    collector._paused_at = None
    gc.unfreeze()
    if enabled:
        gc.enable()
    else:
        gc.disable()


def test_the_real_server_resumes_collection_once_its_models_are_loaded(server, client):
    assert client.get("/v2/health/ready").status_code == 200
    lines = [line for line in server.log_text().splitlines()
             if "garbage collection resumed" in line]
    # Once per process: paused by the entry point, resumed after the initial load.
    assert len(lines) == 1, server.output()
    frozen = int(re.search(r"(\d+) objects built during start-up frozen", lines[0]).group(1))
    assert frozen > 10_000  # classes, schemas, routes and models: what start-up built


def test_resume_freezes_and_reenables_what_pause_turned_off(collector_state):
    gc.enable()
    before = gc.get_freeze_count()
    collector.pause()
    assert not gc.isenabled()
    collector.pause()  # a second entry point on the way (cli, then server.main)
    collector.resume()
    assert gc.isenabled()
    assert gc.get_freeze_count() > before
    frozen = gc.get_freeze_count()
    collector.resume()  # once only
    assert gc.get_freeze_count() == frozen


def test_resume_leaves_a_collector_it_did_not_pause_as_it_was(collector_state):
    before = gc.get_freeze_count()
    gc.disable()  # an embedding application's choice
    collector.pause()
    collector.resume()
    assert not gc.isenabled()
    gc.enable()
    collector.resume()  # without pause (create_app in a test process): nothing
    assert gc.isenabled()
    assert gc.get_freeze_count() == before
