"""What the repository holds on disk: the ``<root>/<name>/<version>/`` folders, whether
each is complete and has stopped changing (``service/folders.py``), and each model's
``config.json``.

A new folder is loaded only once it is complete and still between two scans; until
then it waits (START). An incomplete folder left untouched for ``stalled_after_s`` is
reported as failed, and retried if it ever changes. A serving version whose files
change is verified again and the status says whether a reload would refuse it.

Threads: everything here runs on the poll (reloader) thread, which alone writes the
configs and each version's fingerprint.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from service.errors import ModelLoadError
from service.folders import fingerprint, idle_seconds, incomplete
from service.integrity import verify_artifacts
from service.loader import read_manifest
from service.model_config import CONFIG_FILE, ConfigError, ModelConfig, read_model_config
from service.repository.versions import State, Version

log = logging.getLogger("modelserve.repository")

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_VERSION_RE = re.compile(r"^[1-9][0-9]{0,8}$")


@dataclass
class ConfigFile:
    stamp: tuple[int, int] | None = None
    config: ModelConfig = field(default_factory=ModelConfig)
    error: str = ""  # why the file on disk is not the config in force


class Discovery:
    def __init__(self, root: Path, stalled_after_s: float) -> None:
        self.root = root
        # An incomplete folder untouched this long is no longer being copied in.
        self.stalled_after_s = stalled_after_s
        self._configs: dict[str, ConfigFile] = {}
        self._missing_root_logged = False

    def scan(self) -> dict[str, dict[int, Path]]:
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

    # --- config.json ----------------------------------------------------------------------

    def config_file(self, name: str) -> ConfigFile:
        return self._configs.get(name) or ConfigFile()

    def forget(self, name: str) -> None:
        self._configs.pop(name, None)

    def refresh_config(self, name: str, initial: bool) -> bool:
        """Re-read the model's config.json if it changed; True when the config in force
        changed (never at start-up). A file that does not validate keeps the previous
        config and is reported."""
        path = self.root / name / CONFIG_FILE
        entry = self._configs.setdefault(name, ConfigFile())
        try:
            st = path.stat()
            stamp: tuple[int, int] | None = (st.st_mtime_ns, st.st_size)
        except OSError:
            stamp = None
        if stamp == entry.stamp and not initial:
            return False
        entry.stamp = stamp
        try:
            config = read_model_config(self.root / name)
        except ConfigError as exc:
            entry.error = f"{exc}; keeping the previous config"
            log.error("model %s: config.json ignored: %s", name, exc)
            return False
        changed = config != entry.config
        entry.config, entry.error = config, ""
        if changed and not initial:
            log.info("model %s: config.json changed: version_policy %s, labels %s, "
                     "traffic %s", name, config.version_policy.describe(), config.labels,
                     config.traffic)
            return True
        return False

    # --- version folders ------------------------------------------------------------------

    def observe(self, version: Version, initial: bool) -> None:
        """Track the folder of a version: is one not serving yet (or failed) complete
        and still, so that it may be loaded? Do a serving one's files still verify?"""
        s = version.status
        fp = fingerprint(s.folder)
        previous, version.fingerprint = version.fingerprint, fp
        if s.state in (State.LOADING, State.UNLOADING):
            return
        if s.state is State.AVAILABLE:
            if fp != previous and previous is not None:
                self._recheck(version)
            return
        if s.failed and fp == previous:
            return  # failed: retried only once the folder changes
        stable = initial or (fp is not None and fp == previous)
        problem = incomplete(s.folder)
        idle = idle_seconds(fp, time.time_ns())
        if problem and stable and idle >= self.stalled_after_s:
            version.stalled(problem, idle)
            log.error("model %s version %d not loaded: %s", s.name, s.version,
                      version.status.error)
        elif problem or not stable:
            # A folder still being copied in waits: never loaded half-way, and not a
            # failure yet.
            if s.failed:
                log.info("model %s version %d: folder changed, will retry", s.name,
                         s.version)
            version.wait(problem)
        elif s.failed:
            version.ready()
            log.info("model %s version %d: folder changed, retrying", s.name, s.version)
        elif s.state is State.START:
            version.ready()

    def unchanged_since_scan(self, version: Version) -> bool:
        """The folder is as the last scan saw it (what was verified is what is there)."""
        return fingerprint(version.status.folder) == version.fingerprint

    def _recheck(self, version: Version) -> None:
        """A serving version's files changed on disk: verify them again. What serves
        stays the copy verified at load; the status says whether a reload (or restart)
        would now refuse the folder, and why."""
        s = version.status
        try:
            manifest = read_manifest(s.folder)
            if s.model is not None and manifest.artifacts != s.model.manifest.artifacts:
                raise ModelLoadError(s.folder / "manifest.json",
                                     "the manifest now lists different artifacts")
            verify_artifacts(s.folder, manifest.artifacts)
        except ModelLoadError as exc:
            version.changed_on_disk(str(exc))
            log.error("model %s version %d: %s", s.name, s.version, version.status.detail)
            return
        if version.verified_again():
            log.info("model %s version %d: files on disk verify again", s.name, s.version)
