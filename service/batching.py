"""Adaptive batching: one queue per model version that merges the requests waiting for
it into one model call of at most ``max_rows`` rows.

- No fixed window. A request that finds the model idle is run on the next turn of the
  event loop; requests that were parsed in the same turn, or that arrive while a batch
  is running, go into the next batch. So a lone request is never delayed and a busy
  model sees big batches. ``max_wait`` optionally holds a batch under load (only right
  after another batch) for more rows; it never applies to an idle model.
- Requests are validated before they are queued, so a batch only holds good rows. If
  the model still raises on a batch, each request of it is retried alone and only the
  one that fails gets the error.
- Bounded: a request that would take the queue past ``max_queue_rows`` is refused at
  once with 503 and Retry-After; one waiting longer than ``timeout`` gets 504.
- Execution: ``inline`` runs the call on the event loop thread (no thread hand-off,
  cheapest for calls of a few hundred µs); ``thread`` runs it on the inference thread,
  so the loop keeps reading requests meanwhile (right for long calls such as a CNN).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

import numpy as np

from service.errors import InferenceFailed, Overloaded, TimedOut
from service.observability import context

log = logging.getLogger("modelserve.batching")

__all__ = ["BatchPolicy", "Batcher", "InferenceFailed", "Outputs", "Overloaded", "TimedOut"]

Outputs = dict[str, np.ndarray]
# A request's rows: anything with len() that _merge can join (service.batch.Batch).
Rows = Any
Predict = Callable[[Rows], Outputs]


@dataclass(frozen=True)
class BatchPolicy:
    max_rows: int = 64
    max_wait: float = 0.0        # seconds; only right after another batch
    max_queue_rows: int = 2048
    timeout: float = 30.0        # seconds, per request, queue wait + inference
    inline: bool = True
    # Call at once, on the caller's turn, when nothing is queued or running: for a model
    # cheaper than a trip through the queue (two loop turns and a future).
    direct: bool = False


@dataclass
class _Pending:
    batch: Rows
    future: asyncio.Future[Outputs]
    queued_at: float
    deadline: float
    # For its error log line: results are delivered from a callback that runs in the
    # context of whichever request started the batch, not this one's.
    request_id: str = ""


@dataclass
class BatchStats:
    """Counters for logs and metrics."""

    batches: int = 0
    rows: int = 0
    requests: int = 0
    overloaded: int = 0
    timed_out: int = 0
    failures: int = 0


class Batcher:
    def __init__(self, label: str, predict: Predict, policy: BatchPolicy,
                 executor: Executor | None = None,
                 on_batch: Callable[[int, int, float, float], None] | None = None,
                 on_wait: Callable[[float], None] | None = None) -> None:
        self.label = label
        self.policy = policy
        self.stats = BatchStats()
        self._predict = predict
        self._executor = executor
        self._on_batch = on_batch  # (requests, rows, queue wait s, inference s)
        self._on_wait = on_wait  # (queue wait s) for each request that reaches the model
        self._queue: deque[_Pending] = deque()
        self._queued_rows = 0
        self._running = False
        self._scheduled = False
        self._last_batch_end = 0.0
        self._inflight: list[_Pending] = []
        # One timer for the whole queue, at its earliest deadline, instead of one
        # per request: a timer per request costs more than the model call of a small
        # model.
        self._reaper: asyncio.TimerHandle | None = None

    @property
    def queued_rows(self) -> int:
        return self._queued_rows

    async def submit(self, batch: Rows) -> Outputs:
        n = len(batch)
        if self.policy.direct and not self._queue and not self._running:
            return self._direct(batch)
        if self._queued_rows and self._queued_rows + n > self.policy.max_queue_rows:
            self.stats.overloaded += 1
            raise Overloaded(
                f"{self.label} is overloaded: {self._queued_rows} rows are already waiting "
                f"(limit {self.policy.max_queue_rows}). Retry shortly.",
                headers={"Retry-After": "1"})
        loop = asyncio.get_running_loop()
        now = time.perf_counter()
        info = context.current()
        item = _Pending(batch, loop.create_future(), now, loop.time() + self.policy.timeout,
                        info.request_id if info is not None else "")
        self._queue.append(item)
        self._queued_rows += n
        self.stats.requests += 1
        if not self._running and not self._scheduled:
            self._scheduled = True
            # Not now: requests parsed in this same loop turn join the batch first.
            loop.call_soon(self._flush)
        if self._reaper is None:
            self._reaper = loop.call_at(item.deadline, self._reap)
        # A cancelled caller (client gone) cancels the future too; _take skips it.
        return await item.future

    def _direct(self, batch: Rows) -> Outputs:
        started = time.perf_counter()
        self.stats.requests += 1
        self.stats.batches += 1
        self.stats.rows += len(batch)
        try:
            out = self._predict(batch)
        except Exception as exc:
            self.stats.failures += 1
            log.error("%s failed while predicting", self.label, exc_info=exc)
            raise InferenceFailed(
                f"{self.label} failed while predicting: {type(exc).__name__}.") from None
        finally:
            self._last_batch_end = time.perf_counter()
        if self._on_batch is not None:
            self._on_batch(1, len(batch), 0.0, self._last_batch_end - started)
        if self._on_wait is not None:
            self._on_wait(0.0)
        return out

    def _reap(self) -> None:
        """Answer 504 to every request past its deadline, queued or running."""
        self._reaper = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        waiting = [i for i in (*self._inflight, *self._queue) if not i.future.done()]
        for item in waiting:
            if item.deadline <= now:
                self.stats.timed_out += 1
                item.future.set_exception(TimedOut(
                    f"{self.label} did not answer within {self.policy.timeout:g} s "
                    "(the request timeout)."))
        left = [i.deadline for i in waiting if not i.future.done()]
        if left:
            self._reaper = loop.call_at(min(left), self._reap)

    # --- the batch loop (event-loop thread only) ----------------------------------------

    def _take(self) -> list[_Pending]:
        taken: list[_Pending] = []
        rows = 0
        while self._queue:
            item = self._queue[0]
            if item.future.done():  # timed out or cancelled while queued
                self._queue.popleft()
                self._queued_rows -= len(item.batch)
                continue
            n = len(item.batch)
            if taken and rows + n > self.policy.max_rows:
                break
            self._queue.popleft()
            self._queued_rows -= n
            taken.append(item)
            rows += n
        return taken

    def _flush(self) -> None:
        self._scheduled = False
        if self._running or not self._queue:
            return
        loop = asyncio.get_running_loop()
        policy = self.policy
        if (policy.max_wait > 0 and self._queued_rows < policy.max_rows
                and time.perf_counter() - self._last_batch_end < policy.max_wait):
            # Under load (a batch just ended): wait a little for a fuller batch.
            self._scheduled = True
            loop.call_later(policy.max_wait, self._flush)
            return
        items = self._take()
        if not items:
            return
        started = time.perf_counter()
        batch = items[0].batch if len(items) == 1 else _merge([i.batch for i in items])
        if self._executor is None or policy.inline:
            self._finish(items, started, self._run(batch, items))
            return
        self._running = True
        self._inflight = items
        future = loop.run_in_executor(self._executor, self._run, batch, items)
        future.add_done_callback(lambda f: self._finish(items, started, _outcome(f, items)))

    def _run(self, batch: Rows, items: list[_Pending]) -> list[Outputs | BaseException]:
        """The model call (on whichever thread executes). Never raises."""
        try:
            out = self._predict(batch)
        except Exception as exc:
            if len(items) == 1:
                return [exc]
            # Find the culprit: each request alone, so its batch-mates still get answers.
            results: list[Outputs | BaseException] = []
            for item in items:
                try:
                    results.append(self._predict(item.batch))
                except Exception as one:
                    results.append(one)
            return results
        if len(items) == 1:
            return [out]
        results, start = [], 0
        for item in items:
            end = start + len(item.batch)
            results.append({k: v[start:end] for k, v in out.items()})
            start = end
        return results

    def _finish(self, items: list[_Pending], started: float,
                results: list[Outputs | BaseException]) -> None:
        now = time.perf_counter()
        self._running = False
        self._inflight = []
        self._last_batch_end = now
        rows = sum(len(i.batch) for i in items)
        self.stats.batches += 1
        self.stats.rows += rows
        for item, result in zip(items, results, strict=True):
            if item.future.done():
                continue
            if isinstance(result, BaseException):
                self.stats.failures += 1
                log.error("%s failed while predicting", self.label, exc_info=result,
                          extra={"request_id": item.request_id} if item.request_id else None)
                item.future.set_exception(InferenceFailed(
                    f"{self.label} failed while predicting: {type(result).__name__}."))
            else:
                item.future.set_result(result)
        if self._on_batch is not None:
            wait = started - min(i.queued_at for i in items)
            self._on_batch(len(items), rows, wait, now - started)
        if self._on_wait is not None:
            for item in items:
                self._on_wait(started - item.queued_at)
        if self._queue and not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)


def _merge(parts: list[Any]) -> Any:
    """One model call's input from several requests' batches (``service.batch.Batch``,
    or plain arrays)."""
    if isinstance(parts[0], np.ndarray):
        return np.concatenate(parts)
    return type(parts[0]).concat(parts)


def _outcome(future: asyncio.Future, items: list[_Pending]) -> list[Outputs | BaseException]:
    if future.cancelled():  # the loop is shutting down
        return [RuntimeError("inference was cancelled")] * len(items)
    return future.result()
