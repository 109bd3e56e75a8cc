"""The model repository: which ``<root>/<name>/<version>/`` folders are served, and which
loaded version answers a request.

States follow TF Serving: START → LOADING → AVAILABLE → UNLOADING, or END (failed,
with the reason in ``error``, or not served by the version policy). ``poll()`` brings
the served set in line with the disk and each model's ``config.json``; it runs once at
start-up (``load_all``) and then every few seconds on the reloader thread
(``service/reloader.py``):

- a new version folder is loaded only once it is complete and has stopped changing
  (``service/folders.py``; until then it is START, "waiting…"), then verified (SHA-256
  of every artifact), loaded, checked against the manifest's samples and warmed up.
  Only then does it take traffic; until then, and forever if any step fails, the
  versions already serving keep serving;
- a failed version is retried only when its folder changes;
- a version whose folder is removed, or that leaves the version policy, stops taking new
  requests at once and is unloaded once its in-flight requests have finished. With
  ``latest N``, an older version is only retired once the newer ones have settled.

Request threads never lock: every change builds new immutable ``ModelView`` objects and
swaps them in with one assignment, which is what makes a new version's arrival atomic.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from service.errors import ModelLoadError, NotFound, Unavailable
from service.folders import (
    Fingerprint,
    fingerprint,
    idle_seconds,
    incomplete,
)
from service.integrity import verify_artifacts
from service.loader import load_version, read_manifest
from service.model import LoadedModel
from service.model_config import CONFIG_FILE, ConfigError, ModelConfig, read_model_config
from service.observability.context import note_model

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
    error: str = ""         # why it failed (END) — shown by the status endpoints
    detail: str = ""        # why it is waiting or not served, when it is not an error
    model: LoadedModel | None = None
    load_seconds: float = 0.0
    fingerprint: Fingerprint | None = None
    loaded_at: float = 0.0  # time.time() when it became AVAILABLE
    removed: bool = False   # its folder is gone: dropped from the listing once unloaded


class WeightedSplit:
    """Smooth weighted round robin (as nginx balances upstreams): deterministic, and
    any window of requests follows the weights as closely as whole requests can."""

    def __init__(self, weights: dict[int, float]) -> None:
        self.weights = {v: w for v, w in weights.items() if w > 0}
        self._current = dict.fromkeys(self.weights, 0.0)
        self._total = sum(self.weights.values())

    def pick(self) -> int:
        best, best_score = 0, float("-inf")
        for version, weight in self.weights.items():
            self._current[version] += weight
            if self._current[version] > best_score:
                best, best_score = version, self._current[version]
        self._current[best] -= self._total
        return best


@dataclass(frozen=True)
class ModelView:
    """One model as requests see it; replaced whole, never changed in place."""

    name: str
    versions: dict[int, VersionStatus]
    available: tuple[VersionStatus, ...]          # newest first
    config: ModelConfig
    config_error: str = ""
    split: WeightedSplit | None = None            # over available versions only

    def listing(self) -> list[VersionStatus]:
        return [self.versions[v] for v in sorted(self.versions, reverse=True)]


@dataclass
class _ConfigFile:
    stamp: tuple[int, int] | None = None
    config: ModelConfig = field(default_factory=ModelConfig)
    error: str = ""


class Repository:
    def __init__(self, root: Path, *, lean: bool = True,
                 warm_rows: tuple[int, ...] = (1, 64), stalled_after_s: float = 30.0) -> None:
        self.root = Path(root)
        # An incomplete folder untouched this long is no longer being copied in: it is
        # reported as failed (and retried if it ever changes) instead of waited for.
        self.stalled_after_s = stalled_after_s
        self.lean = lean
        self.warm_rows = warm_rows
        self._versions: dict[str, dict[int, VersionStatus]] = {}   # poll thread only
        self._configs: dict[str, _ConfigFile] = {}                 # poll thread only
        self._views: dict[str, ModelView] = {}                     # swapped whole
        self._splits: dict[str, WeightedSplit] = {}
        self._poll_lock = threading.Lock()
        self._publish_lock = threading.Lock()  # loader threads publish as they finish
        # Until the first scan has listed the folders, "every version settled" would be
        # vacuously true: readiness must not claim that nothing could be loaded.
        self._initial_done = False
        self._missing_root_logged = False
        # Called (from the poll thread) when a version is unloaded, and when a model's
        # config changes: the app hands these to the event loop.
        self.on_unload: list[Callable[[LoadedModel], None]] = []
        self.on_config_change: list[Callable[[str], None]] = []

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
        on_disk = self._scan()
        for name in sorted(set(on_disk) | set(self._versions)):
            self._refresh_config(name, initial)
            versions = self._versions.setdefault(name, {})
            folders = on_disk.get(name, {})
            for version, folder in folders.items():
                if version not in versions:
                    versions[version] = VersionStatus(name, version, folder)
                    if not initial:
                        log.info("model %s version %d: new folder %s", name, version, folder)
            for version, status in versions.items():
                if version not in folders:
                    self._retire(status, "its folder was removed")
                else:
                    self._observe(status, initial)
        to_load = self._apply_policies()
        self._publish()
        if to_load:
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="load") as pool:
                list(pool.map(self._load, to_load))
            # Newly available versions may let older ones go (latest N).
            self._apply_policies()
        self._finish_unloads()
        for name in [n for n, v in self._versions.items() if not v and n not in on_disk]:
            del self._versions[name]
            self._configs.pop(name, None)

    def _scan(self) -> dict[str, dict[int, Path]]:
        """Every ``<name>/<version>`` folder; hidden and non-numeric folders are skipped
        (trainers stage new versions in ``.staging-*`` and rename them into place)."""
        found: dict[str, dict[int, Path]] = {}
        if not self.root.is_dir():
            if not self._missing_root_logged:  # once, not at every scan
                log.warning("model repository %s does not exist", self.root)
                self._missing_root_logged = True
            return found
        self._missing_root_logged = False
        for model_dir in sorted(self.root.iterdir()):
            if not model_dir.is_dir() or not _NAME_RE.match(model_dir.name):
                continue
            versions = found.setdefault(model_dir.name, {})
            for vdir in model_dir.iterdir():
                if vdir.is_dir() and _VERSION_RE.match(vdir.name):
                    versions[int(vdir.name)] = vdir
        return found

    def _refresh_config(self, name: str, initial: bool) -> None:
        path = self.root / name / CONFIG_FILE
        entry = self._configs.setdefault(name, _ConfigFile())
        try:
            st = path.stat()
            stamp: tuple[int, int] | None = (st.st_mtime_ns, st.st_size)
        except OSError:
            stamp = None
        if stamp == entry.stamp and not initial:
            return
        entry.stamp = stamp
        try:
            config = read_model_config(self.root / name)
        except ConfigError as exc:
            entry.error = f"{exc}; keeping the previous config"
            log.error("model %s: config.json ignored: %s", name, exc)
            return
        changed = config != entry.config
        entry.config, entry.error = config, ""
        if changed and not initial:
            log.info("model %s: config.json changed: version_policy %s, labels %s, "
                     "traffic %s", name, config.version_policy.describe(), config.labels,
                     config.traffic)
            for callback in self.on_config_change:
                callback(name)

    def _observe(self, status: VersionStatus, initial: bool) -> None:
        """Track the folder of a version that is not serving yet (or failed): is it
        complete and still, so that it may be loaded?"""
        fp = fingerprint(status.folder)
        previous, status.fingerprint = status.fingerprint, fp
        if status.state in (State.LOADING, State.UNLOADING):
            return
        if status.state is State.AVAILABLE:
            if fp != previous and previous is not None:
                self._recheck(status)
            return
        if status.state is State.END and status.error and fp == previous:
            return  # failed: retried only once the folder changes
        stable = initial or (fp is not None and fp == previous)
        problem = incomplete(status.folder)
        idle = idle_seconds(fp, time.time_ns())
        if problem and stable and idle >= self.stalled_after_s:
            status.state, status.detail = State.END, ""
            status.error = (f"{status.folder}: incomplete version folder: {problem}; "
                            f"unchanged for {idle:.0f} s (retried when the folder changes)")
            log.error("model %s version %d not loaded: %s", status.name, status.version,
                      status.error)
        elif problem or not stable:
            # A folder still being copied in waits: never loaded half-way, and not a
            # failure yet.
            if status.state is State.END and status.error:
                log.info("model %s version %d: folder changed, will retry", status.name,
                         status.version)
            status.state, status.error = State.START, ""
            status.detail = (f"waiting for the folder to be complete: {problem}" if problem
                             else "waiting for the folder to stop changing")
        elif status.state is State.END and status.error:
            status.state, status.error, status.detail = State.START, "", ""
            log.info("model %s version %d: folder changed, retrying", status.name,
                     status.version)
        elif status.state is State.START:
            status.detail = ""

    def _recheck(self, status: VersionStatus) -> None:
        """A serving version's files changed on disk: verify them again. What serves
        stays the copy verified at load; the status says whether a reload (or restart)
        would now refuse the folder, and why."""
        model = status.model
        try:
            manifest = read_manifest(status.folder)
            if model is not None and manifest.artifacts != model.manifest.artifacts:
                raise ModelLoadError(status.folder / "manifest.json",
                                     "the manifest now lists different artifacts")
            verify_artifacts(status.folder, manifest.artifacts)
        except ModelLoadError as exc:
            status.detail = (f"files changed on disk after loading: {exc}; still serving the "
                             "copy verified at load, a reload would refuse it")
            log.error("model %s version %d: %s", status.name, status.version, status.detail)
            return
        if status.detail:
            log.info("model %s version %d: files on disk verify again", status.name,
                     status.version)
        status.detail = ""

    def _apply_policies(self) -> list[VersionStatus]:
        """Decide per model which versions serve; return the ones to load now."""
        to_load = []
        for name, versions in self._versions.items():
            if name in self._held:  # unloaded by an administrator (hold)
                self._hold_versions(versions)
                continue
            policy = self._configs[name].config.version_policy if name in self._configs \
                else ModelConfig().version_policy
            # Candidates: complete folders that have not failed.
            candidates = [v for v, s in versions.items()
                          if not (s.state is State.END and s.error)
                          and s.state is not State.UNLOADING
                          and not (s.state is State.START and s.detail.startswith("waiting"))]
            wanted = policy.choose(candidates)
            settled = all(versions[v].state in (State.AVAILABLE, State.END) for v in wanted)
            for version, status in versions.items():
                if version in wanted:
                    if status.state is State.START or (status.state is State.END
                                                       and not status.error):
                        status.state, status.detail = State.LOADING, ""
                        to_load.append(status)
                elif status.state is State.AVAILABLE:
                    # Keep serving until what replaces it has settled (availability first).
                    if settled:
                        self._retire(status, f"the version policy is {policy.describe()}")
                elif status.state in (State.START, State.END) and not status.error \
                        and status.version in candidates:
                    status.state = State.END
                    status.detail = f"not served: the version policy is {policy.describe()}"
        return to_load

    def _load(self, status: VersionStatus) -> None:
        start = time.perf_counter()
        try:
            model = load_version(status.folder, expected_name=status.name, lean=self.lean)
            model.warm_up(self.warm_rows)
        except ModelLoadError as exc:
            status.state, status.error = State.END, str(exc)
            log.error("model %s version %d failed to load: %s", status.name, status.version, exc)
            return
        except Exception as exc:  # a broken artifact must not stop the others
            status.state, status.error = State.END, f"{type(exc).__name__}: {exc}"
            log.exception("model %s version %d failed to load", status.name, status.version)
            return
        if fingerprint(status.folder) != status.fingerprint:
            # Changed while it loaded: what was verified may not be what is there now.
            status.state, status.detail = State.START, "waiting for the folder to stop changing"
            log.warning("model %s version %d changed while loading; will load again",
                        status.name, status.version)
            return
        status.load_seconds = time.perf_counter() - start
        status.model = model
        status.loaded_at = time.time()
        status.state = State.AVAILABLE
        engine = model.engine
        log.info("model %s version %d available (%.2f s) on %s: %s; one row %.3f ms",
                 status.name, status.version, status.load_seconds,
                 engine.name if engine else "?", engine.detail if engine else "",
                 model.timings.get(1, float("nan")) * 1000)
        self._publish()  # serve it now, without waiting for the other loads

    def _retire(self, status: VersionStatus, why: str) -> None:
        """Stop routing new requests to a version; ``_finish_unloads`` lets it go once
        its in-flight requests are done."""
        if status.state is State.AVAILABLE:
            status.state, status.detail = State.UNLOADING, f"unloading: {why}"
            log.info("model %s version %d: unloading (%s)", status.name, status.version, why)
        elif status.state is not State.UNLOADING:
            status.state, status.detail, status.model = State.END, f"not served: {why}", None
        status.removed = status.removed or why.startswith("its folder")

    def _finish_unloads(self) -> None:
        for versions in self._versions.values():
            for version, status in list(versions.items()):
                if status.state is State.UNLOADING and status.model is not None:
                    if status.model.inflight:
                        continue  # next poll
                    model, status.model = status.model, None
                    model.retired = True
                    for callback in self.on_unload:
                        callback(model)
                    log.info("model %s version %d unloaded", status.name, status.version)
                    status.state = State.END
                    status.detail = status.detail.replace("unloading: ", "unloaded: ", 1)
                if status.removed and status.state is State.END:
                    del versions[version]

    def _publish(self) -> None:
        with self._publish_lock:
            self._views = self._build_views()

    def _build_views(self) -> dict[str, ModelView]:
        views = {}
        for name, versions in self._versions.items():
            entry = self._configs.get(name) or _ConfigFile()
            listed = dict(versions)
            available = tuple(s for v, s in sorted(listed.items(), reverse=True)
                              if s.state is State.AVAILABLE and s.model is not None)
            split = None
            weights = entry.config.traffic_by_version()
            if weights:
                live = {v: w for v, w in weights.items()
                        if any(s.version == v for s in available)}
                # A weighted version that is not available gives its share to the others.
                if sum(live.values()) > 0:
                    # The same split object across scans while the weights stay the same:
                    # a fresh one would restart the round-robin cycle at every scan.
                    old = self._splits.get(name)
                    same = old is not None and old.weights == {v: w for v, w in live.items()
                                                               if w > 0}
                    split = old if same else WeightedSplit(live)
            if split is None:
                self._splits.pop(name, None)
            else:
                self._splits[name] = split
            views[name] = ModelView(name, listed, available, entry.config, entry.error, split)
        return views

    # --- queries (event loop; never block) ---------------------------------------------

    def names(self) -> list[str]:
        return sorted(self._views)

    def view(self, name: str) -> ModelView:
        view = self._views.get(name)
        if view is None:
            raise NotFound(self._unknown_model(name))
        return view

    def config(self, name: str) -> ModelConfig:
        view = self._views.get(name)
        return view.config if view is not None else ModelConfig()

    def statuses(self, name: str) -> list[VersionStatus]:
        return self.view(name).listing()

    def status(self, name: str, version: int) -> VersionStatus:
        view = self.view(name)
        if version not in view.versions:
            known = ", ".join(str(v) for v in sorted(view.versions)) or "none"
            raise NotFound(f"Model '{name}' has no version {version}; versions: {known}.")
        return view.versions[version]

    def label_version(self, name: str, label: str) -> int:
        view = self.view(name)
        if label not in view.config.labels:
            known = ", ".join(sorted(view.config.labels)) or "none"
            shown = label if len(label) <= 40 else label[:40] + "…"
            raise NotFound(f"Model '{name}' has no label '{shown}'; labels: {known} "
                           f"(set in {name}/{CONFIG_FILE}).")
        return view.config.labels[label]

    def resolve(self, name: str, version: int | None = None,
                label: str | None = None) -> LoadedModel:
        """The model that serves a request: the labelled or given version, else the
        traffic split's pick, else the newest available version."""
        view = self._views.get(name)
        if view is None:
            raise NotFound(self._unknown_model(name))
        if label is not None:
            version = self.label_version(name, label)
        if version is not None:
            status = view.versions.get(version)
            if status is None:
                known = ", ".join(str(v) for v in sorted(view.versions)) or "none"
                raise NotFound(f"Model '{name}' has no version {version}"
                               + (f" (label '{label}')" if label else "")
                               + f"; versions: {known}.")
            model = status.model
            if (status.state is State.END and not status.error) \
                    or status.state is State.UNLOADING:
                raise NotFound(f"Model '{name}' version {version} is not served: "
                               f"{status.detail.split(': ', 1)[-1]}.")
            if model is None or status.state is not State.AVAILABLE:
                reason = status.error or status.detail
                raise Unavailable(f"Model '{name}' version {version} is not available "
                                  f"(state {status.state})" + (f": {reason}" if reason else "")
                                  + ".")
            note_model(name, version, label or "")
            return model
        if view.split is not None:
            chosen = view.split.pick()
            for status in view.available:
                if status.version == chosen and status.model is not None:
                    note_model(name, chosen)
                    return status.model
        for status in view.available:
            model = status.model
            if model is not None:
                note_model(name, status.version)
                return model
        reasons = "; ".join(f"version {s.version}: {s.error or s.detail or s.state}"
                            for s in view.listing())
        raise Unavailable(f"Model '{name}' has no available version"
                          + (f" ({reasons})" if reasons else "") + ".")

    @property
    def settled(self) -> bool:
        """The start-up load has finished (every version loaded or failed)."""
        return self._initial_done

    @property
    def ready(self) -> bool:
        return self._initial_done and any(v.available for v in self._views.values())

    def _unknown_model(self, name: str) -> str:
        known = ", ".join(self.names()) or "none"
        shown = name if len(name) <= 64 else name[:64] + "…"
        return f"Model '{shown}' not found; models served here: {known}."

    # --- model management (service/protocols/repository_api.py) -----------------------

    _held: frozenset[str] = frozenset()  # models an administrator unloaded

    def hold(self, name: str, held: bool) -> None:
        """Stop serving ``name`` until released (``held=False``); applied by the next
        ``poll()``: its versions go UNLOADING (in-flight requests finish) then END."""
        self._held = self._held | {name} if held else self._held - {name}

    def _hold_versions(self, versions: dict[int, VersionStatus]) -> None:
        why = "unloaded by an administrator"
        for status in versions.values():
            if status.state is State.AVAILABLE:
                status.state, status.detail = State.UNLOADING, why
                log.info("model %s version %d: unloading (%s)", status.name,
                         status.version, why)
            elif status.state in (State.START, State.END) and not status.error \
                    and not status.detail.startswith("waiting"):
                status.state, status.detail, status.model = State.END, why, None
