"""The live view's data: the service's own metrics (the same collectors ``/metrics``
serves, so every worker's in multiprocess mode) regrouped by model and version as JSON.
The page turns two snapshots into rates and latency percentiles."""

from __future__ import annotations

import math
import time
from typing import Any

from service.observability.metrics import Exposition

# family name -> (key in the version's entry, label that splits it)
_COUNTERS = {"modelserve_inference_requests_total": ("requests", "status")}
_HISTOGRAMS = {"modelserve_inference_request_duration_seconds": "latency_s",
               "modelserve_inference_batch_rows": "batch_rows",
               "modelserve_inference_queue_duration_seconds": "queue_s"}
_GAUGES = {"modelserve_queue_rows": "queue_rows",
           "modelserve_drift_window_rows": "drift_rows",
           "modelserve_drift_prediction_psi": "prediction_psi",
           "modelserve_feedback_joined": "feedback_joined"}
_BY_LABEL = {"modelserve_drift_feature_psi": ("feature_psi", "feature"),
             "modelserve_feedback_score": ("live_scores", "metric")}


def snapshot(exposition: Exposition) -> dict[str, Any]:
    """``{"time", "versions": [{"model", "version", "requests": {status: n},
    "latency_s": {"buckets": [[le, n], ...], "sum", "count"}, "batch_rows": {...},
    "queue_s": {...}, "queue_rows", "drift_rows", "prediction_psi", "feature_psi": {...},
    "feedback_joined", "live_scores": {...}}]}``: counters and histograms as totals since
    the start (summed over protocols); gauges as they are now."""
    versions: dict[tuple[str, str], dict[str, Any]] = {}

    def entry(labels: dict[str, str]) -> dict[str, Any] | None:
        model, version = labels.get("model", ""), labels.get("version", "")
        if not model or not version or model.startswith("_"):
            return None  # failed before a version was resolved
        return versions.setdefault((model, version), {"model": model, "version": version})

    for family in exposition.collect():
        for sample in family.samples:
            value = sample.value
            if isinstance(value, float) and math.isnan(value):
                continue
            e = entry(sample.labels)
            if e is None:
                continue
            if family.name in _HISTOGRAMS:
                _histogram(e, family.name, sample.name, sample.labels, value)
            elif sample.name in _COUNTERS:  # not its _created sample
                key, label = _COUNTERS[sample.name]
                counts = e.setdefault(key, {})
                counts[sample.labels[label]] = counts.get(sample.labels[label], 0) + value
            elif family.name in _GAUGES:
                key = _GAUGES[family.name]
                e[key] = e.get(key, 0) + value
            elif family.name in _BY_LABEL:
                key, label = _BY_LABEL[family.name]
                e.setdefault(key, {})[sample.labels[label]] = value
    ordered = sorted(versions.values(), key=lambda e: (e["model"], -int(e["version"])
                                                        if e["version"].isdigit() else 0))
    return {"time": time.time(), "versions": ordered}


def _histogram(e: dict[str, Any], family: str, name: str, labels: dict[str, str],
               value: float) -> None:
    key = _HISTOGRAMS[family]
    h = e.setdefault(key, {"buckets": {}, "sum": 0.0, "count": 0.0})
    if name.endswith("_bucket"):
        le = labels["le"]
        h["buckets"][le] = h["buckets"].get(le, 0.0) + value
    elif name.endswith("_sum"):
        h["sum"] += value
    elif name.endswith("_count"):
        h["count"] += value


def jsonable(snap: dict[str, Any]) -> dict[str, Any]:
    """Histogram buckets as ``[[upper bound, cumulative count], ...]`` in order
    (``+Inf`` as null)."""
    for e in snap["versions"]:
        for key in _HISTOGRAMS.values():
            if key in e:
                buckets = e[key]["buckets"]
                e[key]["buckets"] = [[None if le == "+Inf" else float(le), n]
                                     for le, n in sorted(buckets.items(),
                                                         key=lambda kv: float(kv[0]))]
    return snap
