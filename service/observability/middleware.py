"""The outermost ASGI layer: request id, timing, metrics and the access log.

It wraps the whole application (the prediction fast lane bypasses FastAPI and its
middleware, so this has to sit in front of both). Per HTTP request it:

- takes the client's ``X-Request-ID`` if it is 1-128 characters of ``[A-Za-z0-9._-]``,
  else makes one (uuid4 hex), makes it the request's context (``context.begin``) and
  adds it to the response headers;
- notes the response status as it is sent and times the request to its last byte;
- classifies the path: TF-Serving ``:predict``/``:classify``/``:regress`` →
  ``tfserving``, ``:predict_image`` → ``image``, V2 ``/infer`` → ``v2``; those count in
  the inference metrics with the model and version the handler resolved (or, when it
  failed before that, the path's model name if the repository knows it, else
  ``_unknown``, with an empty version); every request counts in
  ``modelserve_http_requests_total`` under its route template, never its raw path;
- writes one access line (health and metrics probes only at debug level unless they
  fail). Payloads and query strings are never logged.

Counting and logging happen after the response has been sent.

Pure ASGI (Starlette's BaseHTTPMiddleware would cost more than a small prediction).
"""

from __future__ import annotations

import logging
import os
import re
import time
from typing import TYPE_CHECKING, NamedTuple

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.observability import context, logs, metrics

if TYPE_CHECKING:
    from service.protocols.common import Services

log = logging.getLogger("modelserve.observability")

HEADER = b"x-request-id"
_VALID_ID = re.compile(rb"[A-Za-z0-9._-]{1,128}")

_TFSERVING = re.compile(r"^/v1/models/([^/:]+)(?:/(versions|labels)/[^/:]+)?"
                        r":(predict|classify|regress|predict_image)$")
_V2_INFER = re.compile(r"^/v2/models/([^/]+)(/versions/[^/]+)?/infer$")

PROBES = frozenset({"/v2/health/live", "/v2/health/ready", "/healthz", "/readyz", "/metrics"})
_METHODS = frozenset({"GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH"})
MAX_LOGGED_PATH = 200


class Route(NamedTuple):
    protocol: str   # "tfserving", "image", "v2"; "" when not an inference request
    template: str   # route label of an inference request
    model: str      # model name in the path


_NOT_INFERENCE = Route("", "", "")
_routes: dict[str, Route] = {}
_MAX_CACHED_ROUTES = 4096


def classify(method: str, path: str) -> Route:
    """Which inference route a request is (cached: paths repeat)."""
    if method != "POST":
        return _NOT_INFERENCE
    route = _routes.get(path)
    if route is not None:
        return route
    route = _NOT_INFERENCE
    if path.startswith("/v1/"):
        m = _TFSERVING.match(path)
        if m:
            verb = m.group(3)
            versions = {"versions": "/versions/{version}", "labels": "/labels/{label}",
                        None: ""}[m.group(2)]
            route = Route("image" if verb == "predict_image" else "tfserving",
                          f"/v1/models/{{name}}{versions}:{verb}", m.group(1))
    elif path.startswith("/v2/"):
        m = _V2_INFER.match(path)
        if m:
            versions = "/versions/{version}" if m.group(2) else ""
            route = Route("v2", f"/v2/models/{{name}}{versions}/infer", m.group(1))
    if len(_routes) >= _MAX_CACHED_ROUTES:  # arbitrary paths from clients: stay bounded
        _routes.clear()
    _routes[path] = route
    return route


def request_id(scope: Scope) -> str:
    """The client's X-Request-ID when it is safe to echo, else a new one."""
    for name, value in scope["headers"]:
        if name == HEADER:
            if _VALID_ID.fullmatch(value):
                return value.decode("ascii")
            break
    return new_request_id()


def new_request_id() -> str:
    """A random (version 4) UUID as 32 hex digits, like ``uuid.uuid4().hex``; made 256
    at a time (one getrandom call instead of one per request)."""
    try:
        return _spare_ids.pop()
    except IndexError:
        pool = os.urandom(16 * 256)
        _spare_ids.extend(
            f"{(int.from_bytes(pool[i:i + 16], 'big') & _UUID4_CLEAR) | _UUID4_SET:032x}"
            for i in range(0, len(pool), 16))
        return _spare_ids.pop()


_spare_ids: list[str] = []
os.register_at_fork(after_in_child=_spare_ids.clear)  # a forked child draws its own


# uuid4: version bits (4) in the time_hi field, variant bits (10) in clock_seq.
_UUID4_CLEAR = ~((0xF000 << 64) | (0xC000 << 48)) & ((1 << 128) - 1)
_UUID4_SET = (0x4000 << 64) | (0x8000 << 48)


def clean_path(path: str) -> str:
    """The path as it may appear in a log line: printable, at most 200 characters."""
    if not path.isprintable():
        path = path.encode("unicode_escape").decode("ascii")
    return path if len(path) <= MAX_LOGGED_PATH else path[:MAX_LOGGED_PATH] + "…"


class ObservabilityMiddleware:
    def __init__(self, app: ASGIApp, services: Services, *, access_log: bool = True) -> None:
        self.app = app
        self.services = services
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        rid = request_id(scope)
        info = context.begin(rid)
        rid_header = (HEADER, rid.encode("ascii"))
        status = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), rid_header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            status = status or 500
            raise
        finally:
            # No response at all: the client went away first (nginx's 499).
            self._done(scope, info, status or 499, time.perf_counter() - start)

    def _done(self, scope: Scope, info: context.RequestInfo, status: int,
              seconds: float) -> None:
        try:
            method, path = scope["method"], scope["path"]
            route = classify(method, path)
            model, version = info.model, info.version
            if route.protocol:
                label = model
                if not label:  # failed before a version was resolved
                    label = (route.model if route.model in self.services.repository.names()
                             else metrics.UNKNOWN_MODEL)
                metrics.observe_request(label, version, route.protocol, status, seconds)
                template = route.template
            else:
                template = getattr(scope.get("route"), "path", None) or "other"
            metrics.count_http(method if method in _METHODS else "other", template, status)
            level = logging.DEBUG if status < 400 and path in PROBES else logging.INFO
            if self.access_log and logs.access_log.isEnabledFor(level):
                shown = clean_path(path)
                client = scope.get("client")
                logs.access(level, f"{method} {shown} {status}", {
                    "method": method, "path": shown,
                    "model": model or clean_path(route.model[:64]), "version": version,
                    "label": info.route_label,
                    "protocol": route.protocol, "status": status,
                    "duration_ms": round(seconds * 1000, 3), "request_id": info.request_id,
                    "client": client[0] if client else "",
                })
        except Exception:  # observability must never break serving
            log.exception("could not record request metrics")
