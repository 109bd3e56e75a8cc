"""The HTTP front door: one ASGI layer in front of FastAPI that every request passes.

Per request, in this order:

1. request id: the client's ``X-Request-ID`` if it is 1-128 characters of
   ``[A-Za-z0-9._-]``, else a new one; it becomes the request's logging context and is
   echoed in the response headers;
2. admission (``DataPlane.admission``): past ``max_inflight`` requests in progress,
   503 with ``Retry-After`` at once, before the body is read (probes and ``/metrics``
   are never refused: an overloaded instance is alive and must say so);
3. access control (``service/security.py``), when keys are configured;
4. dispatch: a POST matching the inference route table (``routes.py``) goes straight to
   its protocol handler; anything else to FastAPI. FastAPI's per-request machinery
   (route scan, dependency solving) costs several times what the handler costs for a
   small model, so predictions skip it; FastAPI still declares those routes for the
   OpenAPI schema, with the very same handlers;
5. accounting, after the response has been sent: inference requests in the inference
   metrics under their protocol (``DataPlane.observe``), every request in
   ``modelserve_http_requests_total`` under its route template (never its raw path),
   and one access log line (probes only at debug level unless they fail). Payloads and
   query strings are never logged.

One layer rather than a middleware stack: each wrapper would cost a coroutine and a
``send`` closure per request, which is what a small prediction costs altogether.
"""

from __future__ import annotations

import logging
import time

from fastapi import FastAPI
from starlette.requests import ClientDisconnect, Request
from starlette.types import Message, Receive, Scope, Send

from service import security
from service.dataplane import DataPlane
from service.errors import INTERNAL, ApiError, NotFound, http_body
from service.observability import context, logs, metrics
from service.observability.requests import (
    HEADER,
    METHODS,
    PROBES,
    clean_path,
    request_id,
)
from service.protocols import routes
from service.protocols.common import json_response
from service.settings import Settings

log = logging.getLogger("modelserve.gateway")


class Gateway:
    def __init__(self, app: FastAPI, plane: DataPlane, settings: Settings) -> None:
        self.app = app
        self.plane = plane
        self.admission = plane.admission
        # None when no key is configured: then nothing is checked at all.
        self.access = plane.access
        self.access_log = settings.access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # lifespan
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        rid = request_id(scope)
        info = context.begin(rid)
        path: str = scope["path"]
        match = routes.match(path) if scope["method"] == "POST" else None
        rid_header = (HEADER, rid.encode("ascii"))
        status = 0
        admitted = False
        try:
            if not path.isprintable():
                # No route has a control character, and a route pattern's "$" (ours or
                # FastAPI's) would let a final newline through.
                raise NotFound(f"No endpoint at {scope['method']} {clean_path(path)}; "
                               "see /docs.")
            if path not in PROBES:
                if not self.admission.enter():
                    raise self.admission.refusal()
                admitted = True
            if self.access is not None:
                scope[security.ROLE_KEY] = self.access.authorize_http(path, scope["headers"])
            if match is not None:
                status = await self._serve(match, scope, receive, send, rid_header)
            else:
                async def send_with_id(message: Message) -> None:
                    nonlocal status
                    if message["type"] == "http.response.start":
                        status = message["status"]
                        message["headers"] = [*message.get("headers", ()), rid_header]
                    await send(message)

                await self.app(scope, receive, send_with_id)
        except ApiError as exc:  # refused before any handler ran
            status = exc.status_code
            await _send(send, json_response(http_body(exc), status, exc.headers), rid_header)
        except Exception:
            status = status or 500
            raise
        finally:
            if admitted:
                self.admission.leave()
            # No response at all: the client went away first (nginx's 499).
            self._done(scope, info, match, status or 499, time.perf_counter() - start)

    async def _serve(self, match: routes.Match, scope: Scope, receive: Receive, send: Send,
                     rid_header: tuple[bytes, bytes]) -> int:
        scope["app"] = self.app  # what Request.app (and so the data plane) reads
        try:
            response = await match.handler(Request(scope, receive), match.name, match.version,
                                           match.label)
        except ApiError as exc:
            response = json_response(http_body(exc), exc.status_code, exc.headers)
        except ClientDisconnect:
            return 0
        except Exception:
            log.exception("unhandled error on POST %s", clean_path(scope["path"]))
            response = json_response({"error": INTERNAL}, status_code=500)
        await _send(send, response, rid_header)
        return response.status_code

    def _done(self, scope: Scope, info: context.RequestInfo, match: routes.Match | None,
              status: int, seconds: float) -> None:
        try:
            method, path = scope["method"], scope["path"]
            if match is not None:
                route = match.route
                self.plane.observe(route.protocol, info.model, info.version, match.name,
                                   status, seconds)
                template, protocol = route.template, route.protocol
            else:
                template = getattr(scope.get("route"), "path", None) or "other"
                protocol = ""
            metrics.count_http(method if method in METHODS else "other", template, status)
            level = logging.DEBUG if status < 400 and path in PROBES else logging.INFO
            if self.access_log and logs.access_log.isEnabledFor(level):
                shown = clean_path(path)
                client = scope.get("client")
                logs.access(level, f"{method} {shown} {status}", {
                    "method": method, "path": shown,
                    "model": info.model or (clean_path(match.name[:64]) if match else ""),
                    "version": info.version, "label": info.route_label,
                    "protocol": protocol, "status": status,
                    "duration_ms": round(seconds * 1000, 3), "request_id": info.request_id,
                    "client": client[0] if client else "",
                })
        except Exception:  # observability must never break serving
            log.exception("could not record request metrics")


async def _send(send: Send, response, rid_header: tuple[bytes, bytes]) -> None:
    # What Response.__call__ does for a plain body, without its background-task machinery.
    await send({"type": "http.response.start", "status": response.status_code,
                "headers": [*response.raw_headers, rid_header]})
    await send({"type": "http.response.body", "body": response.body})
