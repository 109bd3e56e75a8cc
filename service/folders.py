"""What a version folder on disk looks like right now: a cheap fingerprint (names,
sizes, modification times) and whether its copy looks finished.

Times are inode change times (ctime), not modification times: copies that preserve
modification times (``cp -p``, ``rsync -a``) would otherwise look long finished.

A folder is loaded only once it is complete (manifest readable, every artifact the
manifest lists present at its recorded size) and has stopped changing between two
scans, so a folder that is still being copied in is never loaded half-way.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from service.manifest import MANIFEST_FILE, MAX_MANIFEST_BYTES

Fingerprint = tuple[tuple[str, int, int], ...]

# A version folder holds a handful of files; a runaway tree is not a model version.
_MAX_FILES = 256


def fingerprint(folder: Path) -> Fingerprint | None:
    """(relative path, size, ctime_ns) of every file under ``folder``; None when it is
    gone or unreadable."""
    entries: list[tuple[str, int, int]] = []
    try:
        for dirpath, _dirs, files in os.walk(folder):
            for name in files:
                path = os.path.join(dirpath, name)
                st = os.stat(path, follow_symlinks=False)
                entries.append((os.path.relpath(path, folder), st.st_size, st.st_ctime_ns))
                if len(entries) > _MAX_FILES:
                    return tuple(sorted(entries))
    except OSError:
        return None
    if not os.path.isdir(folder):
        return None
    return tuple(sorted(entries))


def incomplete(folder: Path) -> str:
    """Why the folder is not a complete version yet ('' when it is): the manifest is
    missing or unreadable, or an artifact it lists is missing or not at its size.
    Checksums are the loader's job; this is only the cheap part."""
    manifest = folder / MANIFEST_FILE
    try:
        if manifest.stat().st_size > MAX_MANIFEST_BYTES:
            return f"{MANIFEST_FILE} is larger than {MAX_MANIFEST_BYTES} bytes"
        data = json.loads(manifest.read_bytes())
    except FileNotFoundError:
        return f"no {MANIFEST_FILE} yet"
    except (OSError, ValueError) as exc:
        return f"{MANIFEST_FILE} is not readable JSON ({type(exc).__name__})"
    artifacts = data.get("artifacts") if isinstance(data, dict) else None
    if not isinstance(artifacts, list):
        return f"{MANIFEST_FILE} lists no artifacts"
    for art in artifacts:
        if not isinstance(art, dict) or not isinstance(art.get("path"), str):
            return f"{MANIFEST_FILE} has a malformed artifact entry"
        try:
            size = (folder / art["path"]).stat().st_size
        except OSError:
            return f"{art['path'][:100]} is missing"
        if size != art.get("size_bytes"):
            return f"{art['path'][:100]} is {size} of {art.get('size_bytes')} bytes"
    return ""


def idle_seconds(fp: Fingerprint | None, now_ns: int) -> float:
    """Seconds since a file of the folder last changed."""
    if not fp:
        return 0.0
    return (now_ns - max(ctime for _, _, ctime in fp)) / 1e9
