"""Fault injection over real HTTP: the service stays up and says what happened.

- A model whose call raises answers 500 with a one-sentence JSON error naming the model
  and version (no traceback, no exception text), on the TF-Serving and V2 routes, on
  both the batched path and the direct path; the failures are counted in /metrics;
  health, readiness and other models are unaffected; the same model answers again once
  the fault is gone. In a merged batch only the request that makes the model raise fails.
  What the client is not told (the exception and its traceback) is in the server log,
  once per failed request, under that request's X-Request-ID.
- A serving version whose artifact changes on disk keeps serving the copy verified at
  load, and its status says the files no longer verify (and clears when they do again).
- A worker process killed under load is replaced by the supervisor; only requests that
  were in flight on it may fail, and the server itself stays up.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from service.observability.logs import JsonFormatter
from tests.conftest import MODELS, Server, running, running_in_process

WINE_ROW = [7.4, 0.7, 0.0, 1.9, 0.076, 11.0, 34.0, 0.9978, 3.51, 0.56, 9.4]
HOUSING_ROW = [8.3252, 41.0, 6.984, 1.024, 322.0, 2.556, 37.88, -122.23]
ROWS = {"wine-quality": WINE_ROW, "housing": HOUSING_ROW}
# Text the injected exception carries: it must stay in the server log, not the response.
SECRET = "secret-internal-detail /srv/modelserve/internal.py line 42"


@pytest.fixture(scope="module")
def inproc(tmp_path_factory):
    repo = tmp_path_factory.mktemp("faults") / "models"
    for name in ("wine-quality", "housing"):
        shutil.copytree(MODELS / name / "2", repo / name / "2")
    # wine-quality goes through the queue and the inference thread (where a failed batch
    # is retried request by request); housing is called directly (budgets large enough
    # that auto always picks it), so both failure paths of the batcher are exercised.
    (repo / "wine-quality" / "config.json").write_text(
        json.dumps({"batching": {"execution": "thread"}}))
    with running_in_process(repo, poll_interval_s=0, inline_budget_ms=1000.0,
                            direct_budget_us=1_000_000.0, log_level="warning") as srv:
        yield srv


def _tf(client: httpx.Client, name: str, rows: list[list[float]],
        request_id: str | None = None) -> httpx.Response:
    return client.post(f"/v1/models/{name}/versions/2:predict", json={"instances": rows},
                       headers={"X-Request-ID": request_id} if request_id else None)


def _v2(client: httpx.Client, name: str, rows: list[list[float]]) -> httpx.Response:
    return client.post(f"/v2/models/{name}/versions/2/infer", json={"inputs": [
        {"name": "features", "datatype": "FP32", "shape": [len(rows), len(rows[0])],
         "data": [x for row in rows for x in row]}]})


def _answer(r: httpx.Response) -> list:
    """The prediction of a 200, in a form comparable across calls and protocols."""
    assert r.status_code == 200, r.text
    body = r.json()
    if "predictions" in body:
        preds = body["predictions"]
        return [p["probabilities"] if isinstance(p, dict) else p for p in preds]
    out = {o["name"]: o["data"] for o in body["outputs"]}
    if "probabilities" in out:
        n = len(out["probabilities"]) // len(out["class_id"])
        return [out["probabilities"][i:i + n] for i in range(0, len(out["probabilities"]), n)]
    return out["value"]


def _requests_counted(client: httpx.Client) -> dict[tuple[str, str, str, str], float]:
    text = client.get("/metrics").text
    counts = {}
    for family in text_string_to_metric_families(text):
        if family.name == "modelserve_inference_requests":
            for s in family.samples:
                if s.name.endswith("_total"):
                    lb = s.labels
                    counts[lb["model"], lb["version"], lb["protocol"], lb["status"]] = s.value
    return counts


def _assert_internal_error(r: httpx.Response, name: str) -> None:
    assert r.status_code == 500, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert set(body) == {"error"}, body
    assert body["error"] == f"Model '{name}' version 2 failed while predicting: RuntimeError."
    # Nothing of the exception's text or of the stack reaches the client.
    assert SECRET not in r.text and "Traceback" not in r.text and ".py" not in r.text


def _raising(_batch):
    raise RuntimeError(SECRET)


@contextmanager
def _prediction_errors() -> Iterator[list[dict]]:
    """The batcher's error lines, as the server's JSON log would write them."""
    lines: list[dict] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(json.loads(self.format(record)))

    handler = Keep(logging.ERROR)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("modelserve.batching")
    logger.addHandler(handler)
    try:
        yield lines
    finally:
        logger.removeHandler(handler)


def _assert_logged_once_each(lines: list[dict], responses: list[httpx.Response]) -> None:
    """What the client was not told is in the log, under the id the client was given:
    one error line with the exception's text per failed request."""
    ids = Counter(line.get("request_id") for line in lines)
    assert ids == Counter(r.headers["x-request-id"] for r in responses), ids
    assert all(SECRET in line["exc"] for line in lines)


@pytest.mark.parametrize(("name", "other", "path"), [
    ("wine-quality", "housing", "batched"), ("housing", "wine-quality", "direct")])
def test_a_model_that_raises_answers_500_and_the_service_stays_up(
        inproc, monkeypatch, name, other, path):
    svc = inproc.services
    model = svc.repository.resolve(name, 2)
    policy = svc.inference.policy(model)
    # The fixture's set-up is what makes this case cover the path it is named after.
    assert (policy.direct, policy.inline) == ((True, True) if path == "direct"
                                              else (False, False)), policy
    row, other_row = ROWS[name], ROWS[other]
    with httpx.Client(base_url=inproc.url, timeout=30) as client:
        expected = _answer(_tf(client, name, [row]))
        expected_other = _answer(_tf(client, other, [other_row]))
        before = _requests_counted(client)

        monkeypatch.setattr(model.runtime, "raw", _raising)
        # Faulty requests on both protocols, mixed with good requests to another model
        # at the same time.
        calls: list[tuple[str, Callable]] = [
            (n, proto) for _ in range(10) for n in (name, other) for proto in (_tf, _v2)]
        with ThreadPoolExecutor(8) as pool, _prediction_errors() as logged:
            answers = list(pool.map(
                lambda c: (c[0], c[1], c[1](client, c[0], [ROWS[c[0]]])), calls))
        _assert_logged_once_each(logged, [r for n, _, r in answers if n == name])
        for n, proto, r in answers:
            if n == name:
                _assert_internal_error(r, name)
            else:
                assert _answer(r) == expected_other, (proto.__name__, r.text)

        after = _requests_counted(client)
        for proto in ("tfserving", "v2"):
            key = (name, "2", proto, "500")
            assert after.get(key, 0) - before.get(key, 0) == 10, (key, before, after)
            key = (other, "2", proto, "200")
            assert after.get(key, 0) - before.get(key, 0) == 10, (key, before, after)

        assert client.get("/v2/health/live").status_code == 200
        assert client.get("/v2/health/ready").json() == {"ready": True}
        assert client.get(f"/v2/models/{name}/versions/2/ready").status_code == 200
        [status] = client.get(f"/v1/models/{name}").json()["model_version_status"]
        assert status["state"] == "AVAILABLE", status

        monkeypatch.undo()
        # The fault did not stick: the same loaded model answers again, unchanged.
        assert _answer(_tf(client, name, [row])) == expected
        assert _answer(_v2(client, name, [row])) == expected
        key = (name, "2", "v2", "200")
        assert _requests_counted(client).get(key, 0) - after.get(key, 0) == 1


def test_in_a_failed_batch_only_the_culprit_request_fails(inproc, monkeypatch):
    svc = inproc.services
    model = svc.repository.resolve("wine-quality", 2)
    honest = model.runtime.raw
    release = threading.Event()
    calls: list[int] = []

    def faulty(batch):
        calls.append(len(batch))
        if len(calls) == 1:
            # Hold the first call on the inference thread, so the next requests queue
            # up and are merged into one batch.
            assert release.wait(30)
        if (batch["features"][:, 10] > 100).any():  # the fault: a row with alcohol 1000 %
            raise RuntimeError(SECRET)
        return honest(batch)

    poison = [*WINE_ROW[:10], 1000.0]
    goods = [[*WINE_ROW[:10], 9.0 + i / 2] for i in range(6)]
    with httpx.Client(base_url=inproc.url, timeout=30) as client:
        expected = [_answer(_tf(client, "wine-quality", [g]))[0] for g in goods]
        monkeypatch.setattr(model.runtime, "raw", faulty)
        with ThreadPoolExecutor(8) as pool, _prediction_errors() as logged:
            blocker = pool.submit(_tf, client, "wine-quality", [WINE_ROW], "blocker")
            _wait_for(lambda: len(calls) == 1, "the first call to start")
            rows = [*goods[:3], poison, *goods[3:]]
            futures = [pool.submit(_tf, client, "wine-quality", [r], f"row-{i}")
                       for i, r in enumerate(rows)]
            [batcher] = [b for m, b in svc.inference.batchers() if m is model]
            _wait_for(lambda: batcher.queued_rows == len(rows), "the requests to queue")
            release.set()
            answers = [f.result() for f in futures]
        assert blocker.result().status_code == 200
    # One merged call of all seven raised; each was then run alone.
    assert calls == [1, 7, 1, 1, 1, 1, 1, 1, 1], calls
    _assert_internal_error(answers[3], "wine-quality")
    # Logged under the culprit's own request id (not the id of the request whose turn
    # ran the batch).
    _assert_logged_once_each(logged, [answers[3]])
    assert logged[0]["request_id"] == "row-3"
    got = [_answer(r)[0] for i, r in enumerate(answers) if i != 3]
    assert got == expected


def _wait_for(check: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)  # the checks read /proc, the server log or the API
    raise AssertionError(f"timed out waiting for {what}")


# --- an artifact changed on disk after it was loaded ---------------------------------


def test_artifact_changed_on_disk_is_reported_while_the_verified_copy_serves(tmp_path):
    repo = tmp_path / "models"
    shutil.copytree(MODELS / "wine-quality" / "2", repo / "wine-quality" / "2")
    artifact = repo / "wine-quality" / "2" / "model.joblib"
    with running(repo, tmp_path, env={"MODELSERVE_POLL_INTERVAL_S": "0.3"}) as srv:
        with httpx.Client(base_url=srv.url, timeout=30) as client:
            def status() -> dict:
                [s] = client.get("/v1/models/wine-quality").json()["model_version_status"]
                return s

            expected = _answer(_tf(client, "wine-quality", [WINE_ROW]))
            assert status()["status"] == {"error_code": "OK", "error_message": ""}

            original = artifact.read_bytes()
            data = bytearray(original)
            data[len(data) // 2] ^= 0xFF  # same size, different bytes
            artifact.write_bytes(bytes(data))
            _wait_for(lambda: "changed on disk" in status()["status"]["error_message"],
                      "the status to report the change")
            s = status()
            message = s["status"]["error_message"]
            assert s["state"] == "AVAILABLE" and s["status"]["error_code"] == "OK", s
            assert message.startswith("files changed on disk after loading: "), message
            assert "model.joblib: SHA-256 mismatch" in message, message
            assert message.endswith("still serving the copy verified at load, "
                                    "a reload would refuse it"), message
            # Still served, from what was verified at load.
            assert _answer(_tf(client, "wine-quality", [WINE_ROW])) == expected
            assert _answer(_v2(client, "wine-quality", [WINE_ROW])) == expected
            assert client.get("/v2/models/wine-quality/versions/2/ready").status_code == 200
            assert client.get("/v2/health/ready").status_code == 200

            # Putting the file back is noticed too: the warning goes away.
            artifact.write_bytes(original)
            _wait_for(lambda: status()["status"]["error_message"] == "",
                      "the status to clear")
            assert _answer(_tf(client, "wine-quality", [WINE_ROW])) == expected
        log = srv.log_text()
        assert "model wine-quality version 2: files changed on disk after loading" in log
        assert "model wine-quality version 2: files on disk verify again" in log


# --- a worker killed under load --------------------------------------------------------


def _workers(pid: int) -> list[int]:
    """The supervisor's live worker processes (a killed one is gone or a zombie, whose
    command line reads empty)."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []
    found = []
    for c in children:
        try:
            if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes():
                found.append(int(c))
        except OSError:
            continue
    return found


def _answered_by(srv: Server) -> Counter:
    """Predictions answered per worker pid, from the access log."""
    srv.log.flush()
    pids: Counter = Counter()
    with open(srv.log.name) as f:
        for line in f:
            if ":predict" in line and line.startswith("{"):
                try:
                    record = json.loads(line)
                except ValueError:
                    # Seen once in CI: a line read while two workers were writing the
                    # file came back as one record cut into by another. Only counts
                    # matter here; the wait simply reads again.
                    continue
                if record.get("logger", "").endswith("access"):
                    pids[record["pid"]] += 1
    return pids


class Load:
    """Client threads sending predictions back to back, each on a new connection
    (``Connection: close``) so that the kernel spreads them over both workers."""

    def __init__(self, url: str, threads: int) -> None:
        self.url = url
        self.results: list[tuple[float, float, int | str]] = []  # sent, answered, outcome
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True)
                         for _ in range(threads)]

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as client:
            while not self._stop.is_set():
                sent = time.monotonic()
                try:
                    r = client.post("/v1/models/wine-quality:predict",
                                    json={"instances": [WINE_ROW]},
                                    headers={"Connection": "close"})
                    outcome: int | str = r.status_code
                except httpx.HTTPError as exc:
                    outcome = type(exc).__name__
                self.results.append((sent, time.monotonic(), outcome))


def test_a_killed_worker_is_replaced_and_requests_keep_succeeding(tmp_path):
    shutil.copytree(MODELS / "wine-quality" / "2", tmp_path / "models" / "wine-quality" / "2")
    threads = 4
    with running(tmp_path / "models", tmp_path,
                 env={"MODELSERVE_WORKERS": "2", "MODELSERVE_POLL_INTERVAL_S": "0"}) as srv:
        original = _workers(srv.proc.pid)
        assert len(original) == 2, original
        with Load(srv.url, threads) as load:
            # Both workers are serving before one is killed, so the kill hits traffic.
            _wait_for(lambda: set(original) <= set(_answered_by(srv)),
                      "both workers to answer")
            time.sleep(1.0)  # a steady stream before the kill, not its first requests
            victim = original[0]
            before_kill = _answered_by(srv)
            killed_at = time.monotonic()
            os.kill(victim, signal.SIGKILL)
            _wait_for(lambda: len(set(_workers(srv.proc.pid)) - set(original)) == 1
                      and victim not in _workers(srv.proc.pid),
                      "a replacement worker")
            replaced_at = time.monotonic()
            [new] = set(_workers(srv.proc.pid)) - set(original)
            _wait_for(lambda: new in _answered_by(srv),
                      "the replacement to answer")
            serving_at = time.monotonic()
            # Traffic to both workers again.
            _wait_for(lambda: sum(1 for s, _, _ in load.results if s >= serving_at) > 20,
                      "requests after the replacement answered")
        results = load.results
        failed = [r for r in results if r[2] != 200]
        print(f"\nworker kill: {len(results)} requests from {threads} threads, "
              f"{len(failed)} failed {[(round(s - killed_at, 3), o) for s, _, o in failed]} "
              f"(seconds after the kill, error); "
              f"{sum(1 for r in results if r[0] >= killed_at)} sent after the kill; "
              f"replacement process after {replaced_at - killed_at:.2f} s, answering after "
              f"{serving_at - killed_at:.2f} s; answered per worker before the kill "
              f"{dict(before_kill)}, by the end {dict(_answered_by(srv))}")
        assert srv.proc.poll() is None, srv.output()
        assert sorted(_workers(srv.proc.pid)) == sorted([original[1], new])
        _wait_for(lambda: f"Worker process [{victim}] died" in srv.log_text(),
                  "the supervisor to log the death")
        # Only requests in flight on the killed worker can fail: at most one per client
        # thread. Everything sent after the kill succeeds, whether the survivor took it
        # alone (while the replacement loaded) or both did.
        assert len(failed) <= threads, failed
        assert all(outcome == 200 for sent, _, outcome in results if sent >= killed_at), failed
        assert sum(1 for sent, _, _ in results if sent >= serving_at) > 20
