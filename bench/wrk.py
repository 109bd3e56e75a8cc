"""One closed-loop load measurement with wrk, read back from lua/post.lua's done() lines.

wrk's own summary rounds latencies to two decimals of ms and prints no p99 unless asked;
done() prints exact microsecond percentiles and the error counters, so those are parsed
and the human-readable text is kept only for debugging.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

LUA = Path(__file__).resolve().parent / "lua" / "post.lua"
BENCH_LINE = re.compile(r"^BENCH (.*)$", re.MULTILINE)


@dataclass(frozen=True)
class LoadResult:
    """What every load generator reports (wrk here, grpc_load.py for gRPC): the fields
    the report reads."""

    concurrency: int
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float


@dataclass(frozen=True)
class WrkResult(LoadResult):
    non_2xx: int  # non-2xx/3xx statuses (wrk's errors.status)
    socket_errors: int  # connect + read + write + timeout

    @property
    def errors(self) -> int:
        return self.non_2xx + self.socket_errors

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"errors": self.errors}


class WrkError(RuntimeError):
    pass


def run(url: str, body_file: Path, headers: tuple[str, ...], *, concurrency: int,
        seconds: float, cpus: str | None, timeout_s: float = 30.0) -> WrkResult:
    # The generous timeout is for the slow baselines: at c=32 the tutorial server takes
    # several seconds per request, which is a result to report, not a socket error.
    # One wrk thread: it is on its own core, and one event loop there drives far more
    # req/s than any server here answers on one core.
    argv = ["wrk", "-t1", f"-c{concurrency}", f"-d{max(1, round(seconds))}s",
            f"--timeout={max(1, round(timeout_s))}s", "--latency", "-s", str(LUA), url]
    if cpus is not None:
        argv = ["taskset", "-c", cpus, *argv]
    env = os.environ | {"BENCH_BODY_FILE": str(body_file), "BENCH_HEADERS": "\n".join(headers)}
    proc = subprocess.run(argv, env=env, capture_output=True, text=True,
                          timeout=seconds + timeout_s + 30)
    if proc.returncode != 0:
        raise WrkError(f"wrk exited {proc.returncode}: {proc.stderr.strip() or proc.stdout}")
    fields: dict[str, float] = {}
    for line in BENCH_LINE.findall(proc.stdout):
        for item in line.split():
            key, value = item.split("=", 1)
            fields[key] = float(value)
    if "requests" not in fields or "p99_us" not in fields:
        raise WrkError(f"no BENCH lines in wrk output:\n{proc.stdout}\n{proc.stderr}")
    duration = fields["duration_us"] / 1e6
    requests = int(fields["requests"])
    return WrkResult(
        concurrency=concurrency,
        requests=requests,
        seconds=round(duration, 3),
        rps=round(requests / duration, 1) if duration else 0.0,
        p50_ms=fields["p50_us"] / 1000,
        p90_ms=fields["p90_us"] / 1000,
        p99_ms=fields["p99_us"] / 1000,
        mean_ms=round(fields["mean_us"] / 1000, 3),
        max_ms=fields["max_us"] / 1000,
        non_2xx=int(fields["status"]),
        socket_errors=int(fields["connect"] + fields["read"] + fields["write"]
                          + fields["timeout"]),
    )


def version() -> str:
    try:
        proc = subprocess.run(["wrk", "-v"], capture_output=True, text=True)
    except FileNotFoundError:
        return "not installed"
    return (proc.stdout or proc.stderr).splitlines()[0].split(" Copyright")[0].strip()
