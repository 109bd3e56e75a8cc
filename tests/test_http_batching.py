"""Batching through the real server: concurrent callers get their own answers (checked
against the committed estimator itself), a bad request among good ones fails alone, a
full queue answers 503 with Retry-After, and a timeout answers 504."""

from __future__ import annotations

import asyncio
import json
import shutil

import httpx
import joblib
import numpy as np
import pytest

from tests.conftest import MODELS, Server

WINE = MODELS / "wine-quality" / "2"


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
    """digits v2 (the CNN, run on the inference thread) with a one-row queue and a 1 ms
    timeout: any request that waits is refused or times out."""
    root = tmp_path_factory.mktemp("strict")
    shutil.copytree(MODELS / "digits" / "2", root / "models" / "digits" / "2")
    (root / "models" / "digits" / "config.json").write_text(json.dumps(
        {"batching": {"max_queue_rows": 1, "timeout_ms": 1, "execution": "thread"}}))
    srv = Server(root / "models", root)
    try:
        srv.wait_settled()
        yield srv
    finally:
        srv.stop()


def test_full_queue_gives_503_with_retry_after_and_timeouts_give_504(strict_server):
    # Binary tensors: parsing costs well under a millisecond, so the eight requests reach
    # the batcher while the first one's 200 rows are still running (JSON bodies this big
    # took tens of ms each to parse on a busy machine: each then found the queue empty).
    image = np.zeros((200, 28, 28), dtype=np.float32)
    header = json.dumps({"inputs": [{"name": "image", "shape": [200, 28, 28],
                                     "datatype": "FP32",
                                     "parameters": {"binary_data_size": image.nbytes}}]})
    content = header.encode() + image.tobytes()

    async def main():
        limits = httpx.Limits(max_connections=8)
        async with httpx.AsyncClient(base_url=strict_server.url, timeout=30,
                                     limits=limits) as c:
            return await asyncio.gather(*(c.post(
                "/v2/models/digits/infer", content=content,
                headers={"Content-Type": "application/octet-stream",
                         "Inference-Header-Content-Length": str(len(header))})
                for _ in range(8)))

    responses = asyncio.run(main())
    codes = [r.status_code for r in responses]
    assert all(r.status_code != 400 for r in responses), responses[0].text
    assert 503 in codes and 504 in codes, codes
    assert set(codes) <= {200, 503, 504}, codes
    for r in responses:
        if r.status_code == 503:
            assert r.headers["retry-after"] == "1"
            assert "overloaded" in r.json()["error"]
        elif r.status_code == 504:
            assert "timeout" in r.json()["error"]
    # The server is still up and answers.
    assert httpx.get(strict_server.url + "/v2/health/live").status_code == 200
    assert "modelserve" in httpx.get(strict_server.url + "/v2/models/digits").json()
