"""Access control against a real server: API keys, admin keys and model management,
per-key rate limiting, keys never reaching the log, and a start-up refused when a key
file cannot be used."""

from __future__ import annotations

import base64
import shutil
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import MODELS, running

WINE_ROW = [7.4, 0.7, 0.0, 1.9, 0.076, 11.0, 34.0, 0.9978, 3.51, 0.56, 9.4]
TFS = ("/v1/models/wine-quality:predict", {"instances": [WINE_ROW]})
V2 = ("/v2/models/wine-quality/infer",
      {"inputs": [{"name": "features", "shape": [1, 11], "datatype": "FP32",
                   "data": WINE_ROW}]})
# Distinctive strings, so finding one in the log means it leaked.
API_KEY = "pk-Secret-4f1c9a0e77b2"
API_KEY_2 = "pk-Other-0b7d55e3c910"
ADMIN_KEY = "ak-Admin-91e3d7c2aa45"
WRONG_KEY = "wk-Wrong-5c2e8f61d3b7"
RL_KEY = "rl-Limited-7a60c4e2f918"
FILE_KEY = "fk-FromFile-3d9b2a7c5e01"
NEW_KEY = "nk-Rotated-c4a8e2b61f07"
RATE, BURST = 1, 5  # the limited server's rate limit: tokens a second, bucket size
WAIT_S = 60.0  # deadline of every wait: generous, never reached when all is well

OPEN = ["/v2/health/live", "/v2/health/ready", "/healthz", "/readyz", "/metrics"]
GETS = ["/v1/models", "/v1/models/wine-quality", "/v1/models/wine-quality/metadata",
        "/v1/models/wine-quality/versions/1", "/v2", "/v2/models/wine-quality",
        "/v2/models/wine-quality/ready"]


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _xkey(key: str) -> dict[str, str]:
    return {"X-API-Key": key}


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    """API keys from the environment, admin keys from a file."""
    root = tmp_path_factory.mktemp("secured")
    shutil.copytree(MODELS / "wine-quality" / "1", root / "models" / "wine-quality" / "1")
    (root / "admin-keys").write_text(f"# operators\n\n{ADMIN_KEY}  # ops team\n")
    with running(root / "models", root, env={
            "MODELSERVE_API_KEYS": f"{API_KEY}, {API_KEY_2}",
            "MODELSERVE_ADMIN_KEYS_FILE": str(root / "admin-keys"),
            "MODELSERVE_POLL_INTERVAL_S": "0.3"}) as srv:
        yield srv


@pytest.fixture(scope="module")
def limited(tmp_path_factory):
    """API keys from a file, no admin key, a rate limit of 1/s with a burst of 5."""
    root = tmp_path_factory.mktemp("limited")
    shutil.copytree(MODELS / "wine-quality" / "1", root / "models" / "wine-quality" / "1")
    (root / "keys").write_text(f"{FILE_KEY}\n# a comment\n{RL_KEY}\n")
    with running(root / "models", root, env={
            "MODELSERVE_API_KEYS_FILE": str(root / "keys"),
            "MODELSERVE_RATE_LIMIT_PER_S": str(RATE), "MODELSERVE_RATE_LIMIT_BURST": str(BURST),
    }) as srv:
        srv.keys_file = root / "keys"
        yield srv



def _wait_until(check, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def _assert_401(r: httpx.Response) -> None:
    assert r.status_code == 401, r.text
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert isinstance(r.json()["error"], str)


def test_health_and_metrics_stay_open(secured):
    for path in OPEN:
        r = httpx.get(secured.url + path)
        assert r.status_code == 200, (path, r.text)


def test_missing_or_wrong_key_is_401(secured):
    with httpx.Client(base_url=secured.url, timeout=30) as c:
        for path, body in (TFS, V2):
            _assert_401(c.post(path, json=body))
            _assert_401(c.post(path, json=body, headers=_bearer(WRONG_KEY)))
            _assert_401(c.post(path, json=body, headers=_xkey(WRONG_KEY)))
            assert "not valid" in c.post(path, json=body, headers=_xkey(WRONG_KEY)).json()["error"]
        for path in GETS:
            _assert_401(c.get(path))
            _assert_401(c.get(path, headers=_bearer(WRONG_KEY)))
        # Unknown paths too: nothing about the server without a key.
        _assert_401(c.get("/v1/models/no-such-model"))


def test_non_bearer_authorization_is_401_with_advice(secured):
    basic = "Basic " + base64.b64encode(f"user:{API_KEY}".encode()).decode()
    r = httpx.post(secured.url + TFS[0], json=TFS[1], headers={"Authorization": basic})
    _assert_401(r)
    assert "Bearer" in r.json()["error"] and "X-API-Key" in r.json()["error"]


def test_valid_keys_serve_both_protocols(secured):
    with httpx.Client(base_url=secured.url, timeout=30) as c:
        for headers in (_bearer(API_KEY), _xkey(API_KEY), _bearer(API_KEY_2),
                        {"authorization": f"bearer {API_KEY}"}, _bearer(ADMIN_KEY)):
            r = c.post(TFS[0], json=TFS[1], headers=headers)  # fast lane
            assert r.status_code == 200, r.text
            assert r.headers["model-version"] == "1"
            r = c.post(V2[0], json=V2[1], headers=headers)  # fast lane
            assert r.status_code == 200 and r.json()["model_version"] == "1", r.text
            for path in GETS:  # FastAPI routes
                assert c.get(path, headers=headers).status_code == 200, path
        r = c.post("/v1/models/wine-quality/versions/1:predict", json=TFS[1],
                   headers=_xkey(API_KEY))  # FastAPI path for versions too
        assert r.status_code == 200


def test_openapi_is_open_lists_no_models_and_declares_keys(secured):
    r = httpx.get(secured.url + "/openapi.json")
    assert r.status_code == 200
    schema = r.json()
    assert "wine-quality" not in r.text
    assert set(schema["components"]["securitySchemes"]) == {"bearer", "apiKey"}
    assert schema["paths"]["/v2/health/ready"]["get"]["security"] == []
    assert httpx.get(secured.url + "/docs").status_code == 200


def test_admin_endpoints_need_the_admin_key(secured):
    with httpx.Client(base_url=secured.url, timeout=60) as c:
        for path in ("/v2/repository/index", "/admin/reload",
                     "/v2/repository/models/wine-quality/unload"):
            _assert_401(c.post(path))
            _assert_401(c.post(path, headers=_bearer(WRONG_KEY)))
            r = c.post(path, headers=_bearer(API_KEY))
            assert r.status_code == 403, r.text
            assert "admin key" in r.json()["error"]
        r = c.post("/v2/repository/index", headers=_bearer(ADMIN_KEY))
        assert r.status_code == 200, r.text
        assert r.json() == [{"name": "wine-quality", "version": "1", "state": "AVAILABLE",
                             "reason": ""}]
        r = c.post("/admin/reload", headers=_xkey(ADMIN_KEY))
        assert r.status_code == 200 and r.json()["models"][0]["state"] == "AVAILABLE"
        r = c.post("/v2/repository/models/no-such-model/unload", headers=_xkey(ADMIN_KEY))
        assert r.status_code == 404 and "not found" in r.json()["error"]


def test_unload_stops_serving_and_load_restores(secured):
    admin = _bearer(ADMIN_KEY)
    user = _bearer(API_KEY)
    with httpx.Client(base_url=secured.url, timeout=60) as c:
        try:
            r = c.post("/v2/repository/models/wine-quality/unload", headers=admin)
            assert r.status_code == 200, r.text
            assert r.json()["versions"] == [{"name": "wine-quality", "version": "1",
                                             "state": "END",
                                             "reason": "unloaded by an administrator"}]
            time.sleep(1)  # several hot-reload scans: it stays unloaded
            r = c.post(TFS[0], json=TFS[1], headers=user)
            assert r.status_code == 503, r.text
            assert "unloaded by an administrator" in r.json()["error"]
            r = c.post("/v2/models/wine-quality/versions/1/infer", json=V2[1], headers=user)
            assert r.status_code == 404 and "unloaded by an administrator" in r.text
            r = c.post("/v2/repository/index", headers=admin, json={"ready": True})
            assert r.status_code == 200 and r.json() == []
        finally:
            r = c.post("/v2/repository/models/wine-quality/load", headers=admin)
        assert r.status_code == 200, r.text
        assert r.json()["ready"] is True
        assert r.json()["versions"][0]["state"] == "AVAILABLE"
        assert c.post(TFS[0], json=TFS[1], headers=user).status_code == 200
        assert c.post(V2[0], json=V2[1], headers=user).status_code == 200
        r = c.post("/v2/repository/models/no-such-model/load", headers=admin)
        assert r.status_code == 404


def _wait_for_status(url: str, headers: dict[str, str], status: int,
                     timeout: float = WAIT_S) -> int:
    deadline = time.monotonic() + timeout
    while True:
        got = httpx.get(url + "/v1/models", headers=headers).status_code
        if got == status or time.monotonic() > deadline:
            return got
        time.sleep(0.3)


def test_key_file_rotation_without_restart(limited):
    assert httpx.get(limited.url + "/v1/models", headers=_xkey(NEW_KEY)).status_code == 401
    limited.keys_file.write_text(f"{FILE_KEY}\n{RL_KEY}\n{NEW_KEY}\n")
    assert _wait_for_status(limited.url, _xkey(NEW_KEY), 200) == 200
    # A file that becomes unusable keeps the previous keys (and is logged).
    limited.keys_file.write_text("# nothing\n")
    # Noticed on the next request after the recheck interval: keep asking until it is.
    _wait_until(lambda: httpx.get(limited.url + "/v1/models").status_code > 0
                and "keeping the previous keys" in limited.log_text(),
                "the server to notice the unusable file")
    assert httpx.get(limited.url + "/v1/models", headers=_xkey(NEW_KEY)).status_code == 200
    assert "keeping the previous keys" in limited.log_text()
    limited.keys_file.write_text(f"{FILE_KEY}\n{RL_KEY}\n")
    assert _wait_for_status(limited.url, _xkey(NEW_KEY), 401) == 401
    assert httpx.get(limited.url + "/v1/models", headers=_xkey(FILE_KEY)).status_code == 200


def test_keys_never_logged(secured, limited):
    # Requests with every kind of key, right and wrong, then grep the whole log.
    for srv in (secured, limited):
        for headers in (_bearer(API_KEY), _xkey(ADMIN_KEY), _bearer(WRONG_KEY),
                        _xkey(WRONG_KEY), _bearer(FILE_KEY),
                        {"Authorization": f"Token {WRONG_KEY}"}):
            httpx.post(srv.url + TFS[0], json=TFS[1], headers=headers)
            httpx.post(srv.url + "/v2/repository/index", headers=headers)
            httpx.get(srv.url + "/v1/models/missing", headers=headers)
    for srv in (secured, limited):
        # Access lines are written just after each response: wait for the last one's.
        httpx.get(srv.url + "/v1/models/missing", headers={"X-Request-ID": "last-of-keys"})
        _wait_until(lambda s=srv: "last-of-keys" in s.log_text(), "the last access line")
        log = srv.log_text()
        assert "POST /v1/models/wine-quality:predict 401" in log  # refusals are logged
        assert "POST /v1/models/wine-quality:predict 200" in log
        for key in (API_KEY, API_KEY_2, ADMIN_KEY, WRONG_KEY, FILE_KEY, RL_KEY, NEW_KEY):
            assert key not in log
            assert key[3:] not in log


def test_refusals_are_counted(secured):
    httpx.post(secured.url + TFS[0], json=TFS[1])
    metrics = httpx.get(secured.url + "/metrics").text
    assert ('modelserve_inference_requests_total{model="wine-quality",protocol="tfserving",'
            'status="401",version=""}') in metrics


def test_admin_api_off_without_admin_keys(limited):
    for path in ("/v2/repository/index", "/admin/reload",
                 "/v2/repository/models/wine-quality/load"):
        for headers in ({}, _bearer(FILE_KEY)):
            r = httpx.post(limited.url + path, headers=headers)
            assert r.status_code == 404, r.text
            assert "MODELSERVE_ADMIN_KEYS" in r.json()["error"]


def test_admin_api_off_and_everything_open_without_keys(client):
    r = client.post("/v2/repository/index")
    assert r.status_code == 404 and "Model management is off" in r.json()["error"]
    assert client.post("/admin/reload").status_code == 404
    assert client.get("/v1/models/wine-quality").status_code == 200


def test_keys_file_and_rate_limit(limited):
    with httpx.Client(base_url=limited.url, timeout=WAIT_S) as c:
        assert c.post(V2[0], json=V2[1], headers=_bearer(FILE_KEY)).status_code == 200
        # Requests back to back until one is refused; the bucket's arithmetic bounds how
        # many got through, measured with the test's own clock (the server's first and
        # last take of a token lie between t0 and the end).
        statuses: list[int] = []
        t0 = time.monotonic()
        while 429 not in statuses:
            assert time.monotonic() - t0 < WAIT_S, f"never rate limited: {statuses}"
            r = c.post(TFS[0], json=TFS[1], headers=_xkey(RL_KEY))
            statuses.append(r.status_code)
        elapsed = time.monotonic() - t0
        limited_response = r
        assert set(statuses) == {200, 429}, statuses
        # A fresh key starts with a full bucket: the first BURST pass; after that only
        # what refilled at RATE per second.
        assert statuses[:BURST] == [200] * BURST, statuses
        assert statuses.count(200) <= BURST + RATE * elapsed, (statuses, elapsed)
        retry = int(limited_response.headers["retry-after"])
        assert 1 <= retry <= 2
        assert "Rate limit" in limited_response.json()["error"]
        # Another key has its own bucket.
        assert c.post(TFS[0], json=TFS[1], headers=_xkey(FILE_KEY)).status_code == 200
        time.sleep(retry + 0.5)
        assert c.post(TFS[0], json=TFS[1], headers=_xkey(RL_KEY)).status_code == 200


# --- start-up refused when a key file cannot be used ----------------------------------


def _refused_start(tmp_path: Path, keys_file: Path) -> str:
    """Start a server whose API key file is ``keys_file``; it must exit non-zero by
    itself. Returns what it wrote."""
    repo = tmp_path / "models"
    shutil.copytree(MODELS / "wine-quality" / "1", repo / "wine-quality" / "1")
    with running(repo, tmp_path, env={"MODELSERVE_API_KEYS_FILE": str(keys_file)},
                 settle=False) as srv:
        status = srv.wait_exit()
        output = srv.log_text()
    assert status != 0, output
    return output


def test_start_refused_for_a_missing_key_file(tmp_path):
    missing = tmp_path / "no-such-keys"
    output = _refused_start(tmp_path, missing)
    assert f"api_keys_file {missing}: cannot read it" in output, output[-2000:]


def test_start_refused_for_an_empty_key_file(tmp_path):
    empty = tmp_path / "keys"
    empty.write_text("# every key was removed\n\n")
    output = _refused_start(tmp_path, empty)
    assert f"api_keys_file {empty} holds no key" in output, output[-2000:]


def test_start_refused_for_a_key_file_with_a_malformed_key(tmp_path):
    malformed = tmp_path / "keys"
    malformed.write_text(f"{FILE_KEY}\nkey with spaces\n")
    output = _refused_start(tmp_path, malformed)
    assert "whitespace or unprintable characters" in output, output[-2000:]
    assert str(malformed) in output, output[-2000:]


def test_start_refused_for_a_key_file_that_is_not_text(tmp_path):
    binary = tmp_path / "keys"
    binary.write_bytes(b"\xff\xfe\x00" + FILE_KEY.encode() + b"\n")
    output = _refused_start(tmp_path, binary)
    assert str(binary) in output, output[-2000:]
