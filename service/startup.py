"""What a server process does first, to be ready sooner.

- The cyclic garbage collector is paused: start-up builds some 10^5 objects that live as
  long as the process (classes, pydantic schemas, routes, models), which it would traverse
  again and again as they pile up (6-7% of a cold start). ``finished`` freezes them
  (``gc.freeze``: later collections skip them) and turns collection back on.
- ``pydantic.v1`` is made unimportable: FastAPI imports it at every route parameter only
  to ask whether the type is a pydantic 1 model, and handles its absence (as with a
  pydantic that has dropped v1); importing it costs 20 ms of start-up. Nothing here uses
  pydantic 1.
"""

from __future__ import annotations

import gc
import logging
import sys
import time

log = logging.getLogger("modelserve.server")

_began_at: float | None = None


def begin() -> None:
    """First thing in a server process's entry point (again is harmless)."""
    global _began_at
    sys.modules.setdefault("pydantic.v1", None)  # type: ignore[arg-type]
    if gc.isenabled():
        gc.disable()
        _began_at = time.monotonic()


def finished() -> None:
    """Collection back on, if ``begin`` turned it off; otherwise nothing (a process that
    embeds the app keeps its collector as it was)."""
    global _began_at
    if _began_at is None:
        return
    paused_s, _began_at = time.monotonic() - _began_at, None
    gc.freeze()
    gc.enable()
    log.info("garbage collection resumed %.2f s after the entry point; %d objects built "
             "during start-up frozen out of it", paused_s, gc.get_freeze_count())
