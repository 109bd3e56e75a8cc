"""Turn raw measurements into medians over rounds, ratios and the Markdown report."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

from servers import (
    CNN_PAIRS,
    COMPARISONS,
    DRIFT_PAIR,
    FLOOR,
    FRAMEWORK,
    GRPC_TWINS,
    MODEL_FLOOR,
    PAYLOAD_LOG_PAIR,
    SHADOW_PAIR,
    STACK_FLOOR,
    Target,
)

METRICS = ("rps", "p50_ms", "p99_ms")
# Recorded by the gRPC load generator only: cores it used (near 1.0 = client-bound).
CLIENT_CPU = "client_cpu"
# The gRPC issue's goal for one wine row at c=1 (on this machine on a quiet day).
GRPC_P50_GOAL_MS = 0.3
# Issue 15: logging every request to files keeps at least this share of c=32 req/s.
PAYLOAD_LOG_RPS_GOAL = 0.85
# Serving without the frameworks: one worker with all eight versions, and its cold start
# against the HTTP floor's.
RSS_GOAL_MIB = 250
COLD_START_GOAL = 5.0
DRIFT_RPS_GOAL = 0.95
SHADOW_P99_GOAL = 1.1


@dataclass(frozen=True)
class Stat:
    median: float
    low: float
    high: float
    n: int

    def as_dict(self) -> dict[str, float]:
        return {"median": self.median, "min": self.low, "max": self.high, "rounds": self.n}


def _stat(values: list[float]) -> Stat:
    return Stat(statistics.median(values), min(values), max(values), len(values))


def summarise(measurements: list[dict[str, Any]]) -> dict[str, dict[int, dict[str, Any]]]:
    """target -> concurrency -> {rps|p50_ms|p99_ms: Stat, errors: total over rounds}."""
    grouped: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for m in measurements:
        grouped.setdefault((m["target"], m["concurrency"]), []).append(m)
    out: dict[str, dict[int, dict[str, Any]]] = {}
    for (target, conc), rows in grouped.items():
        cell: dict[str, Any] = {k: _stat([r[k] for r in rows]) for k in METRICS}
        if all(CLIENT_CPU in r for r in rows):
            cell[CLIENT_CPU] = _stat([r[CLIENT_CPU] for r in rows])
        cell["errors"] = sum(r["errors"] for r in rows)
        cell["requests"] = sum(r["requests"] for r in rows)
        out.setdefault(target, {})[conc] = cell
    return out


def summary_json(summary: dict[str, dict[int, dict[str, Any]]]) -> dict[str, Any]:
    return {t: {str(c): {k: (v.as_dict() if isinstance(v, Stat) else v)
                         for k, v in cell.items()}
                for c, cell in by_c.items()}
            for t, by_c in summary.items()}


# --- formatting -----------------------------------------------------------------------


def _num(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _fmt(stat: Stat | None) -> str:
    if stat is None:
        return "-"
    if stat.n == 1 or stat.low == stat.high:
        return _num(stat.median)
    return f"{_num(stat.median)} ({_num(stat.low)}-{_num(stat.high)})"


def _ratio(a: float | None, b: float | None) -> str:
    if not a or not b:
        return "-"
    r = a / b
    return f"{r:.2f}x" if 0.1 <= r < 100 else f"{r:.2g}x" if r < 0.1 else f"{r:,.0f}x"


def _get(summary: dict[str, dict[int, dict[str, Any]]], target: str, conc: int,
         metric: str) -> Stat | None:
    cell = summary.get(target, {}).get(conc)
    return None if cell is None else cell[metric]


def _median(summary: dict[str, dict[int, dict[str, Any]]], target: str, conc: int,
            metric: str) -> float | None:
    stat = _get(summary, target, conc, metric)
    return None if stat is None else stat.median


def _numeric(cell: str) -> bool:
    return cell.lstrip("*")[:1].isdigit() or cell in ("", "-")


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    # Numbers right-aligned, text left-aligned, decided per column from its cells.
    align = ["---:" if all(_numeric(row[i]) for row in rows) else "---"
             for i in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def markdown(results: dict[str, Any], targets: list[Target],
             summary: dict[str, dict[int, dict[str, Any]]]) -> str:
    cfg = results["config"]
    lo, hi = cfg["concurrency"]
    out = [f"# Serving benchmark, {results['timestamp']}", ""]
    out.append(f"{cfg['rounds']} round(s) interleaved across servers; each measurement "
               f"{cfg['duration_s']} s after a {cfg['warmup_s']} s warm-up, closed loop (wrk "
               f"for HTTP, grpc_load.py for gRPC). Cells: median over rounds (min-max). "
               f"Servers pinned to CPU {cfg['server_cpus']}, load generators to CPU "
               f"{cfg['client_cpus']}.")
    longer = [f"{t.label} {t.min_seconds:g} s" for t in targets
              if t.min_seconds > cfg["duration_s"]]
    if longer:
        out.append("Measured longer because one request under load takes seconds: "
                   + ", ".join(longer) + ".")
    out.append("")

    main = [t for t in targets if t.section == "main"]
    rows = []
    for t in main:
        errors = sum(c["errors"] for c in summary.get(t.key, {}).values())
        rows.append([t.label,
                     _fmt(_get(summary, t.key, lo, "p50_ms")),
                     _fmt(_get(summary, t.key, lo, "p99_ms")),
                     _fmt(_get(summary, t.key, lo, "rps")),
                     _fmt(_get(summary, t.key, hi, "rps")),
                     _fmt(_get(summary, t.key, hi, "p50_ms")),
                     _fmt(_get(summary, t.key, hi, "p99_ms")),
                     str(errors) if errors == 0 else f"**{errors}**"])
    if rows:
        out += ["## Latency and throughput", ""]
        out += _table(["Target", f"c={lo} p50 ms", f"c={lo} p99 ms", f"c={lo} req/s",
                       f"c={hi} req/s", f"c={hi} p50 ms", f"c={hi} p99 ms", "errors"], rows)
        out += ["", "errors: non-2xx responses plus socket errors/timeouts, all rounds and "
                "concurrencies.", ""]

    floor_p50 = _median(summary, FLOOR, lo, "p50_ms")
    floor_rps = _median(summary, FLOOR, hi, "rps")
    model_floor_rps = _median(summary, MODEL_FLOOR, hi, "rps")
    rows = [[t.label,
             _ratio(_median(summary, t.key, lo, "p50_ms"), floor_p50),
             _ratio(_median(summary, t.key, hi, "rps"), floor_rps)]
            + ([] if model_floor_rps is None else
               ["-" if t.key == MODEL_FLOOR
                else _ratio(_median(summary, t.key, hi, "rps"), model_floor_rps)])
            for t in main if t.key != FLOOR]
    if rows and floor_p50:
        out += ["## Against the HTTP floor", ""]
        out += _table(["Target", f"p50 at c={lo} / floor (lower is better)",
                       f"req/s at c={hi} / floor (higher is better)"]
                      + ([] if model_floor_rps is None else
                         [f"req/s at c={hi} / model floor"]), rows)
        if model_floor_rps is not None:
            out += ["", "The model floor is a bare ASGI app that parses the V2 body, calls "
                    "the committed wine v2 model once (the lean runtime ours serves) and "
                    "encodes the V2 answer, with no validation, metrics or admission: a "
                    "server that calls the model once per request cannot reach a req/s "
                    "ratio above its row, nor a p50 ratio below it."]
        out.append("")

    labels = {t.key: t.label for t in targets}
    rows = [[labels[ours], labels[base],
             _ratio(_median(summary, ours, hi, "rps"), _median(summary, base, hi, "rps")),
             _ratio(_median(summary, base, lo, "p50_ms"), _median(summary, ours, lo, "p50_ms"))]
            for ours, base in COMPARISONS if ours in summary and base in summary]
    if rows:
        out += ["## Ours against each baseline", ""]
        # Both columns read the same way round: above 1 means ours is better by that factor.
        out += _table(["Ours", "Baseline", f"req/s at c={hi}: ours / baseline",
                       f"p50 at c={lo}: baseline / ours"], rows)
        out += ["", "Above 1x: ours is that many times faster (more req/s, lower p50)."]
        out.append("")

    rows = []
    for t in (t for t in targets if t.section == "digits"):
        for conc in t.concurrency:
            if t.key in summary and conc in summary[t.key]:
                cell = summary[t.key][conc]
                json_twin = t.key.replace("-v2-binary", "-v2-json")
                vs_json = ""
                if json_twin != t.key and json_twin in summary and conc in summary[json_twin]:
                    vs_json = _ratio(cell["rps"].median, summary[json_twin][conc]["rps"].median)
                rows.append([t.label, str(results["payload_bytes"][t.payload]), str(conc),
                             _fmt(cell["rps"]), _fmt(cell["p50_ms"]), _fmt(cell["p99_ms"]),
                             str(cell["errors"]), vs_json])
    if rows:
        out += ["## Ours: 28x28 digits by protocol", ""]
        out += _table(["Request", "body bytes", "c", "req/s", "p50 ms", "p99 ms", "errors",
                       "req/s vs V2 JSON"], rows)
        out.append("")
    cost = results.get("image_cost")
    if cost:
        cnn = cost.get("cnn_call_ms")
        share = (f"; the CNN's own call for one image: {cnn:.2f} ms, so preprocessing is "
                 f"{cost['preprocess_ms'] / cnn:.1f}x the model call" if cnn else "")
        out += [f"A phone photo (the digit at 150 px on a ruled, unevenly lit 480x360 PNG), "
                f"timed in the service's own code: decoding {cost['decode_ms']:.2f} ms, "
                f"preprocessing (paper, ink, lines, framing) {cost['preprocess_ms']:.2f} ms"
                f"{share} (digits v{cost['digits_version']}).", ""]

    rows = []
    for t in (t for t in targets if t.section == "batch"):
        rows_per_request = results["payload_rows"][t.payload]
        for conc in t.concurrency:
            if t.key in summary and conc in summary[t.key]:
                cell = summary[t.key][conc]
                rps: Stat = cell["rps"]
                row_stat = Stat(rps.median * rows_per_request, rps.low * rows_per_request,
                                rps.high * rows_per_request, rps.n)
                rows.append([t.label, str(conc), _fmt(rps), _fmt(row_stat),
                             _fmt(cell["p50_ms"]), _fmt(cell["p99_ms"]), str(cell["errors"])])
    if rows:
        out += ["## Ours: batches in one request", ""]
        out += _table(["Request", "c", "req/s", "rows/s", "p50 ms", "p99 ms", "errors"], rows)
        out.append("")

    out += _grpc_section(results, targets, summary)
    out += _payload_log_section(results, targets, summary)
    out += _lean_section(results, targets, summary)

    rows = []
    for name, info in results["servers"].items():
        mem = info.get("memory") or {}
        cold = f"{info['cold_start_s']:.2f}"
        if "all_ready_s" in info:
            cold += f" (all versions ready: {info['all_ready_s']:.2f})"
        rows.append([name, info["summary"], cold,
                     _num(mem.get("rss_mib", 0.0)), _num(mem.get("pss_mib", 0.0)),
                     str(mem.get("processes", "?")), info.get("notes") or ""])
    if rows:
        out += ["## Servers", ""]
        out += _table(["Server", "What", "cold start s", "RSS MiB", "PSS MiB", "processes",
                       "settings"], rows)
        starts = cfg.get("cold_starts", 3)  # runs from before it was recorded: 3
        out += ["", "cold start: process spawn to first successful prediction (on an idle "
                f"core, polled every 10 ms; the median of {starts} starts for the floors and "
                "ours). "
                "RSS: sum of VmRSS over the whole process tree after the run (counts "
                "memory shared by forked workers once per process); PSS splits shared pages "
                "fairly.", ""]

    m = results["machine"]
    out += ["## Machine and versions", ""]
    out += [f"- CPU: {m['cpu_model']}, {m['cpus']} cores; {m['memory_gib']} GiB RAM; "
            f"kernel {m['kernel']}; load average at start {m['loadavg_at_start']}, "
            f"at end {m.get('loadavg_at_end', '?')}",
            f"- Python {m['python']}; {m['wrk']}; repo at {m['git_commit']}"
            + (" (service/ has uncommitted changes)" if m["service_tree_dirty"] else "")]
    for venv, info in results["venvs"].items():
        versions = ", ".join(f"{k} {v}" for k, v in info["versions"].items())
        install = info.get("install_seconds")
        extra = f" (venv installed in {install:.0f} s)" if install else ""
        out.append(f"- {venv}: {versions}{extra}")
    if cfg.get("ours_args"):
        out.append(f"- our service started with extra args: `{' '.join(cfg['ours_args'])}`")
    out.append("")
    return "\n".join(out)


def _grpc_section(results: dict[str, Any], targets: list[Target],
                  summary: dict[str, dict[int, dict[str, Any]]]) -> list[str]:
    """Each gRPC target beside its HTTP twin (same model, same tensor), and the goals."""
    labels = {t.key: t.label for t in targets}
    rows = []
    for t in (t for t in targets if t.protocol == "grpc"):
        twin = GRPC_TWINS.get(t.key, "")
        for conc in t.concurrency:
            cell = summary.get(t.key, {}).get(conc)
            if cell is None:
                continue
            http = summary.get(twin, {}).get(conc)
            rows.append([
                t.label, str(results["payload_bytes"][t.payload]), str(conc),
                _fmt(cell["rps"]), _fmt(cell["p50_ms"]), _fmt(cell["p99_ms"]),
                labels.get(twin, twin) if http else "-",
                _fmt(http["rps"]) if http else "-",
                _fmt(http["p50_ms"]) if http else "-",
                _ratio(cell["rps"].median, http["rps"].median) if http else "-",
                _ratio(http["p50_ms"].median, cell["p50_ms"].median) if http else "-",
                _fmt(cell.get(CLIENT_CPU)), str(cell["errors"])])
    if not rows:
        return []
    out = ["## Ours: gRPC (KServe V2) beside HTTP", ""]
    out += _table(["gRPC request", "request bytes", "c", "req/s", "p50 ms", "p99 ms",
                   "HTTP twin", "HTTP req/s", "HTTP p50 ms", "req/s: gRPC / HTTP",
                   "p50: HTTP / gRPC", "client CPU", "errors"], rows)
    out += ["", "Load: bench/grpc_load.py (grpc.aio, one channel per process, the request "
            "serialised once, answers not parsed), pinned to the client CPU like wrk; 2 "
            "processes from c=16. client CPU: cores the load generator used over the "
            "window, summed over its processes; near 1.0 (one pinned core) the number is "
            "the client's ceiling, not the server's. errors: calls with a status other "
            "than OK. Above 1x in the ratio columns: gRPC is better."]
    goals = []
    digits = _median(summary, "grpc-digits64", 8, "rps")
    digits_http = _median(summary, GRPC_TWINS["grpc-digits64"], 8, "rps")
    if digits and digits_http:
        goals.append(f"64 digits at c=8, gRPC req/s >= HTTP V2 binary req/s: "
                     f"{_num(digits)} vs {_num(digits_http)} "
                     f"({_ratio(digits, digits_http)}): "
                     + ("met" if digits >= digits_http else "**not met**"))
        floor = _median(summary, "grpc-floor-digits64", 8, "rps")
        floor_http = _median(summary, GRPC_TWINS["grpc-floor-digits64"], 8, "rps")
        if floor and floor_http:
            goals.append(f"the same 64 digits through the bare transports (the floors), gRPC "
                         f"/ HTTP: {_num(floor)} vs {_num(floor_http)} req/s "
                         f"({_ratio(floor, floor_http)}): grpc.aio alone costs "
                         f"{1000 / floor - 1000 / floor_http:.2f} ms more per call than "
                         "uvicorn for this body")
    p50 = _median(summary, "grpc-wine-v2", 1, "p50_ms")
    if p50:
        goals.append(f"wine v2 one row at c=1, gRPC p50 <= {GRPC_P50_GOAL_MS} ms: "
                     f"{_num(p50)} ms: "
                     + ("met" if p50 <= GRPC_P50_GOAL_MS else "**not met**")
                     + " (the goal is for a quiet machine: see the load averages below)")
    if goals:
        out += ["", "Goals:", ""] + [f"- {g}" for g in goals]
    out.append("")
    return out


def _payload_log_section(results: dict[str, Any], targets: list[Target],
                         summary: dict[str, dict[int, dict[str, Any]]]) -> list[str]:
    """The same request with the evidence features off and on (each server that ran),
    and the goals."""
    off, logged = PAYLOAD_LOG_PAIR
    if off not in summary:
        return []
    lo, hi = results["config"]["concurrency"]
    labels = {t.key: t.label for t in targets}
    off_rps = _median(summary, off, hi, "rps")
    logged_rps = _median(summary, logged, hi, "rps") if logged in summary else None
    out = ["## Evidence cost: payload log, drift, shadow", ""]
    if logged_rps:
        rows = [[labels[key], _fmt(_get(summary, key, lo, "p50_ms")),
                 _fmt(_get(summary, key, hi, "rps"))] for key in (off, logged)]
        rows.append(["logged / off",
                     _ratio(_median(summary, logged, lo, "p50_ms"),
                            _median(summary, off, lo, "p50_ms")),
                     _ratio(logged_rps, off_rps)])
        out += _table(["Target", f"c={lo} p50 ms", f"c={hi} req/s"], rows)
    out += ["", f"Servers of ours on the same one-model repository (copies of wine v1 and v2; "
            f"the requests go to v2): the target {off} has no config.json, the others one "
            "evidence feature each. With everything off, a model's cost is the capture "
            "check alone: compare ours-sklearn-v2 across runs for that."]
    kept = results.get("payload_log")
    if kept:
        answered = kept["answered"]
        out += ["", f"The logged server answered {answered:,} predictions (warm-ups "
                f"included); its files hold {kept['lines']:,} lines in {kept['files']} "
                f"file(s), {_ratio(kept['lines'], answered)} the predictions; its counters "
                f"at the end of the load: {kept['written']:,} written, {kept['dropped']:,} dropped "
                f"(queue full), {kept['failed']:,} failed."]
    goals = []
    if off_rps and logged_rps:
        goals.append(f"- payload log on every request, c={hi} req/s >= {PAYLOAD_LOG_RPS_GOAL}x "
                     f"off: {_num(logged_rps)} vs {_num(off_rps)} "
                     f"({_ratio(logged_rps, off_rps)}): "
                     + ("met" if logged_rps >= PAYLOAD_LOG_RPS_GOAL * off_rps
                        else "**not met**"))
    drift = DRIFT_PAIR[1]
    drift_rps = _median(summary, drift, hi, "rps") if drift in summary else None
    if drift_rps and off_rps:
        p50_ratio = _ratio(_median(summary, drift, lo, "p50_ms"),
                           _median(summary, off, lo, "p50_ms"))
        out += ["", "Drift on (`{\"drift\": {}}`: a window of the latest 1000 rows, at most "
                "200 requests a second into it, PSI per feature at each scrape): "
                f"c={lo} p50 {_fmt(_get(summary, drift, lo, 'p50_ms'))} ms ({p50_ratio} off), "
                f"c={hi} {_fmt(_get(summary, drift, hi, 'rps'))} req/s."]
        goals.append(f"- drift on, c={hi} req/s >= {DRIFT_RPS_GOAL}x off: "
                     f"{_num(drift_rps)} vs {_num(off_rps)} ({_ratio(drift_rps, off_rps)}): "
                     + ("met" if drift_rps >= DRIFT_RPS_GOAL * off_rps else "**not met**"))
    shadow = SHADOW_PAIR[1]
    on_p99 = _median(summary, shadow, hi, "p99_ms") if shadow in summary else None
    off_p99 = _median(summary, off, hi, "p99_ms")
    if on_p99 and off_p99:
        out += ["", "Shadow on (`{\"shadow\": {\"version\": 1, \"percent\": 25}}`: a "
                "quarter of v2's requests sent again to v1 once answered): "
                f"c={hi} p99 {_fmt(_get(summary, shadow, hi, 'p99_ms'))} ms against "
                f"{_fmt(_get(summary, off, hi, 'p99_ms'))} off, "
                f"{_fmt(_get(summary, shadow, hi, 'rps'))} req/s."]
        goals.append(f"- shadow 25%, c={hi} p99 <= {SHADOW_P99_GOAL}x off: "
                     f"{on_p99:.2f} vs {off_p99:.2f} ms ({_ratio(on_p99, off_p99)}): "
                     + ("met" if on_p99 <= SHADOW_P99_GOAL * off_p99 else "**not met**"))
    if goals:
        out += ["", "Goals:", "", *goals]
    out.append("")
    return out


def _lean_section(results: dict[str, Any], targets: list[Target],
                  summary: dict[str, dict[int, dict[str, Any]]]) -> list[str]:
    """Ours on lean forms against the floor and against itself on the frameworks: memory,
    cold start, and the CNN's cost; with the goals."""
    servers = results["servers"]
    ours, floor, framework, stack = (servers.get(k)
                                     for k in ("ours", FLOOR, FRAMEWORK, STACK_FLOOR))
    if ours is None:
        return []
    out = ["## Serving without the frameworks", ""]
    goals = []
    rss = (ours.get("memory") or {}).get("rss_mib")
    cold = ours.get("all_ready_s", ours["cold_start_s"])
    rows = []
    for name, info in (("ours (lean forms)", ours), ("ours, lean runtimes off", framework),
                       ("stack floor (the HTTP floor, our libraries imported)", stack),
                       ("HTTP floor", floor)):
        if info is None:
            continue
        mem = info.get("memory") or {}
        rows.append([name, _num(mem.get("rss_mib", 0.0)),
                     f"{info.get('all_ready_s', info['cold_start_s']):.2f}"])
    out += _table(["Server", "RSS MiB, one worker", "cold start s (every version ready)"],
                  rows)
    if rss:
        goals.append(f"RSS of one worker with every committed version <= {RSS_GOAL_MIB} MiB: "
                     f"{rss:.0f} MiB: " + ("met" if rss <= RSS_GOAL_MIB else "**not met**"))
    if floor is not None:
        ratio = cold / floor["cold_start_s"]
        goals.append(f"cold start to every version ready <= {COLD_START_GOAL:g}x the HTTP "
                     f"floor's: {cold:.2f} s vs {floor['cold_start_s']:.2f} s ({ratio:.1f}x): "
                     + ("met" if ratio <= COLD_START_GOAL else "**not met**"))
        if stack is not None:
            goals.append(f"of which importing our libraries (the stack floor) is "
                         f"{stack['cold_start_s']:.2f} s, "
                         f"{stack['cold_start_s'] / floor['cold_start_s']:.1f}x the HTTP "
                         f"floor; our modules, version checks and warm-up take the other "
                         f"{cold - stack['cold_start_s']:.2f} s")
    labels = {t.key: t.label for t in targets}
    rows = []
    for lean, tf in CNN_PAIRS:
        for conc in sorted(summary.get(lean, {})):
            if conc not in summary.get(tf, {}):
                continue
            rows.append([labels[lean], str(conc), _fmt(_get(summary, lean, conc, "rps")),
                         _fmt(_get(summary, tf, conc, "rps")),
                         _fmt(_get(summary, lean, conc, "p50_ms")),
                         _fmt(_get(summary, tf, conc, "p50_ms")),
                         _ratio(_median(summary, lean, conc, "rps"),
                                _median(summary, tf, conc, "rps"))])
    if rows:
        out += ["", "The digits CNN, its lean form against TensorFlow's compiled call (the "
                "same service with lean runtimes off):", ""]
        out += _table(["Request", "c", "lean req/s", "TensorFlow req/s", "lean p50 ms",
                       "TensorFlow p50 ms", "req/s lean / TF"], rows)
        big = (_median(summary, "digits64-cnn-binary", 8, "rps"),
               _median(summary, "digits64-cnn-binary-tf", 8, "rps"))
        if all(big):
            goals.append(f"64 digits to the CNN at c=8, lean req/s >= TensorFlow's: "
                         f"{_num(big[0])} vs {_num(big[1])} ({_ratio(*big)}): "
                         + ("met" if big[0] >= big[1] else "**not met**"))
        one = (_median(summary, "digits-v2-binary", 1, "p50_ms"),
               _median(summary, "digits-v2-binary-tf", 1, "p50_ms"))
        if all(one):
            goals.append(f"one digit to the CNN at c=1, lean p50 <= TensorFlow's: "
                         f"{one[0]:.2f} vs {one[1]:.2f} ms: "
                         + ("met" if one[0] <= one[1] else "**not met**"))
    if goals:
        out += ["", "Goals:", "", *[f"- {g}" for g in goals]]
    out.append("")
    return out
