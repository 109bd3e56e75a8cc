"""Per-request facts that only the handler learns (which model and version served it),
carried to the access log and the metrics without threading them through every call.

The HTTP gateway and the gRPC servicer call ``begin()`` for each request; it runs in
the request's own task, so the context variable is private to that request. ``note_model`` is called
where a request is resolved to a loaded model version.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any


@dataclass
class RequestInfo:
    request_id: str = ""
    model: str = ""
    version: str = ""
    route_label: str = ""   # e.g. "canary" when a request came through a label
    # The prediction captured as evidence, until the answer is accounted for
    # (service/evidence/).
    prediction: Any = None


_current: ContextVar[RequestInfo | None] = ContextVar("modelserve_request", default=None)


def begin(request_id: str) -> RequestInfo:
    info = RequestInfo(request_id=request_id)
    _current.set(info)
    return info


def current() -> RequestInfo | None:
    return _current.get()


def note_model(name: str, version: int, label: str = "") -> None:
    info = _current.get()
    if info is not None:
        info.model, info.version, info.route_label = name, str(version), label
