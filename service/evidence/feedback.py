"""Ground truth fed back for logged predictions: the request body checked against the
model's task and labels, and the live scores of a version from the joined pairs.

A body is one item or ``{"feedback": [item, ...]}``; an item is ``{"request_id": "...",
"instance": 0, "truth": ...}`` (``instance`` defaults to 0: the first, often only, row
of the request). A classifier's truth is one of its labels or a class index; a
regressor's a finite number.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import orjson

from service.errors import InvalidInput, PayloadTooLarge, detail
from service.evidence.store import Key
from service.manifest import Manifest, Task
from service.observability.requests import valid_request_id
from service.scores import task_metrics


def parse(body: Any, manifest: Manifest, max_items: int) -> list[tuple[Key, str]]:
    """The items as (key, truth as JSON), truths normalised to a class index or a float."""
    if isinstance(body, dict) and "feedback" in body:
        extra = set(body) - {"feedback"}
        if extra:
            raise InvalidInput(f"Unknown field '{sorted(extra)[0][:40]}' beside 'feedback'.")
        items, field = body["feedback"], "feedback"
        if not isinstance(items, list) or not items:
            raise InvalidInput("'feedback' must be a non-empty list of items like "
                               '{"request_id": "...", "instance": 0, "truth": ...}.')
    elif isinstance(body, dict):
        items, field = [body], ""
    else:
        raise InvalidInput('The body must be an object: {"request_id": "...", "truth": ...} '
                           'or {"feedback": [...]}.')
    if len(items) > max_items:
        raise PayloadTooLarge(f"'feedback' holds {len(items)} items; at most {max_items} "
                              "per request.")
    out: list[tuple[Key, str]] = []
    seen: set[Key] = set()
    for i, item in enumerate(items):
        where = f"{field}[{i}]" if field else "body"
        key, truth = _item(item, where, manifest, max_items)
        if key in seen:
            raise InvalidInput(f"{where}: request {key[0]!r} instance {key[1]} is given "
                               "twice in this body.", [detail(where, "duplicate")])
        seen.add(key)
        out.append((key, orjson.dumps(truth).decode()))
    return out


def _item(item: Any, where: str, m: Manifest, max_rows: int) -> tuple[Key, int | float]:
    if not isinstance(item, dict):
        raise InvalidInput(f"{where} must be an object with request_id, instance and truth.")
    extra = set(item) - {"request_id", "instance", "truth"}
    if extra:
        name = sorted(extra)[0][:40]
        raise InvalidInput(f"{where}: unknown field '{name}'; an item has request_id, "
                           "instance and truth.", [detail(f"{where}.{name}", "unknown field")])
    rid = item.get("request_id")
    if not isinstance(rid, str) or not valid_request_id(rid):
        raise InvalidInput(f"{where}.request_id must be the prediction's request id (the "
                           "x-request-id it was answered with: 1 to 128 letters, digits, "
                           "'.', '_' or '-').", [detail(f"{where}.request_id", "invalid")])
    instance = item.get("instance", 0)
    if (not isinstance(instance, int) or isinstance(instance, bool)
            or not 0 <= instance < max_rows):
        raise InvalidInput(f"{where}.instance must be the row of the request, an integer "
                           f"from 0 to {max_rows - 1}.", [detail(f"{where}.instance", "invalid")])
    if "truth" not in item:
        raise InvalidInput(f"{where}: needs 'truth', the true "
                           + ("label." if m.task is Task.CLASSIFICATION else "value."),
                           [detail(f"{where}.truth", "missing")])
    return (rid, instance), _truth(item["truth"], f"{where}.truth", m)


def _truth(value: Any, where: str, m: Manifest) -> int | float:
    if m.task is Task.REGRESSION:
        number = _finite(value)
        if number is None:
            raise InvalidInput(f"{where} must be a finite number, got {_shown(value)}.",
                               [detail(where, "not a number")])
        return number
    labels = m.labels or []
    if isinstance(value, str):
        if value in labels:
            return labels.index(value)
        raise InvalidInput(f"{where}: {_shown(value)} is not one of the model's labels "
                           f"({', '.join(labels)}).",
                           [detail(where, "unknown label", expected=labels, got=value[:64])])
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(labels):
        return value
    raise InvalidInput(f"{where} must be one of the labels ({', '.join(labels)}) or a class "
                       f"index from 0 to {len(labels) - 1}, got {_shown(value)}.",
                       [detail(where, "invalid label", expected=labels)])


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)  # a 400-digit integer overflows here
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _shown(value: Any) -> str:
    if isinstance(value, str):
        return repr(value[:64])
    try:
        return orjson.dumps(value).decode()[:64]
    except (orjson.JSONEncodeError, TypeError):  # too deep, an integer past 64 bits
        return f"a {type(value).__name__}"


def scores(m: Manifest, pairs: list[tuple[str, str]]) -> dict[str, float]:
    """The card's test metrics over the joined (outputs JSON, truth JSON) pairs."""
    if not pairs:
        return {}
    outputs = [orjson.loads(o) for o, _ in pairs]
    truth = np.array([orjson.loads(t) for _, t in pairs])
    if m.task is Task.REGRESSION:
        named = {"value": np.array([o["value"] for o in outputs], dtype=np.float64)}
    else:
        named = {"class_id": np.array([o["class_id"] for o in outputs], dtype=np.int64)}
        if all("probabilities" in o for o in outputs):
            named["probabilities"] = np.array([o["probabilities"] for o in outputs],
                                              dtype=np.float64)
    return task_metrics(m.task, truth, named, len(m.labels or []))
