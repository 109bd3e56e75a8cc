"""Every error type of the service, and one renderer per protocol error shape.

A failure a client can cause is an ``ApiError``: an HTTP status, one human sentence and
optional machine-readable ``details``. HTTP renders it as ``{"error": "...", "details":
[...]}`` (``http_body``: the shape both TF Serving's and KServe/Triton's clients parse);
gRPC as a status code and the same sentence (``grpc_code``). The protocols raise these
and never build error bodies themselves.

The other errors are the operator's: a version folder that cannot be served
(``ModelLoadError``), a config.json or key file that cannot be used (``ConfigError``,
``KeyConfigError``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


class ApiError(Exception):
    status_code = 400

    def __init__(self, message: str, details: list[dict[str, Any]] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return http_body(self)


class InvalidInput(ApiError):
    status_code = 400


class Unauthenticated(ApiError):
    status_code = 401


class Forbidden(ApiError):
    status_code = 403


class NotFound(ApiError):
    status_code = 404


class RequestTimeout(ApiError):
    """The request body did not arrive in time."""
    status_code = 408


class Conflict(ApiError):
    """The request would store something a second time (feedback for a prediction that
    already has it)."""
    status_code = 409


class PayloadTooLarge(ApiError):
    status_code = 413


class UnsupportedMediaType(ApiError):
    status_code = 415


class RateLimited(ApiError):
    status_code = 429


class InferenceFailed(ApiError):
    """The model raised on a request's own rows."""
    status_code = 500


class Unavailable(ApiError):
    status_code = 503


class Overloaded(Unavailable):
    """Refused at once rather than queued: too many requests in progress, or a model's
    batch queue is full."""


class TimedOut(ApiError):
    """Waited in a model's batch queue past the request timeout."""
    status_code = 504


class ModelLoadError(Exception):
    """A version folder cannot be served; the message names the file and the problem."""

    def __init__(self, path: Path | str, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class ConfigError(Exception):
    """A model's config.json cannot be used (the previous config stays)."""


class KeyConfigError(ValueError):
    """A configured key source cannot be used (the server refuses to start)."""


def detail(field: str, problem: str, *, expected: Any = None, got: Any = None,
           hint: str | None = None) -> dict[str, Any]:
    """One machine-readable entry of an error's ``details`` list."""
    out: dict[str, Any] = {"field": field, "problem": problem}
    if expected is not None:
        out["expected"] = expected
    if got is not None:
        out["got"] = got
    if hint:
        out["hint"] = hint
    return out


# --- renderers -----------------------------------------------------------------------------

INTERNAL = "Internal server error; the server log has details."


def http_body(exc: ApiError) -> dict[str, Any]:
    """The JSON body of an HTTP error response."""
    out: dict[str, Any] = {"error": exc.message}
    if exc.details:
        out["details"] = exc.details
    return out


# HTTP status -> gRPC status code name (grpc.StatusCode[...]), as gRPC's own HTTP mapping
# and KServe's and Triton's servers use them.
_GRPC_CODES = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
               404: "NOT_FOUND", 408: "DEADLINE_EXCEEDED", 409: "ALREADY_EXISTS",
               413: "RESOURCE_EXHAUSTED",
               415: "INVALID_ARGUMENT", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL",
               503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}

# And back, for the metrics and the access log, which count every protocol's outcomes
# in HTTP's terms.
HTTP_STATUS_OF_GRPC = {"OK": 200, "INVALID_ARGUMENT": 400, "UNAUTHENTICATED": 401,
                       "PERMISSION_DENIED": 403, "NOT_FOUND": 404, "DEADLINE_EXCEEDED": 504,
                       "RESOURCE_EXHAUSTED": 429, "INTERNAL": 500, "UNAVAILABLE": 503,
                       "UNIMPLEMENTED": 501, "CANCELLED": 499, "UNKNOWN": 500,
                       "FAILED_PRECONDITION": 400, "OUT_OF_RANGE": 400, "ABORTED": 409,
                       "ALREADY_EXISTS": 409, "DATA_LOSS": 500}


def grpc_code(exc: ApiError) -> tuple[str, str]:
    """(gRPC status code name, message) of an error."""
    return _GRPC_CODES.get(exc.status_code, "UNKNOWN"), exc.message
