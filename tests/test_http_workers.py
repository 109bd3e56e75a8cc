"""Several worker processes behind one port: each loads the repository before it takes
connections, and every request is answered; a worker that cannot start stops them all.
(Draining and replacing workers: tests/test_shutdown.py.)"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import httpx

from tests.conftest import MODELS, eventually, running


def _workers(pid: int) -> list[int]:
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(c) for c in children
            if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()]


def test_two_workers_serve_the_same_port(tmp_path):
    shutil.copytree(MODELS / "wine-quality" / "2", tmp_path / "models" / "wine-quality" / "2")
    with running(tmp_path / "models", tmp_path, env={"MODELSERVE_WORKERS": "2"}) as srv:
        assert len(_workers(srv.proc.pid)) == 2
        row = [7.4, 0.7, 0.0, 1.9, 0.076, 11.0, 34.0, 0.9978, 3.51, 0.56, 9.4]
        with httpx.Client(base_url=srv.url, timeout=10) as client:
            for _ in range(30):
                # A new connection each time, so both workers get some.
                r = client.post("/v1/models/wine-quality:predict", json={"instances": [row]},
                                headers={"Connection": "close"})
                assert r.status_code == 200, r.text
                assert r.headers["model-version"] == "2"
        # Each process paused its garbage collector at its entry point and resumed it: the
        # workers once their models were loaded (having frozen what start-up built), the
        # supervisor before starting them (service/startup.py).
        workers = set(_workers(srv.proc.pid))
        resumed = eventually(lambda: _resumed(srv.log_text(), {srv.proc.pid, *workers}),
                             what=srv.output)
        assert all("frozen" in resumed[pid] for pid in workers), resumed
        assert "frozen" not in resumed[srv.proc.pid], resumed


def _resumed(log: str, pids: set[int]) -> dict[int, str] | None:
    """pid -> its "garbage collection resumed" line, once every pid in ``pids`` has one."""
    lines = {}
    for line in log.splitlines():
        if "garbage collection resumed" in line:
            record = json.loads(line)
            lines[record["pid"]] = record["message"]
    return lines if pids <= set(lines) else None


def test_a_worker_that_cannot_start_stops_the_supervisor_with_status_3(tmp_path):
    shutil.copytree(MODELS / "wine-quality" / "2", tmp_path / "models" / "wine-quality" / "2")
    with running(tmp_path / "models", tmp_path, settle=False,
                 env={"MODELSERVE_WORKERS": "2",
                      "MODELSERVE_API_KEYS_FILE": str(tmp_path / "missing-keys.txt")}) as srv:
        assert srv.wait_exit(120) == 3, srv.output()  # uvicorn's STARTUP_FAILURE
        log = srv.log_text()
        assert "could not start: stopping" in log
        assert "missing-keys.txt: cannot read it" in log
        assert "starting a new one" not in log  # not restarted
