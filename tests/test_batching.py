"""The batcher on its own: merging, isolation, bounds and timeouts, with a fake model
whose calls are recorded (no timing assertions: every check is about behaviour)."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from service.batching import Batcher, BatchPolicy, InferenceFailed, Overloaded, TimedOut

WAIT_S = 60.0  # deadline of every wait on an event: generous, never reached when all is well


class FakeModel:
    """Doubles its input; records each call's row count; can be held (a call starts,
    then waits for ``release``) or made to fail on rows holding -1. ``started`` and
    ``returned`` are set by the calling thread, for the test thread to wait on."""

    def __init__(self) -> None:
        self.calls: list[int] = []
        self.release = threading.Event()
        self.release.set()
        self.started = threading.Event()
        self.returned = threading.Event()

    def __call__(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        self.calls.append(len(batch))
        self.started.set()
        try:
            assert self.release.wait(WAIT_S), "the test never released the model"
            if (batch == -1).any():
                raise ValueError("bad row")
            return {"value": batch[:, 0] * 2}
        finally:
            self.returned.set()


async def until(check, what: str) -> None:
    """Yield to the event loop until ``check()`` holds."""
    deadline = time.monotonic() + WAIT_S
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.001)


def rows(*values: float) -> np.ndarray:
    return np.asarray(values, dtype=np.float32).reshape(-1, 1)


@pytest.fixture(params=["inline", "thread"])
def make(request):
    pool = ThreadPoolExecutor(1)

    def _make(model: FakeModel, **policy) -> Batcher:
        return Batcher("Model 'fake' version 1", model,
                       BatchPolicy(inline=request.param == "inline", **policy), pool)

    yield _make
    pool.shutdown()


def test_concurrent_requests_get_their_own_answers_in_merged_batches(make):
    model = FakeModel()
    batcher = make(model, max_rows=64)

    async def main():
        # Different sizes, so a wrong split would show.
        inputs = [rows(*range(i * 10, i * 10 + 1 + i % 3)) for i in range(40)]
        outs = await asyncio.gather(*(batcher.submit(x) for x in inputs))
        return inputs, outs

    inputs, outs = asyncio.run(main())
    for x, out in zip(inputs, outs, strict=True):
        np.testing.assert_array_equal(out["value"], x[:, 0] * 2)
    assert sum(model.calls) == sum(len(x) for x in inputs)
    assert len(model.calls) < len(inputs), "requests that arrived together were not merged"
    assert max(model.calls) <= 64


def test_batches_never_exceed_max_rows(make):
    model = FakeModel()
    batcher = make(model, max_rows=5)

    async def main():
        return await asyncio.gather(*(batcher.submit(rows(i, i)) for i in range(20)))

    outs = asyncio.run(main())
    assert [o["value"].tolist() for o in outs] == [[2 * i, 2 * i] for i in range(20)]
    assert max(model.calls) <= 5


def test_a_lone_request_does_not_wait_for_a_batch_window(make):
    model = FakeModel()
    # A max wait far longer than the test allows: it must not apply to an idle model.
    batcher = make(model, max_wait=10 * WAIT_S)

    async def main():
        return await asyncio.wait_for(batcher.submit(rows(3)), timeout=WAIT_S)

    assert asyncio.run(main())["value"].tolist() == [6]
    assert model.calls == [1]


def test_a_failing_request_fails_alone(make):
    model = FakeModel()
    batcher = make(model)

    async def main():
        return await asyncio.gather(batcher.submit(rows(1)), batcher.submit(rows(-1)),
                                    batcher.submit(rows(2, 3)), return_exceptions=True)

    ok1, bad, ok2 = asyncio.run(main())
    assert ok1["value"].tolist() == [2]
    assert ok2["value"].tolist() == [4, 6]
    assert isinstance(bad, InferenceFailed) and bad.status_code == 500
    assert "fake" in bad.message


def test_full_queue_answers_503_with_retry_after(make):
    model = FakeModel()
    model.release.clear()  # the first batch blocks until released
    batcher = make(model, max_queue_rows=4)

    async def main():
        first = asyncio.ensure_future(batcher.submit(rows(0)))
        # The first call has started and holds the model.
        await asyncio.to_thread(model.started.wait, WAIT_S)
        queued = [asyncio.ensure_future(batcher.submit(rows(i, i))) for i in (1, 2)]
        await until(lambda: batcher.queued_rows == 4, "both requests to queue")
        with pytest.raises(Overloaded) as refused:
            await batcher.submit(rows(9))
        model.release.set()
        return refused.value, await first, await asyncio.gather(*queued)

    if not batcher.policy.inline:
        refused, first, queued = asyncio.run(main())
        assert refused.status_code == 503 and refused.headers["Retry-After"] == "1"
        assert first["value"].tolist() == [0]
        assert [q["value"].tolist() for q in queued] == [[2, 2], [4, 4]]
        return
    # Inline, the loop itself is busy during a call; fill the queue before it runs.

    async def inline_main():
        queued = [asyncio.ensure_future(batcher.submit(rows(i, i))) for i in (1, 2)]
        await asyncio.sleep(0)  # both queued, the flush not yet run
        model.release.set()
        with pytest.raises(Overloaded) as refused:
            await batcher.submit(rows(9))
        return refused.value, await asyncio.gather(*queued)

    refused, queued = asyncio.run(inline_main())
    assert refused.status_code == 503 and refused.headers["Retry-After"] == "1"
    assert [q["value"].tolist() for q in queued] == [[2, 2], [4, 4]]


def test_timeout_answers_504_and_the_batcher_keeps_serving():
    model = FakeModel()
    model.release.clear()  # the call outlasts the timeout: it returns only when released
    pool = ThreadPoolExecutor(1)
    batcher = Batcher("Model 'fake' version 1", model,
                      BatchPolicy(inline=False, timeout=0.05), pool)

    async def main():
        with pytest.raises(TimedOut) as late:
            await batcher.submit(rows(1))
        model.release.set()
        # The slow call finishes in the background.
        assert await asyncio.to_thread(model.returned.wait, WAIT_S)
        return late.value, await batcher.submit(rows(5))

    late, after = asyncio.run(main())
    pool.shutdown()
    assert late.status_code == 504 and "0.05 s" in late.message
    assert after["value"].tolist() == [10]


def test_requests_that_time_out_while_queued_are_never_run():
    model = FakeModel()
    model.release.clear()
    pool = ThreadPoolExecutor(1)
    batcher = Batcher("Model 'fake' version 1", model,
                      BatchPolicy(inline=False, timeout=0.1), pool)

    async def main():
        first = asyncio.ensure_future(batcher.submit(rows(1)))
        await asyncio.to_thread(model.started.wait, WAIT_S)
        queued = await asyncio.gather(batcher.submit(rows(2)), return_exceptions=True)
        model.release.set()
        await asyncio.gather(first, return_exceptions=True)
        # A later request runs after anything still queued, or merged with it.
        later = await batcher.submit(rows(3))
        return queued[0], later

    late, later = asyncio.run(main())
    pool.shutdown()
    assert isinstance(late, TimedOut)
    assert later["value"].tolist() == [6]
    assert model.calls == [1, 1], "a request that had already timed out was still run"
    assert batcher.queued_rows == 0


def test_direct_mode_calls_an_idle_model_at_once_and_reports_failures():
    model = FakeModel()
    batcher = Batcher("Model 'fake' version 1", model, BatchPolicy(direct=True))

    async def main():
        ok = await batcher.submit(rows(4))
        with pytest.raises(InferenceFailed):
            await batcher.submit(rows(-1))
        # Arriving together they still all get their own answers.
        many = await asyncio.gather(*(batcher.submit(rows(i)) for i in range(10)))
        return ok, many

    ok, many = asyncio.run(main())
    assert ok["value"].tolist() == [8]
    assert [m["value"].tolist() for m in many] == [[2 * i] for i in range(10)]
    assert batcher.stats.failures == 1
