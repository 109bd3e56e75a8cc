"""Overload: our service at twice its measured capacity, with and without admission control.

    .venv/bin/python bench/overload.py [--duration 10] [--payload digits_v2_binary]
    make overload OVERLOAD_ARGS="--duration 5"

For each server setting, in one run: our defaults (admission control at ``max_inflight``
requests in progress, and each model's queue bounded at ``queue_max_rows``), and the
baseline with both bounds off:

1. capacity: a closed loop of 32 connections for ``--duration`` seconds; the completed
   requests per second are the capacity C;
2. normal: an open loop at 0.5 C (latency of a comfortably loaded server);
3. overload: an open loop at 2 C for twice ``--duration``;
4. recovery: an open loop at 0.5 C again, right after.

Open loop means requests are sent on a fixed schedule whatever the answers do, and each
latency is counted from the moment the request was due, not from when a connection was
free to send it: a closed-loop tool (wrk) slows down with the server and hides the queue
(coordinated omission). Connections are opened as needed, up to ``--max-connections``.
The generator is a small asyncio protocol on uvloop, pinned to its own core; the offered
rate it achieved is printed beside the one asked for, so a generator that could not keep
up shows. Server memory (RSS of the process tree) is sampled every 0.25 s.

Written to bench/results/overload-<UTC timestamp>.{json,md} and overload-latest.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import machine
import payloads
import procs
import uvloop

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
PATHS = {"digits64_v2_binary": "/v2/models/digits/infer",
         "digits_v2_binary": "/v2/models/digits/infer",
         "digits_v2_json": "/v2/models/digits/infer",
         "digits_tfs": "/v1/models/digits:predict",
         "wine_tfs": "/v1/models/wine-quality:predict",
         "wine_tfs_batch": "/v1/models/wine-quality:predict"}


# --- the load generator ----------------------------------------------------------------

class _Conn(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection, one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.waiter: asyncio.Future[int] | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("connection closed"))

    def data_received(self, data: bytes) -> None:
        self.buf += data
        end = self.buf.find(b"\r\n\r\n")
        if end < 0 or self.waiter is None:
            return
        head = bytes(self.buf[:end]).split(b"\r\n")
        length = 0
        for line in head[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if len(self.buf) < end + 4 + length:
            return
        del self.buf[: end + 4 + length]
        if not self.waiter.done():
            self.waiter.set_result(int(head[0].split()[1]))

    async def request(self, raw: bytes) -> int:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(raw)
        return await self.waiter


@dataclass
class Phase:
    name: str
    asked_rps: float        # 0 for the closed loop
    seconds: float
    sent: int = 0
    ok: int = 0
    refused: int = 0        # 503
    other: int = 0          # any other status, connection errors, timeouts
    ok_ms: list[float] = field(default_factory=list, repr=False)
    refused_ms: list[float] = field(default_factory=list, repr=False)
    peak_connections: int = 0
    rss_mib_max: float = 0.0

    def summary(self) -> dict[str, Any]:
        def pct(xs: list[float], q: float) -> float | None:
            if not xs:
                return None
            xs = sorted(xs)
            return round(xs[min(len(xs) - 1, int(q * len(xs)))], 2)
        return {
            "phase": self.name, "asked_rps": round(self.asked_rps),
            "offered_rps": round(self.sent / self.seconds), "ok_rps": round(self.ok / self.seconds),
            "refused_503_pct": round(100 * self.refused / max(1, self.sent), 1),
            "other_errors": self.other,
            "ok_p50_ms": pct(self.ok_ms, 0.5), "ok_p99_ms": pct(self.ok_ms, 0.99),
            "ok_max_ms": round(max(self.ok_ms), 1) if self.ok_ms else None,
            "refused_p50_ms": pct(self.refused_ms, 0.5),
            "refused_p99_ms": pct(self.refused_ms, 0.99),
            "peak_connections": self.peak_connections, "rss_mib_max": self.rss_mib_max,
        }


class Generator:
    def __init__(self, host: str, port: int, raw: bytes, max_connections: int,
                 timeout: float) -> None:
        self.host, self.port, self.raw = host, port, raw
        self.max_connections = max_connections
        self.timeout = timeout
        self.idle: list[_Conn] = []
        self.opened = 0
        self.free = asyncio.Condition()

    async def _conn(self) -> _Conn:
        while True:
            while self.idle:
                conn = self.idle.pop()
                if not conn.closed:
                    return conn
                self.opened -= 1
            if self.opened < self.max_connections:
                self.opened += 1
                try:
                    _, conn = await asyncio.get_running_loop().create_connection(
                        _Conn, self.host, self.port)
                except OSError:
                    self.opened -= 1
                    raise
                return conn
            async with self.free:
                await self.free.wait()

    async def _release(self, conn: _Conn | None) -> None:
        if conn is not None:
            if conn.closed:
                self.opened -= 1
            else:
                self.idle.append(conn)
        async with self.free:
            self.free.notify()

    async def one(self, phase: Phase, due: float) -> None:
        """One request; its latency and its timeout both run from when it was due, so
        time spent waiting for a free connection counts."""
        loop = asyncio.get_running_loop()
        holder: list[_Conn] = []
        try:
            status = await asyncio.wait_for(self._send(phase, holder),
                                            max(0.001, due + self.timeout - loop.time()))
        except (OSError, TimeoutError, ConnectionError):
            phase.other += 1
            conn = holder[0] if holder else None
            if conn is not None and conn.transport is not None:
                conn.transport.close()  # its answer may still come: do not reuse it
                conn.closed = True
            await self._release(conn)
            return
        ms = (loop.time() - due) * 1000
        if status == 200:
            phase.ok += 1
            phase.ok_ms.append(ms)
        elif status == 503:
            phase.refused += 1
            phase.refused_ms.append(ms)
        else:
            phase.other += 1
        await self._release(holder[0])

    async def _send(self, phase: Phase, holder: list[_Conn]) -> int:
        conn = await self._conn()
        holder.append(conn)
        phase.peak_connections = max(phase.peak_connections, self.opened)
        return await conn.request(self.raw)

    async def open_loop(self, phase: Phase) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        interval = 1.0 / phase.asked_rps
        tasks: set[asyncio.Task[None]] = set()
        i = 0
        end = start + phase.seconds
        while True:
            now = loop.time()
            if now >= end:
                break
            # Send everything that is due (sleep granularity is coarser than the interval).
            while start + i * interval <= now:
                task = loop.create_task(self.one(phase, start + i * interval))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                phase.sent += 1
                i += 1
            await asyncio.sleep(min(0.001, max(0.0, start + i * interval - loop.time())))
        if tasks:  # each ends by its own timeout at the latest
            await asyncio.wait(tasks)

    async def closed_loop(self, phase: Phase, connections: int) -> None:
        loop = asyncio.get_running_loop()
        end = loop.time() + phase.seconds

        async def worker() -> None:
            while loop.time() < end:
                phase.sent += 1
                await self.one(phase, loop.time())

        await asyncio.gather(*(worker() for _ in range(connections)))


async def _sample_rss(pid: int, phase: Phase, stop: asyncio.Event) -> None:
    while not stop.is_set():
        phase.rss_mib_max = max(phase.rss_mib_max, procs.tree_memory(pid).rss_mib)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.25)


async def run_phases(host: str, port: int, raw: bytes, pid: int,
                     args: argparse.Namespace) -> list[Phase]:
    gen = Generator(host, port, raw, args.max_connections, args.timeout)

    async def measured(phase: Phase, body: Any) -> Phase:
        stop = asyncio.Event()
        sampler = asyncio.create_task(_sample_rss(pid, phase, stop))
        await body
        stop.set()
        await sampler
        return phase

    d = args.duration
    warm = Phase("warm-up", 0, 2.0)
    await gen.closed_loop(warm, 32)
    cap_phase = Phase("capacity (closed loop, c=32)", 0, d)
    await measured(cap_phase, gen.closed_loop(cap_phase, 32))
    capacity = cap_phase.ok / d
    phases = [cap_phase]
    for name, factor, seconds in (("normal (0.5x capacity)", 0.5, d),
                                  ("overload (2x capacity)", 2.0, 2 * d),
                                  ("recovery (0.5x capacity)", 0.5, d)):
        phase = Phase(name, factor * capacity, seconds)
        await measured(phase, gen.open_loop(phase))
        phases.append(phase)
        await asyncio.sleep(0.5)
    return phases


# --- the servers -----------------------------------------------------------------------

def _request(path: str, payload: payloads.Payload, port: int) -> bytes:
    head = [f"POST {path} HTTP/1.1", f"Host: 127.0.0.1:{port}",
            f"Content-Length: {len(payload.body)}", *payload.headers]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + payload.body


def measure(setting: str, env: dict[str, str], args: argparse.Namespace,
            payload: payloads.Payload, scratch: Path) -> list[dict[str, Any]]:
    port = procs.free_port()
    proc = procs.spawn(
        f"ours {setting}",
        [str(REPO / ".venv/bin/python"), "-m", "service.server", "--repository",
         str(REPO / "models"), "--port", str(port), "--log-level", "warning",
         # gRPC stays on (the default) but on a free port, not a fixed 8001.
         "--grpc-port", str(procs.free_port(exclude={port}))],
        cpus=args.server_cpus, env={**os.environ, **env}, cwd=REPO,
        log_path=scratch / f"server-{setting.replace(' ', '_')}.log")
    try:
        procs.wait_ready(proc, f"http://127.0.0.1:{port}/v2/health/ready", 120)
        raw = _request(PATHS[args.payload], payload, port)
        phases = uvloop.run(run_phases("127.0.0.1", port, raw, proc.pid, args))
        if not proc.alive():
            raise RuntimeError(f"server died under load:\n{proc.log_tail()}")
        return [{"setting": setting, **p.summary()} for p in phases]
    finally:
        procs.stop(proc)


def table(rows: list[dict[str, Any]]) -> str:
    cols = ["setting", "phase", "asked_rps", "offered_rps", "ok_rps", "refused_503_pct",
            "other_errors", "ok_p50_ms", "ok_p99_ms", "ok_max_ms", "refused_p50_ms",
            "refused_p99_ms", "peak_connections", "rss_mib_max"]
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        out.append("| " + " | ".join("" if r[c] is None else str(r[c]) for c in cols) + " |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=float, default=10.0, help="seconds per phase (overload: 2x)")
    p.add_argument("--payload", default="digits64_v2_binary", choices=sorted(PATHS),
                   help="bench/payloads.py key; the default (64 digits per request over V2 "
                        "binary) has a capacity this Python generator can double")
    p.add_argument("--max-connections", type=int, default=1000)
    p.add_argument("--timeout", type=float, default=30.0, help="client timeout per request, s")
    p.add_argument("--server-cpus", default="0")
    p.add_argument("--client-cpus", default="1")
    args = p.parse_args(argv)
    os.sched_setaffinity(0, {int(c) for c in args.client_cpus.split(",")})

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    scratch = RESULTS_DIR / "tmp" / f"overload-{stamp}"
    scratch.mkdir(parents=True, exist_ok=True)
    payload = payloads.build(REPO / "models")[args.payload]
    rows: list[dict[str, Any]] = []
    # The baseline sheds nothing: no admission limit and a queue no load here can fill,
    # i.e. what an event-loop server without bounds does.
    settings = [("shedding on (defaults)", {}),
                ("shedding off (baseline)", {"MODELSERVE_MAX_INFLIGHT": "0",
                                             "MODELSERVE_QUEUE_MAX_ROWS": "100000000"})]
    for setting, env in settings:
        print(f"measuring: {setting} ...", flush=True)
        rows.extend(measure(setting, env, args, payload, scratch))
    md = (f"# Overload, {stamp}\n\n"
          f"Request: `{args.payload}` to `{PATHS[args.payload]}`; server pinned to CPU "
          f"{args.server_cpus}, generator to CPU {args.client_cpus}; {args.duration:g} s per "
          f"phase (overload {2 * args.duration:g} s). Latencies in ms, counted from when "
          "each request was due (open loop); `other_errors`: statuses other than 200/503, "
          "connection errors and client timeouts.\n\n" + table(rows) + "\n")
    print(md)
    RESULTS_DIR.mkdir(exist_ok=True)
    (RESULTS_DIR / f"overload-{stamp}.md").write_text(md)
    (RESULTS_DIR / "overload-latest.md").write_text(md)
    (RESULTS_DIR / f"overload-{stamp}.json").write_text(json.dumps(
        {"args": vars(args), "machine": machine.facts(REPO), "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
