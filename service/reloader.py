"""Hot reload: a thread that re-scans the model repository every ``poll_interval_s``.

Polling rather than inotify: it works the same on bind mounts, network file systems
and Kubernetes volumes (ConfigMap updates swap a symlink, which watchers miss), and a
scan of a few folders costs well under a millisecond.
"""

from __future__ import annotations

import logging
import threading

from service.repository import Repository

log = logging.getLogger("modelserve.reloader")


class Reloader:
    def __init__(self, repository: Repository, interval_s: float, load_workers: int) -> None:
        self.repository = repository
        self.interval_s = interval_s
        self.load_workers = load_workers
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="reloader", daemon=True)

    def start(self) -> None:
        log.info("watching %s for new versions and config changes every %g s",
                 self.repository.root, self.interval_s)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=60)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.repository.poll(workers=self.load_workers)
            except Exception:  # one bad scan must not end hot reload for good
                log.exception("repository scan failed")
