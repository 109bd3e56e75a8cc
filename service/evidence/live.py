"""Live scores: each version's card metrics over its latest fed-back predictions,
recomputed by one thread when feedback arrives (at most every ``MIN_PERIOD_S``) and at
least every ``MAX_PERIOD_S`` (other workers add feedback to the shared store too).

Readers (the model status, the metrics scrape) take the last snapshot and never wait for
the store: a scrape on the event loop must not run SQLite queries and sklearn metrics.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from service.evidence import feedback
from service.evidence.store import EvidenceStore
from service.manifest import Manifest

log = logging.getLogger("modelserve.evidence")

MIN_PERIOD_S = 0.5
MAX_PERIOD_S = 10.0


@dataclass(frozen=True)
class VersionScores:
    joined: int                       # fed-back predictions in the window
    scores: dict[str, float]          # the card's test metrics over them
    at: float                         # epoch seconds of the computation


@dataclass
class Snapshot:
    versions: dict[tuple[str, int], VersionScores] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)  # model -> why it is not scored


class LiveScores:
    def __init__(self, store: EvidenceStore, manifest: Callable[[str, int], Manifest | None],
                 window: Callable[[str], int]) -> None:
        self.store = store
        self._window = window
        self._manifest = manifest
        self.snapshot = Snapshot()  # replaced whole
        self._wake = threading.Event()
        self._stop = False
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def poke(self) -> None:
        """New feedback: recompute soon (starts the thread on first use)."""
        self.start()
        self._wake.set()

    def start(self) -> None:
        """Compute from now on (after a restart the store may already hold feedback)."""
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="live-scores",
                                                    daemon=True)
                    self._thread.start()

    def close(self) -> None:
        self._stop = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(5)

    def for_model(self, name: str) -> dict[str, dict[str, object]]:
        return {str(v): {"joined": s.joined, **s.scores}
                for (m, v), s in sorted(self.snapshot.versions.items()) if m == name}

    def error(self, name: str) -> str:
        return self.snapshot.errors.get(name, "") or self.snapshot.errors.get("", "")

    def _run(self) -> None:
        while not self._stop:
            self._wake.clear()
            try:
                self.snapshot = self._compute()
            except Exception as exc:  # the store may be gone; serving goes on
                error = f"{type(exc).__name__}: {exc}"[:300]
                if self.snapshot.errors.get("") != error:
                    log.warning("live scores: %s", error)
                self.snapshot = Snapshot(self.snapshot.versions, {"": error})
            time.sleep(MIN_PERIOD_S)
            self._wake.wait(MAX_PERIOD_S)

    def _compute(self) -> Snapshot:
        out: dict[tuple[str, int], VersionScores] = {}
        errors: dict[str, str] = {}
        for name, version in self.store.fed_back():
            manifest = self._manifest(name, version)
            if manifest is None:
                continue
            pairs = self.store.joined(name, version, self._window(name))
            try:
                scores = feedback.scores(manifest, pairs)
            except Exception as exc:  # e.g. truths checked against another version's labels
                errors[name] = f"version {version}: {type(exc).__name__}: {exc}"[:300]
                if errors[name] != self.snapshot.errors.get(name):
                    log.warning("live scores of %s: %s", name, errors[name])
                continue
            out[(name, version)] = VersionScores(len(pairs), scores, time.time())
        return Snapshot(out, errors)
