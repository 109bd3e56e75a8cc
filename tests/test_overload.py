"""Admission control over real HTTP: past MODELSERVE_MAX_INFLIGHT requests in progress a
worker answers 503 with Retry-After at once (the load-shedding that keeps latency bounded
under overload; bench/overload.py measures it at twice capacity), probes still answer,
and the requests it had admitted all complete."""

from __future__ import annotations

import json
import shutil
import socket
import time

import httpx

from service.loader import read_manifest
from tests.conftest import MODELS, running, sample_row

ROW = sample_row(read_manifest(MODELS / "wine-quality" / "2"))
LIMIT = 3
WAIT_S = 60.0  # deadline of every wait: generous, never reached when all is well


def _half_sent(url: str) -> tuple[socket.socket, bytes]:
    """A prediction whose headers and half its body have been sent: in progress on the
    server (reading its body) until the rest comes."""
    host, port = url.removeprefix("http://").split(":")
    body = json.dumps({"instances": [ROW]}).encode()
    s = socket.create_connection((host, int(port)), timeout=WAIT_S)
    s.sendall(b"POST /v1/models/wine-quality:predict HTTP/1.1\r\nHost: x\r\n"
              b"Content-Type: application/json\r\n"
              + f"Content-Length: {len(body)}\r\n\r\n".encode() + body[: len(body) // 2])
    return s, body[len(body) // 2:]


def _reply(s: socket.socket) -> tuple[int, dict]:
    data = b""
    while b"\r\n\r\n" not in data or len(data.partition(b"\r\n\r\n")[2]) < _length(data):
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def _length(data: bytes) -> int:
    for line in data.partition(b"\r\n\r\n")[0].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


def test_past_max_inflight_requests_get_a_fast_503_and_admitted_ones_complete(tmp_path):
    shutil.copytree(MODELS / "wine-quality" / "2", tmp_path / "models" / "wine-quality" / "2")
    held: list[tuple[socket.socket, bytes]] = []
    with running(tmp_path / "models", tmp_path,
                 env={"MODELSERVE_MAX_INFLIGHT": str(LIMIT)}) as srv, \
            httpx.Client(base_url=srv.url, timeout=WAIT_S) as c:
        try:
            assert c.post("/v1/models/wine-quality:predict",
                          json={"instances": [ROW]}).status_code == 200
            held = [_half_sent(srv.url) for _ in range(LIMIT)]
            deadline = time.monotonic() + WAIT_S
            while True:  # until the server has taken all of them in
                # Refused at once, not queued: the held requests cannot finish until the
                # test sends the rest of their bodies, so a queued request would only be
                # answered by the client's timeout (an error here).
                r = c.post("/v1/models/wine-quality:predict", json={"instances": [ROW]})
                if r.status_code == 503 or time.monotonic() > deadline:
                    break
                assert r.status_code == 200, r.text
                time.sleep(0.05)
            assert r.status_code == 503, r.text
            assert r.headers["retry-after"] == "1"
            assert "max_inflight" in r.json()["error"]
            # Every protocol and management route is shed alike; probes never are.
            v2 = c.post("/v2/models/wine-quality/infer", json={"inputs": [
                {"name": "features", "shape": [1, 11], "datatype": "FP32", "data": ROW}]})
            assert v2.status_code == 503 and "max_inflight" in v2.json()["error"]
            assert c.get("/v1/models/wine-quality").status_code == 503
            for probe in ("/v2/health/live", "/v2/health/ready", "/healthz", "/readyz"):
                assert c.get(probe).status_code == 200, probe
            metrics = c.get("/metrics")
            assert metrics.status_code == 200
            # The admitted requests were not dropped: each completes with its answer.
            for s, rest in held:
                s.sendall(rest)
            for s, _ in held:
                status, body = _reply(s)
                assert status == 200, body
                assert len(body["predictions"]) == 1
            # And the worker admits again once they are done.
            r = c.post("/v1/models/wine-quality:predict", json={"instances": [ROW]})
            assert r.status_code == 200, r.text
            text = c.get("/metrics").text
            assert 'modelserve_http_requests_total{method="POST",route=' in text
            assert any('status="503"' in line and "predict" in line
                       for line in text.splitlines()), "refusals are not counted"
            assert srv.proc.poll() is None
        finally:
            for s, _ in held:
                s.close()
