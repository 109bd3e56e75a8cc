"""Structured logs and request ids, over real HTTP: every line the server writes is one
JSON object, each request gets one access line, X-Request-ID is echoed (or made up, or
replaced when unsafe), and payload values never reach the log."""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import MODELS, Server, running

WINE_ROW = [7.4, 0.7, 0.0, 1.9, 0.076, 11.0, 34.0, 0.9978, 3.51, 0.56, 9.4]
GENERATED = re.compile(r"^[0-9a-f]{32}$")
WAIT_S = 60.0  # deadline of every wait: generous, never reached when all is well


def records(server: Server) -> list[dict[str, Any]]:
    return [json.loads(line) for line in server.log_text().splitlines() if line.strip()]


def access_line(server: Server, request_id: str, timeout: float = WAIT_S) -> dict[str, Any]:
    """The access record of one request (written just after its response is sent)."""
    deadline = time.monotonic() + timeout
    while True:
        found = [r for r in records(server)
                 if r.get("logger") == "modelserve.access" and r.get("request_id") == request_id]
        if found or time.monotonic() > deadline:
            assert len(found) == 1, f"{len(found)} access lines for {request_id}"
            return found[0]
        time.sleep(0.05)


def test_every_line_is_a_json_object(server, client):
    client.get("/v2/health/live")
    lines = [line for line in server.log_text().splitlines() if line.strip()]
    assert lines, "the server wrote nothing"
    for line in lines:
        record = json.loads(line)  # raises on any non-JSON line
        assert isinstance(record, dict)
        for key in ("time", "level", "logger", "message", "pid"):
            assert key in record, (key, line)
        assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", record["time"])
    loggers = {json.loads(line)["logger"] for line in lines}
    assert "uvicorn.error" in loggers  # uvicorn's own start-up lines are JSON too
    assert "modelserve.repository" in loggers


def test_access_line_fields_and_request_id_echo(server, client):
    r = client.post("/v1/models/wine-quality/versions/1:predict?debug=secret-query",
                    json={"instances": [WINE_ROW]}, headers={"X-Request-ID": "trace-42.a_B"})
    assert r.status_code == 200, r.text
    assert r.headers["x-request-id"] == "trace-42.a_B"
    line = access_line(server, "trace-42.a_B")
    assert line["level"] == "info"
    assert line["method"] == "POST"
    assert line["path"] == "/v1/models/wine-quality/versions/1:predict"
    assert (line["model"], line["version"], line["protocol"]) == ("wine-quality", "1",
                                                                  "tfserving")
    assert line["status"] == 200
    assert isinstance(line["duration_ms"], float) and line["duration_ms"] > 0
    assert line["client"] == "127.0.0.1"
    assert "secret-query" not in server.log_text()  # query strings are not logged


def test_request_id_generated_when_absent_on_every_kind_of_response(server, client):
    for method, path, status in [("POST", "/v2/models/housing/infer", 400),  # fast lane
                                 ("GET", "/v1/models", 200),                  # FastAPI
                                 ("GET", "/no/such/route", 404),
                                 ("GET", "/metrics", 200)]:
        r = client.request(method, path)
        assert r.status_code == status
        assert GENERATED.match(r.headers["x-request-id"]), (path, r.headers)
    rid = client.post("/v2/models/housing/infer", content=b"{").headers["x-request-id"]
    assert access_line(server, rid)["status"] == 400
    first = client.get("/v1/models").headers["x-request-id"]
    assert client.get("/v1/models").headers["x-request-id"] != first


def test_unsafe_request_id_is_replaced(server, client):
    for bad in ["has spaces", "x" * 129, "semi;colon", "new\tline", "quote\"d"]:
        r = client.get("/v1/models", headers={"X-Request-ID": bad})
        assert r.status_code == 200
        assert GENERATED.match(r.headers["x-request-id"]), bad
    r = client.get("/v1/models", headers=[(b"X-Request-ID", b"\xff\xfeabc")])
    assert GENERATED.match(r.headers["x-request-id"])
    access_line(server, r.headers["x-request-id"])
    text = server.log_text()
    assert "has spaces" not in text and "x" * 129 not in text and "semi;colon" not in text
    longest = "y" * 128
    assert client.get("/v1/models", headers={"X-Request-ID": longest}).headers[
        "x-request-id"] == longest


def test_payload_values_never_reach_the_log(server, client):
    distinctive = 7.123456789
    row = [*WINE_ROW[:10], distinctive]
    r = client.post("/v1/models/wine-quality:predict", json={"instances": [row]},
                    headers={"X-Request-ID": "payload-ok"})
    assert r.status_code == 200, r.text
    r = client.post("/v2/models/housing/infer", headers={"X-Request-ID": "payload-bad"},
                    json={"id": "client-secret-id-5521", "inputs": [
                        {"name": "features", "shape": [1, 8], "datatype": "FP32",
                         "data": ["text-secret-9931", 1, 2, 3, 4, 5, 6, 7]}]})
    assert r.status_code == 400
    assert access_line(server, "payload-bad")["status"] == 400
    access_line(server, "payload-ok")
    text = server.log_text()
    for secret in ("7.123456789", "client-secret-id-5521", "text-secret-9931"):
        assert secret not in text


def test_successful_probes_stay_out_of_the_info_log(server, client):
    for path in ("/v2/health/live", "/v2/health/ready", "/healthz", "/readyz", "/metrics"):
        assert client.get(path, headers={"X-Request-ID": "probe-" + path.strip("/")
                                         .replace("/", "-")}).status_code == 200
    client.get("/v1/models", headers={"X-Request-ID": "after-probes"})
    access_line(server, "after-probes")
    assert "probe-" not in server.log_text()


def _small_repo(tmp_path: Path) -> Path:
    shutil.copytree(MODELS / "wine-quality" / "2", tmp_path / "models" / "wine-quality" / "2")
    return tmp_path / "models"


def test_text_format_and_access_log_switch(tmp_path):
    quiet_dir = tmp_path / "quiet"
    quiet_dir.mkdir()
    with running(_small_repo(tmp_path), tmp_path, env={"MODELSERVE_LOG_FORMAT": "text"}) \
            as text_srv, \
            running(_small_repo(quiet_dir), quiet_dir, env={"MODELSERVE_ACCESS_LOG": "false"}) \
            as quiet_srv:
        for srv in (text_srv, quiet_srv):
            r = httpx.post(srv.url + "/v1/models/wine-quality:predict",
                           json={"instances": [WINE_ROW]},
                           headers={"X-Request-ID": "text-mode-1"}, timeout=60)
            assert r.status_code == 200, r.text
            assert r.headers["x-request-id"] == "text-mode-1"
            r = httpx.get(srv.url + "/v1/models", headers={"X-Request-ID": "text-mode-2"},
                          timeout=60)
            assert r.status_code == 200
        deadline = time.monotonic() + WAIT_S
        while "request_id=text-mode-2" not in text_srv.log_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        text = text_srv.log_text()
        line = next(ln for ln in text.splitlines() if "request_id=text-mode-1" in ln)
        assert not line.startswith("{")
        assert "modelserve.access: POST /v1/models/wine-quality:predict 200" in line
        assert "model=wine-quality" in line and "version=2" in line and "status=200" in line
        assert "Uvicorn running on" in text  # uvicorn's lines go through the same handler
        quiet = quiet_srv.log_text()
        assert "Uvicorn running on" in quiet
        assert "modelserve.access" not in quiet and "text-mode" not in quiet
