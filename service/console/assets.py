"""The console's files and the vendored docs bundles, from ``static/``: a fixed table made
at the first page (no path from a request ever reaches the file system; nothing is read
at start-up) and versioned URLs."""

from __future__ import annotations

import hashlib
import mimetypes
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import Response

from service.errors import NotFound

STATIC = Path(__file__).parent / "static"
_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
          ".svg": "image/svg+xml", ".png": "image/png"}
# A URL with the file's own version never changes meaning: cached for a year.
IMMUTABLE = "public, max-age=31536000, immutable"


@dataclass(frozen=True)
class Asset:
    path: Path
    media_type: str
    version: str  # the first 12 hex digits of its SHA-256


@cache
def table() -> dict[str, Asset]:
    table = {}
    for path in sorted(STATIC.rglob("*")):
        media_type = _TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0]
        if path.is_file() and path.suffix in _TYPES and media_type:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
            table[path.relative_to(STATIC).as_posix()] = Asset(path, media_type, digest)
    return table


def url(name: str) -> str:
    """The versioned URL of a static file (``KeyError`` for a file that is not there)."""
    return f"/ui/assets/{name}?v={table()[name].version}"


router = APIRouter(include_in_schema=False)


@router.get("/ui/assets/{name:path}")
async def asset(request: Request, name: str) -> Response:
    found = table().get(name)
    if found is None:
        raise NotFound(f"No console file {name[:100]!r}.")
    cache = IMMUTABLE if request.query_params.get("v") == found.version else "no-cache"
    return Response(found.path.read_bytes(), media_type=found.media_type,
                    headers={"Cache-Control": cache, "X-Content-Type-Options": "nosniff",
                             "ETag": f'"{found.version}"'})
