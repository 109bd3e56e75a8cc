"""The inference routes, in one table.

Every HTTP path that runs a model is listed here once. The HTTP gateway
(``service/protocols/gateway.py``) matches requests against this table and calls the
route's handler directly, without FastAPI's routing; the metrics and the access log
label requests with the route's template, never the raw path; and FastAPI gets the
same routes (``serve``) so the OpenAPI schema documents them. Other routes (health,
metadata, model management) are FastAPI's alone.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

# handler(request, model name, version or None, label or None)
Handler = Callable[[Request, str, str | None, str | None], Awaitable[Response]]


@dataclass(frozen=True)
class Route:
    protocol: str   # "tfserving", "image", "v2": the metrics' protocol label
    verb: str       # "predict", "classify", "regress", "predict_image", "infer"
    ref: str        # how the version is named: "latest", "version" or "label"
    template: str   # the path template, the metrics' route label
    summary: str


def _table() -> list[Route]:
    out = []
    refs = {"latest": ("", "latest"), "version": ("/versions/{version}", "one version"),
            "label": ("/labels/{label}", "labelled version, e.g. canary")}
    for protocol, verbs in (("tfserving", ("predict", "classify", "regress")),
                            ("image", ("predict_image",))):
        for verb in verbs:
            what = ("Classify an uploaded digit image" if protocol == "image"
                    else verb.capitalize())
            for ref, (part, note) in refs.items():
                out.append(Route(protocol, verb, ref, f"/v1/models/{{name}}{part}:{verb}",
                                 f"{what} ({note})"))
    out.append(Route("v2", "infer", "latest", "/v2/models/{name}/infer",
                     "Inference (latest version)"))
    out.append(Route("v2", "infer", "version", "/v2/models/{name}/versions/{version}/infer",
                     "Inference (one version, or a label)"))
    return out


ROUTES: tuple[Route, ...] = tuple(_table())


def _pattern(template: str) -> re.Pattern[str]:
    # A V1 name stops at ':' (the verb follows it); V2 names may hold one.
    part = "[^/:]+" if template.startswith("/v1/") else "[^/]+"
    # \Z, not $: "$" also matches before a final newline ("...:predict%0A").
    return re.compile("^" + re.sub(r"\\{\w+\\}", f"({part})", re.escape(template)) + r"\Z")


_PATTERNS = [(route, _pattern(route.template)) for route in ROUTES]
_handlers: dict[tuple[str, str], Handler] = {}


@dataclass(frozen=True, slots=True)
class Match:
    route: Route
    handler: Handler
    name: str
    version: str | None
    label: str | None


_cache: dict[str, Match | None] = {}
_MAX_CACHED = 4096


def match(path: str) -> Match | None:
    """The inference route a POST to ``path`` is, if any (cached: paths repeat)."""
    try:
        return _cache[path]
    except KeyError:
        pass
    found = None
    if path.startswith(("/v1/", "/v2/")):
        for route, pattern in _PATTERNS:
            m = pattern.match(path)
            if m is not None:
                handler = _handlers.get((route.protocol, route.verb))
                if handler is None:
                    continue
                name = m.group(1)
                ref = m.group(2) if m.lastindex and m.lastindex > 1 else None
                found = Match(route, handler, name,
                              ref if route.ref == "version" else None,
                              ref if route.ref == "label" else None)
                break
    if len(_cache) >= _MAX_CACHED:  # arbitrary paths from clients: stay bounded
        _cache.clear()
    _cache[path] = found
    return found


def serve(protocol: str, handlers: dict[str, Handler], router: APIRouter,
          openapi_extra: dict[str, Any] | None = None) -> None:
    """Make ``handlers`` (by verb) serve the protocol's routes, and declare the routes
    on ``router`` for the OpenAPI schema."""
    for route in ROUTES:
        if route.protocol != protocol or route.verb not in handlers:
            continue
        handler = handlers[route.verb]
        _handlers[(protocol, route.verb)] = handler
        router.add_api_route(route.template, _endpoint(handler, route.ref), methods=["POST"],
                             name=f"{route.verb}_{route.ref}", summary=route.summary,
                             openapi_extra=openapi_extra)
    _cache.clear()


def _endpoint(handler: Handler, ref: str) -> Callable[..., Awaitable[Response]]:
    # FastAPI reads path parameters from the endpoint's signature.
    if ref == "latest":
        async def latest(request: Request, name: str) -> Response:
            return await handler(request, name, None, None)
        return latest
    if ref == "version":
        async def versioned(request: Request, name: str, version: str) -> Response:
            return await handler(request, name, version, None)
        return versioned

    async def labelled(request: Request, name: str, label: str) -> Response:
        return await handler(request, name, None, label)
    return labelled
