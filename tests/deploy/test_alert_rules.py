"""The evidence alerts (input drift, prediction drift, payload log failing) fire on
synthetic series when they should, with the labels an operator needs, and stay quiet below
their thresholds, on small windows and on short spikes (promtool test rules)."""

from __future__ import annotations

import pytest

from tests.deploy.files import ALERTS_YML
from tests.deploy.rules import run_rule_test

WINE = 'model="wine-quality",version="2"'
DIGITS = 'model="digits",version="1"'


def psi(labels: str, feature: str) -> str:
    return f'modelserve_drift_feature_psi{{{labels},feature="{feature}"}}'


def rows(labels: str) -> str:
    return f"modelserve_drift_window_rows{{{labels}}}"


def drift(model: str, version: str, feature: str) -> dict[str, str]:
    return {"severity": "warning", "model": model, "version": version, "feature": feature}


def test_the_harness_fails_on_a_wrong_expectation():
    series = {'modelserve_queue_rows{model="housing",version="1"}': 5000}
    run_rule_test(ALERTS_YML, series, {"ModelserveQueueBacklog": [
        {"severity": "warning", "model": "housing", "version": "1"}]})
    with pytest.raises(AssertionError, match="ModelserveQueueBacklog"):
        run_rule_test(ALERTS_YML, series, {"ModelserveQueueBacklog": [
            {"severity": "critical", "model": "housing", "version": "1"}]})
    with pytest.raises(AssertionError, match="ModelserveQueueBacklog"):
        run_rule_test(ALERTS_YML, series, {"ModelserveQueueBacklog": []})


def test_input_drift_fires_per_drifted_feature_of_a_full_window():
    run_rule_test(ALERTS_YML, {
        psi(WINE, "alcohol"): 0.31,
        psi(WINE, "sulphates"): 0.24,  # moderate: no alert
        rows(WINE): 500,
        psi(DIGITS, "ink_mean"): 0.9,
        psi(DIGITS, "ink_share"): 0.05,
        rows(DIGITS): 200,  # the smallest window judged
    }, {
        "ModelserveInputDrift": [drift("wine-quality", "2", "alcohol"),
                                 drift("digits", "1", "ink_mean")],
        "ModelservePredictionDrift": [],
    }, annotations={"ModelserveInputDrift": [
        {"summary": "wine-quality v2: feature alcohol drifted from training (PSI 0.31)"},
        {"summary": "digits v1: feature ink_mean drifted from training (PSI 0.90)"}]})


@pytest.mark.parametrize(("value", "window"), [(0.25, 10_000), (0.9, 199)],
                         ids=["psi-at-threshold", "window-of-199-rows"])
def test_input_drift_is_quiet_at_the_threshold_or_on_a_small_window(value, window):
    run_rule_test(ALERTS_YML, {psi(WINE, "alcohol"): value, rows(WINE): window},
                  {"ModelserveInputDrift": []})


def test_input_drift_is_judged_on_the_versions_own_window():
    # Version 1's window is full but its feature is stable; version 2's drifted but is small.
    v1 = 'model="wine-quality",version="1"'
    run_rule_test(ALERTS_YML, {psi(v1, "alcohol"): 0.02, rows(v1): 5000,
                               psi(WINE, "alcohol"): 0.8, rows(WINE): 50},
                  {"ModelserveInputDrift": []})


def test_drift_is_judged_on_the_same_servers_window():
    # Two replicas: the one that drifted has seen only 50 rows.
    a, b = f'{WINE},instance="a:8000"', f'{WINE},instance="b:8000"'
    run_rule_test(ALERTS_YML, {
        psi(a, "alcohol"): 0.9, rows(a): 50,
        psi(b, "alcohol"): 0.01, rows(b): 5000,
        f"modelserve_drift_prediction_psi{{{a}}}": 0.9,
        f"modelserve_drift_prediction_psi{{{b}}}": 0.01,
    }, {"ModelserveInputDrift": [], "ModelservePredictionDrift": []})


def test_input_drift_waits_five_minutes():
    # Over the threshold for the last 3 minutes before the evaluation only.
    series = {psi(WINE, "alcohol"): "0.05x7 0.4x10", rows(WINE): 500}
    run_rule_test(ALERTS_YML, series, {"ModelserveInputDrift": []}, eval_time="10m")
    run_rule_test(ALERTS_YML, series, {"ModelserveInputDrift": [
        drift("wine-quality", "2", "alcohol")]}, eval_time="13m")


def test_prediction_drift_fires_on_a_full_window_only():
    pred = f"modelserve_drift_prediction_psi{{{WINE}}}"
    alert = {"severity": "warning", "model": "wine-quality", "version": "2"}
    run_rule_test(ALERTS_YML, {pred: 0.4, rows(WINE): 200},
                  {"ModelservePredictionDrift": [alert], "ModelserveInputDrift": []},
                  annotations={"ModelservePredictionDrift": [{"summary": (
                      "wine-quality v2: predictions drifted from those on the training data "
                      "(PSI 0.40)")}]})
    run_rule_test(ALERTS_YML, {pred: 0.4, rows(WINE): 199}, {"ModelservePredictionDrift": []})
    run_rule_test(ALERTS_YML, {pred: 0.2, rows(WINE): 5000}, {"ModelservePredictionDrift": []})


def records(model: str, outcome: str) -> str:
    return f'modelserve_payload_log_records_total{{model="{model}",outcome="{outcome}"}}'


def test_payload_log_failing_fires_on_dropped_or_failed_records():
    run_rule_test(ALERTS_YML, {
        records("wine-quality", "written"): "0+6000x20",
        records("wine-quality", "dropped"): "0+30x20",  # 0.5 records/s
        records("housing", "written"): "0+600x20",
        records("housing", "failed"): "0+6x20",
    }, {"ModelservePayloadLogFailing": [
        {"severity": "warning", "model": "wine-quality", "outcome": "dropped"},
        {"severity": "warning", "model": "housing", "outcome": "failed"},
    ]}, annotations={"ModelservePayloadLogFailing": [
        {"summary": "wine-quality: payload log dropped 0.5 records/s"},
        {"summary": "housing: payload log failed 0.1 records/s"}]})


def test_payload_log_failing_is_quiet_once_records_stop_failing():
    # 40 records dropped in a burst at the start, none since; writing goes on.
    run_rule_test(ALERTS_YML, {
        records("wine-quality", "written"): "0+6000x20",
        records("wine-quality", "dropped"): "0+10x4 40x16",
        records("wine-quality", "failed"): 0,
    }, {"ModelservePayloadLogFailing": []})
