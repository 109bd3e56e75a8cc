"""Admission control: a bound on the requests one process works on at once.

An event-loop server has no natural limit: under load past its capacity every new
request is accepted, parsed and queued behind the others, so latency grows without
bound while clients wait. Past ``max_inflight`` requests in progress, this layer answers
at once with 503 and ``Retry-After`` instead (before the body is read or anything else
runs), so the requests it does admit keep a bounded latency (about ``max_inflight``
divided by the throughput) and a client or load balancer learns to retry elsewhere.

Health probes and ``/metrics`` are never refused: an overloaded instance is alive and
must still say so. The per-model batch queue bound (``queue_max_rows``) is the second
line: it refuses rows a model could not reach in time even when this one admits them.
"""

from __future__ import annotations

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from service.observability.middleware import PROBES
from service.settings import Settings


class Admission:
    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit
        self.inflight = 0
        self.refused = 0
        body = orjson.dumps({"error": (
            f"The server is overloaded: {limit} requests are already in progress in this "
            "process (max_inflight). Retry after 1 s.")})
        self._start = {"type": "http.response.start", "status": 503, "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"retry-after", b"1")]}
        self._body = {"type": "http.response.body", "body": body}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in PROBES:
            await self.app(scope, receive, send)
            return
        if self.inflight >= self.limit:
            self.refused += 1
            await send(self._start)
            await send(self._body)
            return
        self.inflight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.inflight -= 1


def wrap(app: ASGIApp, settings: Settings) -> ASGIApp:
    """``app`` behind admission control, or ``app`` itself when the limit is 0 (off)."""
    return Admission(app, settings.max_inflight) if settings.max_inflight > 0 else app
