"""Graceful shutdown, with real processes over real HTTP: on SIGTERM the server reports
not-ready at once, finishes every request in flight (queued in a batcher or running),
and exits 0.

Requests are made provably in flight before the signal without timing guesses: each
one is sent with ``Expect: 100-continue``, and the server answers ``100 Continue`` only
once the handler has started reading the body. The model is the committed digits CNN
(v2), the slowest one: a few hundred images per request keep it busy.

The forced exits (a second signal, an expired grace period) use requests whose upload
stops halfway: in flight until the server gives up on them, with the grace period and
body timeout far beyond the tests' deadlines wherever only a forced exit may end them."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import MODELS, Server, running

ROWS = 200  # images per request (TEST_LIMITS allow 300)
_SAMPLES = json.loads((MODELS / "digits" / "2" / "manifest.json").read_text())["samples"]
# Every sample image ROWS // 4 times, so each answer can be checked row by row.
BODY = json.dumps({"instances": [s["inputs"] for s in _SAMPLES] * (ROWS // len(_SAMPLES))}
                  ).encode()
EXPECTED = [s["expected"]["label"] for s in _SAMPLES] * (ROWS // len(_SAMPLES))
PATH = "/v1/models/digits:predict"


@pytest.fixture
def repository(tmp_path) -> Path:
    shutil.copytree(MODELS / "digits" / "2", tmp_path / "models" / "digits" / "2")
    return tmp_path / "models"


class InFlight:
    """One prediction over its own connection, in flight once constructed."""

    def __init__(self, port: int, stall: bool = False) -> None:
        """``stall``: send only half the body, so the request stays in flight until the
        server gives up on it (a slow upload)."""
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.buf = b""
        self.sock.sendall(
            f"POST {PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(BODY)}\r\nExpect: 100-continue\r\n\r\n".encode())
        status, _, _ = self._head()
        assert status == 100  # the handler is reading the body: the request is in flight
        self.sock.sendall(BODY[:len(BODY) // 2] if stall else BODY)

    def _head(self) -> tuple[int, dict[str, str], bytes]:
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"connection closed; received {self.buf[:200]!r}")
            self.buf += chunk
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = dict(line.split(":", 1) for line in lines[1:])
        return (int(lines[0].split()[1]),
                {k.strip().lower(): v.strip() for k, v in headers.items()}, head)

    def response(self) -> tuple[int, dict]:
        status, headers, _ = self._head()
        length = int(headers["content-length"])
        while len(self.buf) < length:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed mid-response")
            self.buf += chunk
        self.sock.close()
        return status, json.loads(self.buf[:length])


def _assert_answered(requests: list[InFlight]) -> None:
    for req in requests:
        status, body = req.response()
        assert status == 200, body
        assert [p["label"] for p in body["predictions"]] == EXPECTED


def _assert_cut(req: InFlight) -> None:
    """Not answered: the connection closes, or uvicorn answers 500 for the handler it
    cancelled (before the response started)."""
    try:
        status, headers, _ = req._head()
    except ConnectionError:
        return
    assert status == 500 and headers.get("connection") == "close", (status, headers)


def _queued_rows(url: str) -> float:
    text = httpx.get(url + "/metrics", timeout=10).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("modelserve_queue_rows{") and 'model="digits"' in line)


def _records(srv: Server) -> list[dict]:
    """The server's JSON log records."""
    records = []
    for line in srv.log_text().splitlines():
        with contextlib.suppress(ValueError):
            records.append(json.loads(line))
    return records


def _workers(srv: Server) -> list[int]:
    pid = srv.proc.pid
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
            if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()]


def _wait_for(condition, what: str, srv: Server, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout} s: {srv.output()}")
        time.sleep(0.1)


def test_sigterm_finishes_queued_and_running_requests_then_exits_0(repository, tmp_path):
    with running(repository, tmp_path, env={"MODELSERVE_SHUTDOWN_GRACE_S": "30"}) as srv:
        requests = [InFlight(srv.port) for _ in range(16)]
        # Until at least one whole request waits in the batcher behind the running one.
        deadline = time.monotonic() + 30
        while _queued_rows(srv.url) < ROWS:
            assert time.monotonic() < deadline, "no request ever queued in the batcher"
            time.sleep(0.02)
        srv.proc.send_signal(signal.SIGTERM)
        _assert_answered(requests)
        assert srv.wait_exit(30) == 0, srv.output()  # within the grace period
        log = srv.log_text()
        assert "SIGTERM received: draining" in log
        assert "timeout graceful shutdown exceeded" not in log
        with pytest.raises(httpx.ConnectError):
            httpx.get(srv.url + "/v2/health/live", timeout=2)


def test_delay_keeps_serving_with_readiness_503(repository, tmp_path):
    with running(repository, tmp_path, env={"MODELSERVE_SHUTDOWN_DELAY_S": "2"}) as srv:
        with httpx.Client(base_url=srv.url, timeout=30) as client:
            assert client.get("/v2/health/ready").status_code == 200  # keep-alive connection
            in_flight = InFlight(srv.port)
            signalled = time.monotonic()
            srv.proc.send_signal(signal.SIGTERM)
            # The already-open connection: not ready from the signal on (the handler runs
            # asynchronously, so allow it a moment), and asked to close.
            while (r := client.get("/v2/health/ready")).status_code == 200:
                assert time.monotonic() - signalled < 1, "readiness still 200 after SIGTERM"
            assert r.status_code == 503
            assert r.json() == {"ready": False, "error": "Not ready: shutting down."}
            assert r.headers["connection"] == "close"
            # New connections during the delay: still served.
            r = client.get("/readyz")
            assert r.status_code == 503 and "shutting down" in r.json()["error"]
            assert client.get("/v2/health/live").status_code == 200
            assert client.get("/healthz").json() == {"live": True}
            r = client.post(PATH, content=BODY, headers={"Content-Type": "application/json"})
            assert r.status_code == 200
            assert [p["label"] for p in r.json()["predictions"]] == EXPECTED
        _assert_answered([in_flight])
        assert srv.wait_exit(30) == 0, srv.output()
        assert time.monotonic() - signalled >= 2  # the listener stayed open for the delay


def test_two_workers_drain_and_the_supervisor_exits_0(repository, tmp_path):
    with running(repository, tmp_path, env={"MODELSERVE_WORKERS": "2"}) as srv:
        workers = _workers(srv)
        assert len(workers) == 2
        # Ready means one worker serves; wait for both, so that both can take requests.
        deadline = time.monotonic() + 60
        while srv.log_text().count("Application startup complete") < 2:
            assert time.monotonic() < deadline, srv.output()
            time.sleep(0.2)
        requests = [InFlight(srv.port) for _ in range(12)]
        srv.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        while srv.log_text().count("SIGTERM received: draining") < 2:  # passed on to both
            assert time.monotonic() < deadline, srv.output()
            time.sleep(0.05)
        # A second SIGTERM straight to each worker, as systemd (every process of the unit)
        # or `kill -TERM -<group>` sends: a worker takes it for a duplicate, not a force.
        for pid in workers:
            with contextlib.suppress(ProcessLookupError):  # done draining already
                os.kill(pid, signal.SIGTERM)
        _assert_answered(requests)
        assert srv.wait_exit(30) == 0, srv.output()
        log = srv.log_text()
        assert "forced" not in log
        for pid in workers:
            assert f"Finished server process [{pid}]" in log
            assert not Path(f"/proc/{pid}").exists()


def test_second_sigterm_forces_the_exit_with_requests_in_flight(repository, tmp_path):
    # Grace period and body timeout far beyond the wait for the exit below: only the
    # second signal can end the drain in time.
    with running(repository, tmp_path, env={"MODELSERVE_SHUTDOWN_GRACE_S": "600",
                                            "MODELSERVE_BODY_TIMEOUT_S": "600"}) as srv:
        stalled = [InFlight(srv.port, stall=True) for _ in range(2)]
        srv.proc.send_signal(signal.SIGTERM)
        _wait_for(lambda: "Waiting for connections to close" in srv.log_text(),
                  "the drain waiting for the requests in flight", srv)
        srv.proc.send_signal(signal.SIGTERM)
        assert srv.wait_exit(60) == 0, srv.output()
        assert "Shutdown forced by a second signal" in srv.log_text()
        for req in stalled:
            _assert_cut(req)


def test_expired_grace_period_cuts_a_longer_request_and_exits_0(repository, tmp_path):
    with running(repository, tmp_path, env={"MODELSERVE_SHUTDOWN_GRACE_S": "1",
                                            "MODELSERVE_BODY_TIMEOUT_S": "600"}) as srv:
        stalled = InFlight(srv.port, stall=True)  # would wait for its body for 600 s
        srv.proc.send_signal(signal.SIGTERM)
        assert srv.wait_exit(60) == 0, srv.output()
        log = srv.log_text()
        assert "Cancel 1 running task(s), timeout graceful shutdown exceeded" in log
        assert "forced" not in log
        _assert_cut(stalled)


def test_a_killed_worker_is_replaced_then_sigterm_drains_all(repository, tmp_path):
    with running(repository, tmp_path, env={"MODELSERVE_WORKERS": "2"}) as srv:
        killed, survivor = _workers(srv)
        os.kill(killed, signal.SIGKILL)
        _wait_for(lambda: len(set(_workers(srv)) - {killed, survivor}) == 1,
                  "a new worker process", srv)
        (new,) = set(_workers(srv)) - {killed, survivor}
        assert f"Worker process [{killed}] died (killed by SIGKILL)" in srv.log_text()
        # The new worker serves: it loads the repository, then answers requests (a new
        # connection each time: either worker may accept it).
        _wait_for(lambda: any(r.get("pid") == new and r.get("message") ==
                              "Application startup complete." for r in _records(srv)),
                  f"worker {new} started", srv, timeout=120)

        def new_worker_answered() -> bool:
            r = httpx.post(srv.url + PATH, content=BODY, timeout=30,
                           headers={"Content-Type": "application/json",
                                    "Connection": "close"})
            assert r.status_code == 200, r.text
            return any(r.get("pid") == new and r.get("logger") == "modelserve.access"
                       and r.get("protocol") for r in _records(srv))

        _wait_for(new_worker_answered, f"a prediction answered by worker {new}", srv)
        # /metrics (either worker) lists the live workers' memory only.
        text = httpx.get(srv.url + "/metrics", timeout=10).text
        assert f'modelserve_worker_resident_memory_bytes{{pid="{new}"}}' in text
        assert f'pid="{killed}"' not in text

        srv.proc.send_signal(signal.SIGTERM)
        assert srv.wait_exit(60) == 0, srv.output()
        log = srv.log_text()
        assert "forced" not in log
        assert log.count("Worker process [") == 1  # the kill, nothing during shutdown
        for pid in (survivor, new):
            assert f"Finished server process [{pid}]" in log


def test_a_second_sigterm_to_the_supervisor_forces_the_draining_workers(repository, tmp_path):
    with running(repository, tmp_path, env={"MODELSERVE_WORKERS": "2",
                                            "MODELSERVE_SHUTDOWN_GRACE_S": "600",
                                            "MODELSERVE_BODY_TIMEOUT_S": "600"}) as srv:
        stalled = InFlight(srv.port, stall=True)  # whichever worker took it drains for 600 s
        srv.proc.send_signal(signal.SIGTERM)
        _wait_for(lambda: "Waiting for connections to close" in srv.log_text(),
                  "a worker draining the request in flight", srv)
        srv.proc.send_signal(signal.SIGTERM)
        assert srv.wait_exit(60) == 0, srv.output()
        log = srv.log_text()
        assert "SIGTERM received while the workers drain: forcing them to exit." in log
        assert "Shutdown forced by a second signal" in log
        _assert_cut(stalled)
