"""Evidence about the versions being served, gathered in the serving process with
nothing else running: the payload log (every logged prediction as a JSON line in
rotating files, optionally sent on as KServe-format CloudEvents).

The data plane calls ``capture`` where the model is called (any protocol) and
``finish`` once the answer's status and latency are known. Both run on the event loop
and only decide, sample and enqueue; encoding and I/O happen on the evidence threads
(``payload_log``), so a slow disk or sink never delays a prediction, and a failure in
them never fails one.
"""

from __future__ import annotations

import random
import time

import numpy as np

from service.batch import Batch
from service.evidence.payload_log import PayloadLog
from service.evidence.records import Prediction
from service.model import LoadedModel
from service.observability import context, metrics
from service.repository import Repository
from service.settings import Settings

__all__ = ["Evidence", "Prediction"]


class Evidence:
    def __init__(self, settings: Settings, repository: Repository) -> None:
        self.repository = repository
        self.payload_log = PayloadLog(settings, metrics.count_payload, metrics.count_sink)

    def capture(self, model: LoadedModel, batch: Batch,
                outputs: dict[str, np.ndarray] | None, client_id: str | None = None,
                error: str = "") -> None:
        """Keep the prediction on the request's context if its model logs it (sampled)."""
        policy = self.repository.config(model.name).payload_log
        if policy is None or (policy.sample < 1 and random.random() >= policy.sample):
            return
        info = context.current()
        if info is None:
            return
        info.prediction = Prediction(model, batch, outputs, info.request_id, client_id,
                                     info.route_label, error=error, log=policy)

    def finish(self, info: context.RequestInfo, protocol: str, status: int,
               seconds: float) -> None:
        """The answer went out: hand the captured prediction to the writers."""
        p: Prediction = info.prediction
        info.prediction = None
        p.time, p.protocol, p.status, p.seconds = time.time(), protocol, status, seconds
        self.payload_log.offer(p)

    def status(self, name: str) -> dict[str, object]:
        """The model's evidence settings and the writers' health, for its status page."""
        policy = self.repository.config(name).payload_log
        log: dict[str, object] = {"enabled": policy is not None}
        if policy is not None:
            log.update(policy.model_dump())
            log.update(self.payload_log.status())
        return {"payload_log": log}

    def close(self) -> None:
        self.payload_log.close()
