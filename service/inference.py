"""Run model calls off the event loop, so one slow batch never stalls other requests."""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from service.errors import ApiError
from service.model import LoadedModel

log = logging.getLogger("modelserve.inference")


class InferenceFailed(ApiError):
    status_code = 500


class Inference:
    def __init__(self, threads: int = 1) -> None:
        # CPU-bound work on a 2-core box: more threads than cores only adds contention.
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="infer")

    async def predict(self, model: LoadedModel, batch: np.ndarray) -> dict[str, np.ndarray]:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._pool, model.predict, batch)
        except Exception as exc:
            log.exception("inference failed for %s version %d", model.name, model.version)
            raise InferenceFailed(
                f"Model '{model.name}' version {model.version} failed while predicting: "
                f"{type(exc).__name__}.") from exc

    def close(self) -> None:
        self._pool.shutdown(wait=True)
