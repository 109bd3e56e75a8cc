"""Error types. Every failure a client can cause is an ``ApiError``: a status code and
one human sentence, rendered as ``{"error": "...", "details": [...]}`` — the shape both
TF Serving's and KServe/Triton's clients parse."""

from __future__ import annotations

from pathlib import Path
from typing import Any


class ModelLoadError(Exception):
    """A version folder cannot be served; the message names the file and the problem."""

    def __init__(self, path: Path | str, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class ApiError(Exception):
    status_code = 400

    def __init__(self, message: str, details: list[dict[str, Any]] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"error": self.message}
        if self.details:
            out["details"] = self.details
        return out


class InvalidInput(ApiError):
    status_code = 400


class NotFound(ApiError):
    status_code = 404


class PayloadTooLarge(ApiError):
    status_code = 413


class UnsupportedMediaType(ApiError):
    status_code = 415


class Unavailable(ApiError):
    status_code = 503


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
