"""Closed-loop load on KServe V2 gRPC ModelInfer: wrk's counterpart for gRPC.

    .venv/bin/python bench/grpc_load.py --target 127.0.0.1:8001 --request FILE \\
        --concurrency 8 --duration 10 [--warmup 2]

One process, one grpc.aio channel (one HTTP/2 connection, as a gRPC client normally
uses), ``concurrency`` coroutines each keeping one call in flight: a discarded warm-up,
then the measured window. The request is read pre-serialised (a ModelInferRequest built
once with ``raw_input_contents`` by ``request_bytes``) and sent as bytes, and answers are
not parsed (wrk reads only the status line): the client's CPU goes to the calls, not to
protobuf. Calls still in flight when the window closes are not counted, as with wrk.

Prints one line ``BENCH {json}``: completed calls, exact p50/p90/p99 over all of them,
non-OK calls by status code, and the client's CPU use over the window (user + system
time of all its threads over wall time: 1.0 = one core; pinned to one core, near 1.0
means the result is the client's ceiling, not the server's). ``--latencies-out`` writes
every latency (float64 seconds) so that ``run`` can merge several processes exactly.

``run`` (used by run.py) starts ``processes`` of these pinned with taskset, splitting the
concurrency, with a common start time, and merges them into one ``GrpcResult``. The
generated modules come from OUR proto: nothing here may import tritonclient.grpc, whose
copy of the ``inference`` protobuf package cannot share a process with ours.
"""

from __future__ import annotations

import argparse
import array
import asyncio
import json
import math
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# The repository this bench/ lives in, not whatever checkout the venv's editable install
# points at (the generated modules must match the server being measured).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import grpc
from wrk import LoadResult

from service.protocols.grpc.proto import grpc_predict_v2_pb2 as pb
from service.protocols.grpc.proto import grpc_predict_v2_pb2_grpc as pb_grpc

METHOD = "/inference.GRPCInferenceService/ModelInfer"
CHANNEL_OPTIONS = [("grpc.max_send_message_length", -1),
                   ("grpc.max_receive_message_length", -1)]


def request_bytes(model: str, version: str, name: str, shape: list[int], raw: bytes,
                  datatype: str = "FP32") -> bytes:
    request = pb.ModelInferRequest(model_name=model, model_version=version)
    request.inputs.add(name=name, datatype=datatype, shape=shape)
    request.raw_input_contents.append(raw)
    return request.SerializeToString()


def check(target: str, body: bytes, timeout: float = 30.0) -> pb.ModelInferResponse:
    """One call through the generated stub, answer parsed: raises on a non-OK status or an
    answer without outputs (the bench's request is wrong)."""
    async def call() -> pb.ModelInferResponse:
        async with grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS) as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            return await stub.ModelInfer(pb.ModelInferRequest.FromString(body),
                                         timeout=timeout)

    response = asyncio.run(call())
    if not response.outputs or len(response.raw_output_contents) != len(response.outputs):
        raise RuntimeError(f"gRPC ModelInfer on {target}: no outputs in {response}")
    return response


# --- one process -----------------------------------------------------------------------


@dataclass
class _Window:
    latencies: array.array[float] = field(default_factory=lambda: array.array("d"))
    codes: Counter[str] = field(default_factory=Counter)


async def _worker(call: Any, body: bytes, start: float, end: float, timeout: float,
                  window: _Window) -> None:
    clock = time.perf_counter
    while True:
        t0 = clock()
        if t0 >= end:
            return
        try:
            await call(body, timeout=timeout)
            code = "OK"
        except grpc.aio.AioRpcError as exc:
            code = exc.code().name
        t1 = clock()
        if t0 >= start and t1 <= end:  # started and finished inside the window
            window.latencies.append(t1 - t0)
            if code != "OK":
                window.codes[code] += 1


async def _load(target: str, body: bytes, concurrency: int, warmup: float, duration: float,
                timeout: float, start_at: float | None) -> tuple[_Window, float, float]:
    async with grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS) as channel:
        await asyncio.wait_for(channel.channel_ready(), timeout)
        # Bytes in, bytes out: no serialiser on either side (see the module docstring).
        call = channel.unary_unary(METHOD)
        if start_at is not None:  # several processes: start their windows together
            await asyncio.sleep(max(0.0, start_at - time.time()))
        begin = time.perf_counter()
        start = begin + warmup
        end = start + duration
        window = _Window()
        cpu = [0.0]

        async def mark_cpu() -> None:
            await asyncio.sleep(max(0.0, start - time.perf_counter()))
            cpu[0] = _cpu_seconds()

        marker = asyncio.create_task(mark_cpu())
        await asyncio.gather(*(_worker(call, body, start, end, timeout, window)
                               for _ in range(concurrency)))
        await marker
        cpu_used = _cpu_seconds() - cpu[0]
        # The last calls end a little after the window: CPU over the same span as the time.
        span = time.perf_counter() - start
        return window, duration, cpu_used / span if span > 0 else 0.0


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)  # every thread of the process
    return usage.ru_utime + usage.ru_stime


def _percentile(ordered: list[float], q: float) -> float:
    """Nearest rank: the smallest latency that at least q of all calls did not exceed."""
    if not ordered:
        return 0.0
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def _summary(latencies: list[float], codes: Counter[str], seconds: float, cpu: float,
             concurrency: int, processes: int) -> dict[str, Any]:
    ordered = sorted(latencies)
    n = len(ordered)
    return {
        "concurrency": concurrency,
        "requests": n,
        "seconds": round(seconds, 3),
        "rps": round(n / seconds, 1) if seconds else 0.0,
        "p50_ms": round(_percentile(ordered, 0.50) * 1000, 4),
        "p90_ms": round(_percentile(ordered, 0.90) * 1000, 4),
        "p99_ms": round(_percentile(ordered, 0.99) * 1000, 4),
        "mean_ms": round(sum(ordered) / n * 1000, 4) if n else 0.0,
        "max_ms": round(ordered[-1] * 1000, 4) if n else 0.0,
        "failed": sum(codes.values()),
        "codes": dict(codes),
        "client_cpu": round(cpu, 3),
        "processes": processes,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target", required=True, help="host:port of the gRPC server")
    p.add_argument("--request", type=Path, required=True,
                   help="file holding one serialised ModelInferRequest")
    p.add_argument("--concurrency", "-c", type=int, default=1, help="calls in flight")
    p.add_argument("--duration", "-d", type=float, default=10.0, help="measured seconds")
    p.add_argument("--warmup", type=float, default=2.0, help="discarded seconds before it")
    p.add_argument("--timeout", type=float, default=30.0, help="per-call deadline, seconds")
    p.add_argument("--start-at", type=float, default=None,
                   help="wall-clock time (time.time()) at which to begin the warm-up")
    p.add_argument("--latencies-out", type=Path, default=None,
                   help="write every latency (float64 seconds) here")
    args = p.parse_args(argv)
    body = args.request.read_bytes()
    window, seconds, cpu = asyncio.run(_load(args.target, body, args.concurrency,
                                             args.warmup, args.duration, args.timeout,
                                             args.start_at))
    if args.latencies_out is not None:
        with args.latencies_out.open("wb") as f:
            window.latencies.tofile(f)
    summary = _summary(list(window.latencies), window.codes, seconds, cpu,
                       args.concurrency, 1)
    print("BENCH " + json.dumps(summary), flush=True)
    return 0


# --- several processes, for run.py ------------------------------------------------------


@dataclass(frozen=True)
class GrpcResult(LoadResult):
    """One measurement, read by the report like wrk's."""

    failed: int  # calls that ended with a status other than OK
    codes: dict[str, int]  # those, by status code name
    client_cpu: float  # cores used by the load generator (summed over its processes)
    processes: int

    @property
    def errors(self) -> int:
        return self.failed

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"errors": self.errors, "protocol": "grpc"}


class GrpcLoadError(RuntimeError):
    pass


def run(target: str, request_file: Path, *, concurrency: int, seconds: float,
        warmup: float, cpus: str | None, processes: int = 1,
        timeout_s: float = 30.0) -> GrpcResult:
    """Measure with ``processes`` load generators (concurrency split between them)."""
    processes = max(1, min(processes, concurrency))
    shares = [concurrency // processes + (i < concurrency % processes)
              for i in range(processes)]
    # Time for every process to import grpc before the common start (on a busy core).
    start_at = time.time() + 2.0 if processes > 1 else None
    with tempfile.TemporaryDirectory(prefix="grpc_load_") as tmp:
        outs = [Path(tmp) / f"latencies-{i}" for i in range(processes)]
        procs = []
        for share, out in zip(shares, outs, strict=True):
            argv = [sys.executable, str(Path(__file__).resolve()), "--target", target,
                    "--request", str(request_file), "-c", str(share),
                    "-d", str(seconds), "--warmup", str(warmup),
                    "--timeout", str(timeout_s), "--latencies-out", str(out)]
            if start_at is not None:
                argv += ["--start-at", str(start_at)]
            if cpus is not None:
                argv = ["taskset", "-c", cpus, *argv]
            procs.append(subprocess.Popen(argv, stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE, text=True))
        lines = []
        for proc in procs:
            try:
                stdout, stderr = proc.communicate(timeout=warmup + seconds + timeout_s + 60)
            except subprocess.TimeoutExpired:
                for other in procs:
                    other.kill()
                raise GrpcLoadError("grpc_load did not finish in time") from None
            found = [ln for ln in stdout.splitlines() if ln.startswith("BENCH ")]
            if proc.returncode != 0 or not found:
                raise GrpcLoadError(f"grpc_load exited {proc.returncode}: "
                                    f"{stderr.strip()[-2000:] or stdout}")
            lines.append(json.loads(found[-1][len("BENCH "):]))
        latencies: list[float] = []
        for out in outs:
            values = array.array("d")
            values.frombytes(out.read_bytes())
            latencies.extend(values)
    codes: Counter[str] = Counter()
    for line in lines:
        codes.update(line["codes"])
    summary = _summary(latencies, codes, max(line["seconds"] for line in lines),
                       sum(line["client_cpu"] for line in lines), concurrency, processes)
    return GrpcResult(**summary)


if __name__ == "__main__":
    sys.exit(main())
