"""What every protocol router needs: bounded body reading, JSON in and out, and the
objects the app shares (repository, settings, inference)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import orjson
from fastapi import Request
from fastapi.responses import Response
from starlette.requests import ClientDisconnect

from service.errors import InvalidInput, PayloadTooLarge
from service.inference import Inference
from service.repository import Repository
from service.settings import Settings


@dataclass
class Services:
    settings: Settings
    repository: Repository
    inference: Inference
    # Set on SIGTERM: readiness answers 503 while in-flight requests finish.
    draining: bool = False


def services(request: Request) -> Services:
    return request.app.state.services


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it passes ``limit`` bytes (before
    reading it all when Content-Length already says so)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(
            f"Request body is {int(declared)} bytes; the limit is {limit} bytes.")
    # Straight from the ASGI receive channel: Request.stream()'s generator costs more
    # than the read itself for a small body.
    receive = request.receive
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"Request body exceeds the limit of {limit} bytes.")
            chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def parse_json(body: bytes, what: str = "request body") -> Any:
    if not body.strip():
        raise InvalidInput(f"The {what} is empty; send a JSON object.")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        pass
    # TF Serving accepts NaN and Infinity literals; orjson does not. Parse them here
    # so the validator can name the offending value instead of calling it malformed.
    try:
        return json.loads(body)
    except RecursionError:
        raise InvalidInput(f"The {what} is nested too deeply.") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"The {what} is not valid JSON: {exc}.") from None


def require_object(value: Any, what: str = "request body") -> dict[str, Any]:
    if not isinstance(value, dict):
        kind = "an array" if isinstance(value, list) else type(value).__name__
        raise InvalidInput(f"The {what} must be a JSON object, not {kind}.")
    return value


class BytesResponse(Response):
    """A Response of ready-made bytes whose headers are built directly: Starlette's
    generic header handling costs several µs a response on the prediction path."""

    def __init__(self, body: bytes, status_code: int = 200,
                 headers: dict[str, str] | None = None,
                 media_type: str = "application/json") -> None:
        self.status_code = status_code
        self.body = body
        self.background = None
        raw = [(b"content-length", str(len(body)).encode()),
               (b"content-type", media_type.encode())]
        if headers:
            raw.extend((k.lower().encode("latin-1"), v.encode("latin-1"))
                       for k, v in headers.items())
        self.raw_headers = raw


def json_response(content: Any, status_code: int = 200,
                  headers: dict[str, str] | None = None) -> Response:
    return BytesResponse(orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY),
                         status_code=status_code, headers=headers)
