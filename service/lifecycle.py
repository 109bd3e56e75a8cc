"""Shutdown state shared by the server, which receives SIGTERM, and the app, whose
readiness has to report it.

The server (``service.server.DrainingServer``) calls ``start_draining()`` from its
signal handler; the app registers a callback with ``on_drain()`` for as long as its
lifespan runs (it sets ``Services.draining``, so readiness answers 503). Nothing here
depends on how the app is wrapped.
"""

from __future__ import annotations

from collections.abc import Callable

_callbacks: list[Callable[[], None]] = []
_draining = False


def on_drain(callback: Callable[[], None]) -> Callable[[], None]:
    """Call ``callback`` when the process starts draining (at once if it already has).
    Returns the function that unregisters it."""
    _callbacks.append(callback)
    if _draining:
        callback()

    def unregister() -> None:
        if callback in _callbacks:
            _callbacks.remove(callback)

    return unregister


def start_draining() -> None:
    """The process is shutting down: tell every registered app. Runs in a signal
    handler, so callbacks must only set flags."""
    global _draining
    _draining = True
    for callback in list(_callbacks):
        callback()


def draining() -> bool:
    return _draining
