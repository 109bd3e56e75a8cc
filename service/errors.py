"""Error types shared by the loader and (later) the HTTP layer."""

from __future__ import annotations

from pathlib import Path


class ModelLoadError(Exception):
    """A version folder cannot be served; the message names the file and the problem."""

    def __init__(self, path: Path | str, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")
