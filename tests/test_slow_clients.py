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
from tests.conftest import MODELS, running, sample_row

ROW = sample_row(read_manifest(MODELS / "wine-quality" / "2"))
TIMEOUT_S = 5.0
WAIT_S = 60.0  # deadline of every wait: generous, never reached when all is well


def _drip(url: str, path: str, results: list, stop: threading.Event,
          dripping: threading.Semaphore) -> None:
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
                if sent == 1:
                    dripping.release()
                try:
                    chunk = s.recv(65536)
                except TimeoutError:
                    continue  # nothing yet: keep dripping (a byte each 0.25 s)
                reply += chunk
                break
            s.settimeout(WAIT_S)
            while chunk := s.recv(65536):  # read to the end: the server must close
                reply += chunk
        except (ConnectionResetError, BrokenPipeError):
            pass
        results.append((time.monotonic() - started, sent, len(body), reply))


def test_slow_clients_do_not_block_inference_and_are_cut_off(tmp_path):
    stop = threading.Event()
    with running(MODELS.resolve(), tmp_path,
                 env={"MODELSERVE_BODY_TIMEOUT_S": str(TIMEOUT_S)}) as server:
        try:
            results: list = []
            paths = ["/v1/models/wine-quality:predict", "/v2/models/wine-quality/infer",
                     "/v1/models/digits:predict_image", "/v1/models/wine-quality:classify"] * 2
            dripping = threading.Semaphore(0)
            drips = [threading.Thread(target=_drip,
                                      args=(server.url, p, results, stop, dripping))
                     for p in paths]
            for t in drips:
                t.start()
            for _ in drips:
                assert dripping.acquire(timeout=WAIT_S), "a slow client never connected"
            # Eight slow clients connected: other clients' predictions complete while
            # every one of them is still holding its connection (none cut off yet).
            answered_while_held = 0
            with httpx.Client(base_url=server.url, timeout=WAIT_S) as c:
                for _ in range(20):
                    r = c.post("/v1/models/wine-quality:predict", json={"instances": [ROW]})
                    assert r.status_code == 200, r.text
                    answered_while_held += not results
            # A server that made inference wait for them would answer none before the
            # cut-off.
            assert answered_while_held > 0, "inference waited for the slow clients"
            for t in drips:
                t.join(WAIT_S)
            assert len(results) == len(paths)
            for elapsed, sent, size, reply in results:
                # Cut off at the deadline (not before), long before the whole body arrived.
                assert elapsed > TIMEOUT_S - 0.3, elapsed
                assert sent < size
                head, _, body = reply.partition(b"\r\n\r\n")
                assert head.startswith(b"HTTP/1.1 408"), reply[:300]
                assert b"connection: close" in head.lower()
                assert f"did not arrive within {TIMEOUT_S:g} s" in json.loads(body)["error"]
            with httpx.Client(base_url=server.url, timeout=WAIT_S) as c:
                assert c.post("/v1/models/wine-quality:predict",
                              json={"instances": [ROW]}).status_code == 200
            assert server.proc.poll() is None
        finally:
            stop.set()
