"""The hot routes, dispatched before FastAPI sees the request.

Prediction requests (TF-Serving ``:predict``/``:classify``/``:regress`` and V2
``/infer``) are matched here with one regular expression each and handed straight to
the protocol handler. FastAPI's per-request machinery (route scan, dependency
solving, middleware stack) costs several times what the handler itself costs for a
small model. Everything else, and the OpenAPI schema of these same routes, stays
with FastAPI, and the handlers are the very functions the FastAPI routes call, so
the two paths cannot drift apart.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable

from fastapi import FastAPI
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from service.errors import ApiError
from service.protocols import tfserving, v2
from service.protocols.common import json_response

log = logging.getLogger("modelserve.fastlane")

Handler = Callable[..., Awaitable[Response]]

_TFSERVING = re.compile(
    r"^/v1/models/([^/:]+)(?:/(versions|labels)/([^/:]+))?:(predict|classify|regress)$")
_V2_INFER = re.compile(r"^/v2/models/([^/]+)(?:/versions/([^/]+))?/infer$")
_VERBS: dict[str, Handler] = {"predict": tfserving.predict, "classify": tfserving.classify,
                              "regress": tfserving.regress}


class FastLane:
    def __init__(self, app: FastAPI) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            handler, name, version, label = _match(scope["path"])
            if handler is not None:
                await self._serve(handler, name, version, label, scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def _serve(self, handler: Handler, name: str, version: str | None,
                     label: str | None, scope: Scope, receive: Receive, send: Send) -> None:
        scope["app"] = self.app  # what Request.app (and so the shared services) reads
        try:
            request = Request(scope, receive)
            response = await (handler(request, name, version) if label is None
                              else handler(request, name, None, label))
        except ApiError as exc:
            response = json_response(exc.body(), status_code=exc.status_code,
                                     headers=exc.headers)
        except ClientDisconnect:
            return
        except Exception:
            log.exception("unhandled error on POST %s", scope["path"][:200])
            response = json_response({"error": "Internal server error; the server log has "
                                               "details."}, status_code=500)
        # What Response.__call__ does for a plain body, without its background-task
        # machinery.
        await send({"type": "http.response.start", "status": response.status_code,
                    "headers": response.raw_headers})
        await send({"type": "http.response.body", "body": response.body})


def _match(path: str) -> tuple[Handler | None, str, str | None, str | None]:
    """(handler, model name, version, label) for a prediction path."""
    if path.startswith("/v2/"):
        m = _V2_INFER.match(path)
        if m:
            return v2.infer_handler, m.group(1), m.group(2), None
    elif path.startswith("/v1/"):
        m = _TFSERVING.match(path)
        if m:
            name, kind, ref, verb = m.groups()
            if kind == "labels":
                return _VERBS[verb], name, None, ref
            return _VERBS[verb], name, ref, None
    return None, "", None, None
