"""Batching through the real server: concurrent callers get their own answers (checked
against the committed estimator itself), a bad request among good ones fails alone, a
full queue answers 503 with Retry-After, and a timeout answers 504 (a model whose call the
test holds, in an in-process server, so that the queue's state does not depend on timing)."""

from __future__ import annotations

import asyncio
import json
import shutil
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import httpx
import joblib
import numpy as np
import pytest

from tests.conftest import MODELS, running_in_process

WINE = MODELS / "wine-quality" / "2"
WAIT_S = 60.0  # deadline of every wait: generous, never reached when all is well


@pytest.fixture(scope="module")
def wine_rows():
    """64 distinct rows: the manifest's samples, scaled a little each."""
    manifest = json.loads((WINE / "manifest.json").read_text())
    base = np.asarray([s["inputs"] for s in manifest["samples"]], dtype=np.float32)
    rng = np.random.default_rng(7)
    picks = base[rng.integers(0, len(base), 64)]
    return (picks * rng.uniform(0.9, 1.1, picks.shape)).astype(np.float32)


def _send_all(url: str, requests: list[tuple[str, dict]]) -> list[httpx.Response]:
    async def main():
        limits = httpx.Limits(max_connections=len(requests))
        async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as c:
            return await asyncio.gather(*(c.post(path, json=body) for path, body in requests))

    return asyncio.run(main())


def test_concurrent_requests_get_exactly_their_own_answers(server, wine_rows):
    estimator = joblib.load(WINE / "model.joblib")  # the committed artifact is the judge
    expected = estimator.predict_proba(wine_rows)
    requests = []
    for i, row in enumerate(wine_rows):
        if i % 2:
            requests.append(("/v1/models/wine-quality/versions/2:predict",
                             {"instances": [row.tolist()]}))
        else:
            requests.append(("/v2/models/wine-quality/versions/2/infer",
                             {"id": f"req-{i}", "inputs": [{"name": "features", "shape": [1, 11],
                                                            "datatype": "FP32",
                                                            "data": row.tolist()}]}))
    responses = _send_all(server.url, requests)
    for i, r in enumerate(responses):
        assert r.status_code == 200, r.text
        body = r.json()
        if i % 2:
            got = body["predictions"][0]["probabilities"]
        else:
            assert body["id"] == f"req-{i}"
            got = next(o for o in body["outputs"] if o["name"] == "probabilities")["data"]
        np.testing.assert_allclose(got, expected[i], atol=1e-6, err_msg=f"request {i}")


def test_a_malformed_request_among_valid_ones_fails_alone(server, wine_rows):
    requests = []
    for i, row in enumerate(wine_rows[:24]):
        instance: list = row.tolist()
        if i % 6 == 3:
            instance[2] = "lots"  # a string where a number belongs
        elif i % 6 == 5:
            instance = instance[:7]  # too few features
        requests.append(("/v1/models/wine-quality/versions/1:predict",
                         {"instances": [instance]}))
    responses = _send_all(server.url, requests)
    for i, r in enumerate(responses):
        if i % 6 in (3, 5):
            assert r.status_code == 400, r.text
            assert "citric acid" in r.json()["error"] or "11 features" in r.json()["error"]
        else:
            assert r.status_code == 200, r.text
            assert len(r.json()["predictions"]) == 1


@pytest.fixture(scope="module")
def strict_server(tmp_path_factory):
    """In this process, so that a test can hold a model's call: digits v2 (the CNN) with a
    one-row queue, wine-quality v2 with a 1 ms timeout, both run on the inference thread."""
    repo = tmp_path_factory.mktemp("strict") / "models"
    for name, batching in (("digits", {"max_queue_rows": 1}), ("wine-quality", {"timeout_ms": 1})):
        shutil.copytree(MODELS / name / "2", repo / name / "2")
        (repo / name / "config.json").write_text(json.dumps(
            {"batching": {**batching, "execution": "thread"}}))
    with running_in_process(repo, poll_interval_s=0, log_level="warning") as srv:
        yield srv


@contextmanager
def _held(srv, name: str, monkeypatch) -> Iterator[tuple[threading.Event, threading.Event]]:
    """The model's calls wait (on the inference thread) until the test sets ``release``;
    ``started`` is set once the first one has begun."""
    model = srv.services.repository.resolve(name, 2)
    honest = model.runtime.raw
    started, release = threading.Event(), threading.Event()

    def held(batch):
        started.set()
        assert release.wait(WAIT_S), "the test never released the model"
        return honest(batch)

    monkeypatch.setattr(model.runtime, "raw", held)
    try:
        yield started, release
    finally:
        release.set()
        monkeypatch.undo()


def _queued_rows(srv, name: str) -> int:
    model = srv.services.repository.resolve(name, 2)
    return sum(b.queued_rows for m, b in srv.services.inference.batchers() if m is model)


def _wait(check, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def test_full_queue_gives_503_with_retry_after_and_timeouts_give_504(strict_server,
                                                                       monkeypatch):
    srv = strict_server
    image = [[0.0] * 28] * 28
    digits = ("/v1/models/digits/versions/2:predict", {"instances": [image]})
    wine = ("/v1/models/wine-quality/versions/2:predict", {"instances": [
        [7.4, 0.7, 0.0, 1.9, 0.076, 11.0, 34.0, 0.9978, 3.51, 0.56, 9.4]]})
    with httpx.Client(base_url=srv.url, timeout=WAIT_S) as c, ThreadPoolExecutor(4) as pool:
        # Full queue: one call running (held), one request queued, the next is refused.
        with _held(srv, "digits", monkeypatch) as (started, release):
            running = pool.submit(c.post, digits[0], json=digits[1])
            assert started.wait(WAIT_S), "the first request never reached the model"
            queued = pool.submit(c.post, digits[0], json=digits[1])
            _wait(lambda: _queued_rows(srv, "digits") == 1, "the second request to queue")
            refused = c.post(digits[0], json=digits[1])
            release.set()
            assert running.result().status_code == 200, running.result().text
            assert queued.result().status_code == 200, queued.result().text
        assert refused.status_code == 503, refused.text
        assert refused.headers["retry-after"] == "1"
        assert "overloaded" in refused.json()["error"]
        # Timeout: a call held past the 1 ms timeout answers 504 (and one queued behind it).
        with _held(srv, "wine-quality", monkeypatch) as (started, release):
            late = pool.submit(c.post, wine[0], json=wine[1])
            assert started.wait(WAIT_S), "the request never reached the model"
            behind = c.post(wine[0], json=wine[1])
            first = late.result()
        for r in (first, behind):
            assert r.status_code == 504, r.text
            assert "timeout" in r.json()["error"]
        # The server is still up and answers.
        assert c.get("/v2/health/live").status_code == 200
        assert "modelserve" in c.get("/v2/models/digits").json()
