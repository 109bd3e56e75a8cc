"""Soak test: ~10 minutes of steady mixed traffic against the real service, watching memory.

    .venv/bin/python bench/soak.py [--warmup 60] [--duration 540] [--concurrency 8]
    make soak                                          # the default ~10 minute run
    make soak SOAK_ARGS="--warmup 10 --duration 30"    # smoke run

Starts ``.venv/bin/modelserve serve`` on the committed models with default settings (one
worker, a free port; ``MODELSERVE_*`` variables are not passed on) pinned to CPU 0, and
drives it from CPU 1 with a closed loop of ``--concurrency`` keep-alive connections
(asyncio + httpx) that rotate through every model and protocol (``soak_plan.py``):
TF-Serving :predict / :classify / :regress, KServe V2 JSON, V2 binary tensors, PNG
uploads, metadata, health and /metrics, for the latest version and version 1 of each model.

Before the load, each request variant is sent once and must pass (a wrong body should
not cost ten minutes). Then a warm-up phase and the soak phase; the server's RSS (VmRSS
summed over its process tree, from /proc) is sampled every ``--sample-interval`` seconds,
with its thread and file-descriptor counts and CPU use. Every non-2xx status, connection
error, timeout, unparseable or wrong answer is a failure.

Pass: zero failures and RSS drift ``(end - after warm-up) / after warm-up`` at most
``--max-drift`` percent; otherwise the exit status is 1 (2 if it could not run).
Results: ``bench/results/soak-<UTC timestamp>.json`` and ``.md``, and ``soak-latest.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shlex
import signal
import sys
import time
from array import array
from collections import Counter
from collections.abc import Coroutine
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
import machine
import numpy as np
import procs
import soak_plan
from soak_plan import Endpoint

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
MODELSERVE = REPO / ".venv" / "bin" / "modelserve"
CLK_TCK = os.sysconf("SC_CLK_TCK")
MAX_EXAMPLES = 20  # failure messages kept verbatim; the rest are only counted


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--warmup", type=float, default=60.0,
                   help="seconds of load before the RSS baseline is taken (default 60)")
    p.add_argument("--duration", type=float, default=540.0,
                   help="seconds of soak after the warm-up (default 540: ~10 min in all)")
    p.add_argument("--concurrency", type=int, default=8,
                   help="closed-loop connections, each with one request in flight (default 8)")
    p.add_argument("--sample-interval", type=float, default=5.0,
                   help="seconds between RSS samples (default 5)")
    p.add_argument("--max-drift", type=float, default=10.0,
                   help="largest RSS drift in percent that passes (default 10)")
    p.add_argument("--timeout", type=float, default=30.0,
                   help="seconds one request may take before it counts as a timeout")
    p.add_argument("--serve-args", default="",
                   help="extra flags for `modelserve serve` (default none: default settings)")
    p.add_argument("--server-cpus", default="0", help="taskset CPU list for the server")
    p.add_argument("--client-cpus", default="1", help="CPU list for this load generator")
    p.add_argument("--no-pin", action="store_true", help="do not pin anything to CPUs")
    p.add_argument("--start-timeout", type=float, default=300.0,
                   help="seconds the server may take to report every version ready")
    p.add_argument("--keep-log", action="store_true",
                   help="keep the server log (bench/results/tmp/soak-<run>/) after a pass")
    p.add_argument("--out-dir", type=Path, default=RESULTS_DIR, help="where results go")
    args = p.parse_args(argv)
    if args.warmup < 0 or args.duration <= 0 or args.concurrency < 1 \
            or args.sample_interval <= 0:
        p.error("need --warmup >= 0, --duration > 0, --concurrency >= 1, --sample-interval > 0")
    return args


# --- server-side samples ----------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    t_s: float  # since the start of the warm-up
    phase: str  # "ready" (idle, before load), "warmup", "soak"
    rss_mib: float
    pss_mib: float
    processes: int
    threads: int
    fds: int
    cpu_pct: float  # server CPU time over wall time since the previous sample, in %
    others_cpu_pct: float  # everything else on the machine but server and client, same unit
    requests: int  # completed by the client so far, both phases
    failures: int


def _cpu_ticks(pid: int) -> int:
    with contextlib.suppress(OSError, ValueError, IndexError):
        # After the command name (which may hold spaces): utime and stime are [11], [12].
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    return 0


def _fd_count(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def _machine_busy_s() -> float:
    """CPU seconds every core has spent busy since boot (the aggregate line of /proc/stat)."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        user, nice, system, _idle, _iowait, irq, softirq, steal = (
            int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9])
        return (user + nice + system + irq + softirq + steal) / CLK_TCK
    return 0.0


class Sampler:
    """Samples the server's process tree; CPU % is relative to the previous sample.

    It also records how busy the rest of the machine was: other work on the two cores
    (a test run, a build) slows both server and client, and would otherwise read as a
    slow server.
    """

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.samples: list[Sample] = []
        self._last = self._counters()

    def _counters(self) -> tuple[float, float, float, float]:
        server = sum(_cpu_ticks(p) for p in procs.tree_pids(self.pid)) / CLK_TCK
        return time.monotonic(), server, _own_cpu(), _machine_busy_s()

    def take(self, t_s: float, phase: str, requests: int, failures: int) -> Sample:
        pids = procs.tree_pids(self.pid)
        mem = procs.tree_memory(self.pid)
        now = self._counters()
        wall = now[0] - self._last[0]
        server, client, busy = (now[i] - self._last[i] for i in (1, 2, 3))
        self._last = now
        cpu = 100.0 * server / wall if wall > 0 else 0.0
        others = 100.0 * max(0.0, busy - server - client) / wall if wall > 0 else 0.0
        sample = Sample(round(t_s, 1), phase, mem.rss_mib, mem.pss_mib, mem.processes,
                        sum(procs.status_kib(p, "Threads") for p in pids),
                        sum(_fd_count(p) for p in pids), round(cpu, 1), round(others, 1),
                        requests, failures)
        self.samples.append(sample)
        return sample


# --- client-side statistics -------------------------------------------------------------


@dataclass
class EndpointStats:
    latencies_ms: array[float] = field(default_factory=lambda: array("d"))
    failures: int = 0
    reasons: Counter[str] = field(default_factory=Counter)


@dataclass
class PhaseStats:
    by_endpoint: dict[str, EndpointStats] = field(default_factory=dict)
    started: float = 0.0  # monotonic
    ended: float = 0.0
    client_cpu_s: float = 0.0  # this process's CPU time during the phase

    def record(self, key: str, ms: float, reason: str | None) -> None:
        stats = self.by_endpoint.setdefault(key, EndpointStats())
        stats.latencies_ms.append(ms)
        if reason is not None:
            stats.failures += 1
            stats.reasons[reason[:120]] += 1

    @property
    def requests(self) -> int:
        return sum(len(s.latencies_ms) for s in self.by_endpoint.values())

    @property
    def failures(self) -> int:
        return sum(s.failures for s in self.by_endpoint.values())


@dataclass
class LoadState:
    phase: str = "warmup"
    stop: bool = False
    phases: dict[str, PhaseStats] = field(
        default_factory=lambda: {"warmup": PhaseStats(), "soak": PhaseStats()})
    examples: list[dict[str, Any]] = field(default_factory=list)
    t0: float = 0.0
    error: str = ""  # why the load stopped early (the server died), if it did

    @property
    def requests(self) -> int:
        return sum(p.requests for p in self.phases.values())

    @property
    def failures(self) -> int:
        return sum(p.failures for p in self.phases.values())


async def _send(client: httpx.AsyncClient, ep: Endpoint, variant: soak_plan.Variant,
                ) -> str | None:
    """One request; the failure reason, or None if it passed every check."""
    try:
        response = await client.request(ep.method, ep.path, content=variant.body,
                                        headers=variant.headers)
    except httpx.TimeoutException as exc:
        return f"timeout: {type(exc).__name__}"
    except httpx.HTTPError as exc:  # refused, reset, protocol errors
        return f"connection error: {type(exc).__name__}: {exc}"
    try:
        return ep.check(response.status_code, response.headers, response.content, variant)
    except Exception as exc:  # a bug in a check must show up, not kill the worker silently
        return f"check raised {type(exc).__name__}: {exc}"


async def worker(index: int, client: httpx.AsyncClient, plan: list[Endpoint],
                 state: LoadState, concurrency: int) -> None:
    # Workers start spread over the rotation, so the connections send different
    # endpoints at the same moment rather than the same one in lockstep.
    i = index * len(plan) // concurrency
    sent: Counter[str] = Counter()  # per endpoint: which variant is next
    while not state.stop:
        ep = plan[i % len(plan)]
        i += 1
        variant = ep.variants[(sent[ep.key] + index) % len(ep.variants)]
        sent[ep.key] += 1
        phase = state.phase  # a request counts in the phase it started in
        start = time.perf_counter()
        reason = await _send(client, ep, variant)
        ms = (time.perf_counter() - start) * 1000
        state.phases[phase].record(ep.key, ms, reason)
        if reason is not None and len(state.examples) < MAX_EXAMPLES:
            state.examples.append({"t_s": round(time.monotonic() - state.t0, 1),
                                   "endpoint": ep.key, "reason": reason[:400]})


async def preflight(client: httpx.AsyncClient, endpoints: list[Endpoint]) -> list[str]:
    """Every variant once, in turn: a body the server rejects is a bug in the soak."""
    problems = []
    for ep in endpoints:
        for n, variant in enumerate(ep.variants):
            reason = await _send(client, ep, variant)
            if reason is not None:
                problems.append(f"{ep.key} (variant {n}): {ep.method} {ep.path}: {reason}")
    return problems


async def run_load(args: argparse.Namespace, port: int, endpoints: list[Endpoint],
                   proc: procs.ServerProcess, sampler: Sampler) -> LoadState:
    plan = soak_plan.rotation(endpoints)
    limits = httpx.Limits(max_connections=args.concurrency,
                          max_keepalive_connections=args.concurrency)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", limits=limits,
                                 timeout=httpx.Timeout(args.timeout)) as client:
        problems = await preflight(client, endpoints)
        if problems:
            raise RuntimeError("pre-flight requests failed:\n  " + "\n  ".join(problems))
        state = LoadState()
        sampler.take(0.0, "ready", 0, 0)  # idle, every version loaded, each path run once
        print(f"[soak] pre-flight passed ({sum(len(e.variants) for e in endpoints)} "
              f"requests, {len(endpoints)} endpoints); idle RSS "
              f"{sampler.samples[-1].rss_mib:.0f} MiB", flush=True)

        state.t0 = time.monotonic()  # the load, and the sampling grid, start now
        workers = [asyncio.create_task(worker(i, client, plan, state, args.concurrency))
                   for i in range(args.concurrency)]
        try:
            if args.warmup > 0:
                await _phase(state, "warmup", 0.0, args.warmup, args, proc, sampler)
            state.phase = "soak"
            await _phase(state, "soak", args.warmup, args.duration, args, proc, sampler)
        except procs.ServerDied as exc:  # keep what was measured: it shows when and how
            state.error = str(exc)
        finally:
            state.stop = True  # workers finish their in-flight request and return
            crashed = [r for r in await asyncio.gather(*workers, return_exceptions=True)
                       if isinstance(r, Exception)]
            if crashed and not state.error:  # fewer connections than asked: not a valid run
                state.error = f"{len(crashed)} load worker(s) crashed: {crashed[0]!r}"
    return state


async def _phase(state: LoadState, name: str, offset: float, seconds: float,
                 args: argparse.Namespace, proc: procs.ServerProcess,
                 sampler: Sampler) -> None:
    phase = state.phases[name]
    phase.started = time.monotonic()
    cpu0 = _own_cpu()
    end = state.t0 + offset + seconds  # on the same clock as the sampling grid
    # Samples on a grid from the start of the load (a tick counter, not the clock:
    # sleep may wake a hair early, which must not sample the same tick twice), and one
    # exactly at the phase's end: the warm-up's is the baseline ("after warm-up"), the
    # soak's is "end".
    tick = int(offset / args.sample_interval + 1e-6) + 1
    try:
        while True:
            target = state.t0 + tick * args.sample_interval
            if target > end - 1e-3:  # a grid tick on (or just before) the end is the end
                target = end
            tick += 1
            await asyncio.sleep(max(0.0, target - time.monotonic()))
            s = sampler.take(time.monotonic() - state.t0, name, state.requests,
                             state.failures)
            print(f"[{name} {s.t_s:6.0f} s] RSS {s.rss_mib:7.1f} MiB  threads {s.threads:3d}  "
                  f"fds {s.fds:3d}  server CPU {s.cpu_pct:5.1f}%  others {s.others_cpu_pct:5.1f}%"
                  f"  requests {s.requests:8d}  failures {s.failures}", flush=True)
            if not proc.alive():
                raise procs.ServerDied(f"server exited with {proc.popen.returncode} during the "
                                 f"{name} phase:\n{proc.log_tail()}")
            if target >= end:
                break
    finally:
        phase.ended = time.monotonic()
        phase.client_cpu_s = _own_cpu() - cpu0


def _own_cpu() -> float:
    t = os.times()
    return t.user + t.system


# --- starting the server ----------------------------------------------------------------


def wait_ready(proc: procs.ServerProcess, port: int, timeout: float) -> float:
    """Seconds until /v2/health/ready answers 200: every version loaded or failed."""
    return procs.wait_ready(proc, f"http://127.0.0.1:{port}/v2/health/ready", timeout)


def server_env() -> dict[str, str]:
    # "Default settings": a MODELSERVE_* variable left in the caller's shell would
    # silently change what is soaked; --serve-args is the explicit way to do that.
    return {k: v for k, v in os.environ.items() if not k.startswith("MODELSERVE_")}


def _machine_facts() -> dict[str, Any]:
    try:
        return machine.facts(REPO)
    except OSError:  # it asks wrk for its version; the soak does not need wrk installed
        dirty = machine._git(REPO, "status", "--porcelain", "--", "service")
        return {"cpus": os.cpu_count(), "cpu_model": machine._cpu_model(),
                "memory_gib": machine._mem_total_gib(), "loadavg_at_start": machine.loadavg(),
                "git_commit": machine._git(REPO, "rev-parse", "--short", "HEAD"),
                "service_tree_dirty": bool(dirty and dirty != "?")}


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    # SIGTERM (e.g. from a timeout) takes the same cleanup path as Ctrl-C.
    raise KeyboardInterrupt


def _run_async(coro: Coroutine[Any, Any, LoadState]) -> LoadState:
    # uvloop (installed with uvicorn) makes each request cheaper for the load generator,
    # leaving more of its core for sending; plain asyncio works the same otherwise.
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


# --- results ----------------------------------------------------------------------------


def _pcts(values: array[float]) -> tuple[float, float, float]:
    if not values:
        return 0.0, 0.0, 0.0
    arr = np.frombuffer(values, dtype=np.float64)
    p50, p99 = np.percentile(arr, [50, 99])
    return round(float(p50), 3), round(float(p99), 3), round(float(arr.max()), 3)


def endpoint_table(phase: PhaseStats, order: list[str]) -> list[dict[str, Any]]:
    seconds = max(phase.ended - phase.started, 1e-9)
    rows = []
    for key in order:
        stats = phase.by_endpoint.get(key, EndpointStats())
        p50, p99, worst = _pcts(stats.latencies_ms)
        rows.append({"endpoint": key, "requests": len(stats.latencies_ms),
                     "failures": stats.failures, "rps": round(len(stats.latencies_ms) / seconds, 1),
                     "p50_ms": p50, "p99_ms": p99, "max_ms": worst,
                     "failure_reasons": dict(stats.reasons.most_common(5))})
    merged = array("d")
    for stats in phase.by_endpoint.values():
        merged.extend(stats.latencies_ms)
    p50, p99, worst = _pcts(merged)
    rows.append({"endpoint": "all", "requests": phase.requests, "failures": phase.failures,
                 "rps": round(phase.requests / seconds, 1), "p50_ms": p50, "p99_ms": p99,
                 "max_ms": worst, "failure_reasons": {}})
    return rows


def memory_summary(samples: list[Sample], max_drift: float) -> dict[str, Any]:
    load = [s for s in samples if s.phase != "ready"]
    warm = [s for s in load if s.phase == "warmup"]
    soak = [s for s in load if s.phase == "soak"]
    if not soak:
        return {}
    # With --warmup 0 the first soak sample stands in for "after warm-up".
    baseline = warm[-1] if warm else soak[0]
    end = soak[-1]
    drift = 100.0 * (end.rss_mib - baseline.rss_mib) / baseline.rss_mib
    # Growth pattern, beyond the two end points: a least-squares slope over the soak,
    # and the soak's first half against its second (a plateau reads ~0 for both).
    t = np.array([s.t_s for s in soak]) / 60.0
    rss = np.array([s.rss_mib for s in soak])
    slope = float(np.polyfit(t, rss, 1)[0]) if len(soak) >= 3 else 0.0
    half = len(rss) // 2
    return {
        "idle_before_load_mib": samples[0].rss_mib if samples[0].phase == "ready" else None,
        "after_warmup_mib": baseline.rss_mib,
        "end_mib": end.rss_mib,
        "max_mib": max(s.rss_mib for s in load),
        "min_soak_mib": float(rss.min()),
        "drift_pct": round(drift, 2),
        "max_drift_pct": max_drift,
        "soak_slope_mib_per_min": round(slope, 3),
        "soak_first_half_mean_mib": round(float(rss[:half].mean()), 1) if half else None,
        "soak_second_half_mean_mib": round(float(rss[half:].mean()), 1),
        "pss_after_warmup_mib": baseline.pss_mib,
        "pss_end_mib": end.pss_mib,
        "threads_after_warmup": baseline.threads, "threads_end": end.threads,
        "threads_max": max(s.threads for s in load),
        "fds_after_warmup": baseline.fds, "fds_end": end.fds,
        "fds_max": max(s.fds for s in load),
        "server_cpu_soak_mean_pct": round(float(np.mean([s.cpu_pct for s in soak])), 1),
        "others_cpu_soak_mean_pct": round(float(np.mean([s.others_cpu_pct for s in soak])), 1),
    }


def log_summary(path: Path, offset: int) -> dict[str, Any]:
    """Log lines by level from ``offset`` on (the start of the load), and the first
    lines above info: the server's own view of any trouble."""
    levels: Counter[str] = Counter()
    notable: list[str] = []
    try:
        with path.open("rb") as f:
            f.seek(offset)
            for raw in f:
                line = raw.decode(errors="replace").strip()
                try:
                    level = str(json.loads(line).get("level", "?"))
                except (ValueError, AttributeError):
                    level = "unstructured"
                levels[level] += 1
                if level not in ("info", "debug") and len(notable) < 10:
                    notable.append(line[:400])
    except OSError:
        pass
    return {"lines_by_level": dict(levels), "first_notable": notable}


def markdown(results: dict[str, Any]) -> str:
    cfg, mem, verdict = results["config"], results["memory"], results["verdict"]
    soak_rows = results["endpoints_soak"]
    total = next(r for r in soak_rows if r["endpoint"] == "all")
    warm_total = results["totals"]["warmup"]
    lines = [
        f"# Soak run {results['timestamp']}: {'PASS' if verdict['passed'] else 'FAIL'}",
        "",
        f"`{results['command']}`: `modelserve serve` (default settings, one worker"
        f"{', ' + cfg['serve_args'] if cfg['serve_args'] else ''}) on CPU "
        f"{cfg['server_cpus']}, {cfg['concurrency']} closed-loop keep-alive connections "
        f"(asyncio + httpx) on CPU {cfg['client_cpus']}, rotating through "
        f"{len(soak_rows) - 1} endpoints. Warm-up {cfg['warmup_s']:g} s, soak "
        f"{cfg['duration_s']:g} s, RSS sampled every {cfg['sample_interval_s']:g} s. "
        f"Machine: {results['machine']['cpus']} x {results['machine']['cpu_model']}, "
        f"commit {results['machine']['git_commit']}"
        f"{' (service/ modified)' if results['machine']['service_tree_dirty'] else ''}.",
        "",
        "| | |",
        "|---|---:|",
        f"| requests (soak) | {total['requests']:,} |",
        f"| requests (warm-up) | {warm_total['requests']:,} |",
        f"| failures (warm-up + soak) | {verdict['failures']} |",
        f"| req/s (soak) | {total['rps']:,.1f} |",
        f"| p50 / p99 latency, all requests (soak) | {total['p50_ms']:.2f} / "
        f"{total['p99_ms']:.2f} ms |",
        f"| RSS idle, before load | {mem.get('idle_before_load_mib') or 0:.1f} MiB |",
        f"| RSS after warm-up | {mem['after_warmup_mib']:.1f} MiB |",
        f"| RSS at end | {mem['end_mib']:.1f} MiB |",
        f"| RSS max | {mem['max_mib']:.1f} MiB |",
        f"| **RSS drift** (end - after warm-up) / after warm-up | **{mem['drift_pct']:+.2f} %** "
        f"(limit {mem['max_drift_pct']:g} %) |",
        f"| RSS slope over the soak (least squares) | {mem['soak_slope_mib_per_min']:+.2f} "
        "MiB/min |",
        f"| threads / fds after warm-up -> end (max) | {mem['threads_after_warmup']} / "
        f"{mem['fds_after_warmup']} -> {mem['threads_end']} / {mem['fds_end']} "
        f"({mem['threads_max']} / {mem['fds_max']}) |",
        f"| server CPU, mean over the soak | {mem['server_cpu_soak_mean_pct']:.0f} % of a core |",
        f"| load generator CPU over the soak | {results['client_cpu_soak_pct']:.0f} % of a core |",
        f"| other processes' CPU, mean over the soak | {mem['others_cpu_soak_mean_pct']:.0f} % "
        f"of a core ({results['machine']['cpus']} cores; load average "
        f"{results['machine']['loadavg_at_start']} at start, "
        f"{results['machine']['loadavg_at_end']} at end) |",
        f"| server ready (every version loaded) | {results['server']['ready_s']:.1f} s |",
        "",
        f"Verdict: {verdict['summary']}",
        "",
        "## Per endpoint (soak phase)",
        "",
        "| endpoint | requests | failures | req/s | p50 ms | p99 ms | max ms |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in soak_rows:
        name = f"**{r['endpoint']}**" if r["endpoint"] == "all" else f"`{r['endpoint']}`"
        lines.append(f"| {name} | {r['requests']:,} | {r['failures']} | {r['rps']:,.1f} | "
                     f"{r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['max_ms']:.1f} |")
    lines += ["", "## RSS over time", "",
              "| t s | phase | RSS MiB | PSS MiB | threads | fds | server CPU % | others CPU % "
              "| requests |",
              "|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    samples = results["samples"]
    # Every 30 s (and the phase boundaries) keeps the table readable; the JSON has all.
    step = max(1, round(30 / cfg["sample_interval_s"]))
    for i, s in enumerate(samples):
        boundary = i + 1 == len(samples) or samples[i + 1]["phase"] != s["phase"]
        if i % step == 0 or boundary or s["phase"] == "ready":
            lines.append(f"| {s['t_s']:.0f} | {s['phase']} | {s['rss_mib']:.1f} | "
                         f"{s['pss_mib']:.1f} | {s['threads']} | {s['fds']} | "
                         f"{s['cpu_pct']:.0f} | {s['others_cpu_pct']:.0f} | "
                         f"{s['requests']:,} |")
    if results["failure_examples"]:
        lines += ["", "## First failures", ""]
        lines += [f"- {e['t_s']} s `{e['endpoint']}`: {e['reason']}"
                  for e in results["failure_examples"]]
    log = results["server_log"]
    lines += ["", "## Server log during the load", "",
              "Lines by level: " + (", ".join(f"{k} {v:,}" for k, v in
                                             sorted(log["lines_by_level"].items())) or "none")]
    if log["first_notable"]:
        lines += ["", "First lines above info:", "", "```"]
        lines += log["first_notable"]
        lines += ["```"]
    return "\n".join(lines) + "\n"


# --- the run ----------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if (os.cpu_count() or 1) < 2 and not args.no_pin:
        print("fewer than 2 CPUs: not pinning the server and the client apart", flush=True)
        args.no_pin = True
    if not args.no_pin:
        # This process is the load generator: keep it (and httpx) off the server's core.
        os.sched_setaffinity(0, {int(c) for c in args.client_cpus.split(",")})

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    scratch = RESULTS_DIR / "tmp" / f"soak-{stamp}"
    scratch.mkdir(parents=True)
    log_path = scratch / "server.log"
    endpoints = soak_plan.build(REPO / "models")
    port = procs.free_port()
    argv_serve = [str(MODELSERVE), "serve", "--repository", str(REPO / "models"),
                  "--port", str(port), "--grpc-port", str(procs.free_port(exclude={port})),
                  *shlex.split(args.serve_args)]  # last: --serve-args may override both
    command = " ".join(["bench/soak.py", *(shlex.quote(a) for a in (argv or sys.argv[1:]))])
    facts = _machine_facts()
    print(f"[soak] {len(endpoints)} endpoints, warm-up {args.warmup:g} s, soak "
          f"{args.duration:g} s, concurrency {args.concurrency}; server log {log_path}",
          flush=True)

    previous_term = signal.signal(signal.SIGTERM, _raise_interrupt)
    # Also SIGINT: a shell starts background jobs with SIGINT ignored, which Python would
    # inherit, leaving Ctrl-C / kill -INT unable to reach the cleanup below.
    previous_int = signal.signal(signal.SIGINT, _raise_interrupt)
    proc: procs.ServerProcess | None = None
    state: LoadState | None = None
    sampler: Sampler | None = None
    error = ""
    log_offset = 0
    ready_s = 0.0
    try:
        proc = procs.spawn("modelserve", argv_serve,
                           cpus=None if args.no_pin else args.server_cpus,
                           env=server_env(), cwd=REPO, log_path=log_path)
        ready_s = wait_ready(proc, port, args.start_timeout)
        proc.remember_tree()
        print(f"[soak] every version ready after {ready_s:.1f} s (port {port})", flush=True)
        log_offset = log_path.stat().st_size  # what the load makes the server log
        sampler = Sampler(proc.pid)
        state = _run_async(run_load(args, port, endpoints, proc, sampler))
    except KeyboardInterrupt:
        print("\ninterrupted: stopping the server", flush=True)
        return 130
    except (procs.ServerDied, RuntimeError, OSError) as exc:
        error = str(exc)
    finally:
        if proc is not None:
            procs.stop(proc, grace=35.0)  # its own shutdown grace is 30 s
        signal.signal(signal.SIGTERM, previous_term)
        signal.signal(signal.SIGINT, previous_int)

    if state is None or sampler is None or not any(s.phase == "soak"
                                                   for s in sampler.samples):
        print(f"soak could not run: {error}\nserver log kept in {log_path}", file=sys.stderr)
        return 2

    order = [e.key for e in endpoints]
    mem = memory_summary(sampler.samples, args.max_drift)
    failures = state.failures
    error = error or state.error
    problems = []
    if error:
        problems.append(f"the run stopped early: {error.splitlines()[0]}")
    if failures:
        problems.append(f"{failures} failed requests")
    if mem["drift_pct"] > args.max_drift:
        problems.append(f"RSS drift {mem['drift_pct']:+.2f} % over {args.max_drift:g} %")
    passed = not problems
    soak = state.phases["soak"]
    soak_s = max(soak.ended - soak.started, 1e-9)
    results: dict[str, Any] = {
        "timestamp": stamp,
        "command": command,
        "config": {"warmup_s": args.warmup, "duration_s": args.duration,
                   "concurrency": args.concurrency, "sample_interval_s": args.sample_interval,
                   "max_drift_pct": args.max_drift, "timeout_s": args.timeout,
                   "serve_args": args.serve_args,
                   "server_cpus": "any" if args.no_pin else args.server_cpus,
                   "client_cpus": "any" if args.no_pin else args.client_cpus,
                   "client": f"httpx {httpx.__version__}",
                   "rotation": [{"endpoint": e.key, "method": e.method, "path": e.path,
                                 "weight": e.weight, "variants": len(e.variants)}
                                for e in endpoints]},
        "machine": facts | {"loadavg_at_end": machine.loadavg()},
        "server": {"argv": proc.argv if proc else [], "ready_s": round(ready_s, 2)},
        "verdict": {"passed": passed, "failures": failures,
                    "drift_pct": mem["drift_pct"],
                    "summary": "PASS: zero failures, RSS drift "
                               f"{mem['drift_pct']:+.2f} % <= {args.max_drift:g} %"
                               if passed else "FAIL: " + "; ".join(problems)},
        "totals": {name: {"requests": p.requests, "failures": p.failures,
                          "seconds": round(p.ended - p.started, 2),
                          "rps": round(p.requests / max(p.ended - p.started, 1e-9), 1)}
                   for name, p in state.phases.items()},
        "memory": mem,
        "client_cpu_soak_pct": round(100.0 * soak.client_cpu_s / soak_s, 1),
        "endpoints_soak": endpoint_table(soak, order),
        "endpoints_warmup": endpoint_table(state.phases["warmup"], order),
        "failure_examples": state.examples,
        "samples": [asdict(s) for s in sampler.samples],
        "server_log": log_summary(log_path, log_offset),
    }
    text = markdown(results)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / f"soak-{stamp}.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out_dir / f"soak-{stamp}.md").write_text(text)
    (args.out_dir / "soak-latest.md").write_text(text)
    print("\n" + text)
    print(f"written: {args.out_dir / f'soak-{stamp}'}.md, .json and soak-latest.md")
    if passed and not args.keep_log:
        # Tens of MB of access lines; the summary of what mattered is in the results.
        log_path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            scratch.rmdir()
    else:
        print(f"server log: {log_path}")
    print(results["verdict"]["summary"], file=sys.stderr if not passed else sys.stdout)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
