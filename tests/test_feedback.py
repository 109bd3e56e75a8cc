"""Ground-truth feedback over real HTTP: truths joined to kept predictions in the SQLite
store, live scores per version equal to the same metrics computed offline, every bad
body a clear 4xx with nothing stored, and the store surviving a restart."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from service.loader import read_manifest
from service.scores import task_metrics
from tests.conftest import MODELS, eventually, running, sample_row, write_config
from tests.test_metrics import scrape, value

DEADLINE_S = 60.0
WINE = read_manifest(MODELS / "wine-quality" / "2")
HOUSING = read_manifest(MODELS / "housing" / "2")
DEEP: Any = 1
for _ in range(300):  # a truth nested too deep to print back
    DEEP = [DEEP]


def _wait(what: str, probe: Callable[[], Any]) -> Any:
    return eventually(probe, DEADLINE_S, what)


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("feedback")
    repo = root / "models"
    for name, version in (("wine-quality", 1), ("wine-quality", 2), ("housing", 2),
                          ("digits", 1)):
        shutil.copytree(MODELS / name / str(version), repo / name / str(version))
    write_config(repo, "wine-quality", {"feedback": {}})
    write_config(repo, "housing", {"feedback": {"window": 3}})
    return repo  # digits: no feedback


@pytest.fixture(scope="module")
def srv(repo) -> Iterator[Any]:
    with running(repo, repo.parent, {"MODELSERVE_EVIDENCE_DB": str(repo.parent / "ev.db")}) as s:
        yield s


def _predict(srv, version: int, rows: list[list[float]], rid: str) -> list[dict[str, Any]]:
    r = httpx.post(f"{srv.url}/v1/models/wine-quality/versions/{version}:predict",
                   json={"instances": rows}, headers={"x-request-id": rid})
    assert r.status_code == 200, r.text
    return r.json()["predictions"]


def _feedback(srv, body: Any, model: str = "wine-quality", v2: bool = False) -> httpx.Response:
    path = f"/v2/models/{model}/feedback" if v2 else f"/v1/models/{model}:feedback"
    if isinstance(body, bytes):  # JSON no client library would write
        return httpx.post(srv.url + path, content=body)
    return httpx.post(srv.url + path, json=body)


def _live(srv, model: str = "wine-quality") -> dict[str, Any]:
    r = httpx.get(f"{srv.url}/v1/models/{model}")
    assert r.status_code == 200, r.text
    return r.json()["modelserve"]["feedback"]


def test_truths_join_per_version_and_score_like_the_card(srv):
    rows = [sample_row(WINE, i) for i in range(4)]
    v2 = _predict(srv, 2, rows[:3], "fb-v2")
    v1 = _predict(srv, 1, rows[3:], "fb-v1")
    truths = ["good", "bad", "good"]
    r = _feedback(srv, {"feedback": [
        {"request_id": "fb-v2", "instance": 0, "truth": truths[0]},
        {"request_id": "fb-v2", "instance": 1, "truth": WINE.labels.index(truths[1])},
        {"request_id": "fb-v2", "instance": 2, "truth": truths[2]}]})
    assert r.status_code == 200, r.text
    assert r.json() == {"accepted": 3, "versions": {"2": 3}}
    r = _feedback(srv, {"request_id": "fb-v1", "truth": "bad"}, v2=True)  # one item, V2 route
    assert r.json() == {"accepted": 1, "versions": {"1": 1}}, r.text

    live = _wait("both versions' live scores", lambda: (
        f := _live(srv))["versions"].get("2", {}).get("joined") == 3
        and f["versions"].get("1", {}).get("joined") == 1 and f)
    assert live["enabled"] and live["window"] == 10000
    y = np.array([WINE.labels.index(t) for t in truths])
    expected = task_metrics(WINE.task, y, {
        "probabilities": np.array([p["probabilities"] for p in v2]),
        "class_id": np.array([p["class_id"] for p in v2])}, len(WINE.labels))
    got = live["versions"]["2"]
    for key, want in expected.items():
        # The answer's JSON holds float32 values rounded to their shortest repr.
        assert got[key] == pytest.approx(want, rel=1e-6), key
    assert live["versions"]["1"]["accuracy"] == float(v1[0]["label"] == "bad")

    with httpx.Client(base_url=srv.url) as c:
        samples = scrape(c)
    assert value(samples, "modelserve_feedback_joined", model="wine-quality", version="2") == 3
    assert value(samples, "modelserve_feedback_score", model="wine-quality", version="2",
                 metric="accuracy") == pytest.approx(expected["accuracy"])
    assert value(samples, "modelserve_feedback_items_total", model="wine-quality",
                 outcome="joined") == 4


def test_a_huge_regression_truth_is_refused(srv):
    r = _feedback(srv, {"request_id": "fb-house", "truth": 10 ** 400}, "housing")
    assert r.status_code == 400 and "finite number" in r.json()["error"], r.text


def test_a_regressor_is_scored_over_its_window(srv):
    rows = [sample_row(HOUSING, i) for i in range(4)]
    r = httpx.post(f"{srv.url}/v1/models/housing:predict", json={"instances": rows},
                   headers={"x-request-id": "fb-house"})
    assert r.status_code == 200, r.text
    values = r.json()["predictions"]
    truth = [1.5, 2.0, 0.75, 3.25]
    for i, t in enumerate(truth):  # one by one: the window keeps the latest three
        assert _feedback(srv, {"request_id": "fb-house", "instance": i, "truth": t},
                         "housing").status_code == 200
    live = _wait("the regressor's scores", lambda: (
        v := _live(srv, "housing")["versions"].get("2")) and v["joined"] == 3 and v)
    err = np.array(values[1:]) - np.array(truth[1:])
    assert live["mae"] == pytest.approx(np.abs(err).mean())
    assert live["mse"] == pytest.approx((err ** 2).mean())


@pytest.mark.parametrize("body, status, words", [
    ({"request_id": "fb-bad", "truth": "great"}, 400, ["body.truth", "good", "bad"]),
    ({"request_id": "fb-bad", "truth": 7}, 400, ["class index from 0 to 1"]),
    ({"request_id": "fb-bad", "truth": True}, 400, ["body.truth"]),
    ({"request_id": "fb-bad"}, 400, ["needs 'truth'"]),
    ({"request_id": "fb-bad", "instance": -1, "truth": "good"}, 400, ["body.instance"]),
    ({"request_id": "", "truth": "good"}, 400, ["body.request_id"]),
    ({"request_id": "fb-bad", "truth": "good", "score": 1}, 400, ["unknown field 'score'"]),
    (b'{"request_id": "\\ud800", "truth": "good"}', 400, ["body.request_id"]),
    ({"request_id": "fb bad", "truth": "good"}, 400, ["body.request_id"]),
    ({"request_id": "fb-bad", "instance": 18446744073709551615, "truth": "good"}, 400,
     ["body.instance"]),
    ({"request_id": "fb-bad", "truth": 10 ** 400}, 400, ["body.truth"]),
    ({"request_id": "fb-bad", "truth": DEEP}, 400, ["body.truth"]),
    ({"feedback": []}, 400, ["non-empty list"]),
    ({"feedback": [{"request_id": "fb-bad", "truth": "good"}] * 2}, 400, ["twice"]),
    ([{"request_id": "fb-bad", "truth": "good"}], 400, ["must be an object"]),
    ({"feedback": [{"request_id": f"x{i}", "truth": "good"} for i in range(301)]}, 413,
     ["at most 300"]),
    ({"request_id": "fb-never-answered", "truth": "good"}, 404, ["fb-never-answered[0]"]),
    ({"request_id": "fb-bad", "instance": 5, "truth": "good"}, 404, ["fb-bad[5]"]),
])
def test_bad_feedback_is_a_clear_4xx(srv, body, status, words):
    _predict(srv, 2, [sample_row(WINE, 0)], "fb-bad")
    r = _feedback(srv, body)
    assert r.status_code == status, r.text
    for word in words:
        assert word in r.json()["error"], (word, r.json())


def test_nothing_is_stored_from_a_refused_body_and_nothing_twice(srv):
    _predict(srv, 2, [sample_row(WINE, 1), sample_row(WINE, 2)], "fb-once")
    mixed = {"feedback": [{"request_id": "fb-once", "truth": "good"},
                          {"request_id": "fb-nope", "truth": "good"}]}
    assert _feedback(srv, mixed).status_code == 404
    # The known item was not stored by the refused body: it is accepted now, once.
    assert _feedback(srv, {"request_id": "fb-once", "truth": "good"}).status_code == 200
    again = _feedback(srv, {"feedback": [{"request_id": "fb-once", "instance": 1,
                                          "truth": "bad"},
                                         {"request_id": "fb-once", "truth": "bad"}]})
    assert again.status_code == 409 and "fb-once[0]" in again.json()["error"], again.text
    # instance 1 was not stored by the refused body either.
    assert _feedback(srv, {"request_id": "fb-once", "instance": 1,
                           "truth": "bad"}).status_code == 200


def test_unknown_models_and_models_without_feedback(srv):
    r = _feedback(srv, {"request_id": "x", "truth": 1}, "no-such-model")
    assert r.status_code == 404 and "no-such-model" in r.json()["error"]
    image = sample_row(read_manifest(MODELS / "digits" / "1"), 0)
    r = httpx.post(f"{srv.url}/v1/models/digits:predict", json={"instances": [image]},
                   headers={"x-request-id": "fb-digits"})
    assert r.status_code == 200, r.text
    r = _feedback(srv, {"request_id": "fb-digits", "truth": "7"}, "digits")
    assert r.status_code == 404 and '"feedback" on' in r.json()["error"], r.text
    assert _live(srv, "digits") == {"enabled": False}


def test_the_store_survives_a_restart(srv, repo, tmp_path):
    _predict(srv, 2, [sample_row(WINE, 3)], "fb-restart")
    assert _feedback(srv, {"request_id": "fb-restart", "truth": "good"}).status_code == 200
    before = _wait("the scores", lambda: _live(srv)["versions"].get("2"))
    db = repo.parent / "ev.db"
    with running(repo, tmp_path, {"MODELSERVE_EVIDENCE_DB": str(db)}) as again:
        after = _wait("the scores after a restart", lambda: (
            v := _live(again)["versions"].get("2")) and v["joined"] >= before["joined"] and v)
        assert _feedback(again, {"request_id": "fb-restart",
                                 "truth": "good"}).status_code == 409
    assert after["joined"] >= 1
