"""Access control: API keys, admin keys and a per-key rate limit, for every protocol.

The HTTP gateway (``service/protocols/gateway.py``) and the gRPC server's interceptor
ask ``AccessControl.authorize`` before anything else runs (a refused request is still
logged and counted). When no key is configured there is no checker at all
(``access_control`` returns None); when keys are, a request costs a header scan, one
SHA-256 and one dict lookup.

- Credentials: ``X-API-Key: <key>`` or ``Authorization: Bearer <key>`` (HTTP headers
  or gRPC metadata). Keys are looked
  up by their SHA-256 digest, so comparing never short-cuts on the key's characters,
  and the key itself is neither kept nor logged, nor ever put in a response.
- Paths: health probes, ``/metrics``, the docs pages (``/docs``, ``/redoc``,
  ``/openapi.json``, which then lists no model names) and the console's pages and files
  (``/ui``, which hold no data; ``/ui/api/...`` except its config need a key) are open.
  ``/v2/repository/...`` and ``/admin/...`` (model management) need an admin key, and
  answer 404 when no admin key is configured. Everything else needs an API key (an
  admin key also works) when API keys are configured, and is open otherwise.
- 401 with ``WWW-Authenticate: Bearer`` for missing, malformed or unknown credentials;
  403 for a valid API key on a management endpoint; 429 with ``Retry-After`` when a
  key's token bucket is empty (``rate_limit_per_s``; per process). Over gRPC:
  UNAUTHENTICATED, PERMISSION_DENIED, RESOURCE_EXHAUSTED.

Key files are re-read when they change (checked at most every 5 s, on a request), so
keys can be rotated without a restart; a changed file that cannot be used (unreadable,
no key) is logged and the previous keys stay valid.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import time
from pathlib import Path

from service.errors import Forbidden, KeyConfigError, NotFound, RateLimited, Unauthenticated
from service.observability.requests import PROBES
from service.settings import Settings

log = logging.getLogger("modelserve.security")

ROLE_KEY = "modelserve.role"  # set in the ASGI scope: "admin", "api" or "" (open path)
ADMIN, API = "admin", "api"

# The probes and /metrics (the same set the access log and admission control treat as
# probes), the docs, and what the console asks before it has a key.
OPEN_PATHS = PROBES | {"/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json",
                       "/ui", "/ui/", "/ui/live", "/ui/api/config"}
# The console's files and page shells: they hold no data (the pages fetch it with a key).
OPEN_PREFIXES = ("/ui/assets/", "/ui/models/", "/ui/draw/")
ADMIN_PREFIXES = ("/v2/repository/", "/admin/")

ADMIN_OFF = ("Model management is off on this server: set MODELSERVE_ADMIN_KEYS or "
             "MODELSERVE_ADMIN_KEYS_FILE to enable /v2/repository/... and /admin/reload.")


def read_keys(inline: str, file: Path | None, what: str) -> list[str]:
    """Keys from a comma-separated setting and/or a file (one per line; blank lines and
    ``#`` comments ignored). A configured file that is missing or has no key is an error:
    access control must not silently switch off."""
    keys = [k.strip() for k in inline.split(",") if k.strip()]
    _check_keys(keys, what)
    if file is not None:
        try:
            text = Path(file).read_text(encoding="utf-8")
        except OSError as exc:
            raise KeyConfigError(f"{what}_file {file}: cannot read it ({exc.strerror}).") from None
        except UnicodeDecodeError:
            raise KeyConfigError(f"{what}_file {file}: not UTF-8 text.") from None
        from_file = [line.split("#", 1)[0].strip() for line in text.splitlines()]
        from_file = [k for k in from_file if k]
        if not from_file:
            raise KeyConfigError(f"{what}_file {file} holds no key.")
        _check_keys(from_file, f"{what}_file {file}")
        keys.extend(from_file)
    return keys


def _check_keys(keys: list[str], where: str) -> None:
    for k in keys:
        if any(c.isspace() for c in k) or not k.isprintable():
            raise KeyConfigError(f"a key in {where} contains whitespace or unprintable "
                                 "characters.")


def digest(key: bytes) -> bytes:
    return hashlib.sha256(key).digest()


def configured(settings: Settings) -> tuple[bool, bool]:
    """(API keys configured, admin keys configured), without reading files."""
    api = bool(settings.api_keys.get_secret_value().strip()) or settings.api_keys_file is not None
    admin = (bool(settings.admin_keys.get_secret_value().strip())
             or settings.admin_keys_file is not None)
    return api, admin


def _roles(settings: Settings) -> dict[bytes, str]:
    """Key digest -> role, from the settings and the key files (read now)."""
    roles: dict[bytes, str] = {}
    for key in read_keys(settings.api_keys.get_secret_value(), settings.api_keys_file,
                         "api_keys"):
        roles[digest(key.encode())] = API
    for key in read_keys(settings.admin_keys.get_secret_value(), settings.admin_keys_file,
                         "admin_keys"):
        roles[digest(key.encode())] = ADMIN  # a key in both lists is an admin key
    return roles


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size, st.st_ino


class TokenBuckets:
    """One token bucket per key digest: ``rate`` tokens a second, at most ``burst``."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = float(burst if burst > 0 else max(1, math.ceil(rate)))
        self._buckets: dict[bytes, list[float]] = {}  # digest -> [tokens, last time]

    def take(self, who: bytes) -> float:
        """0 if a token was taken, else the seconds until one is there."""
        now = time.monotonic()
        bucket = self._buckets.get(who)
        if bucket is None:
            self._buckets[who] = [self.burst - 1.0, now]
            return 0.0
        tokens = min(self.burst, bucket[0] + (now - bucket[1]) * self.rate)
        bucket[1] = now
        if tokens >= 1.0:
            bucket[0] = tokens - 1.0
            return 0.0
        bucket[0] = tokens
        return (1.0 - tokens) / self.rate


class AccessControl:
    """Decides, for one request's path kind and credentials, its role or its refusal.
    The HTTP gateway and the gRPC interceptor both ask it (``authorize``)."""

    # Key files are checked for changes at most this often (rotation without restart).
    RECHECK_S = 5.0

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.roles = _roles(settings)  # a bad key source stops the start-up here
        self.require_api_key, self.admin_enabled = configured(settings)
        rate = settings.rate_limit_per_s
        self.buckets = TokenBuckets(rate, settings.rate_limit_burst) if rate > 0 else None
        self._files = [f for f in (settings.api_keys_file, settings.admin_keys_file) if f]
        self._stamps = [_stamp(f) for f in self._files]
        self._next_check = time.monotonic() + self.RECHECK_S if self._files else math.inf

    def _recheck_files(self) -> None:
        self._next_check = time.monotonic() + self.RECHECK_S
        stamps = [_stamp(f) for f in self._files]
        if stamps == self._stamps:
            return
        self._stamps = stamps
        try:
            roles = _roles(self.settings)
        except KeyConfigError as exc:
            log.error("key files changed but cannot be used, keeping the previous keys: %s",
                      exc)
            return
        self.roles = roles
        log.info("key files changed: %d keys now valid", len(roles))

    def authorize_http(self, path: str, headers: list[tuple[bytes, bytes]]) -> str:
        """The role of an HTTP request ("" on an open path); raises the refusal."""
        if path in OPEN_PATHS or path.startswith(OPEN_PREFIXES):
            return ""
        return self.authorize(path.startswith(ADMIN_PREFIXES), headers)

    def authorize(self, admin: bool, headers: list[tuple[bytes, bytes]]) -> str:
        """The role of a request for a management (``admin``) or a model endpoint, with
        these headers (or gRPC metadata, names lower-case); raises the refusal: 404 for
        management while no admin key is configured, 401 without a valid key, 403 for
        an API key on management, 429 past the key's rate."""
        if time.monotonic() >= self._next_check:
            self._recheck_files()
        if admin and not self.admin_enabled:
            raise NotFound(ADMIN_OFF)
        if not admin and not self.require_api_key:
            return ""
        key, problem = _credential(headers)
        if key is None:
            raise Unauthenticated(problem, headers={"WWW-Authenticate": "Bearer"})
        who = digest(key)
        role = self.roles.get(who)
        if role is None:
            raise Unauthenticated("The API key is not valid.",
                                  headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
        if admin and role != ADMIN:
            raise Forbidden("This endpoint needs an admin key; the key given is an API key "
                            "for prediction and metadata only.")
        if self.buckets is not None:
            wait = self.buckets.take(who)
            if wait > 0:
                retry = max(1, math.ceil(wait))
                raise RateLimited(f"Rate limit exceeded for this key ({self.buckets.rate:g} "
                                  f"requests/s, burst {self.buckets.burst:g}); retry after "
                                  f"{retry} s.", headers={"Retry-After": str(retry)})
        return role


def access_control(settings: Settings) -> AccessControl | None:
    """The checker, or None when no key is configured (every endpoint open, no cost)."""
    return AccessControl(settings) if any(configured(settings)) else None


_USE = "send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'"


def _credential(headers: list[tuple[bytes, bytes]]) -> tuple[bytes | None, str]:
    """(the key, "") or (None, why there is none). X-API-Key wins over Authorization."""
    authorization = None
    for name, value in headers:
        if name == b"x-api-key":
            value = value.strip()
            if value:
                return value, ""
        elif name == b"authorization":
            authorization = value
    if authorization is None:
        return None, f"This endpoint needs an API key: {_USE}."
    scheme, _, token = authorization.strip().partition(b" ")
    if scheme.lower() != b"bearer":
        return None, f"Unsupported Authorization scheme; {_USE}."
    token = token.strip()
    if not token:
        return None, f"The Bearer token is empty; {_USE}."
    return token, ""
