"""The payload log's files: JSON lines appended to ``payloads-<UTC start>-<pid>.jsonl``
in one directory, a new file past a size, the oldest deleted past a total size or an
age. Each worker process writes its own files, so lines never interleave.

Used by the evidence thread only. Errors (a full disk, an unwritable directory) are
raised to the caller, which counts them; the next write tries again from scratch.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import BinaryIO

from service.evidence.records import stamp

PATTERN = "payloads-*.jsonl"


class RotatingFiles:
    def __init__(self, directory: Path, file_bytes: int, total_bytes: int,
                 max_age_s: float) -> None:
        self.directory = directory
        self.file_bytes = file_bytes
        self.total_bytes = total_bytes
        self.max_age_s = max_age_s
        self._file: BinaryIO | None = None
        self._size = 0
        self.current: Path | None = None

    def write(self, lines: list[bytes]) -> None:
        if self._file is None:
            self._open()
        assert self._file is not None
        data = b"".join(lines)
        try:
            self._file.write(data)
            self._file.flush()
        except OSError:
            self._close()  # reopened (or reported again) on the next write
            raise
        self._size += len(data)
        if self._size >= self.file_bytes:
            self._close()
            self.prune()

    def close(self) -> None:
        self._close()

    def prune(self) -> None:
        """Delete files past the age limit, then the oldest past the total size."""
        now = time.time()
        files = []
        for path in self.directory.glob(PATTERN):
            try:
                st = path.stat()
            except OSError:
                continue
            files.append((st.st_mtime, st.st_size, path))
        files.sort()
        total = sum(size for _, size, _ in files)
        for mtime, size, path in files:
            if path == self.current:
                continue
            if now - mtime > self.max_age_s or total > self.total_bytes:
                try:
                    path.unlink()
                except OSError:
                    continue
                total -= size

    def _open(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        name = stamp(time.time()).replace(":", "").replace("-", "")
        path = self.directory / f"payloads-{name}-{os.getpid()}.jsonl"
        self._file = open(path, "ab")  # noqa: SIM115 (kept open across writes)
        self._size = self._file.tell()
        self.current = path
        self.prune()

    def _close(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
        self._file = None
        self.current = None
