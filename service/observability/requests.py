"""What the HTTP gateway needs to identify and label a request: its request id (the
client's, when safe to echo, else a new one), the probe paths, and a path made safe
for a log line."""

from __future__ import annotations

import os
import re

from starlette.types import Scope

HEADER = b"x-request-id"
_VALID_ID = re.compile(rb"[A-Za-z0-9._-]{1,128}")

# Health probes and /metrics: never refused by admission control, open without a key,
# and logged only at debug level unless they fail.
PROBES = frozenset({"/", "/v2/health/live", "/v2/health/ready", "/healthz", "/readyz",
                    "/metrics"})
METHODS = frozenset({"GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH"})
MAX_LOGGED_PATH = 200


def request_id(scope: Scope) -> str:
    """The client's X-Request-ID when it is safe to echo, else a new one."""
    for name, value in scope["headers"]:
        if name == HEADER:
            if _VALID_ID.fullmatch(value):
                return value.decode("ascii")
            break
    return new_request_id()


def valid_request_id(text: str) -> bool:
    """Whether ``text`` is a request id this service would echo (and so can have given)."""
    return text.isascii() and _VALID_ID.fullmatch(text.encode("ascii")) is not None


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
