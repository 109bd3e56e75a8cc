"""The evidence store: logged predictions and the ground truth fed back for them, joined
by (model, request id, instance), in one SQLite file that survives restarts and is shared
by the worker processes (WAL mode; writers wait up to ``BUSY_MS`` for each other).

Bounded: predictions and feedback older than ``max_age_s`` are deleted, then the oldest
predictions (with their feedback) while the data pages pass ``max_bytes``.

Threads: one connection per store, every use under its lock. The payload log's thread
adds predictions; feedback requests and scoring run on the default executor, never on
the event loop.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path

log = logging.getLogger("modelserve.evidence")

BUSY_MS = 5000
_PRUNE_EVERY_S = 60.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS predictions (
    model TEXT NOT NULL, request_id TEXT NOT NULL, instance INTEGER NOT NULL,
    version INTEGER NOT NULL, time REAL NOT NULL, outputs TEXT NOT NULL,
    PRIMARY KEY (model, request_id, instance)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS predictions_by_time ON predictions (time);
CREATE TABLE IF NOT EXISTS feedback (
    model TEXT NOT NULL, request_id TEXT NOT NULL, instance INTEGER NOT NULL,
    version INTEGER NOT NULL, truth TEXT NOT NULL, time REAL NOT NULL,
    PRIMARY KEY (model, request_id, instance)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS feedback_by_version ON feedback (model, version, time);
"""

# (model, request id, instance, version, epoch seconds, outputs as JSON)
PredictionRow = tuple[str, str, int, int, float, str]
Key = tuple[str, int]  # (request id, instance)


class KeysError(Exception):
    def __init__(self, keys: list[Key]) -> None:
        super().__init__(keys)
        self.keys = keys


class Unknown(KeysError):
    """Feedback names predictions the store does not hold."""


class Duplicate(KeysError):
    """Feedback names predictions that already have feedback."""


class EvidenceStore:
    def __init__(self, path: Path, max_age_s: float, max_bytes: int) -> None:
        self.path = path
        self.max_age_s = max_age_s
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._pruned_at = 0.0

    # --- writing ------------------------------------------------------------------------

    def add_predictions(self, rows: Sequence[PredictionRow]) -> None:
        with self._lock:
            db = self._connect()
            with db:
                db.execute("BEGIN")
                # A request id answers once: a client that sends the same x-request-id
                # again does not replace the prediction its feedback may be about.
                db.executemany("INSERT OR IGNORE INTO predictions VALUES (?, ?, ?, ?, ?, ?)",
                               rows)
            if time.monotonic() - self._pruned_at > _PRUNE_EVERY_S:
                try:
                    self._prune(db)
                except sqlite3.Error as exc:  # the predictions above are stored
                    log.warning("evidence store %s: pruning failed: %s", self.path, exc)

    def add_feedback(self, model: str, items: Sequence[tuple[Key, str]]) -> list[int]:
        """Store the truths (JSON) of ``items`` all together or not at all: Unknown when a
        key has no logged prediction, Duplicate when one already has feedback. Returns the
        versions that answered each item."""
        now = time.time()
        with self._lock:
            db = self._connect()
            with db:
                db.execute("BEGIN IMMEDIATE")  # no other worker joins between check and write
                versions: list[int] = []
                unknown: list[Key] = []
                duplicate: list[Key] = []
                for key, _ in items:
                    row = db.execute(
                        "SELECT p.version, f.time IS NOT NULL FROM predictions p LEFT JOIN "
                        "feedback f USING (model, request_id, instance) WHERE p.model = ? "
                        "AND p.request_id = ? AND p.instance = ?", (model, *key)).fetchone()
                    if row is None:
                        unknown.append(key)
                    elif row[1]:
                        duplicate.append(key)
                    else:
                        versions.append(row[0])
                if unknown:
                    raise Unknown(unknown)
                if duplicate:
                    raise Duplicate(duplicate)
                db.executemany("INSERT INTO feedback VALUES (?, ?, ?, ?, ?, ?)",
                               [(model, *key, version, truth, now)
                                for (key, truth), version in zip(items, versions,
                                                                 strict=True)])
        return versions

    # --- reading ------------------------------------------------------------------------

    def joined(self, model: str, version: int, window: int) -> list[tuple[str, str]]:
        """(outputs JSON, truth JSON) of the version's latest ``window`` fed-back
        predictions."""
        with self._lock:
            db = self._connect()
            return db.execute(
                "SELECT p.outputs, f.truth FROM feedback f JOIN predictions p "
                "USING (model, request_id, instance) WHERE f.model = ? AND f.version = ? "
                "ORDER BY f.time DESC LIMIT ?", (model, version, window)).fetchall()

    def fed_back(self) -> list[tuple[str, int]]:
        """(model, version) of every version with feedback."""
        with self._lock:
            return self._connect().execute(
                "SELECT DISTINCT model, version FROM feedback ORDER BY 1, 2").fetchall()

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    # --- internals ----------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        if self._db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, timeout=BUSY_MS / 1000, isolation_level=None,
                                 check_same_thread=False)
            try:
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")
                db.executescript(_SCHEMA)
            except sqlite3.Error:
                db.close()
                raise
            self._db = db
        return self._db

    def _prune(self, db: sqlite3.Connection) -> None:
        self._pruned_at = time.monotonic()
        cutoff = time.time() - self.max_age_s
        with db:
            db.execute("BEGIN")
            db.execute("DELETE FROM predictions WHERE time < ?", (cutoff,))
            db.execute("DELETE FROM feedback WHERE time < ?", (cutoff,))
        while self._used_bytes(db) > self.max_bytes:
            count = db.execute("SELECT count(*) FROM predictions").fetchone()[0]
            if not count:
                break
            with db:  # the oldest tenth, and the feedback that pointed at it
                db.execute("BEGIN")
                oldest = db.execute("SELECT time FROM predictions ORDER BY time LIMIT 1 "
                                    "OFFSET ?", (max(count // 10, 1) - 1,)).fetchone()[0]
                db.execute("DELETE FROM feedback WHERE (model, request_id, instance) IN "
                           "(SELECT model, request_id, instance FROM predictions "
                           "WHERE time <= ?)", (oldest,))
                db.execute("DELETE FROM predictions WHERE time <= ?", (oldest,))

    @staticmethod
    def _used_bytes(db: sqlite3.Connection) -> int:
        pages = db.execute("PRAGMA page_count").fetchone()[0]
        free = db.execute("PRAGMA freelist_count").fetchone()[0]
        size = db.execute("PRAGMA page_size").fetchone()[0]
        return int((pages - free) * size)


def describe(keys: list[Key], limit: int = 10) -> str:
    shown = ", ".join(f"{rid}[{i}]" for rid, i in keys[:limit])
    more = f" and {len(keys) - limit} more" if len(keys) > limit else ""
    return shown + more

