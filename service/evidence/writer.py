"""The evidence writer: a bounded queue the event loop puts captured predictions in, and
one thread that takes them in bursts and, for each as its model's config asks, appends
it to the payload log's files (and hands it to the sink), keeps it in the evidence store
for feedback, and adds it to the version's drift window.

Nothing here can delay or fail a prediction: ``offer`` never blocks (a full queue drops
the record and counts it), and a failing disk is counted, logged once per distinct error,
reported in the status, and tried again on the next records.

Threads: the event loop calls ``offer`` (and counts what it drops); the writer thread
owns the files and the counters it updates (plain ints, read by ``status`` without a
lock: a read may lag); ``flush`` may be called from any other thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable

import orjson

from service.evidence import records
from service.evidence.cloudevents import CloudEventsSink
from service.evidence.drift import DriftMonitor
from service.evidence.files import RotatingFiles
from service.evidence.records import Prediction
from service.evidence.store import EvidenceStore, PredictionRow
from service.settings import Settings

log = logging.getLogger("modelserve.evidence")

MB = 1024 * 1024
_BURST = 256      # records encoded and written per file write
WAKE_PERIOD_S = 0.05  # the writer's sleep when few records wait
_WAKE_AT = 512    # records waiting that wake it early
_PRUNE_EVERY_S = 600.0


class Writer:
    def __init__(self, settings: Settings, store: EvidenceStore | None = None,
                 drift: DriftMonitor | None = None,
                 count: Callable[[str, str, int], None] = lambda model, outcome, n: None,
                 count_sink: Callable[[str, int], None] = lambda outcome, n: None) -> None:
        self.directory = settings.payload_log_dir
        self.store = store
        self.drift = drift
        self.files = RotatingFiles(settings.payload_log_dir,
                                   int(settings.payload_log_file_mb * MB),
                                   int(settings.payload_log_total_mb * MB),
                                   settings.payload_log_max_age_h * 3600)
        self.sink = (CloudEventsSink(settings.payload_sink_url, settings.payload_sink_queue,
                                     settings.payload_sink_timeout_s, count_sink)
                     if settings.payload_sink_url else None)
        self._count = count  # (model, outcome, records): written, dropped, failed
        # The loop appends, the writer pops: deque's append and popleft are atomic, so
        # offering takes no lock and wakes nobody. The writer wakes every WAKE_PERIOD_S, or
        # at once when _WAKE_AT records wait: a wake-up per record (a condition variable,
        # a GIL hand-over and a context switch each) cost a third of the throughput.
        self._pending: deque[Prediction] = deque()
        self._max = settings.payload_log_queue
        self._wake = threading.Event()
        self._progress = threading.Condition()
        self._offered = 0   # event loop only
        self._handled = 0   # writer only: written, failed or dropped by it
        self._stopping = False
        self.written = self.dropped = self.failed = 0
        self.last_error = ""
        self.store_failed = 0
        self.store_error = ""
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # starting the thread once

    def offer(self, prediction: Prediction) -> None:
        if self._thread is None:
            self._start()
        pending = len(self._pending)
        if pending >= self._max:
            self.dropped += 1
            if prediction.log is not None:  # the payload log's metric: its records only
                self._count(prediction.name, "dropped", 1)
            return
        self._pending.append(prediction)
        self._offered += 1
        if pending == _WAKE_AT:
            self._wake.set()

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until what was offered so far is written (False: not within timeout)."""
        if self._thread is None:
            return True
        target = self._offered
        self._wake.set()
        with self._progress:
            return self._progress.wait_for(lambda: self._handled >= target, timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued, then stop (at shutdown)."""
        if self._thread is not None:
            self._stopping = True
            self._wake.set()
            self._thread.join(timeout)
        if self.sink is not None:
            self.sink.close()

    def status(self) -> dict[str, object]:
        out: dict[str, object] = {
            "directory": str(self.directory), "file": str(self.files.current or ""),
            "written": self.written, "dropped": self.dropped, "failed": self.failed,
            "queued": len(self._pending), "last_error": self.last_error,
        }
        if self.sink is not None:
            out["sink"] = self.sink.status()
        return out

    def store_status(self) -> dict[str, object]:
        return {"path": str(self.store.path) if self.store else "",
                "failed": self.store_failed, "last_error": self.store_error}

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                thread = threading.Thread(target=self._run, name="evidence", daemon=True)
                thread.start()
                self._thread = thread

    def _run(self) -> None:
        pruned = time.monotonic()
        while True:
            self._wake.wait(WAKE_PERIOD_S)
            self._wake.clear()
            stopping = self._stopping
            if time.monotonic() - pruned > _PRUNE_EVERY_S:  # age limits on a quiet server
                pruned = time.monotonic()
                try:
                    self.files.prune()
                except OSError as exc:
                    log.warning("payload log: pruning %s failed: %s", self.directory, exc)
            while self._pending:
                burst = []
                while self._pending and len(burst) < _BURST:
                    burst.append(self._pending.popleft())
                self._write(burst)
                with self._progress:
                    self._handled += len(burst)
                    self._progress.notify_all()
                time.sleep(0)  # let the event loop have the GIL between bursts
            if stopping:
                break
        self.files.close()

    def _write(self, burst: list[Prediction]) -> None:
        done: list[Prediction] = []
        lines: list[bytes] = []
        rows: list[PredictionRow] = []
        if self.drift is not None:
            self._drift([p for p in burst if p.drift and p.outputs is not None])
        for p in burst:
            keep_outputs = p.store or (p.log is not None and p.log.outputs)
            if p.log is None and not p.store:
                continue
            try:
                preds = records.predictions(p) if keep_outputs else []
                if p.log is not None:
                    lines.append(records.line(p, preds))
                    done.append(p)
                if p.store and p.status == 200:
                    rows += [(p.name, p.request_id, i, p.version, p.time,
                              orjson.dumps(pred, option=orjson.OPT_SERIALIZE_NUMPY).decode())
                             for i, pred in enumerate(preds)]
            except Exception as exc:  # one odd record must not cost the others
                if p.log is not None:
                    self._failed([p], exc)
                else:
                    self._store_failed(1, exc)
        if rows and self.store is not None:
            self._store(rows)
        if not done:
            return
        try:
            self.files.write(lines)
        except Exception as exc:
            self._failed(done, exc)
            return
        self.written += len(done)
        for name, n in Counter(p.name for p in done).items():
            self._count(name, "written", n)
        if self.sink is not None:
            for p in done:
                self.sink.offer(p)
        if self.last_error:
            log.info("payload log: writing to %s again", self.directory)
            self.last_error = ""

    def _drift(self, burst: list[Prediction]) -> None:
        assert self.drift is not None
        by_version: dict[tuple[str, int], list[Prediction]] = {}
        for p in burst:
            by_version.setdefault((p.name, p.version), []).append(p)
        for predictions in by_version.values():
            try:
                self.drift.add(predictions[0].model, [(p.batch, p.outputs)
                                                      for p in predictions if p.outputs])
            except Exception:  # drift accounting must never cost the log or the store
                log.exception("drift: could not add %d rows of %s v%d", len(predictions),
                              predictions[0].name, predictions[0].version)

    def _store(self, rows: list[PredictionRow]) -> None:
        assert self.store is not None
        try:
            self.store.add_predictions(rows)
        except Exception as exc:  # the files still get the records
            self._store_failed(len(rows), exc)
            return
        self.store_error = ""

    def _store_failed(self, rows: int, exc: Exception) -> None:
        error = f"{type(exc).__name__}: {exc}"[:300]
        if error != self.store_error:
            log.error("evidence store: %d predictions not stored: %s", rows, error)
        self.store_error = error
        self.store_failed += rows

    def _failed(self, burst: list[Prediction], exc: Exception) -> None:
        error = f"{type(exc).__name__}: {exc}"[:300]
        if error != self.last_error:
            log.error("payload log: %d records not written: %s", len(burst), error)
        self.last_error = error
        self.failed += len(burst)
        for name, n in Counter(p.name for p in burst).items():
            self._count(name, "failed", n)
