"""Per-request cost of the whole HTTP app, in process: no sockets, no load generator.

    .venv/bin/python bench/request_cost.py                      # wine v2 over V2, c=1
    .venv/bin/python bench/request_cost.py --concurrency 32 --profile --top 25

Builds the app the server runs (the gateway in front of FastAPI, every committed model
loaded), replays one request body (from bench/payloads.py) through its ASGI interface
and prints the best per-request time over several rounds: the best, because on a
shared machine the other rounds measure the neighbours. ``--profile`` adds cProfile's
top lines by own time, and the number of Python function calls per request, which does
not depend on the machine's speed. Compare two commits by running it in a checkout of
each, alternately.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import os
import pstats
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("OMP_NUM_THREADS", "1")

import payloads  # noqa: E402

TARGETS = {
    "wine_v2": ("/v2/models/wine-quality/versions/2/infer", "wine_v2"),
    "wine_tfs": ("/v1/models/wine-quality/versions/2:predict", "wine_tfs"),
}


async def _run(args: argparse.Namespace) -> None:
    from service.app import create_asgi
    from service.settings import Settings

    path, key = TARGETS[args.target]
    payload = payloads.build(ROOT / "models")[key]
    app = create_asgi(Settings(repository=ROOT / "models", log_level="warning", grpc_port=0,
                               poll_interval_s=0))
    startup: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    replies: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    await startup.put({"type": "lifespan.startup"})
    lifespan = asyncio.create_task(app({"type": "lifespan", "asgi": {"version": "3.0"},
                                        "state": {}}, startup.get, replies.put))
    await replies.get()
    while not app.plane.repository.settled:
        await asyncio.sleep(0.1)

    headers = [(b"host", b"bench"), (b"content-length", str(len(payload.body)).encode())]
    headers += [(h.split(":")[0].strip().lower().encode(), h.split(":", 1)[1].strip().encode())
                for h in payload.headers]
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "POST", "scheme": "http", "path": path, "raw_path": path.encode(),
             "query_string": b"", "root_path": "", "headers": headers,
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80), "state": {}}
    statuses: set[int] = set()

    async def one() -> None:
        sent = False

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": payload.body, "more_body": False}
            await asyncio.Event().wait()  # the client never disconnects
            return {}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                statuses.add(message["status"])

        await app(dict(scope), receive, send)

    async def worker(n: int) -> None:
        for _ in range(n):
            await one()

    per_worker = max(1, args.requests // args.concurrency)
    await asyncio.gather(*(worker(50) for _ in range(args.concurrency)))  # warm-up
    if statuses != {200}:
        raise SystemExit(f"the request was not answered 200: {statuses}")
    profiler = cProfile.Profile() if args.profile else None
    best = float("inf")
    for _ in range(args.rounds):
        if profiler:
            profiler.enable()
        start = time.perf_counter()
        await asyncio.gather(*(worker(per_worker) for _ in range(args.concurrency)))
        best = min(best, (time.perf_counter() - start) / (per_worker * args.concurrency))
        if profiler:
            profiler.disable()
    print(f"{args.target} at c={args.concurrency}: best of {args.rounds} rounds of "
          f"{per_worker * args.concurrency} requests: {best * 1e6:.1f} µs per request"
          + (" (profiled)" if profiler else ""))
    if profiler:
        stats = pstats.Stats(profiler)
        calls = stats.total_calls  # type: ignore[attr-defined]
        print(f"{calls / (per_worker * args.concurrency * args.rounds):.0f} Python function "
              "calls per request")
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats(args.sort).print_stats(args.top)
        print(out.getvalue())
    await startup.put({"type": "lifespan.shutdown"})
    await replies.get()
    await lifespan


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--target", choices=sorted(TARGETS), default="wine_v2")
    p.add_argument("--concurrency", "-c", type=int, default=1)
    p.add_argument("--requests", type=int, default=2000, help="per round")
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--profile", action="store_true", help="cProfile's top lines")
    p.add_argument("--sort", default="tottime", help="pstats sort key (tottime, ncalls, ...)")
    p.add_argument("--top", type=int, default=20)
    asyncio.run(_run(p.parse_args()))


if __name__ == "__main__":
    main()
