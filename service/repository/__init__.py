"""The model repository: which ``<root>/<name>/<version>/`` folders are served, and which
loaded version answers a request.

``poll()`` brings the served set in line with the disk and each model's ``config.json``;
it runs once at start-up (``load_all``) and then every few seconds on the reloader
thread (``service/reloader.py``). A new version is verified (SHA-256 of every artifact),
loaded, checked against the manifest's samples and warmed up before it takes traffic;
until then, and forever if any step fails, the versions already serving keep serving.
A failed version is retried only when its folder changes.

- ``discovery``: the folders and config files on disk, and when a folder may be loaded;
- ``versions``: each version's state machine (``State``, ``Reason``, ``VersionStatus``);
- ``policy``: which versions serve (version policy, admin hold) and draining;
- ``router``: the ``ModelView`` snapshots and which version answers a request.

Threads: the poll thread writes the versions and configs; each loader thread writes
its own version while it loads; both publish new ``ModelView`` snapshots under the
publish lock. The event loop only reads those snapshots, and writes ``hold`` (a set
swapped whole), which the next poll applies.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from service.errors import ModelLoadError
from service.loader import load_version
from service.model import LoadedModel
from service.model_config import ModelConfig, VersionPolicy
from service.repository.discovery import Discovery
from service.repository.policy import Models, apply_policies, finish_unloads, retire
from service.repository.router import ModelView, Router, WeightedSplit
from service.repository.versions import (
    IllegalTransition,
    Reason,
    State,
    Version,
    VersionStatus,
)

__all__ = ["IllegalTransition", "ModelView", "Reason", "Repository", "State", "VersionStatus",
           "WeightedSplit"]

log = logging.getLogger("modelserve.repository")


class Repository:
    def __init__(self, root: Path, *, lean: bool = True,
                 warm_rows: tuple[int, ...] = (1, 64), stalled_after_s: float = 30.0) -> None:
        self.root = Path(root)
        self.lean = lean
        self.warm_rows = warm_rows
        # An incomplete folder untouched this long is reported as failed (and retried
        # if it ever changes) instead of waited for.
        self._disk = Discovery(self.root, stalled_after_s)
        self._versions: Models = {}  # poll thread only
        self._router = Router()
        self._poll_lock = threading.Lock()
        self._publish_lock = threading.Lock()  # loader threads publish as they finish
        # Until the first scan has listed the folders, "every version settled" would be
        # vacuously true: readiness must not claim that nothing could be loaded.
        self._initial_done = False
        self._held: frozenset[str] = frozenset()  # models an administrator unloaded
        # Called (from the poll thread) when a version is unloaded, and when a model's
        # config changes: the app hands these to the event loop.
        self.on_unload: list[Callable[[LoadedModel], None]] = []
        self.on_config_change: list[Callable[[str], None]] = []

    @property
    def stalled_after_s(self) -> float:
        return self._disk.stalled_after_s

    # --- bringing the served set in line with the disk ---------------------------------

    def load_all(self, workers: int = 2) -> None:
        """The start-up scan: load everything the policies select, in parallel."""
        self.poll(workers=workers, initial=True)

    def poll(self, workers: int = 2, initial: bool = False) -> None:
        with self._poll_lock:
            try:
                self._poll(workers, initial)
            finally:
                if initial:
                    self._initial_done = True
                self._publish()

    def _poll(self, workers: int, initial: bool) -> None:
        on_disk = self._disk.scan()
        for name in sorted(set(on_disk) | set(self._versions)):
            if self._disk.refresh_config(name, initial):
                for callback in self.on_config_change:
                    callback(name)
            versions = self._versions.setdefault(name, {})
            folders = on_disk.get(name, {})
            for number, folder in folders.items():
                if number not in versions:
                    versions[number] = Version(name, number, folder)
                    if not initial:
                        log.info("model %s version %d: new folder %s", name, number, folder)
            for number, version in versions.items():
                if number not in folders:
                    retire(version, Reason.FOLDER_REMOVED)
                else:
                    self._disk.observe(version, initial)
        to_load = apply_policies(self._versions, self._policy, self._held)
        self._publish()
        if to_load:
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="load") as pool:
                list(pool.map(self._load, to_load))
            # Newly available versions may let older ones go (latest N).
            apply_policies(self._versions, self._policy, self._held)
            self._publish()  # the versions that just left take no new requests
        finish_unloads(self._versions, self.on_unload)
        for name in [n for n, v in self._versions.items() if not v and n not in on_disk]:
            del self._versions[name]
            self._disk.forget(name)

    def _policy(self, name: str) -> VersionPolicy:
        return self._disk.config_file(name).config.version_policy

    def _load(self, version: Version) -> None:
        """On a loader thread: verify, load and warm up one version, then publish it."""
        s = version.status
        start = time.perf_counter()
        try:
            model = load_version(s.folder, expected_name=s.name, lean=self.lean)
            model.warm_up(self.warm_rows)
        except ModelLoadError as exc:
            version.failed(str(exc))
            log.error("model %s version %d failed to load: %s", s.name, s.version, exc)
        except Exception as exc:  # a broken artifact must not stop the others
            version.failed(f"{type(exc).__name__}: {exc}")
            log.exception("model %s version %d failed to load", s.name, s.version)
        else:
            if not self._disk.unchanged_since_scan(version):
                # Changed while it loaded: what was verified may not be what is there now.
                version.wait("")
                log.warning("model %s version %d changed while loading; will load again",
                            s.name, s.version)
            else:
                version.loaded(model, time.perf_counter() - start, time.time())
                engine = model.engine
                log.info("model %s version %d available (%.2f s) on %s: %s; one row %.3f ms",
                         s.name, s.version, version.status.load_seconds,
                         engine.name if engine else "?", engine.detail if engine else "",
                         model.timings.get(1, float("nan")) * 1000)
        self._publish()  # show it now, without waiting for the other loads

    def _publish(self) -> None:
        with self._publish_lock:
            models = {}
            for name, versions in self._versions.items():
                entry = self._disk.config_file(name)
                models[name] = ({n: v.status for n, v in versions.items()}, entry.config,
                                entry.error)
            self._router.publish(models)

    # --- queries (event loop; never block) ---------------------------------------------

    def names(self) -> list[str]:
        return self._router.names()

    def view(self, name: str) -> ModelView:
        return self._router.view(name)

    def config(self, name: str) -> ModelConfig:
        return self._router.config(name)

    def statuses(self, name: str) -> list[VersionStatus]:
        return self._router.view(name).listing()

    def status(self, name: str, version: int) -> VersionStatus:
        return self._router.status(name, version)

    def label_version(self, name: str, label: str) -> int:
        return self._router.label_version(name, label)

    def resolve(self, name: str, version: int | None = None,
                label: str | None = None) -> LoadedModel:
        """The model that serves a request: the labelled or given version, else the
        traffic split's pick, else the newest available version."""
        return self._router.resolve(name, version, label)

    @property
    def settled(self) -> bool:
        """The start-up load has finished (every version loaded or failed)."""
        return self._initial_done

    @property
    def ready(self) -> bool:
        return self._initial_done and self._router.any_available()

    # --- model management (service/protocols/repository_api.py) -----------------------

    def hold(self, name: str, held: bool) -> None:
        """Stop serving ``name`` until released (``held=False``); applied by the next
        ``poll()``: its versions go UNLOADING (in-flight requests finish) then END."""
        self._held = self._held | {name} if held else self._held - {name}
