"""The payload log's optional sink: each logged prediction POSTed as two CloudEvents
(binary content mode) in the format of KServe's inference logger, so consumers written
for KServe (message dumpers, Knative brokers, drift detectors) read them unchanged:

- ``ce-type: org.kubeflow.serving.inference.request`` with the request as a KServe V2
  inference request, then ``org.kubeflow.serving.inference.response`` with the answer;
- both with ``ce-id`` = the request id, ``ce-specversion: 1.0``, ``ce-source``,
  ``ce-time``, and KServe's extensions ``ce-inferenceservicename`` (the model),
  ``ce-endpoint`` (the route label, if any), ``ce-component: predictor``, plus
  ``ce-modelversion``.

Its own thread and a bounded queue: ``offer`` never blocks, a full queue drops (counted),
a slow sink is cut off after its timeout, a dead one is retried with a growing pause.
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import queue
import threading
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import orjson

from service.evidence.records import Prediction, stamp, v2_request, v2_response

log = logging.getLogger("modelserve.evidence")

REQUEST_TYPE = "org.kubeflow.serving.inference.request"
RESPONSE_TYPE = "org.kubeflow.serving.inference.response"
SOURCE = "modelserve"


class SinkError(Exception):
    pass


class CloudEventsSink:
    def __init__(self, url: str, queue_size: int, timeout_s: float,
                 count: Callable[[str, int], None] = lambda outcome, n: None) -> None:
        parts = urlsplit(url)
        self.url = url
        self._https = parts.scheme == "https"
        self._host = parts.hostname or ""
        self._port = parts.port
        self._path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._timeout = timeout_s
        self._queue: queue.Queue[Prediction | None] = queue.Queue(queue_size)
        self._count = count  # (outcome, events): sent, dropped, failed
        self._conn: http.client.HTTPConnection | None = None
        self.sent = self.dropped = self.failed = 0
        self.last_error = ""
        self._thread = threading.Thread(target=self._run, name="payload-sink", daemon=True)
        self._thread.start()

    def offer(self, prediction: Prediction) -> None:
        try:
            self._queue.put_nowait(prediction)
        except queue.Full:
            self.dropped += 2
            self._count("dropped", 2)

    def close(self, timeout: float = 2.0) -> None:
        with contextlib.suppress(queue.Full):
            self._queue.put(None, timeout=timeout)
        self._thread.join(timeout)

    def status(self) -> dict[str, object]:
        return {"url": _shown(self.url), "sent": self.sent, "dropped": self.dropped,
                "failed": self.failed, "queued": self._queue.qsize(),
                "last_error": self.last_error}

    def _run(self) -> None:
        pause = 0.0
        while True:
            item = self._queue.get()
            if item is None:
                break
            if pause:
                time.sleep(pause)  # only this thread waits; the queue fills and drops
            try:
                self._post(item, REQUEST_TYPE, v2_request(item))
                self._post(item, RESPONSE_TYPE, v2_response(item))
            except Exception as exc:  # a sink's failure must never reach serving
                self.failed += 2
                self._count("failed", 2)
                self.last_error = f"{type(exc).__name__}: {exc}"[:300]
                if not pause:
                    log.warning("payload sink %s failed: %s", _shown(self.url),
                                self.last_error)
                pause = min(max(pause * 2, 0.25), 5.0)
                self._drop_connection()
                continue
            pause = 0.0
            self.sent += 2
            self._count("sent", 2)
        self._drop_connection()

    def _post(self, p: Prediction, kind: str, body: dict[str, object]) -> None:
        headers = {
            "Content-Type": "application/json",
            "ce-specversion": "1.0", "ce-type": kind, "ce-source": SOURCE,
            "ce-id": p.request_id, "ce-time": stamp(p.time),
            "ce-inferenceservicename": p.name, "ce-modelversion": str(p.version),
            "ce-endpoint": p.label, "ce-component": "predictor",
        }
        data = orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)
        reused = self._conn is not None
        try:
            response = self._send(data, headers)
        except (http.client.HTTPException, ConnectionError):
            if not reused:
                raise
            # The sink closed an idle keep-alive connection: once more on a new one.
            self._drop_connection()
            response = self._send(data, headers)
        if response.status >= 300:
            raise SinkError(f"{kind} answered {response.status}")

    def _send(self, data: bytes, headers: dict[str, str]) -> http.client.HTTPResponse:
        conn = self._connection()
        conn.request("POST", self._path, body=data, headers=headers)
        response = conn.getresponse()
        response.read()
        return response

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            self._conn = cls(self._host, self._port, timeout=self._timeout)
        return self._conn

    def _drop_connection(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None


def _shown(url: str) -> str:
    """The URL without credentials or query string (they may hold a token)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"
