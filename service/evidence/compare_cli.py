"""``modelserve compare NAME --baseline A --candidate B``: the comparison report of a
running server (GET /v1/models/NAME/compare), printed for a person."""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from typing import Any


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="modelserve compare", description=__doc__.split("\n\n")[0])
    p.add_argument("model")
    p.add_argument("--baseline", required=True, help="version number or label")
    p.add_argument("--candidate", required=True, help="version number or label")
    p.add_argument("--url", default=os.environ.get("MODELSERVE_URL", "http://127.0.0.1:8000"))
    p.add_argument("--api-key", default=os.environ.get("MODELSERVE_API_KEY"),
                   help="default: MODELSERVE_API_KEY")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    args = p.parse_args(argv)
    query = urllib.parse.urlencode({"baseline": args.baseline, "candidate": args.candidate})
    url = (f"{args.url.rstrip('/')}/v1/models/{urllib.parse.quote(args.model, safe='')}"
           f"/compare?{query}")
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {args.api_key}"}
                                     if args.api_key else {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            report = json.load(response)
    except urllib.error.HTTPError as exc:
        body = exc.read().decode("utf-8", "replace")
        sys.exit(f"modelserve compare: {exc.code}: {_error(body)}")
    except urllib.error.URLError as exc:
        sys.exit(f"modelserve compare: cannot reach {args.url}: {exc.reason}")
    print(json.dumps(report, indent=2) if args.json else render(report))


def _error(body: str) -> str:
    try:
        return str(json.loads(body).get("error", body))
    except ValueError:
        return body[:300]


def render(report: dict[str, Any]) -> str:
    b, c = str(report["baseline"]), str(report["candidate"])
    lines = [f"{report['model']}: v{b} (baseline) vs v{c} (candidate)", ""]
    lines += [f"- {s}" for s in report["summary"]]
    lines += ["", f"{'':28}{'v' + b:>14}{'v' + c:>14}"]
    fb = report["feedback"]
    keys = [k for k in fb[b] if k != "joined"] or [k for k in fb[c] if k != "joined"]
    for key in ["joined", *keys]:
        lines.append(_row(f"feedback {key}", fb[b].get(key), fb[c].get(key)))
    dr = report["drift"]
    for key in ("rows", "prediction_psi", "max_feature_psi", "max_feature"):
        lines.append(_row(f"drift {key}", dr[b].get(key), dr[c].get(key)))
    for pair, stats in report["shadow"].items():
        shown = ", ".join(f"{k} {_cell(v)}" for k, v in stats.items())
        lines.append(f"shadow {pair}: {shown}")
    return "\n".join(lines)


def _row(what: str, left: Any, right: Any) -> str:
    return f"{what:28}{_cell(left):>14}{_cell(right):>14}"


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)
