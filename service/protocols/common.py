"""What every HTTP protocol router needs: bounded body reading, JSON in and out, and the
data plane the app shares."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import orjson
from fastapi import Request
from fastapi.responses import Response
from starlette.requests import ClientDisconnect

from service.dataplane import DataPlane
from service.errors import InvalidInput, PayloadTooLarge, RequestTimeout

# What the routers share: the data plane, with the settings, repository and inference
# it holds.
Services = DataPlane


def services(request: Request) -> DataPlane:
    return request.app.state.services


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it passes ``limit`` bytes (before
    reading it all when Content-Length already says so), and with 408 (connection closed)
    when it has not all arrived ``body_timeout_s`` after the read began."""
    declared = header(request, b"content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(
            f"Request body is {int(declared)} bytes; the limit is {limit} bytes.")
    # Straight from the ASGI receive channel: Request.stream()'s generator costs more
    # than the read itself for a small body.
    receive = request.receive
    chunks, size = [], 0
    timeout = request.app.state.services.settings.body_timeout_s
    task = _deadline(timeout)  # slow clients: a deadline for the whole body
    try:
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
    except asyncio.CancelledError:
        if task not in _expired:
            raise
        _expired.discard(task)
        task.uncancel()
        raise RequestTimeout(f"The request body did not arrive within {timeout:g} s "
                             f"({size} bytes received).",
                             headers={"Connection": "close"}) from None
    finally:
        _reading.pop(task, None)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


# Body reads in progress and their deadlines, enforced by one sweeper task per event loop
# (cancelling a read past its deadline) rather than by a timer per request: arming and
# disarming asyncio.timeout costs ~7 µs, a dict entry well under 1 µs.
_reading: dict[asyncio.Task, float] = {}
_expired: set[asyncio.Task] = set()
_sweeper: asyncio.Task | None = None


def _deadline(timeout: float) -> asyncio.Task:
    global _sweeper
    task = asyncio.current_task()
    loop = task.get_loop()
    _reading[task] = loop.time() + timeout
    if _sweeper is None or _sweeper.done() or _sweeper.get_loop() is not loop:
        _sweeper = loop.create_task(_sweep(loop, min(1.0, timeout / 4)))
    return task


async def _sweep(loop: asyncio.AbstractEventLoop, step: float) -> None:
    idle_until = loop.time() + 60  # then stop; the next read starts a sweeper again
    while _reading or loop.time() < idle_until:
        if _reading:
            idle_until = loop.time() + 60
        await asyncio.sleep(step)
        now = loop.time()
        for task, deadline in list(_reading.items()):
            if deadline <= now and task.get_loop() is loop:
                del _reading[task]
                _expired.add(task)
                task.cancel()


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
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, a 5000-digit number
        raise InvalidInput(f"The {what} is not valid JSON: {exc}.") from None


def require_object(value: Any, what: str = "request body") -> dict[str, Any]:
    if not isinstance(value, dict):
        kind = "an array" if isinstance(value, list) else type(value).__name__
        raise InvalidInput(f"The {what} must be a JSON object, not {kind}.")
    return value


def header(request: Request, name: bytes) -> str | None:
    """One request header (``name`` lower-case), straight from the ASGI scope: cheaper
    than building Starlette's Headers on the prediction path."""
    for key, value in request.scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


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
    return BytesResponse(dumps(content), status_code=status_code, headers=headers)


def dumps(content: Any) -> bytes:
    """JSON bytes of anything a response may hold, numpy arrays included."""
    try:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)
    except TypeError:  # orjson.JSONEncodeError
        # What orjson refuses but a client can put in an echoed value: a lone surrogate
        # (\ud800) in an id or a name, an integer past 64 bits in an error's details.
        return json.dumps(content, ensure_ascii=True, default=_plain).encode()


def _plain(value: Any) -> Any:
    return value.tolist() if hasattr(value, "tolist") else str(value)
