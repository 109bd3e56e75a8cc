"""Several worker processes on one listening socket: start them, replace one that dies,
stop them all on SIGTERM or SIGINT.

``bind`` makes the listening socket, once, in the supervisor; ``Supervisor.run`` starts
``workers`` processes, each calling ``target(sock)`` (a module-level function: it is
pickled by name), and returns the supervisor's exit status:

- a worker that exits while the supervisor is not stopping (a crash, ``kill -9``, the
  OOM killer) is logged and replaced by a new one;
- a worker that exits with ``STARTUP_FAILURE`` (3) could not start (the app's start-up
  failed, a bad key file...): a new one would fail the same way, so the supervisor
  stops the others and returns 3;
- the first SIGTERM or SIGINT sends SIGTERM to every worker (each drains: see
  ``service.server``), closes the supervisor's copy of the socket and returns 0 once
  every worker has exited; a further SIGTERM or SIGINT while they drain sends SIGINT
  to each (forced: requests still in flight are dropped). No worker is replaced once
  stopping has begun.

Workers are started with multiprocessing's ``spawn``: a fresh interpreter, so no copy
of the supervisor's threads or locks (as a fork would make), that takes its settings
from the environment. Their command line names ``spawn_main``, which is how a worker
finds its siblings for ``/metrics``. The supervisor does not know what a worker serves
on the socket, nor what else it starts.

One thread: the signal handlers only record the signal and wake the loop (through
``signal.set_wakeup_fd``); the loop in ``run`` does everything else.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
import sys
from collections.abc import Callable
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from types import FrameType

log = logging.getLogger("modelserve.supervisor")

STARTUP_FAILURE = 3  # uvicorn's exit status for a server that could not start

_spawn = multiprocessing.get_context("spawn")


def bind(host: str, port: int) -> socket.socket:
    """The listening socket every worker shares (each one calls ``listen``). Exits with
    STARTUP_FAILURE when the address cannot be bound."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        log.error("Cannot listen on %s port %d: %s", host, port, exc)
        sys.exit(STARTUP_FAILURE)
    return sock


class Supervisor:
    def __init__(self, target: Callable[[socket.socket], None], sock: socket.socket,
                 workers: int) -> None:
        self.target = target
        self.sock = sock
        self.size = workers
        self.workers: list[BaseProcess] = []
        self._signals: list[int] = []
        self._stopping = False
        self._forced = False
        self._status = 0

    def run(self) -> int:
        """Supervise until every worker has exited; the exit status (0 or 3)."""
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        handled = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
        previous = {sig: signal.signal(sig, self._on_signal) for sig in handled}
        previous_wakeup = signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        try:
            host, port = self.sock.getsockname()[:2]
            log.info("Supervisor [%d] listening on %s port %d with %d workers.",
                     os.getpid(), host, port, self.size)
            self.workers = [self._start() for _ in range(self.size)]
            while self.workers:
                wait([w.sentinel for w in self.workers] + [wake_r])
                _drain(wake_r)
                self._handle_signals()
                self._reap()
        finally:
            signal.set_wakeup_fd(previous_wakeup)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            os.close(wake_r)
            os.close(wake_w)
            self.sock.close()
        log.info("Supervisor [%d] exiting: every worker has.", os.getpid())
        return self._status

    def _on_signal(self, sig: int, frame: FrameType | None) -> None:
        self._signals.append(sig)

    def _start(self) -> BaseProcess:
        process = _spawn.Process(target=self.target, args=(self.sock,), name="worker")
        process.start()
        log.info("Started worker process [%s].", process.pid)
        return process

    def _handle_signals(self) -> None:
        while self._signals:
            sig = self._signals.pop(0)
            name = signal.Signals(sig).name
            if sig == signal.SIGHUP:
                # The default action would kill the supervisor and leave its workers behind.
                log.warning("SIGHUP ignored: send SIGTERM to stop the server.")
            elif not self._stopping:
                self._stop(f"{name} received")
            elif not self._forced:
                self._forced = True
                log.warning("%s received while the workers drain: forcing them to exit.",
                            name)
                self._signal_all(signal.SIGINT)

    def _stop(self, reason: str) -> None:
        self._stopping = True
        log.info("%s: stopping the workers (each one drains).", reason)
        self._signal_all(signal.SIGTERM)
        # Once every worker has closed its copy, connections are refused rather than left
        # waiting in a backlog that nobody accepts from.
        self.sock.close()

    def _signal_all(self, sig: int) -> None:
        for process in self.workers:
            # Not reaped yet (exitcode None): the pid is still this worker's, even if
            # it has just exited.
            if process.exitcode is None and process.pid is not None:
                os.kill(process.pid, sig)

    def _reap(self) -> None:
        """Forget the workers that have exited; replace them unless stopping."""
        running = []
        for process in self.workers:
            code = process.exitcode  # reaps it, if it has exited
            if code is None:
                running.append(process)
            elif self._stopping:
                continue
            elif code == STARTUP_FAILURE:
                log.error("Worker process [%s] could not start: stopping.", process.pid)
                self._status = STARTUP_FAILURE
                self._stop("A worker could not start")
            else:
                log.error("Worker process [%s] died (%s): starting a new one.",
                          process.pid, _describe(code))
                running.append(self._start())
        self.workers = running


def _describe(code: int) -> str:
    if code >= 0:
        return f"exit status {code}"
    try:
        return f"killed by {signal.Signals(-code).name}"
    except ValueError:
        return f"killed by signal {-code}"


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 512):
            pass
    except BlockingIOError:
        pass
