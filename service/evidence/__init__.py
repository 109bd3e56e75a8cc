"""Evidence about the versions being served, gathered in the serving process with
nothing else running:

- the payload log (``payload_log``): every logged prediction as a JSON line in rotating
  files, optionally sent on as KServe-format CloudEvents;
- the evidence store (``store``): logged predictions in SQLite, joined to the ground
  truth clients feed back (``feedback``), scored live per version (``live``);
- drift (``drift``): each version's latest rows against its training reference
  (``reference``);
- shadow traffic (``shadow``): live requests mirrored to a candidate version, answers
  compared; ``compare`` puts it all side by side for two versions.

The data plane calls ``capture`` where the model is called (any protocol) and
``finish`` once the answer's status and latency are known. Both run on the event loop
and only decide, sample and enqueue; encoding and I/O happen on the evidence threads,
so a slow disk or sink never delays a prediction, and a failure in them never fails one.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import time
from typing import Any

import numpy as np

from service.batch import Batch
from service.errors import ApiError, Conflict, InvalidInput, NotFound, Unavailable
from service.evidence import compare, feedback
from service.evidence.drift import DriftMonitor
from service.evidence.live import LiveScores
from service.evidence.records import Prediction
from service.evidence.shadow import Shadow
from service.evidence.store import Duplicate, EvidenceStore, Unknown, describe
from service.evidence.writer import MB, WAKE_PERIOD_S, Writer
from service.inference import Inference
from service.manifest import Manifest
from service.model import LoadedModel
from service.observability import context, metrics
from service.repository import Repository
from service.settings import Settings

__all__ = ["Evidence", "Prediction"]


class Evidence:
    def __init__(self, settings: Settings, repository: Repository,
                 inference: Inference) -> None:
        self.settings = settings
        self.repository = repository
        self.shadow = Shadow(repository, inference)
        self._drift_next: dict[tuple[str, int], float] = {}  # when a version takes a row
        self.store = EvidenceStore(settings.evidence_db, settings.evidence_max_age_h * 3600,
                                   int(settings.evidence_max_mb * MB))
        self.drift = DriftMonitor(self._drift_window)
        self.writer = Writer(settings, self.store, self.drift, metrics.count_payload,
                             metrics.count_sink)
        self.live = LiveScores(self.store, self._manifest, self._window)

    # --- the prediction path (event loop) -----------------------------------------------

    def capture(self, model: LoadedModel, batch: Batch,
                outputs: dict[str, np.ndarray] | None, client_id: str | None = None,
                error: str = "", model_seconds: float = 0.0) -> None:
        """Keep the prediction on the request's context if its model logs it (sampled),
        takes feedback, watches drift or mirrors it to a shadow candidate (sampled)."""
        config = self.repository.config(model.name)
        policy, store = config.payload_log, config.feedback is not None
        drift = (config.drift is not None and model.reference is not None
                 and self._drift_turn(model, config.drift.max_requests_per_s))
        if policy is not None and policy.sample < 1 and random.random() >= policy.sample:
            policy = None
        shadow = ""
        if (config.shadow is not None and outputs is not None
                and config.shadow.version != str(model.version)
                and (config.shadow.percent >= 100
                     or random.random() * 100 < config.shadow.percent)):
            shadow = config.shadow.version
        if policy is None and not store and not drift and not shadow:
            return
        info = context.current()
        if info is None:
            return
        info.prediction = Prediction(model, batch, outputs, info.request_id, client_id,
                                     info.route_label, error=error, log=policy, store=store,
                                     drift=drift, shadow=shadow, model_seconds=model_seconds)

    def _drift_turn(self, model: LoadedModel, per_s: float) -> bool:
        """Whether this request goes to the version's drift window: at most ``per_s`` a
        second, evenly spaced (event loop only)."""
        now = time.monotonic()
        key = (model.name, model.version)
        if now < self._drift_next.get(key, 0.0):
            return False
        self._drift_next[key] = now + 1.0 / per_s
        return True

    def finish(self, info: context.RequestInfo, protocol: str, status: int,
               seconds: float) -> None:
        """The answer went out: hand the captured prediction to the writers, and to the
        shadow candidate."""
        p: Prediction = info.prediction
        info.prediction = None
        p.time, p.protocol, p.status, p.seconds = time.time(), protocol, status, seconds
        if p.shadow and status == 200:
            self.shadow.offer(p, p.shadow)
        if p.log is not None or p.store or p.drift:
            self.writer.offer(p)

    # --- feedback -----------------------------------------------------------------------

    async def feedback(self, name: str, manifest: Manifest, body: Any) -> dict[str, Any]:
        """Join the body's truths to their logged predictions, all or none of them."""
        try:
            items = feedback.parse(body, manifest, self.settings.max_request_rows)
        except ApiError:
            metrics.count_feedback(name, "invalid", 1)
            raise
        loop = asyncio.get_running_loop()
        versions = await loop.run_in_executor(None, self._join, name, items)
        metrics.count_feedback(name, "joined", len(items))
        self.live.poke()
        per_version: dict[str, int] = {}
        for v in versions:
            per_version[str(v)] = per_version.get(str(v), 0) + 1
        return {"accepted": len(items), "versions": per_version}

    def _join(self, name: str, items: list[tuple[tuple[str, int], str]]) -> list[int]:
        try:
            return self._add_feedback(name, items)
        except Unknown as exc:
            metrics.count_feedback(name, "unmatched", len(exc.keys))
            raise NotFound(
                f"No prediction of '{name}' kept for {describe(exc.keys)}: feedback joins the "
                "predictions made while the model's config.json has \"feedback\" on, by the "
                "x-request-id they were answered with. Nothing was stored.") from None
        except Duplicate as exc:
            metrics.count_feedback(name, "duplicate", len(exc.keys))
            raise Conflict(f"{describe(exc.keys)} of '{name}' already "
                           f"{'has' if len(exc.keys) == 1 else 'have'} feedback. Nothing was "
                           "stored.") from None
        except sqlite3.Error as exc:
            raise Unavailable(f"The evidence store ({self.store.path.name}) cannot be used "
                              f"now: {exc}. Nothing was stored; retry shortly.",
                              headers={"Retry-After": "1"}) from None

    def _add_feedback(self, name: str, items: list[tuple[tuple[str, int], str]]) -> list[int]:
        try:
            return self.store.add_feedback(name, items)
        except Unknown:
            # Its prediction may still be in this worker's queue, or another worker's:
            # this one's is written now, the others' within their next wake-up.
            self.writer.flush()
            try:
                return self.store.add_feedback(name, items)
            except Unknown:
                time.sleep(2 * WAKE_PERIOD_S)
                return self.store.add_feedback(name, items)

    def _window(self, name: str) -> int:
        config = self.repository.config(name).feedback
        return (config.window if config is not None and config.window
                else self.settings.feedback_window)

    def _drift_window(self, name: str) -> int | None:
        config = self.repository.config(name).drift
        return config.window if config is not None else None

    def _manifest(self, name: str, version: int) -> Manifest | None:
        try:
            return self.repository.resolve(name, version).manifest
        except ApiError:  # not served now: its scores wait until it is
            return None

    # --- reading ------------------------------------------------------------------------

    def status(self, name: str) -> dict[str, object]:
        """The model's evidence settings, the writers' health and its live scores."""
        config = self.repository.config(name)
        policy = config.payload_log
        log: dict[str, object] = {"enabled": policy is not None}
        if policy is not None:
            log.update(policy.model_dump())
            log.update(self.writer.status())
        feedback: dict[str, object] = {"enabled": config.feedback is not None}
        if config.feedback is not None:
            self.live.start()
            feedback.update(window=self._window(name), store=self.writer.store_status(),
                            versions=self.live.for_model(name))
            if self.live.error(name):
                feedback["error"] = self.live.error(name)
        drift: dict[str, object] = {"enabled": config.drift is not None}
        if config.drift is not None:
            served = {s.version: s for s in self.repository.view(name).available}
            drift.update(window=config.drift.window, versions={
                str(v): scores.as_dict() for (m, v), scores in sorted(self.drift_scores().items())
                if m == name})
            drift["without_reference"] = sorted(
                str(v) for v, s in served.items() if s.model is not None
                and s.model.reference is None)
        shadow: dict[str, object] = {"enabled": config.shadow is not None}
        if config.shadow is not None:
            shadow.update(config.shadow.model_dump(), dropped=self.shadow.dropped,
                          pairs=self.shadow.for_model(name))
        return {"payload_log": log, "feedback": feedback, "drift": drift, "shadow": shadow}

    def compare(self, name: str, baseline: str, candidate: str) -> dict[str, Any]:
        """Two versions (numbers or labels) side by side (service/evidence/compare.py)."""
        versions = [self._version(name, ref, what)
                    for ref, what in ((baseline, "baseline"), (candidate, "candidate"))]
        b, c = versions
        task = self.repository.view(name).versions[b].model
        task_of = (task.manifest.task if task is not None
                   else self.repository.resolve(name).manifest.task)
        pairs = {(x, y): s for (m, x, y), s in self.shadow.pairs.items()
                 if m == name and {x, y} == {b, c}}
        self.live.start()
        drift = {v: s for (m, v), s in self.drift_scores().items() if m == name}
        return compare.report(name, task_of, b, c, pairs, self.live.for_model(name), drift)

    def _version(self, name: str, ref: str, what: str) -> int:
        if not ref:
            raise InvalidInput(f"Give the {what} version: ?baseline=1&candidate=2 (a version "
                               "number or a label).")
        version = (self.repository.label_version(name, ref) if not ref.isdigit()
                   else int(ref))
        self.repository.status(name, version)  # NotFound for a version it does not know
        return version

    def drift_scores(self) -> dict[tuple[str, int], Any]:
        """Scores of the windows of versions served now (a retired version's window goes
        with it)."""
        out = {}
        for (name, version), scores in self.drift.scores().items():
            try:
                self.repository.resolve(name, version)
            except ApiError:
                continue
            out[(name, version)] = scores
        return out

    def close(self) -> None:
        self.writer.close()
        self.live.close()
        self.store.close()
