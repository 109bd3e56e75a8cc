"""Structured logs: every record as one JSON object per line (or readable text).

``configure(level, fmt)`` installs one handler on the root logger and routes uvicorn's
own loggers there too, so the server's start-up lines, errors with tracebacks and our
access lines all come out in the same format. A JSON line holds ``time`` (UTC, ISO
8601, milliseconds), ``level``, ``logger``, ``message``, ``pid``, the request's
``request_id`` when the record was written while serving one, ``exc`` (the traceback)
when there is one, and every ``extra`` field of the call.

The access logger writes one line per HTTP request or gRPC call (``access()``, called by
the HTTP gateway and the gRPC servicer), without ``Logger.info``'s per-record cost (a
walk up the call stack to find the caller, a LogRecord, the handler chain) when our
handler is the only one.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import orjson

from service.observability import context

HANDLER_MARK = "_modelserve_handler"

access_log = logging.getLogger("modelserve.access")

# Attributes every LogRecord has; anything else on a record came from ``extra``.
_RESERVED = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message", "asctime", "taskName",
    "color_message",  # uvicorn's coloured duplicate of the message
}


# The last whole second, formatted: most stamps share it. Replaced as one tuple, so a
# thread never pairs one second's number with another's text.
_second: tuple[int, str] = (-1, "")


def iso_utc(created: float, digits: int = 3) -> str:
    """``2026-11-22T05:10:59.123Z`` (``digits`` of the second: 3 or 6); one strftime a
    second, from any thread."""
    global _second
    whole = int(created)
    cached, text = _second
    if cached != whole:
        text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
        _second = (whole, text)
    return f"{text}.{int((created - whole) * 10 ** digits):0{digits}d}Z"


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    d = record.__dict__
    fields = d.get("_fields")  # an access record says which they are
    if fields is not None:
        return fields
    if not d.keys() - _RESERVED:
        return {}
    return {k: v for k, v in d.items() if k not in _RESERVED and not k.startswith("_")}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": iso_utc(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        out.update(_extras(record))
        if "request_id" not in out:
            info = context.current()
            if info is not None and info.request_id:
                out["request_id"] = info.request_id
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exc"] = record.exc_text
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        try:
            return orjson.dumps(out, default=str,
                                option=orjson.OPT_SERIALIZE_NUMPY).decode()
        except TypeError:  # e.g. an integer beyond 64 bits
            return json.dumps(out, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """The classic one-line format, with any extra fields appended as ``key=value``."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(process)d %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extras = _extras(record)
        if not extras:
            return line
        head, sep, tail = line.partition("\n")  # keep a traceback below the fields
        fields = " ".join(f"{k}={v}" for k, v in extras.items() if v != "")
        return f"{head} {fields}{sep}{tail}"


def configure(level: str = "info", fmt: str = "json") -> None:
    """Install the service's log handler on the root logger (idempotent: a second call,
    e.g. in a worker process, replaces the first one's handler)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, HANDLER_MARK, False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(_log_stream())
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    setattr(handler, HANDLER_MARK, True)
    root.addHandler(handler)
    global _json_handler
    _json_handler = handler if fmt == "json" else None
    root.setLevel(level.upper())
    logging.captureWarnings(True)  # warnings.warn(...) becomes a record of "py.warnings"
    # Not needed by any formatter here, and each costs a lookup per record.
    logging.logThreads = False
    logging.logMultiprocessing = False
    _route_uvicorn_to_root()


_stream: Any = None


def _log_stream() -> Any:
    """Our own duplicate of standard error for the handler, so that ``native_stderr``
    can point file descriptor 2 elsewhere without taking our records with it."""
    global _stream
    if _stream is None:
        try:
            fd = os.dup(sys.stderr.fileno())
            _stream = os.fdopen(fd, "w", buffering=1, encoding="utf-8",
                                errors="backslashreplace")
        except (OSError, ValueError, AttributeError):  # no real fd (e.g. under pytest)
            _stream = sys.stderr
    return _stream


_native_lock = threading.Lock()
_NATIVE_LEVELS = {"E": logging.ERROR, "F": logging.CRITICAL, "W": logging.WARNING}


@contextmanager
def native_stderr(logger_name: str) -> Iterator[None]:
    """Collect what native code writes straight to file descriptor 2 while the block
    runs (TensorFlow's C++ start-up lines ignore TF_CPP_MIN_LOG_LEVEL until absl is
    initialised) and log it afterwards as records of ``logger_name``, one per line, so
    every line the server writes stays in the configured format."""
    with _native_lock:
        try:
            sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, ValueError):
            yield
            return
        with tempfile.TemporaryFile() as tmp:
            os.dup2(tmp.fileno(), 2)
            try:
                yield
            finally:
                os.dup2(saved, 2)
                os.close(saved)
                tmp.seek(0)
                text = tmp.read().decode("utf-8", "replace")
    logger = logging.getLogger(logger_name)
    for line in text.splitlines():
        line = line.strip()
        if line:
            # glog's "I0000 ...", "W0000 ...", or a plain "WARNING: ..." line.
            level = _NATIVE_LEVELS.get(line[0], logging.INFO)
            logger.log(level, "%s", line)


_UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")


def _route_uvicorn_to_root() -> None:
    """uvicorn gives its loggers their own text handlers (``uvicorn.config.LOGGING_CONFIG``,
    applied when its Config is created, i.e. after this runs): make that configuration
    leave them handler-less and propagating, so their records reach the root handler."""
    for name in _UVICORN_LOGGERS:
        lg = logging.getLogger(name)
        lg.handlers = []
        lg.propagate = True
    try:
        from uvicorn.config import LOGGING_CONFIG
    except ImportError:  # pragma: no cover - uvicorn is a dependency
        return
    # Mutated in place: it is the default ``log_config`` argument of uvicorn.Config, which
    # each worker process builds for itself after configuring logging.
    LOGGING_CONFIG["loggers"] = {name: {"handlers": [], "propagate": True}
                                 for name in _UVICORN_LOGGERS}


# Every attribute of a record of the access logger, with its value where it is fixed.
_ACCESS_BASE = vars(logging.LogRecord(access_log.name, logging.INFO, "", 0, "", (), None))


class _AccessRecord(logging.LogRecord):
    """A LogRecord built from a template: LogRecord's own constructor looks up the
    thread, process and source file, several µs per request for nothing used here."""

    def __init__(self, created: float, level: int, message: str,
                 fields: dict[str, Any]) -> None:
        d = self.__dict__
        d.update(_ACCESS_BASE)
        d["created"] = created
        d["msecs"] = (created - int(created)) * 1000
        d["relativeCreated"] = (created - logging._startTime) * 1000
        d["levelno"] = level
        d["levelname"] = logging.getLevelName(level)
        d["msg"] = message
        d["process"] = _pid
        d.update(fields)  # as ``extra`` would: any formatter can read them
        d["_fields"] = fields


_pid = os.getpid()


def _after_fork() -> None:
    global _pid
    _pid = os.getpid()


os.register_at_fork(after_in_child=_after_fork)


def access(level: int, message: str, fields: dict[str, Any]) -> None:
    """Write one access line (the fields become JSON keys). The caller checks
    ``access_log.isEnabledFor(level)`` first, before building the fields.

    When our JSON handler is the only one the record would reach (the normal case), the
    line is written straight to its stream, exactly as the handler would have written
    it: the generic path (record, logger walk, filters, formatter) costs several times
    more. Any other logging set-up (more handlers, filters, pytest's capture) gets a
    real record through ``Logger.handle``."""
    now = time.time()
    handler = _direct_handler()
    if handler is not None:
        line = orjson.dumps({"time": iso_utc(now), "level": _LEVEL_NAMES[level],
                             "logger": access_log.name, "message": message, "pid": _pid,
                             **fields}).decode()
        try:
            with handler.lock:  # type: ignore[union-attr]
                stream = handler.stream
                stream.write(line + "\n")
                if not getattr(stream, "line_buffering", False):
                    stream.flush()
            return
        except Exception:  # let the handler report it its own way
            pass
    access_log.handle(_AccessRecord(now, level, message, fields))


_LEVEL_NAMES = {logging.DEBUG: "debug", logging.INFO: "info", logging.WARNING: "warning",
                logging.ERROR: "error", logging.CRITICAL: "critical"}
_json_handler: logging.StreamHandler | None = None


def _direct_handler() -> logging.StreamHandler | None:
    """Our JSON handler when an access record would reach it and nothing else."""
    handler = _json_handler
    if handler is None or handler.filters or access_log.filters or access_log.disabled:
        return None
    logger: logging.Logger | None = access_log
    while logger is not None:
        if logger.parent is None:  # the root
            handlers = logger.handlers
            return handler if len(handlers) == 1 and handlers[0] is handler else None
        if logger.handlers or not logger.propagate:
            return None
        logger = logger.parent
    return None
