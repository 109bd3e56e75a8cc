"""Prometheus metrics, named and labelled after Triton's and MLServer's.

Recorded as requests go (cheap: label children are cached per label set, so a request
costs a few dict lookups and lock-protected additions):

- per inference request (by the HTTP gateway and the gRPC servicer, through the data
  plane): ``modelserve_inference_requests_total``
  and ``modelserve_inference_request_duration_seconds``; per HTTP request
  ``modelserve_http_requests_total``;
- per model call (by the batcher's callbacks): queue wait (per request), compute time
  and rows per call; ``modelserve_inference_rows_total`` and
  ``modelserve_inference_executions_total`` are that histogram's sum and count, exported
  under Triton's names at scrape time.

Read at scrape time (no hooks anywhere): each version's state and load time from the
repository, and the rows waiting in each batcher.

Several worker processes (``MODELSERVE_WORKERS`` > 1): the supervisor calls
``prepare_multiprocess`` before the workers start, which points
``PROMETHEUS_MULTIPROC_DIR`` at an empty directory; every worker then writes its
counters and histograms to memory-mapped files there and ``/metrics``, whichever worker
answers it, sums all of them (prometheus-client's multiprocess mode). In that mode:
``modelserve_queue_rows`` is a ``livesum`` gauge that each worker updates after every
model call (the sum over live workers); model state and load time are the answering
worker's view (every worker loads the same repository); prometheus-client's
``process_*`` metrics are not available (they describe one process), and
``modelserve_worker_resident_memory_bytes{pid}`` gives each worker's memory instead.
"""

from __future__ import annotations

import atexit
import glob
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response
from prometheus_client import (
    REGISTRY,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    disable_created_metrics,
    values,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from service.errors import NotFound

if TYPE_CHECKING:
    from service.batching import Batcher
    from service.protocols.common import Services

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# Decided when prometheus-client was imported (from the environment), like its values.
MULTIPROCESS = values.ValueClass is not values.MutexValue

# ``*_created`` series double the output and no dashboard here reads them.
disable_created_metrics()

# 0.1 ms .. 10 s: a small prediction takes ~0.25 ms end to end, a CNN batch tens of ms.
REQUEST_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                   0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Model calls of the lean runtimes take 20-40 µs: start at 10 µs.
STAGE_BUCKETS = (0.00001, 0.000025, 0.00005, *REQUEST_BUCKETS)
ROW_BUCKETS = tuple(float(2 ** i) for i in range(11))  # 1, 2, 4, ..., 1024

REQUESTS = Counter(
    "modelserve_inference_requests_total",
    "Inference requests by model, version, protocol and HTTP status. version is empty "
    "when the request failed before a version was resolved; model is '_unknown' for "
    "names the repository does not know.",
    ["model", "version", "protocol", "status"])
REQUEST_DURATION = Histogram(
    "modelserve_inference_request_duration_seconds",
    "Time from the request's arrival in the server to its last response byte.",
    ["model", "version", "protocol"], buckets=REQUEST_BUCKETS)
QUEUE_DURATION = Histogram(
    "modelserve_inference_queue_duration_seconds",
    "Time a request waited in the version's batcher queue (0 when called directly).",
    ["model", "version"], buckets=STAGE_BUCKETS)
COMPUTE_DURATION = Histogram(
    "modelserve_inference_compute_duration_seconds",
    "Duration of one model call (one batch).",
    ["model", "version"], buckets=STAGE_BUCKETS)
BATCH_ROWS = Histogram(
    "modelserve_inference_batch_rows",
    "Rows (examples) per model call.",
    ["model", "version"], buckets=ROW_BUCKETS)
# modelserve_inference_rows_total and modelserve_inference_executions_total (Triton's
# inference_count and exec_count) are the sum and count of BATCH_ROWS: derived from it at
# scrape time (``_with_batch_counters``) rather than counted a second time per call.
_ROWS_HELP = "Rows (examples) inferred, like Triton's inference_count."
_EXECUTIONS_HELP = "Model calls (batches), like Triton's exec_count."
HTTP_REQUESTS = Counter(
    "modelserve_http_requests_total",
    "Every HTTP request, by method, route template and status.",
    ["method", "route", "status"])

_QUEUE_ROWS_HELP = "Rows waiting in the version's batcher queue."
# Multiprocess mode only: each worker writes its own queue depth, summed over live
# workers. Not registered: the files are read by the MultiProcessCollector.
QUEUE_ROWS = (Gauge("modelserve_queue_rows", _QUEUE_ROWS_HELP, ["model", "version"],
                    registry=None, multiprocess_mode="livesum") if MULTIPROCESS else None)

PAYLOAD_RECORDS = Counter(
    "modelserve_payload_log_records_total",
    "Predictions the payload log wrote, dropped (its queue was full) or failed to write "
    "(disk errors).", ["model", "outcome"])
FEEDBACK_ITEMS = Counter(
    "modelserve_feedback_items_total",
    "Ground-truth feedback items: joined to a logged prediction, or refused as unmatched "
    "(no such logged prediction), duplicate (it already has feedback) or invalid.",
    ["model", "outcome"])
SHADOW_REQUESTS = Counter(
    "modelserve_shadow_requests_total",
    "Live requests mirrored to a shadow candidate: compared, error (the candidate failed "
    "or is not served) or dropped (its queue was full).", ["model", "outcome"])
SHADOW_ROWS = Counter(
    "modelserve_shadow_rows_total",
    "Rows of a classifier's shadowed requests on which the candidate agreed with the "
    "served version, or disagreed.", ["model", "outcome"])
PAYLOAD_SINK_EVENTS = Counter(
    "modelserve_payload_sink_events_total",
    "CloudEvents sent to the payload sink, dropped (its queue was full) or failed.",
    ["outcome"])

UNKNOWN_MODEL = "_unknown"

# --- the per-request path ---------------------------------------------------------------

_request_children: dict[tuple[str, str, str, int], tuple[Any, Any]] = {}
_http_children: dict[tuple[str, str, int], Any] = {}


def observe_request(model: str, version: str, protocol: str, status: int,
                    seconds: float) -> None:
    key = (model, version, protocol, status)
    children = _request_children.get(key)
    if children is None:
        children = (REQUESTS.labels(model, version, protocol, str(status)),
                    REQUEST_DURATION.labels(model, version, protocol))
        _request_children[key] = children
    children[0].inc()
    children[1].observe(seconds)


def count_http(method: str, route: str, status: int) -> None:
    key = (method, route, status)
    child = _http_children.get(key)
    if child is None:
        child = _http_children[key] = HTTP_REQUESTS.labels(method, route, str(status))
    child.inc()


def count_payload(model: str, outcome: str, n: int) -> None:
    PAYLOAD_RECORDS.labels(model, outcome).inc(n)


def count_feedback(model: str, outcome: str, n: int) -> None:
    FEEDBACK_ITEMS.labels(model, outcome).inc(n)


def count_shadow_request(model: str, outcome: str) -> None:
    SHADOW_REQUESTS.labels(model, outcome).inc()


def count_shadow_rows(model: str, agree: int, disagree: int) -> None:
    SHADOW_ROWS.labels(model, "agree").inc(agree)
    SHADOW_ROWS.labels(model, "disagree").inc(disagree)


def count_sink(outcome: str, n: int) -> None:
    PAYLOAD_SINK_EVENTS.labels(outcome).inc(n)


class BatchObserver:
    """The batcher callbacks of one model version, with its label children bound."""

    def __init__(self, model: str, version: int | str) -> None:
        v = str(version)
        self._queue = QUEUE_DURATION.labels(model, v)
        self._compute = COMPUTE_DURATION.labels(model, v)
        self._rows = BATCH_ROWS.labels(model, v)
        self._queue_rows = QUEUE_ROWS.labels(model, v) if QUEUE_ROWS is not None else None
        self._batcher: Batcher | None = None
        self._last_queued = -1

    def watch(self, batcher: Batcher) -> Batcher:
        """Remember the batcher whose queue depth to publish (multiprocess mode)."""
        self._batcher = batcher
        return batcher

    def on_wait(self, seconds: float) -> None:
        self._queue.observe(seconds)

    def on_batch(self, requests: int, rows: int, queue_wait: float, seconds: float) -> None:
        self._compute.observe(seconds)
        self._rows.observe(rows)
        if self._queue_rows is not None and self._batcher is not None:
            queued = self._batcher.queued_rows
            if queued != self._last_queued:
                self._last_queued = queued
                self._queue_rows.set(queued)


# --- scrape-time collectors -------------------------------------------------------------


def _with_batch_counters(metrics: Iterable[Metric]) -> Iterator[Metric]:
    """Pass metrics through, adding the rows and executions counters after the batch-rows
    histogram (its ``_sum`` and ``_count`` samples)."""
    for metric in metrics:
        yield metric
        if metric.name != BATCH_ROWS._name:
            continue
        rows = CounterMetricFamily("modelserve_inference_rows_total", _ROWS_HELP,
                                   labels=["model", "version"])
        executions = CounterMetricFamily("modelserve_inference_executions_total",
                                         _EXECUTIONS_HELP, labels=["model", "version"])
        for sample in metric.samples:
            target = (rows if sample.name.endswith("_sum")
                      else executions if sample.name.endswith("_count") else None)
            if target is not None:
                target.add_metric([sample.labels["model"], sample.labels["version"]],
                                  sample.value)
        yield rows
        yield executions



class RepositoryCollector:
    """``modelserve_model_state`` and ``modelserve_model_load_duration_seconds``, read
    from the repository at each scrape (versions may come and go between scrapes)."""

    def __init__(self, services: Services) -> None:
        self.services = services

    def collect(self) -> Iterator[Metric]:
        from service.repository import State

        repo = self.services.repository
        state = GaugeMetricFamily(
            "modelserve_model_state",
            "1 for the version's current state, 0 for the others (START, LOADING, "
            "AVAILABLE, UNLOADING, END as in TF Serving).",
            labels=["model", "version", "state"])
        load = GaugeMetricFamily(
            "modelserve_model_load_duration_seconds",
            "How long the version took to load, verify and warm up.",
            labels=["model", "version"])
        for name in repo.names():
            try:
                statuses = repo.statuses(name)
            except NotFound:  # removed since names()
                continue
            for status in statuses:
                version = str(status.version)
                for st in State:
                    state.add_metric([name, version, st.value],
                                     1.0 if status.state == st else 0.0)
                if status.load_seconds:
                    load.add_metric([name, version], status.load_seconds)
        yield state
        yield load


class QueueCollector:
    """``modelserve_queue_rows`` read from this process's batchers at scrape time."""

    def __init__(self, services: Services) -> None:
        self.services = services

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily("modelserve_queue_rows", _QUEUE_ROWS_HELP,
                                   labels=["model", "version"])
        depth: dict[tuple[str, str], int] = {}
        for model, batcher in self.services.inference.batchers():
            key = (model.name, str(model.version))
            depth[key] = depth.get(key, 0) + batcher.queued_rows
        for (name, version), rows in sorted(depth.items()):
            family.add_metric([name, version], rows)
        yield family


class WorkerMemoryCollector:
    """Resident memory of every worker process (multiprocess mode), from /proc."""

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily("modelserve_worker_resident_memory_bytes",
                                   "Resident memory of each worker process.", labels=["pid"])
        page = os.sysconf("SC_PAGE_SIZE")
        for pid in _worker_pids():
            try:
                with open(f"/proc/{pid}/statm") as f:
                    family.add_metric([str(pid)], int(f.read().split()[1]) * page)
            except (OSError, IndexError, ValueError):
                continue
        yield family


def _worker_pids() -> list[int]:
    """This process's siblings started by the same supervisor (service/supervisor.py
    spawns its workers with multiprocessing), else just this process."""
    me, parent = os.getpid(), os.getppid()
    try:
        with open(f"/proc/{parent}/task/{parent}/children") as f:
            children = [int(c) for c in f.read().split()]
    except (OSError, ValueError):
        return [me]
    pids = []
    for pid in children:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if pid == me or b"spawn_main" in f.read():
                    pids.append(pid)
        except OSError:
            continue
    return pids or [me]


def _forget_dead_workers(path: str) -> None:
    """Drop the live-gauge files of worker processes that died without cleaning up
    (a crashed worker that uvicorn replaced), so their last values stop counting."""
    for file in glob.glob(os.path.join(path, "gauge_live*_*.db")):
        m = re.search(r"_(\d+)\.db$", file)
        if m and not _alive(int(m.group(1))):
            mark_process_dead(int(m.group(1)), path)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class LiveScoresCollector:
    """``modelserve_feedback_joined`` and ``modelserve_feedback_score``: each version's
    card metrics over its latest fed-back predictions (the last snapshot, computed off the
    event loop by service/evidence/live.py)."""

    def __init__(self, services: Services) -> None:
        self.services = services

    def collect(self) -> Iterator[Metric]:
        joined = GaugeMetricFamily(
            "modelserve_feedback_joined",
            "Fed-back predictions the version's live scores cover (at most the window).",
            labels=["model", "version"])
        score = GaugeMetricFamily(
            "modelserve_feedback_score",
            "The model card's test metrics (accuracy, balanced_accuracy, log_loss, mae, "
            "mse, ...) over the version's latest fed-back predictions.",
            labels=["model", "version", "metric"])
        live = self.services.evidence.live
        if live.store.path.exists():
            live.start()  # after a restart: scores of the feedback already stored
        for (model, version), s in live.snapshot.versions.items():
            joined.add_metric([model, str(version)], s.joined)
            for metric, value in s.scores.items():
                score.add_metric([model, str(version), metric], value)
        yield joined
        yield score


class DriftCollector:
    """``modelserve_drift_*``: each served version's window against its training
    reference, read from the windows at scrape time (cheap: counts per bin)."""

    def __init__(self, services: Services) -> None:
        self.services = services

    def collect(self) -> Iterator[Metric]:
        rows = GaugeMetricFamily(
            "modelserve_drift_window_rows", "Rows in the version's drift window.",
            labels=["model", "version"])
        feature = GaugeMetricFamily(
            "modelserve_drift_feature_psi",
            "Population stability index of the feature in the window against the training "
            "reference (< 0.1 stable, 0.1-0.25 moderate, > 0.25 major shift).",
            labels=["model", "version", "feature"])
        outside = GaugeMetricFamily(
            "modelserve_drift_out_of_range_ratio",
            "Share of the window's values of a numeric feature outside its training range.",
            labels=["model", "version", "feature"])
        prediction = GaugeMetricFamily(
            "modelserve_drift_prediction_psi",
            "Population stability index of the version's predictions in the window against "
            "its predictions on the training data.", labels=["model", "version"])
        for (model, version), s in self.services.evidence.drift_scores().items():
            v = str(version)
            rows.add_metric([model, v], s.rows)
            prediction.add_metric([model, v], s.prediction_psi)
            for name, (psi, out) in s.features.items():
                feature.add_metric([model, v, name], psi)
                if out is not None:
                    outside.add_metric([model, v, name], out)
        yield rows
        yield feature
        yield outside
        yield prediction


class Exposition:
    """What ``/metrics`` serves for one app: the recorded metrics (this process's, or
    every worker's in multiprocess mode) plus the scrape-time collectors."""

    def __init__(self, services: Services) -> None:
        self.path = os.environ.get(MULTIPROC_ENV, "")
        sources: list[Any]
        if MULTIPROCESS:
            sources = [MultiProcessCollector(None, self.path), PlatformCollector(registry=None),
                       RepositoryCollector(services), LiveScoresCollector(services),
                       DriftCollector(services), WorkerMemoryCollector()]
            atexit.register(mark_process_dead, os.getpid(), self.path)
        else:
            sources = [REGISTRY, RepositoryCollector(services), LiveScoresCollector(services),
                       DriftCollector(services), QueueCollector(services)]
        self.sources = sources

    def collect(self) -> Iterable[Metric]:
        if MULTIPROCESS:
            _forget_dead_workers(self.path)
        for source in self.sources:
            yield from _with_batch_counters(source.collect())

    def render(self, accept: str | None) -> tuple[bytes, str]:
        encode, content_type = choose_encoder(accept or "")
        return encode(self), content_type


# --- the endpoint -----------------------------------------------------------------------

router = APIRouter()


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    exposition: Exposition = request.app.state.metrics
    body, content_type = exposition.render(request.headers.get("accept"))
    return Response(body, media_type=content_type)


def install(app: FastAPI) -> None:
    """Serve ``GET /metrics`` for this app (open: probes and Prometheus need no auth)."""
    app.state.metrics = Exposition(app.state.services)
    app.include_router(router)


# --- supervisor side --------------------------------------------------------------------


def prepare_multiprocess(workers: int) -> str | None:
    """Call in the supervisor before worker processes start. With several workers, make
    sure ``PROMETHEUS_MULTIPROC_DIR`` names an empty directory (a new temporary one,
    removed at exit, unless the operator set one: its old ``*.db`` files are deleted, as
    prometheus-client requires), so the workers' metrics are shared. Returns the
    directory, or None when there is nothing to prepare (one worker, variable unset)."""
    path = os.environ.get(MULTIPROC_ENV)
    if workers <= 1 and not path:
        return None
    if path:
        os.makedirs(path, exist_ok=True)
        for stale in glob.glob(os.path.join(path, "*.db")):
            os.remove(stale)
    else:
        path = tempfile.mkdtemp(prefix="modelserve-metrics-")
        os.environ[MULTIPROC_ENV] = path
        atexit.register(shutil.rmtree, path, True)
    return path
