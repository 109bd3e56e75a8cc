"""Benchmark our service against baselines serving the same models, in one run.

    .venv/bin/python bench/run.py [--duration 10] [--warmup 2] [--rounds 3] ...
    make bench BENCH_ARGS="--duration 3 --rounds 1"

Starts every server once (baseline venvs are created on first use), measures each target
with wrk in interleaved rounds, and writes bench/results/<UTC timestamp>.{md,json} and
bench/results/latest.md. See bench/README.md for what is measured and why.
"""

from __future__ import annotations

import argparse
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
from dataclasses import asdict
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from types import FrameType
from typing import Any

import envs
import machine
import payloads
import procs
import report
import wrk
from servers import (
    MLSERVER_BATCH_SIZE,
    MLSERVER_BATCH_TIME,
    SERVERS,
    TARGETS,
    LaunchContext,
    Server,
    Target,
)
from servers import C as CONCURRENCY

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
OURS_PACKAGES = ["fastapi", "uvicorn", "tensorflow-cpu", "keras", "scikit-learn", "numpy"]


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
                   help="skip our service's digits-protocol and 256-row batch measurements")
    p.add_argument("--ours-args", default=_env_default("BENCH_OURS_ARGS", ""),
                   help="extra arguments for our service, e.g. '--workers 2' "
                        "(env BENCH_OURS_ARGS; MODELSERVE_* variables are passed through too)")
    p.add_argument("--mlserver-batch", default="",
                   help="MLServer adaptive batching as MAX_BATCH_SIZE,MAX_BATCH_TIME_S "
                        "(default: see servers.py)")
    p.add_argument("--server-cpus", default="0", help="taskset CPU list for servers")
    p.add_argument("--client-cpus", default="1", help="taskset CPU list for wrk")
    p.add_argument("--no-pin", action="store_true", help="do not pin anything to CPUs")
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
    servers = [s for s in SERVERS if not wanted or s.name in wanted]
    names = {s.name for s in servers}
    targets = [t for t in TARGETS if t.server in names
               and not (args.no_extras and t.section != "main")]
    return servers, targets


# --- starting servers -----------------------------------------------------------------


def _post(url: str, payload: payloads.Payload, timeout: float) -> tuple[int, bytes]:
    headers = dict(h.split(": ", 1) for h in payload.headers)
    request = urllib.request.Request(url, data=payload.body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def start(server: Server, ctx: LaunchContext, first: Target, payload: payloads.Payload,
          args: argparse.Namespace, scratch: Path) -> tuple[procs.ServerProcess, float, str]:
    """Spawn ``server`` and wait for its first successful prediction (the cold start)."""
    launch = server.launch(ctx)
    proc = procs.spawn(server.name, launch.argv,
                       cpus=None if args.no_pin else args.server_cpus,
                       env=os.environ | launch.env, cwd=launch.cwd,
                       log_path=scratch / f"{server.name}.log")
    try:
        cold = _first_prediction(proc, f"http://127.0.0.1:{ctx.port}{first.path}", payload,
                                 args.start_timeout)
    except BaseException:  # not yet in the caller's list of running servers: stop it here
        procs.stop(proc)
        raise
    return proc, cold, launch.notes


def _first_prediction(proc: procs.ServerProcess, url: str, payload: payloads.Payload,
                      timeout: float) -> float:
    # Polls the predict endpoint, not a health check: "ready" should mean "answers".
    deadline = proc.started + timeout
    last = ""
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited with {proc.popen.returncode} before "
                               f"serving:\n{proc.log_tail()}")
        try:
            status, body = _post(url, payload, timeout=5)
        except OSError as exc:  # refused while it boots, or reset
            last = str(exc)
        else:
            if status == 200:
                return time.monotonic() - proc.started
            last = f"HTTP {status}: {body[:300]!r}"
        time.sleep(0.05)
    raise RuntimeError(f"{proc.name} gave no prediction in {timeout:.0f} s "
                       f"(last: {last}):\n{proc.log_tail()}")


def check(target: Target, port: int, payload: payloads.Payload) -> None:
    """One request per target before measuring: a 4xx here means the bench's body is wrong."""
    status, body = _post(f"http://127.0.0.1:{port}{target.path}", payload, timeout=30)
    if status != 200:
        raise RuntimeError(f"{target.key}: POST {target.path} answered {status}: "
                           f"{body[:500].decode(errors='replace')}")


# --- the run ----------------------------------------------------------------------------


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    # SIGTERM (e.g. from a timeout) takes the same cleanup path as Ctrl-C.
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    servers, targets = select(args)
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

    batch = parse_batch(args.mlserver_batch)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    scratch = RESULTS_DIR / "tmp" / stamp
    scratch.mkdir(parents=True)
    bodies = payloads.build(REPO / "models")
    body_files = {key: p.write(scratch) for key, p in bodies.items()}
    ours_args = tuple(shlex.split(args.ours_args))

    results: dict[str, Any] = {
        "timestamp": stamp,
        "config": {"duration_s": args.duration, "warmup_s": args.warmup, "rounds": args.rounds,
                   "concurrency": list(CONCURRENCY),
                   "server_cpus": "any" if args.no_pin else args.server_cpus,
                   "client_cpus": "any" if args.no_pin else args.client_cpus,
                   "ours_args": list(ours_args)},
        "machine": machine.facts(REPO),
        "venvs": {"ours (.venv)": {"versions": _ours_versions()}}
        | {v.name: {"versions": v.versions, "install_seconds": v.install_seconds}
           for v in venvs.values()},
        "payload_bytes": {k: len(p.body) for k, p in bodies.items()},
        "payload_rows": {k: p.rows for k, p in bodies.items()},
        "servers": {},
        "measurements": [],
    }
    running: dict[str, procs.ServerProcess] = {}
    ports: dict[str, int] = {}
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
            ctx = LaunchContext(port=procs.free_port(), scratch=server_dir, repo=REPO,
                                python=python, extra_args=ours_args, mlserver_batch=batch)
            print(f"[start] {server.name} ...", end=" ", flush=True)
            proc, cold, notes = start(server, ctx, first, bodies[first.payload], args, scratch)
            running[server.name], ports[server.name] = proc, ctx.port
            proc.remember_tree()
            print(f"first prediction after {cold:.1f} s", flush=True)
            results["servers"][server.name] = {"summary": server.summary,
                                               "cold_start_s": round(cold, 2), "notes": notes,
                                               "argv": proc.argv}
            if server.name == "ours":
                # Ours loads every committed version; "ready" means all of them settled.
                ready = procs.wait_ready(proc, f"http://127.0.0.1:{ctx.port}/v2/health/ready",
                                   args.start_timeout)
                results["servers"][server.name]["all_ready_s"] = round(ready, 2)
                print(f"[start] ours: every version loaded after {ready:.1f} s", flush=True)
        for target in targets:
            check(target, ports[target.server], bodies[target.payload])

        for rnd in range(1, args.rounds + 1):
            for target in targets:  # interleaved: every target once per round
                for conc in target.concurrency:
                    result = measure(target, conc, ports[target.server], bodies, body_files, args)
                    results["measurements"].append({"round": rnd, "target": target.key}
                                                   | result.as_dict())
                    flag = f"  ERRORS {result.errors}" if result.errors else ""
                    if result.requests == 0:  # its latencies read 0: not a real number
                        flag += "  NO REPLY within the duration (raise --duration)"
                    print(f"[round {rnd}/{args.rounds}] {target.key:18} c={conc:<3} "
                          f"{result.rps:9.1f} req/s  p50 {result.p50_ms:7.2f} ms  "
                          f"p99 {result.p99_ms:7.2f} ms{flag}", flush=True)
            for proc in running.values():
                proc.remember_tree()

        if "ours" in ports and "digits_photo" in bodies:
            results["image_cost"] = image_cost(ports["ours"], bodies["digits_photo"].body)
        for name, proc in running.items():
            results["servers"][name]["memory"] = asdict(procs.tree_memory(proc.pid))
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


def measure(target: Target, conc: int, port: int, bodies: dict[str, payloads.Payload],
            body_files: dict[str, Path], args: argparse.Namespace) -> wrk.WrkResult:
    url = f"http://127.0.0.1:{port}{target.path}"
    payload = bodies[target.payload]
    cpus = None if args.no_pin else args.client_cpus
    if args.warmup > 0:  # same load, result discarded: JIT paths, caches, connection setup
        wrk.run(url, body_files[target.payload], payload.headers, concurrency=conc,
                seconds=args.warmup, cpus=cpus)
    # wrk drops requests still in flight when its time is up, so a window shorter than
    # one request's latency under load records nothing: slow targets set a minimum.
    return wrk.run(url, body_files[target.payload], payload.headers, concurrency=conc,
                   seconds=max(args.duration, target.min_seconds), cpus=cpus)


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
