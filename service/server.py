"""``modelserve serve``: run the service under uvicorn, and drain it on SIGTERM.

Graceful shutdown. On SIGTERM (or SIGINT) a server process:

1. reports not-ready at once: ``/v2/health/ready`` and ``/readyz`` answer 503
   ``"Not ready: shutting down."`` (liveness stays 200), and every response from then on
   carries ``Connection: close`` so keep-alive clients reconnect elsewhere;
2. keeps serving for ``shutdown_delay_s``, so load balancers take it out of rotation
   before its listener closes (0 by default: straight to 3);
3. runs uvicorn's shutdown: stops accepting connections, closes idle ones, waits up to
   ``shutdown_grace_s`` for the requests in flight (those queued in a batcher included),
   then the app's lifespan shutdown (the inference thread ends after its last call);
4. exits 0.

SIGINT after any signal, or a second SIGTERM, forces a quick exit: the drain is cut
short and requests still in flight are dropped.

With ``workers > 1`` the supervisor sends SIGTERM to every worker, each drains as above,
and the supervisor exits 0 once all have. A worker ignores a second SIGTERM: it gets
one from the supervisor and often another directly (systemd signals every process of
the unit, ``kill -TERM -<group>``, Ctrl+C sends SIGINT to all). A further SIGINT or
SIGTERM sent to the supervisor while the workers drain makes it force them (SIGINT).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time
from socket import socket
from types import FrameType

import uvicorn
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors import multiprocess

from service import lifecycle
from service.settings import ENV_PREFIX, Settings

log = logging.getLogger("modelserve.server")

_CONNECTION_CLOSE = (b"connection", b"close")


def _pin_threads(n: int) -> None:
    # Must happen before numpy/scikit-learn/TensorFlow initialise their thread pools.
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, str(n))
    os.environ.setdefault("TF_NUM_INTRAOP_THREADS", str(n))
    os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


class DrainingServer(uvicorn.Server):
    """uvicorn's server, with readiness dropped at the first signal and an optional
    delay before uvicorn's own graceful shutdown starts."""

    def __init__(self, config: uvicorn.Config, shutdown_delay_s: float = 0.0,
                 second_sigterm_forces: bool = True) -> None:
        super().__init__(config)
        self.shutdown_delay_s = shutdown_delay_s
        self.second_sigterm_forces = second_sigterm_forces
        self._signals: list[int] = []
        self._close_at: float | None = None  # time.monotonic() at which the listener closes
        self._announced = False

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # A signal handler: set flags only (the next tick logs). Unlike uvicorn's, it
        # does not record the signal for re-raising after shutdown, which would turn a
        # clean drain into death by SIGTERM (exit status 143) instead of exit 0.
        forced = (sig == signal.SIGINT and bool(self._signals)) or (
            sig == signal.SIGTERM and sig in self._signals and self.second_sigterm_forces)
        self._signals.append(sig)
        if forced:
            self.should_exit = self.force_exit = True
        elif self._close_at is None:
            lifecycle.start_draining()
            self._ask_to_close()
            self._close_at = time.monotonic() + self.shutdown_delay_s
            if self.shutdown_delay_s <= 0:
                self.should_exit = True
        # Otherwise a SIGTERM that does not force: the drain under way goes on.

    async def on_tick(self, counter: int) -> bool:
        should_exit = await super().on_tick(counter)
        if self._close_at is None:
            return should_exit
        self._announce()
        self._ask_to_close()  # again: uvicorn rebuilds the default headers every second
        if time.monotonic() >= self._close_at:
            self.should_exit = True
        return should_exit or self.should_exit

    async def shutdown(self, sockets: list[socket] | None = None) -> None:
        self._announce()
        await super().shutdown(sockets=sockets)
        if self.force_exit:
            log.warning("Shutdown forced by a second signal: requests still in flight were "
                        "dropped.")

    def _ask_to_close(self) -> None:
        """``Connection: close`` on every response from now on, so keep-alive clients
        open their next connection elsewhere."""
        state = self.server_state
        if _CONNECTION_CLOSE not in state.default_headers:
            state.default_headers = [*state.default_headers, _CONNECTION_CLOSE]

    def _announce(self) -> None:
        if self._announced or not self._signals:
            return
        self._announced = True
        name = signal.Signals(self._signals[0]).name
        if self.shutdown_delay_s > 0 and not self.should_exit:
            log.info("%s received: draining. Readiness answers 503; still serving for "
                     "%g s before the listener closes.", name, self.shutdown_delay_s)
        else:
            log.info("%s received: draining. Readiness answers 503; closing the listener.",
                     name)


class _WorkerProcess(multiprocess.Process):
    """A uvicorn worker process whose server is a DrainingServer."""

    @property
    def server(self) -> uvicorn.Server:
        if self._server is None:
            # In the worker: settings come from the environment, as the app's do. A second
            # SIGTERM is usually the supervisor's copy of one the worker already got.
            self._server = DrainingServer(self.config, Settings().shutdown_delay_s,
                                          second_sigterm_forces=False)
        return self._server

    def target(self, sockets: list[socket] | None = None) -> None:  # in the worker
        _ = self.server  # before uvicorn's health-check thread can ask for it
        super().target(sockets)


class _Supervisor(multiprocess.Multiprocess):
    """uvicorn's worker supervisor, with draining workers."""

    def run(self) -> None:
        # uvicorn starts workers in several places (start-up, replacing a dead worker,
        # SIGHUP, SIGTTIN), always as ``multiprocess.Process(config, sockets)``: make each
        # of those a draining worker while the supervisor runs.
        original = multiprocess.Process
        multiprocess.Process = _WorkerProcess  # type: ignore[misc]
        try:
            super().run()
        finally:
            multiprocess.Process = original  # type: ignore[misc]
        if any(process.exitcode == STARTUP_FAILURE for process in self.processes):
            sys.exit(STARTUP_FAILURE)  # uvicorn stopped because a worker could not start

    def terminate_all(self) -> None:
        super().terminate_all()  # SIGTERM to every worker: each one drains
        # The supervisor's copy of the listening socket would keep it open after every
        # worker has closed its own: connections would then wait in a backlog nobody
        # accepts from instead of being refused.
        for sock in self.sockets:
            sock.close()

    def join_all(self) -> None:
        for process in self.processes:
            while process.process.exitcode is None:
                process.process.join(0.2)
                self._forward_signals()

    def _forward_signals(self) -> None:
        """SIGINT or SIGTERM received while the workers drain: force them (SIGINT)."""
        while self.signal_queue:
            sig = self.signal_queue.pop(0)
            if sig not in (signal.SIGINT, signal.SIGTERM):
                continue
            log.warning("%s received while the workers drain: forcing them to exit.",
                        signal.Signals(sig).name)
            for process in self.processes:
                if process.process.exitcode is None and process.pid is not None:
                    os.kill(process.pid, signal.SIGINT)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="modelserve serve",
        description=f"Serve a model repository. Every option can also be set with an "
                    f"environment variable {ENV_PREFIX}<OPTION> (e.g. {ENV_PREFIX}PORT).")
    for name, field in Settings.model_fields.items():
        flag = "--" + name.replace("_", "-")
        parser.add_argument(flag, dest=name, default=None,
                            help=f"{field.description} (env {ENV_PREFIX}{name.upper()}; "
                                 f"default {field.default})")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    overrides = {k: v for k, v in vars(args).items() if v is not None}
    settings = Settings(**overrides)
    _pin_threads(settings.inference_threads)
    from service.app import configure_logging

    configure_logging(settings)

    common = {"host": settings.host, "port": settings.port, "access_log": False,
              "log_level": settings.log_level.lower(), "loop": "uvloop", "http": "httptools",
              "timeout_graceful_shutdown": settings.shutdown_grace_s}
    if settings.workers == 1:
        from service.app import create_asgi

        server = DrainingServer(uvicorn.Config(create_asgi(settings), **common),
                                settings.shutdown_delay_s)
        server.run()
        if not server.started:
            sys.exit(STARTUP_FAILURE)
        return
    if not isinstance(getattr(multiprocess.Process, "server", None), property):
        sys.exit("modelserve: workers > 1 needs a uvicorn whose worker processes build "
                 "their own server (0.54 or later).")
    # Worker processes build their own app from the environment: pass every setting
    # that came from a flag down as its environment variable.
    for key, value in overrides.items():
        os.environ[ENV_PREFIX + key.upper()] = str(value)
    from service.observability.metrics import prepare_multiprocess

    prepare_multiprocess(settings.workers)  # /metrics then sums every worker's metrics
    config = uvicorn.Config("service.app:create_asgi", factory=True, workers=settings.workers,
                            **common)
    _Supervisor(config, sockets=[config.bind_socket()]).run()


if __name__ == "__main__":
    main()
