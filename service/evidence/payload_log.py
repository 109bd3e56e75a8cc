"""The payload log's writer: a bounded queue the event loop puts captured predictions
in, and one thread that encodes them, appends them to the files and hands them to the
sink.

Nothing here can delay or fail a prediction: ``offer`` never blocks (a full queue drops
the record and counts it), and a failing disk is counted, logged once per distinct error,
reported in the status, and tried again on the next records.

Threads: the event loop calls ``offer``; the writer thread owns the files and the
counters it updates (plain ints, read by ``status`` without a lock: a read may lag).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections import Counter
from collections.abc import Callable

from service.evidence import records
from service.evidence.cloudevents import CloudEventsSink
from service.evidence.files import RotatingFiles
from service.evidence.records import Prediction
from service.settings import Settings

log = logging.getLogger("modelserve.evidence")

MB = 1024 * 1024
_BURST = 256  # records encoded and written per file write


class PayloadLog:
    def __init__(self, settings: Settings,
                 count: Callable[[str, str, int], None] = lambda model, outcome, n: None,
                 count_sink: Callable[[str, int], None] = lambda outcome, n: None) -> None:
        self.directory = settings.payload_log_dir
        self.files = RotatingFiles(settings.payload_log_dir,
                                   int(settings.payload_log_file_mb * MB),
                                   int(settings.payload_log_total_mb * MB),
                                   settings.payload_log_max_age_h * 3600)
        self.sink = (CloudEventsSink(settings.payload_sink_url, settings.payload_sink_queue,
                                     settings.payload_sink_timeout_s, count_sink)
                     if settings.payload_sink_url else None)
        self._count = count  # (model, outcome, records): written, dropped, failed
        self._queue: queue.Queue[Prediction | None] = queue.Queue(settings.payload_log_queue)
        self.written = self.dropped = self.failed = 0
        self.last_error = ""
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # starting the thread once

    def offer(self, prediction: Prediction) -> None:
        if self._thread is None:
            self._start()
        try:
            self._queue.put_nowait(prediction)
        except queue.Full:
            self.dropped += 1
            self._count(prediction.name, "dropped", 1)

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued, then stop (at shutdown)."""
        if self._thread is not None:
            with contextlib.suppress(queue.Full):
                self._queue.put(None, timeout=timeout)
            self._thread.join(timeout)
        if self.sink is not None:
            self.sink.close()

    def status(self) -> dict[str, object]:
        out: dict[str, object] = {
            "directory": str(self.directory), "file": str(self.files.current or ""),
            "written": self.written, "dropped": self.dropped, "failed": self.failed,
            "queued": self._queue.qsize(), "last_error": self.last_error,
        }
        if self.sink is not None:
            out["sink"] = self.sink.status()
        return out

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                thread = threading.Thread(target=self._run, name="payload-log", daemon=True)
                thread.start()
                self._thread = thread

    def _run(self) -> None:
        stopping = False
        while not stopping:
            burst = [self._queue.get()]
            while len(burst) < _BURST:
                try:
                    burst.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            if None in burst:
                stopping = True
                burst = [p for p in burst if p is not None]
            if burst:
                self._write(burst)
        self.files.close()

    def _write(self, burst: list[Prediction]) -> None:
        done: list[Prediction] = []
        lines: list[bytes] = []
        for p in burst:
            try:
                lines.append(records.line(p))
                done.append(p)
            except Exception as exc:  # one odd record must not cost the others
                self._failed([p], exc)
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

    def _failed(self, burst: list[Prediction], exc: Exception) -> None:
        error = f"{type(exc).__name__}: {exc}"[:300]
        if error != self.last_error:
            log.error("payload log: %d records not written: %s", len(burst), error)
        self.last_error = error
        self.failed += len(burst)
        for name, n in Counter(p.name for p in burst).items():
            self._count(name, "failed", n)
