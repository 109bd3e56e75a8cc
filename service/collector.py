"""The cyclic garbage collector, paused while a server process starts.

Start-up builds some 10^5 objects that live as long as the process (classes, pydantic
schemas, routes, models); the collector would traverse them again and again as they pile
up, 6-7% of a cold start. ``resume`` freezes them (``gc.freeze``: later collections skip
them) and turns collection back on.
"""

from __future__ import annotations

import gc
import logging
import time

log = logging.getLogger("modelserve.server")

_paused_at: float | None = None


def pause() -> None:
    """Collection off until ``resume``: first thing in a server process's entry point."""
    global _paused_at
    if gc.isenabled():
        gc.disable()
        _paused_at = time.monotonic()


def resume() -> None:
    """Collection back on, if ``pause`` turned it off; otherwise nothing (a process that
    embeds the app keeps its collector as it was)."""
    global _paused_at
    if _paused_at is None:
        return
    paused_s, _paused_at = time.monotonic() - _paused_at, None
    gc.freeze()
    gc.enable()
    log.info("garbage collection resumed %.2f s after the entry point; %d objects built "
             "during start-up frozen out of it", paused_s, gc.get_freeze_count())
