"""Metric names out of PromQL expressions: enough of the language to check that the
dashboard's and the alerts' queries use only the service's metrics."""

from __future__ import annotations

import re

from tests.deploy.files import METRICS

_PROMQL_WORDS = {
    "sum", "avg", "min", "max", "count", "rate", "irate", "increase", "histogram_quantile",
    "by", "without", "on", "ignoring", "group_left", "group_right", "unless", "and", "or",
    "bool", "offset", "abs", "clamp_min", "clamp_max", "topk", "bottomk", "label_values",
    "vector", "scalar", "time", "delta", "deriv", "avg_over_time", "max_over_time",
}


def promql_metrics(expr: str) -> set[str]:
    """Metric names in a PromQL expression (label matchers, groupings, ranges, strings,
    Grafana variables and numbers removed; what remains besides functions are metrics)."""
    s = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)
    s = re.sub(r"\{[^}]*\}", "", s)
    s = re.sub(r"\[[^\]]*\]", "", s)
    s = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", s)
    s = re.sub(r"\$\w+", "", s)
    s = re.sub(r"label_values\(([^,)]*),[^)]*\)", r"(\1)", s)  # Grafana: (metric, label)
    names = set(re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", s))
    return {n for n in names if n not in _PROMQL_WORDS and not re.fullmatch(r"e\d*", n)}


def base_metric(name: str) -> str | None:
    if name in METRICS:
        return name
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix) and METRICS.get(name[: -len(suffix)]) == "histogram":
            return name[: -len(suffix)]
    return None

