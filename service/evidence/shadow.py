"""Shadow traffic: a share of a model's live requests is sent again, after the caller has
its answer, to a candidate version, and each pair of answers is compared.

The request's own path only decides and enqueues (``offer``: a bounded deque, a full one
drops and counts); one task on the event loop runs the candidate calls, one at a time and
each after yielding to the loop, through the candidate's batcher like any request, so
the shadow never changes an answer, its status or when it is sent. What a pair records:
agreement (the same class, or the absolute and relative difference of a value), each
side's model-call time, and the candidate's errors.

Threads: the event loop only.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from service.batch import Batch
from service.errors import ApiError
from service.evidence.records import Prediction
from service.inference import Inference
from service.manifest import Task
from service.observability import metrics
from service.repository import Repository

log = logging.getLogger("modelserve.evidence")

QUEUE = 1000
_CHUNK = 16  # requests per candidate call: fewer, larger calls; short stalls of the loop


@dataclass
class PairStats:
    """One (model, answering version, candidate version) pair of versions."""

    requests: int = 0
    rows: int = 0
    agree: int = 0              # classifiers: rows with the same class
    abs_diff: float = 0.0       # regressors: sums over rows
    rel_diff: float = 0.0
    primary_s: float = 0.0      # sums of each side's time per request
    shadow_s: float = 0.0
    errors: int = 0
    last_error: str = ""

    def as_dict(self, task: Task) -> dict[str, Any]:
        out: dict[str, Any] = {"requests": self.requests, "rows": self.rows,
                               "errors": self.errors}
        if self.rows:
            if task is Task.CLASSIFICATION:
                out["agreement"] = self.agree / self.rows
            else:
                out["mean_abs_diff"] = self.abs_diff / self.rows
                out["mean_rel_diff"] = self.rel_diff / self.rows
        if self.requests:
            out["primary_ms"] = round(1000 * self.primary_s / self.requests, 3)
            out["shadow_ms"] = round(1000 * self.shadow_s / self.requests, 3)
        if self.last_error:
            out["last_error"] = self.last_error
        return out


@dataclass
class _Item:
    prediction: Prediction
    candidate: str            # version number or label, as config.json gives it


@dataclass
class Shadow:
    repository: Repository
    inference: Inference
    pairs: dict[tuple[str, int, int], PairStats] = field(default_factory=dict)
    dropped: int = 0
    _queue: deque[_Item] = field(default_factory=deque)
    _task: asyncio.Task[None] | None = None

    def offer(self, p: Prediction, candidate: str) -> None:
        if len(self._queue) >= QUEUE:
            self.dropped += 1
            metrics.count_shadow_request(p.name, "dropped")
            return
        self._queue.append(_Item(p, candidate))
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    def for_model(self, name: str) -> dict[str, Any]:
        task = self._task_of(name)
        return {f"{v} vs {c}": s.as_dict(task) for (m, v, c), s in sorted(self.pairs.items())
                if m == name}

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()

    def _task_of(self, name: str) -> Task:
        try:
            return self.repository.resolve(name).manifest.task
        except ApiError:
            return Task.CLASSIFICATION

    async def _run(self) -> None:
        while self._queue:
            await asyncio.sleep(0)  # live requests first
            items = [self._queue.popleft() for _ in range(min(_CHUNK, len(self._queue)))]
            groups: dict[tuple[str, int, str], list[Prediction]] = {}
            for item in items:
                p = item.prediction
                groups.setdefault((p.name, p.version, item.candidate), []).append(p)
            for (_, _, candidate), predictions in groups.items():
                try:
                    await self._compare(predictions, candidate)
                except asyncio.CancelledError:
                    raise
                except Exception:  # the shadow must never take anything else down
                    log.exception("shadow call for %s failed", predictions[0].name)

    async def _compare(self, predictions: list[Prediction], ref: str) -> None:
        """One candidate call for requests that one version answered: their rows merged,
        as the batcher would merge them."""
        first = predictions[0]
        label = None if ref.isdigit() else ref
        try:
            candidate = self.repository.resolve(first.name, int(ref) if label is None
                                                else None, label)
        except ApiError as exc:  # not served (yet): counted as the candidate's errors
            for p in predictions:
                self._error(p, int(ref) if label is None else -1, exc)
            return
        if candidate.version == first.version:
            return
        stats = self.pairs.setdefault((first.name, first.version, candidate.version),
                                      PairStats())
        batch = Batch.concat([p.batch for p in predictions])
        start = time.perf_counter()
        try:
            outputs = await self.inference.predict(candidate, batch)
        except Exception as exc:
            for p in predictions:
                self._error(p, candidate.version, exc)
            return
        seconds = time.perf_counter() - start
        served = {k: np.concatenate([np.asarray(p.outputs[k]) for p in predictions
                                     if p.outputs is not None])
                  for k in ("value", "class_id") if k in outputs}
        n = len(predictions)
        stats.requests += n
        stats.rows += len(batch)
        stats.primary_s += sum(p.model_seconds or p.seconds for p in predictions)
        stats.shadow_s += seconds  # the merged call: its share per request is seconds / n
        for _ in range(n):
            metrics.count_shadow_request(first.name, "compared")
        if first.model.manifest.task is Task.REGRESSION:
            a = np.asarray(served["value"], dtype=np.float64).reshape(-1)
            b = np.asarray(outputs["value"], dtype=np.float64).reshape(-1)
            diff = np.abs(a - b)
            stats.abs_diff += float(diff.sum())
            stats.rel_diff += float((diff / np.maximum(np.abs(a), 1e-12)).sum())
        else:
            same = int(np.count_nonzero(served["class_id"] == np.asarray(outputs["class_id"])))
            stats.agree += same
            metrics.count_shadow_rows(first.name, same, len(batch) - same)

    def _error(self, p: Prediction, version: int, exc: Exception) -> None:
        stats = self.pairs.setdefault((p.name, p.version, version), PairStats())
        stats.errors += 1
        stats.last_error = (exc.message if isinstance(exc, ApiError)
                            else f"{type(exc).__name__}: {exc}")[:300]
        metrics.count_shadow_request(p.name, "error")
