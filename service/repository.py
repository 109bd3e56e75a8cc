"""The model repository: discover ``<root>/<name>/<version>/`` folders, load them, and
answer which loaded version serves a request.

States follow TF Serving: START → LOADING → AVAILABLE, or END with an error message
when a version cannot be loaded (the others keep serving).
"""

from __future__ import annotations

import logging
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from service.errors import ModelLoadError, NotFound, Unavailable
from service.loader import load_version
from service.model import LoadedModel

log = logging.getLogger("modelserve.repository")

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_VERSION_RE = re.compile(r"^[1-9][0-9]{0,8}$")


class State(StrEnum):
    START = "START"
    LOADING = "LOADING"
    AVAILABLE = "AVAILABLE"
    UNLOADING = "UNLOADING"
    END = "END"


@dataclass
class VersionStatus:
    name: str
    version: int
    folder: Path
    state: State = State.START
    error: str = ""
    model: LoadedModel | None = None
    load_seconds: float = 0.0


class Repository:
    def __init__(self, root: Path, *, lean: bool = True,
                 warm_rows: tuple[int, ...] = (1, 64)) -> None:
        self.root = Path(root)
        self.lean = lean
        self.warm_rows = warm_rows
        self._versions: dict[str, dict[int, VersionStatus]] = {}
        # Until the first scan has listed the folders, "every version settled" would be
        # vacuously true: readiness must not claim that nothing could be loaded.
        self._scanned = False

    def discover(self) -> list[VersionStatus]:
        """Every ``<name>/<version>`` folder; hidden and non-numeric folders are skipped
        (trainers stage new versions in ``.staging-*``)."""
        found = []
        if not self.root.is_dir():
            log.warning("model repository %s does not exist", self.root)
            self._scanned = True
            return found
        for model_dir in sorted(self.root.iterdir()):
            if not model_dir.is_dir() or not _NAME_RE.match(model_dir.name):
                continue
            for vdir in model_dir.iterdir():
                if vdir.is_dir() and _VERSION_RE.match(vdir.name):
                    found.append(VersionStatus(model_dir.name, int(vdir.name), vdir))
        for status in found:
            self._versions.setdefault(status.name, {})[status.version] = status
        self._scanned = True
        return found

    def load_all(self, workers: int = 2) -> None:
        statuses = self.discover()
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="load") as pool:
            list(pool.map(self._load, statuses))

    def _load(self, status: VersionStatus) -> None:
        status.state = State.LOADING
        start = time.perf_counter()
        try:
            model = load_version(status.folder, expected_name=status.name, lean=self.lean)
            model.warm_up(self.warm_rows)
            status.model = model
        except ModelLoadError as exc:
            status.state, status.error = State.END, str(exc)
            log.error("model %s version %d failed to load: %s", status.name, status.version, exc)
            return
        except Exception as exc:  # a broken artifact must not stop the others
            status.state, status.error = State.END, f"{type(exc).__name__}: {exc}"
            log.exception("model %s version %d failed to load", status.name, status.version)
            return
        status.load_seconds = time.perf_counter() - start
        status.state = State.AVAILABLE
        engine = status.model.engine
        log.info("model %s version %d available (%.2f s) on %s: %s; one row %.3f ms",
                 status.name, status.version, status.load_seconds,
                 engine.name if engine else "?", engine.detail if engine else "",
                 status.model.timings.get(1, float("nan")) * 1000)

    # --- queries ------------------------------------------------------------------

    def names(self) -> list[str]:
        return sorted(self._versions)

    def statuses(self, name: str) -> list[VersionStatus]:
        if name not in self._versions:
            raise NotFound(self._unknown_model(name))
        return [self._versions[name][v] for v in sorted(self._versions[name], reverse=True)]

    def status(self, name: str, version: int) -> VersionStatus:
        statuses = {s.version: s for s in self.statuses(name)}
        if version not in statuses:
            known = ", ".join(str(v) for v in sorted(statuses)) or "none"
            raise NotFound(f"Model '{name}' has no version {version}; versions: {known}.")
        return statuses[version]

    def resolve(self, name: str, version: int | None = None) -> LoadedModel:
        """The model that serves a request: the given version, else the latest available."""
        if version is not None:
            status = self.status(name, version)
            if status.model is None or status.state is not State.AVAILABLE:
                reason = f": {status.error}" if status.error else ""
                raise Unavailable(f"Model '{name}' version {version} is not available "
                                  f"(state {status.state}){reason}.")
            return status.model
        for status in self.statuses(name):
            if status.state is State.AVAILABLE and status.model is not None:
                return status.model
        raise Unavailable(f"Model '{name}' has no available version.")

    @property
    def settled(self) -> bool:
        """Every discovered version has either loaded or definitively failed."""
        return self._scanned and all(
            s.state in (State.AVAILABLE, State.END)
            for versions in self._versions.values() for s in versions.values())

    @property
    def ready(self) -> bool:
        return self.settled and any(
            s.state is State.AVAILABLE for v in self._versions.values() for s in v.values())

    def _unknown_model(self, name: str) -> str:
        known = ", ".join(self.names()) or "none"
        shown = name if len(name) <= 64 else name[:64] + "…"
        return f"Model '{shown}' not found; models served here: {known}."
