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

With ``workers > 1`` (``service.supervisor``) the process that was started binds the
socket and supervises that many worker processes, each a ``DrainingServer`` on it
(``run_worker``: settings from the environment, every flag passed down as its
``MODELSERVE_*`` variable). A worker that dies is replaced, one that cannot start stops
them all (exit 3, as a single process that cannot start). On SIGTERM or SIGINT the
supervisor sends SIGTERM to every worker, each drains as above, and the supervisor
exits 0 once all have. A worker ignores a second SIGTERM: it gets one from the
supervisor and often another directly (systemd signals every process of the unit,
``kill -TERM -<group>``, Ctrl+C sends SIGINT to all). A further SIGINT or SIGTERM sent
to the supervisor while the workers drain makes it force them (SIGINT).
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
from typing import Any

import uvicorn

from service import lifecycle, startup, supervisor
from service.settings import ENV_PREFIX, Settings
from service.supervisor import STARTUP_FAILURE

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


def _uvicorn_options(settings: Settings) -> dict[str, Any]:
    # No WebSocket routes: ws "none" also spares importing websockets at start-up.
    return {"host": settings.host, "port": settings.port, "access_log": False,
            "log_level": settings.log_level.lower(), "loop": "uvloop", "http": "httptools",
            "ws": "none",
            "timeout_graceful_shutdown": settings.shutdown_grace_s}


def _serve(settings: Settings, sockets: list[socket] | None = None,
           second_sigterm_forces: bool = True) -> None:
    """Build the app and serve it until it has drained. Exit with STARTUP_FAILURE if it
    never started serving, whatever stopped it (the app's start-up, a bad key file, the
    port): a supervisor must not start again what would fail the same way."""
    from service.app import create_asgi

    server = None
    try:
        # The app first: it routes uvicorn's loggers to ours before Config() sets them up.
        app = create_asgi(settings)
        startup.app_built()
        config = uvicorn.Config(app, **_uvicorn_options(settings))
        server = DrainingServer(config, settings.shutdown_delay_s, second_sigterm_forces)
        server.run(sockets=sockets)
    except (Exception, SystemExit) as exc:
        if server is not None and server.started:
            raise
        if not isinstance(exc, SystemExit):  # uvicorn logs its own reasons
            log.exception("The server could not start.")
    if server is None or not server.started:
        sys.exit(STARTUP_FAILURE)


def run_worker(sock: socket) -> None:
    """A worker process's life (``workers > 1``): settings from the environment, serving
    on the supervisor's socket until it has drained."""
    startup.begin()  # finished once the worker's models are loaded
    # A second SIGTERM is usually the supervisor's copy of one the worker already got.
    _serve(Settings(), [sock], second_sigterm_forces=False)


def main(argv: list[str] | None = None) -> None:
    startup.begin()  # finished once the models are loaded (app.py), or below
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    overrides = {k: v for k, v in vars(args).items() if v is not None}
    settings = Settings(**overrides)
    _pin_threads(settings.inference_threads)
    from service.app import configure_logging

    configure_logging(settings)
    # Where a person starts: the web console (a wildcard address is reached as localhost).
    host = "localhost" if settings.host in ("0.0.0.0", "::", "") else settings.host
    log.info("console: http://%s:%d/ui (API docs: /docs)", host, settings.port)

    if settings.workers == 1:
        _serve(settings)
        return
    # Worker processes build their own app from the environment: pass every setting
    # that came from a flag down as its environment variable.
    for key, value in overrides.items():
        os.environ[ENV_PREFIX + key.upper()] = str(value)
    from service.observability.metrics import prepare_multiprocess

    prepare_multiprocess(settings.workers)  # /metrics then sums every worker's metrics
    startup.finished()  # the supervisor loads no models
    sock = supervisor.bind(settings.host, settings.port)
    sys.exit(supervisor.Supervisor(run_worker, sock, settings.workers).run())


if __name__ == "__main__":
    main()
