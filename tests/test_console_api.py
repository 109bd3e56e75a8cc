"""The console's JSON for the live view (``/ui/api/live``) over real HTTP, no browser."""

from __future__ import annotations

from typing import Any

from service.loader import read_manifest
from tests.conftest import MODELS, eventually, sample_array

NAME, VERSION = "housing", "1"


def _entry(client) -> dict[str, Any]:
    r = client.get("/ui/api/live")
    assert r.status_code == 200, r.text
    body = r.json()
    assert isinstance(body["time"], float)
    found = [v for v in body["versions"] if (v["model"], v["version"]) == (NAME, VERSION)]
    assert len(found) <= 1, found
    return found[0] if found else {"model": NAME, "version": VERSION}


def _requests(entry: dict[str, Any]) -> float:
    return sum(entry.get("requests", {}).values())


def _check_histogram(h: dict[str, Any]) -> None:
    bounds = [le for le, _ in h["buckets"]]
    counts = [n for _, n in h["buckets"]]
    assert bounds[-1] is None, bounds
    finite = bounds[:-1]
    assert finite and all(isinstance(b, float) for b in finite), bounds
    assert finite == sorted(finite) and len(set(finite)) == len(finite), bounds
    assert counts == sorted(counts), f"not cumulative: {counts}"
    assert counts[-1] == h["count"], h
    assert h["sum"] > 0


def test_live_totals_grow_with_predictions_over_both_protocols(client):
    before = _entry(client)
    rows = sample_array(read_manifest(MODELS / NAME / VERSION))
    r = client.post(f"/v1/models/{NAME}/versions/{VERSION}:predict",
                    json={"instances": rows.tolist()})
    assert r.status_code == 200, r.text
    r = client.post(f"/v2/models/{NAME}/versions/{VERSION}/infer", json={"inputs": [
        {"name": "features", "shape": list(rows.shape), "datatype": "FP32",
         "data": rows.ravel().tolist()}]})
    assert r.status_code == 200, r.text
    r = client.post(f"/v1/models/{NAME}/versions/{VERSION}:predict", json={"instances": [[1.0]]})
    assert r.status_code == 400, r.text

    def grown() -> dict[str, Any] | None:
        now = _entry(client)
        return now if _requests(now) >= _requests(before) + 3 else None

    now = eventually(grown, what=lambda: f"requests counted: {_entry(client)}")
    assert _requests(now) == _requests(before) + 3
    was = before.get("requests", {})
    assert now["requests"]["200"] == was.get("200", 0) + 2
    assert now["requests"]["400"] == was.get("400", 0) + 1
    latency = now["latency_s"]
    assert latency["count"] == before.get("latency_s", {}).get("count", 0) + 3
    _check_histogram(latency)
    # Two batches of len(rows) rows each (the bad request never reached a batch).
    batches = now["batch_rows"]
    _check_histogram(batches)
    assert batches["sum"] - before.get("batch_rows", {}).get("sum", 0) == 2 * len(rows)
    assert now["queue_rows"] == 0
