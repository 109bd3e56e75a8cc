"""Alert rules evaluated on synthetic series with `promtool test rules`: write a unit-test
file for one scenario into a temporary directory, run promtool on it, fail with its
output."""

from __future__ import annotations

import math
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import yaml

from tests.deploy.files import duration_s, tool

PROMTOOL_HINT = "apt-get install prometheus: `make test-tools`"
EVALUATION_INTERVAL = "1m"


def run_rule_test(alerts_file: Path, series: Mapping[str, float | str],
                  expected: Mapping[str, Sequence[Mapping[str, str]]], eval_time: str = "10m",
                  annotations: Mapping[str, Sequence[Mapping[str, str]]] | None = None) -> None:
    """Evaluate ``alerts_file`` at ``eval_time`` on ``series`` and check which alerts fire.

    series: exposition-style keys (``name{label="value",...}``); a number is a constant
    sample every minute from 0 to past ``eval_time``, a string is promtool's own notation
    (``"0+60x20"``: a counter growing 60 a minute; ``"0.1x5 0.4x10"``: a step).
    expected: for each alert name, the label sets of its firing alerts (with the rule's own
    labels, e.g. severity; alertname is added by promtool); an empty list: must not fire.
    annotations: for some of those alerts, their annotations, in the order of their label
    sets. promtool compares annotations too; the other alerts' are removed from a copy of
    the rules so that they are compared by labels only.
    """
    promtool = tool("promtool", PROMTOOL_HINT)
    samples = math.ceil(duration_s(eval_time) / 60) + 5
    annotations = annotations or {}
    unknown = set(annotations) - set(expected)
    assert not unknown, f"annotations for alerts not in expected: {unknown}"
    cases = []
    for name, alerts in expected.items():
        notes = annotations.get(name)
        assert notes is None or len(notes) == len(alerts), f"{name}: one annotation set per alert"
        exp = [{"exp_labels": dict(labels)} for labels in alerts]
        for item, note in zip(exp, notes or [], strict=False):
            item["exp_annotations"] = dict(note)
        cases.append({"eval_time": eval_time, "alertname": name, "exp_alerts": exp})

    rules = yaml.safe_load(alerts_file.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            if "alert" in rule and rule["alert"] not in annotations:
                rule.pop("annotations", None)
    test = {
        "rule_files": ["alerts.yml"],
        "evaluation_interval": EVALUATION_INTERVAL,
        "tests": [{
            "interval": EVALUATION_INTERVAL,
            "input_series": [{"series": key,
                              "values": value if isinstance(value, str) else f"{value}x{samples}"}
                             for key, value in series.items()],
            "alert_rule_test": cases,
        }],
    }
    with tempfile.TemporaryDirectory(prefix="rule-test-") as tmp:
        (Path(tmp) / "alerts.yml").write_text(yaml.safe_dump(rules, sort_keys=False))
        test_file = Path(tmp) / "test.yml"
        test_file.write_text(yaml.safe_dump(test, sort_keys=False))
        result = subprocess.run([promtool, "test", "rules", str(test_file)],
                                capture_output=True, text=True, cwd=tmp)
    assert result.returncode == 0, (f"promtool test rules failed:\n{result.stdout}"
                                    f"{result.stderr}\ntest file:\n{yaml.safe_dump(test)}")
