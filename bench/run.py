"""Benchmark our service against baselines serving the same models, in one run.

    .venv/bin/python bench/run.py [--duration 10] [--warmup 2] [--rounds 3] ...
    make bench BENCH_ARGS="--duration 3 --rounds 1"

Starts every server once (baseline venvs are created on first use), measures each target
with wrk (HTTP) or grpc_load.py (gRPC) in interleaved rounds, and writes
bench/results/<UTC timestamp>.{md,json} and bench/results/latest.md. See bench/README.md
for what is measured and why.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import shlex
import shutil
import signal
import statistics
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from types import FrameType
from typing import Any

import envs
import grpc_load
import machine
import payloads
import procs
import report
import wrk
from prometheus_client.parser import text_string_to_metric_families
from servers import (
    COLD_START_SERVERS,
    FRAMEWORK,
    GRPC_SPLIT_FROM,
    LOGGED,
    MLSERVER_BATCH_SIZE,
    MLSERVER_BATCH_TIME,
    SERVERS,
    TARGETS,
    LaunchContext,
    Server,
    Target,
    payload_log_dir,
)
from servers import C as CONCURRENCY

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
OURS_PACKAGES = ["fastapi", "uvicorn", "tensorflow-cpu", "keras", "scikit-learn", "numpy",
                 "grpcio", "protobuf"]


def _env_default(name: str, default: str) -> str:
    return os.environ.get(name, default)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=float, default=float(_env_default("BENCH_DURATION", "10")),
                   help="seconds per measurement (env BENCH_DURATION; default 10)")
    p.add_argument("--warmup", type=float, default=float(_env_default("BENCH_WARMUP", "2")),
                   help="seconds of discarded load before each measurement, 0 for none "
                        "(env BENCH_WARMUP; default 2)")
    p.add_argument("--rounds", type=int, default=int(_env_default("BENCH_ROUNDS", "3")),
                   help="interleaved rounds; results are medians over them "
                        "(env BENCH_ROUNDS; default 3)")
    p.add_argument("--servers", default=_env_default("BENCH_SERVERS", ""),
                   help="comma-separated subset of: "
                        + ", ".join(s.name for s in SERVERS) + " (default all)")
    p.add_argument("--no-extras", action="store_true",
                   help="skip our service's digits-protocol, 256-row batch and gRPC "
                        "measurements")
    p.add_argument("--no-grpc", action="store_true",
                   help="skip the gRPC measurements (and the gRPC floor server)")
    p.add_argument("--ours-args", default=_env_default("BENCH_OURS_ARGS", ""),
                   help="extra arguments for our service, e.g. '--workers 2' "
                        "(env BENCH_OURS_ARGS; MODELSERVE_* variables are passed through too)")
    p.add_argument("--mlserver-batch", default="",
                   help="MLServer adaptive batching as MAX_BATCH_SIZE,MAX_BATCH_TIME_S "
                        "(default: see servers.py)")
    p.add_argument("--server-cpus", default="0", help="taskset CPU list for servers")
    p.add_argument("--client-cpus", default="1",
                   help="taskset CPU list for wrk and grpc_load.py")
    p.add_argument("--no-pin", action="store_true", help="do not pin anything to CPUs")
    p.add_argument("--cold-starts", type=int, default=3,
                   help="starts of the HTTP floors and ours, for the median cold start")
    p.add_argument("--start-timeout", type=float, default=300.0,
                   help="seconds a server may take to answer its first prediction")
    p.add_argument("--setup-only", action="store_true",
                   help="create the baseline venvs and exit")
    p.add_argument("--keep-tmp", action="store_true",
                   help="keep bench/results/tmp/<run> (bodies, configs, server logs)")
    p.add_argument("--out-dir", type=Path, default=RESULTS_DIR, help="where results go")
    return p.parse_args(argv)


def select(args: argparse.Namespace) -> tuple[list[Server], list[Target]]:
    wanted = {s.strip() for s in args.servers.split(",") if s.strip()}
    unknown = wanted - {s.name for s in SERVERS}
    if unknown:
        sys.exit(f"unknown server(s): {', '.join(sorted(unknown))}")
    servers = [s for s in SERVERS if not wanted or s.name in wanted or s.group in wanted]
    targets = [t for t in TARGETS if t.server in {s.name for s in servers}
               and not (args.no_extras and t.section not in ("main", "startup"))
               and not (args.no_grpc and t.protocol == "grpc")]
    # A server left without targets (the gRPC floor under --no-grpc) is not started.
    servers = [s for s in servers if any(t.server == s.name for t in targets)]
    return servers, targets


@dataclass(frozen=True)
class Bodies:
    http: dict[str, payloads.Payload]
    grpc: dict[str, bytes]  # serialised ModelInferRequests
    files: dict[str, Path]  # every body (HTTP and gRPC) on disk, for wrk and grpc_load.py
    rows: dict[str, int]  # instances in one request

    @classmethod
    def build(cls, scratch: Path) -> Bodies:
        http = payloads.build(REPO / "models")
        tensors = payloads.build_grpc(REPO / "models")
        grpc = {key: grpc_load.request_bytes(p.model, p.version, p.input, p.shape, p.raw)
                for key, p in tensors.items()}
        files = {key: p.write(scratch) for key, p in http.items()}
        for key, body in grpc.items():
            files[key] = scratch / f"{key}.pb"
            files[key].write_bytes(body)
        rows = {k: p.rows for k, p in http.items()} | {k: p.rows for k, p in tensors.items()}
        return cls(http, grpc, files, rows)

    def size(self, key: str) -> int:
        return len(self.grpc[key]) if key in self.grpc else len(self.http[key].body)


# --- starting servers -----------------------------------------------------------------


def _post(url: str, payload: payloads.Payload, timeout: float) -> tuple[int, bytes]:
    headers = dict(h.split(": ", 1) for h in payload.headers)
    request = urllib.request.Request(url, data=payload.body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def start(server: Server, ctx: LaunchContext, first: Target, bodies: Bodies,
          args: argparse.Namespace, scratch: Path) -> tuple[procs.ServerProcess, float, str]:
    """Spawn ``server`` and wait for its first successful prediction (the cold start)."""
    launch = server.launch(ctx)
    proc = procs.spawn(server.name, launch.argv,
                       cpus=None if args.no_pin else args.server_cpus,
                       env=os.environ | launch.env, cwd=launch.cwd,
                       log_path=scratch / f"{server.name}.log")
    try:
        cold = _first_prediction(proc, lambda: _try(first, ctx, bodies), args.start_timeout)
    except BaseException:  # not yet in the caller's list of running servers: stop it here
        procs.stop(proc)
        raise
    return proc, cold, launch.notes


def _try(target: Target, ctx: LaunchContext, bodies: Bodies, timeout: float = 5) -> str:
    """One prediction on ``target``: "" if it succeeded, else what went wrong."""
    if target.protocol == "grpc":
        try:
            grpc_load.check(f"127.0.0.1:{ctx.grpc_port}", bodies.grpc[target.payload],
                            timeout=timeout)
        except Exception as exc:  # refused while it boots, or a bad answer
            return f"gRPC {target.path}: {exc}"
        return ""
    try:
        status, body = _post(f"http://127.0.0.1:{ctx.port}{target.path}",
                             bodies.http[target.payload], timeout=timeout)
    except OSError as exc:  # refused while it boots, or reset
        return str(exc)
    return "" if status == 200 else f"HTTP {status}: {body[:500]!r}"


def _first_prediction(proc: procs.ServerProcess, attempt: Callable[[], str],
                      timeout: float) -> float:
    # Polls the predict endpoint, not a health check: "ready" should mean "answers".
    deadline = proc.started + timeout
    last = ""
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited with {proc.popen.returncode} before "
                               f"serving:\n{proc.log_tail()}")
        last = attempt()
        if not last:
            return time.monotonic() - proc.started
        time.sleep(procs.POLL_S)
    raise RuntimeError(f"{proc.name} gave no prediction in {timeout:.0f} s "
                       f"(last: {last}):\n{proc.log_tail()}")


def check(target: Target, ctx: LaunchContext, bodies: Bodies) -> None:
    """One request per target before measuring: a failure here means the bench's body is
    wrong."""
    error = _try(target, ctx, bodies, timeout=30)
    if error:
        raise RuntimeError(f"{target.key}: {error}")


# --- the run ----------------------------------------------------------------------------


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    # SIGTERM (e.g. from a timeout) takes the same cleanup path as Ctrl-C.
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    servers, targets = select(args)
    if any(t.protocol == "http" for t in targets) and shutil.which("wrk") is None:
        # Before minutes of venv set-up, not after.
        print("bench: wrk is not installed (Debian: apt-get install wrk; `make bench` "
              "installs it when it can)", file=sys.stderr)
        return 2
    if (os.cpu_count() or 1) < 2 and not args.no_pin:
        print("fewer than 2 CPUs: not pinning servers and wrk to separate cores", flush=True)
        args.no_pin = True
    if not args.no_pin:
        # The orchestrator (its polling, wrk's parent) stays off the servers' core too.
        os.sched_setaffinity(0, {int(c) for c in args.client_cpus.split(",")})

    venvs = {name: envs.ensure(name) for name in dict.fromkeys(
        s.venv for s in servers if s.venv is not None)}
    if args.setup_only:
        for venv in venvs.values():
            print(f"{venv.name}: {venv.path} (installed in {venv.install_seconds:.0f} s)")
        return 0
    # Bytecode as an installed package has it (pip compiles at install, the image too):
    # with PYTHONDONTWRITEBYTECODE=1 set, a checkout would compile all of service/ at
    # each start (~80 ms of every cold start here).
    compileall.compile_dir(REPO / "service", quiet=1)

    batch = parse_batch(args.mlserver_batch)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    scratch = RESULTS_DIR / "tmp" / stamp
    scratch.mkdir(parents=True)
    bodies = Bodies.build(scratch)
    ours_args = tuple(shlex.split(args.ours_args))

    results: dict[str, Any] = {
        "timestamp": stamp,
        "config": {"duration_s": args.duration, "warmup_s": args.warmup, "rounds": args.rounds,
                   "concurrency": list(CONCURRENCY),
                   "server_cpus": "any" if args.no_pin else args.server_cpus,
                   "client_cpus": "any" if args.no_pin else args.client_cpus,
                   "ours_args": list(ours_args), "cold_starts": args.cold_starts},
        "machine": machine.facts(REPO),
        "venvs": {"ours (.venv)": {"versions": _ours_versions()}}
        | {v.name: {"versions": v.versions, "install_seconds": v.install_seconds}
           for v in venvs.values()},
        "payload_bytes": {k: bodies.size(k) for k in bodies.files},
        "payload_rows": bodies.rows,
        "servers": {},
        "measurements": [],
    }
    running: dict[str, procs.ServerProcess] = {}
    contexts: dict[str, LaunchContext] = {}
    ok = False
    previous_term = signal.signal(signal.SIGTERM, _raise_interrupt)
    # Also for SIGINT: a shell starts background jobs with SIGINT ignored, which Python
    # would inherit, leaving Ctrl-C/kill -INT unable to reach the cleanup below.
    previous_int = signal.signal(signal.SIGINT, _raise_interrupt)
    try:
        for server in servers:
            first = next(t for t in targets if t.server == server.name)
            python = venvs[server.venv].python if server.venv else Path(sys.executable)
            server_dir = scratch / server.name
            server_dir.mkdir()
            port = procs.free_port()
            ctx = LaunchContext(port=port, grpc_port=procs.free_port(exclude={port}),
                                scratch=server_dir, repo=REPO, python=python,
                                extra_args=ours_args, mlserver_batch=batch)
            # The cold-start goal's operands start several times (the last one stays up):
            # a start of ~0.1 s is too short to trust once.
            starts = args.cold_starts if server.name in COLD_START_SERVERS else 1
            colds, readies = [], []
            for n in range(starts):
                print(f"[start] {server.name} ...", end=" ", flush=True)
                proc, cold, notes = start(server, ctx, first, bodies, args, scratch)
                colds.append(cold)
                print(f"first prediction after {cold:.2f} s", flush=True)
                if server.name in ("ours", FRAMEWORK):
                    # Ours loads every committed version; "ready" means all of them settled.
                    try:
                        readies.append(procs.wait_ready(
                            proc, f"http://127.0.0.1:{ctx.port}/v2/health/ready",
                            args.start_timeout))
                    except BaseException:
                        procs.stop(proc)
                        raise
                    print(f"[start] {server.name}: every version loaded after "
                          f"{readies[-1]:.2f} s", flush=True)
                if n < starts - 1:
                    procs.stop(proc)
            running[server.name], contexts[server.name] = proc, ctx
            proc.remember_tree()
            results["servers"][server.name] = {
                "summary": server.summary, "cold_start_s": round(statistics.median(colds), 3),
                "notes": notes, "argv": proc.argv}
            if starts > 1:
                results["servers"][server.name]["cold_starts_s"] = [round(c, 3) for c in colds]
            if readies:
                results["servers"][server.name]["all_ready_s"] = round(
                    statistics.median(readies), 3)
                if starts > 1:
                    results["servers"][server.name]["all_ready_runs_s"] = [
                        round(r, 3) for r in readies]
        for target in targets:
            check(target, contexts[target.server], bodies)

        for rnd in range(1, args.rounds + 1):
            for target in targets:  # interleaved: every target once per round
                for conc in target.concurrency:
                    result = measure(target, conc, contexts[target.server], bodies, args)
                    results["measurements"].append({"round": rnd, "target": target.key}
                                                   | result.as_dict())
                    flag = f"  ERRORS {result.errors}" if result.errors else ""
                    if isinstance(result, grpc_load.GrpcResult):
                        flag += (f"  client CPU {result.client_cpu:.2f} "
                                 f"({result.processes} process(es))")
                        if result.codes:
                            flag += f" {result.codes}"
                    if result.requests == 0:  # its latencies read 0: not a real number
                        flag += "  NO REPLY within the duration (raise --duration)"
                    print(f"[round {rnd}/{args.rounds}] {target.key:18} c={conc:<3} "
                          f"{result.rps:9.1f} req/s  p50 {result.p50_ms:7.2f} ms  "
                          f"p99 {result.p99_ms:7.2f} ms{flag}", flush=True)
            for proc in running.values():
                proc.remember_tree()

        if "ours" in contexts and "digits_photo" in bodies.http:
            results["image_cost"] = image_cost(contexts["ours"].port,
                                               bodies.http["digits_photo"].body)
        for name, proc in running.items():
            results["servers"][name]["memory"] = asdict(procs.tree_memory(proc.pid))
        if LOGGED in running:
            counts = payload_log_counts(contexts[LOGGED].port)
            procs.stop(running.pop(LOGGED))  # it writes what is queued before exiting
            results["payload_log"] = counts | payload_log_lines(
                payload_log_dir(contexts[LOGGED]))
        results["machine"]["loadavg_at_end"] = machine.loadavg()
        ok = True
    except KeyboardInterrupt:
        print("\ninterrupted: stopping servers", flush=True)
        return 130
    finally:
        procs.stop(*running.values())
        signal.signal(signal.SIGTERM, previous_term)
        signal.signal(signal.SIGINT, previous_int)
        if ok and not args.keep_tmp:
            shutil.rmtree(scratch, ignore_errors=True)
        elif not ok:
            print(f"server logs and bodies kept in {scratch}", file=sys.stderr)

    summary = report.summarise(results["measurements"])
    results["summary"] = report.summary_json(summary)
    text = report.markdown(results, targets, summary)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / f"{stamp}.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out_dir / f"{stamp}.md").write_text(text)
    (args.out_dir / "latest.md").write_text(text)
    print("\n" + text)
    print(f"written: {args.out_dir / stamp}.md, .json and latest.md")
    errors = sum(m["errors"] for m in results["measurements"])
    if errors:
        print(f"WARNING: {errors} failed requests (non-2xx or socket errors): see the table",
              file=sys.stderr)
    return 0


def measure(target: Target, conc: int, ctx: LaunchContext, bodies: Bodies,
            args: argparse.Namespace) -> wrk.WrkResult | grpc_load.GrpcResult:
    cpus = None if args.no_pin else args.client_cpus
    # wrk drops requests still in flight when its time is up, so a window shorter than
    # one request's latency under load records nothing: slow targets set a minimum.
    seconds = max(args.duration, target.min_seconds)
    body_file = bodies.files[target.payload]
    if target.protocol == "grpc":
        # Warm-up inside each load process, on the channel it then measures with.
        return grpc_load.run(f"127.0.0.1:{ctx.grpc_port}", body_file, concurrency=conc,
                             seconds=seconds, warmup=args.warmup, cpus=cpus,
                             processes=2 if conc >= GRPC_SPLIT_FROM else 1)
    url = f"http://127.0.0.1:{ctx.port}{target.path}"
    headers = bodies.http[target.payload].headers
    if args.warmup > 0:  # same load, result discarded: JIT paths, caches, connection setup
        wrk.run(url, body_file, headers, concurrency=conc, seconds=args.warmup, cpus=cpus)
    return wrk.run(url, body_file, headers, concurrency=conc, seconds=seconds, cpus=cpus)


def image_cost(port: int, png: bytes, repeat: int = 50) -> dict[str, float]:
    """One phone photo's cost, split: decoding and preprocessing it (the service's own
    code, timed here in this process) against the digits CNN's call for one image (as the
    server measured it at warm-up)."""
    from service import images
    from service.loader import read_manifest

    version = _latest_digits(port)
    with urllib.request.urlopen(
            f"http://127.0.0.1:{port}/v1/models/digits/versions/{version}/metadata") as r:
        serving = json.loads(r.read())["modelserve"]["serving"]
    spec = read_manifest(REPO / "models" / "digits" / str(version)).inputs[0]
    decode, prepare = [], []
    for _ in range(repeat):
        t0 = time.perf_counter()
        img = images.decode(png, max_pixels=16_000_000)
        t1 = time.perf_counter()
        images.prepare(img, spec)
        decode.append(t1 - t0)
        prepare.append(time.perf_counter() - t1)
    return {"digits_version": version,
            "decode_ms": round(statistics.median(decode) * 1000, 3),
            "preprocess_ms": round(statistics.median(prepare) * 1000, 3),
            "cnn_call_ms": serving["warmup_call_ms"].get("1")}


def payload_log_counts(port: int) -> dict[str, int]:
    """The logged server's predictions answered (200) and its payload log's records
    written, dropped and failed, from its /metrics (summed over workers)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as r:
        text = r.read().decode()
    counts = {"answered": 0, "written": 0, "dropped": 0, "failed": 0}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if (sample.name == "modelserve_inference_requests_total"
                    and sample.labels.get("status") == "200"):
                counts["answered"] += int(sample.value)
            elif sample.name == "modelserve_payload_log_records_total":
                outcome = sample.labels["outcome"]
                counts[outcome] = counts.get(outcome, 0) + int(sample.value)
    return counts


def payload_log_lines(directory: Path) -> dict[str, int]:
    """Lines (records) in the payload log's files, every worker's."""
    files = sorted(directory.glob("payloads-*.jsonl"))
    return {"files": len(files), "lines": sum(f.read_bytes().count(b"\n") for f in files)}


def _latest_digits(port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models/digits") as r:
        return int(json.loads(r.read())["model_version_status"][0]["version"])


def parse_batch(spec: str) -> tuple[int, float]:
    if not spec:
        return MLSERVER_BATCH_SIZE, MLSERVER_BATCH_TIME
    size, seconds = spec.split(",")
    return int(size), float(seconds)


def _ours_versions() -> dict[str, str]:
    versions = {}
    for pkg in OURS_PACKAGES:
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = "?"
    return versions


if __name__ == "__main__":
    sys.exit(main())
