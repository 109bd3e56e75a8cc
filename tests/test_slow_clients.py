"""Slowloris-style clients: headers sent, then the body dripped a byte at a time. They
must not hold up other clients' predictions, and are cut off with 408 once
MODELSERVE_BODY_TIMEOUT_S has passed since the body read began (uvicorn's own
timeout_keep_alive only covers idle connections between requests)."""

from __future__ import annotations

import json
import socket
import threading
import time

import httpx

from service.loader import read_manifest
from tests.conftest import MODELS, Server, sample_row

ROW = sample_row(read_manifest(MODELS / "wine-quality" / "2"))
TIMEOUT_S = 2.0


def _drip(url: str, path: str, results: list, stop: threading.Event) -> None:
    host, port = url.removeprefix("http://").split(":")
    body = json.dumps({"instances": [ROW]}).encode()
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  f"Content-Length: {len(body)}\r\n\r\n".encode())
        started = time.monotonic()
        sent = 0
        s.settimeout(0.25)
        reply = b""
        try:
            for byte in body:
                if stop.is_set():
                    break
                s.sendall(bytes([byte]))
                sent += 1
                try:
                    chunk = s.recv(65536)
                except TimeoutError:
                    continue  # nothing yet: keep dripping (a byte each 0.25 s)
                reply += chunk
                break
            s.settimeout(10)
            while chunk := s.recv(65536):  # read to the end: the server must close
                reply += chunk
        except (ConnectionResetError, BrokenPipeError):
            pass
        results.append((time.monotonic() - started, sent, len(body), reply))


def test_slow_clients_do_not_block_inference_and_are_cut_off(tmp_path):
    server = Server(MODELS.resolve(), tmp_path, env={"MODELSERVE_BODY_TIMEOUT_S": str(TIMEOUT_S)})
    stop = threading.Event()
    try:
        server.wait_settled()
        results: list = []
        paths = ["/v1/models/wine-quality:predict", "/v2/models/wine-quality/infer",
                 "/v1/models/digits:predict_image", "/v1/models/wine-quality:classify"] * 2
        drips = [threading.Thread(target=_drip, args=(server.url, p, results, stop))
                 for p in paths]
        for t in drips:
            t.start()
        time.sleep(0.3)
        # Eight slow clients connected: other clients' predictions complete as usual.
        latencies = []
        with httpx.Client(base_url=server.url, timeout=10) as c:
            deadline = time.monotonic() + TIMEOUT_S - 0.5
            while time.monotonic() < deadline:
                t0 = time.monotonic()
                r = c.post("/v1/models/wine-quality:predict", json={"instances": [ROW]})
                latencies.append(time.monotonic() - t0)
                assert r.status_code == 200, r.text
        assert len(latencies) >= 20 and max(latencies) < 0.5, latencies
        for t in drips:
            t.join(15)
        assert len(results) == len(paths)
        for elapsed, sent, size, reply in results:
            # Cut off at the deadline, long before the whole body could arrive.
            assert TIMEOUT_S - 0.3 < elapsed < TIMEOUT_S + 3, elapsed
            assert sent < size
            head, _, body = reply.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 408"), reply[:300]
            assert b"connection: close" in head.lower()
            assert "did not arrive within 2 s" in json.loads(body)["error"]
        with httpx.Client(base_url=server.url, timeout=10) as c:
            assert c.post("/v1/models/wine-quality:predict",
                          json={"instances": [ROW]}).status_code == 200
        assert server.proc.poll() is None
    finally:
        stop.set()
        server.stop()
