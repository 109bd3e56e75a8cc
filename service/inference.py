"""Route validated batches to each model version's batcher, creating it on first use
with that model's batching policy (``batching`` in the model's config.json, else the
service-wide settings)."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from service.batching import Batcher, BatchPolicy, InferenceFailed, Outputs
from service.model import LoadedModel
from service.model_config import ModelConfig
from service.observability import metrics
from service.settings import Settings

__all__ = ["Inference", "InferenceFailed"]


class Inference:
    def __init__(self, settings: Settings,
                 config_for: Callable[[str], ModelConfig] | None = None) -> None:
        self.settings = settings
        self._config_for = config_for or (lambda name: ModelConfig())
        # CPU-bound work on a 2-core box: more threads than cores only adds contention.
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="infer")
        self._batchers: dict[int, tuple[LoadedModel, Batcher]] = {}

    async def predict(self, model: LoadedModel, batch: np.ndarray) -> Outputs:
        entry = self._batchers.get(id(model))
        if entry is None or entry[0] is not model:
            entry = (model, self._new_batcher(model))
            if not model.retired:  # a request that resolved it just before it was unloaded
                self._batchers[id(model)] = entry
        model.inflight += 1
        try:
            return await entry[1].submit(batch)
        finally:
            model.inflight -= 1

    def forget(self, model: LoadedModel) -> None:
        """Drop an unloaded version's batcher (requests still queued in it finish: they
        hold it)."""
        entry = self._batchers.get(id(model))
        if entry is not None and entry[0] is model:
            del self._batchers[id(model)]

    def reconfigure(self, name: str) -> None:
        """A model's config changed: its versions get new batchers with the new policy on
        their next request."""
        for key, (model, _batcher) in list(self._batchers.items()):
            if model.name == name:
                del self._batchers[key]

    def batchers(self) -> list[tuple[LoadedModel, Batcher]]:
        return list(self._batchers.values())

    def policy(self, model: LoadedModel) -> BatchPolicy:
        s = self.settings
        cfg = self._config_for(model.name).batching
        max_rows = cfg.max_rows or s.batch_max_rows
        execution = cfg.execution or s.execution
        if execution == "auto":
            # On the loop thread when even a full batch is short: a thread hand-off
            # costs more than such a call, and the loop is blocked only briefly.
            inline = model.seconds_for(max_rows) * 1000 <= s.inline_budget_ms
        else:
            inline = execution == "inline"
        return BatchPolicy(
            max_rows=max_rows,
            max_wait=(cfg.max_wait_ms if cfg.max_wait_ms is not None
                      else s.batch_max_wait_ms) / 1000,
            max_queue_rows=cfg.max_queue_rows or s.queue_max_rows,
            timeout=(cfg.timeout_ms / 1000 if cfg.timeout_ms else s.request_timeout_s),
            inline=inline,
            direct=inline and execution == "auto"
            and model.seconds_for(1) * 1e6 <= s.direct_budget_us,
        )

    def _new_batcher(self, model: LoadedModel) -> Batcher:
        observer = metrics.BatchObserver(model.name, model.version)
        return observer.watch(Batcher(
            f"Model '{model.name}' version {model.version}", model.predict,
            self.policy(model), self._pool, on_batch=observer.on_batch,
            on_wait=observer.on_wait))

    def close(self) -> None:
        self._pool.shutdown(wait=True)
