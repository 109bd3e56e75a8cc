"""What a server process does first, to be ready sooner.

- The cyclic garbage collector is paused: start-up builds some 10^5 objects that live as
  long as the process (classes, pydantic schemas, routes, models), which it would traverse
  again and again as they pile up (6-7% of a cold start). ``finished`` freezes them
  (``gc.freeze``: later collections skip them) and turns collection back on.
- glibc's malloc is set where its own heuristic heads as large blocks are freed (blocks
  under 32 MB from the heap, up to 64 MB of free heap kept): by default it maps, faults
  in and unmaps each large block until it has learned, which the models' first calls
  paid at start-up. RSS unchanged here (within 1 MB after traffic).
- pydantic models are built at their first use (``defer_build``, safe across threads
  since pydantic 2.14): FastAPI's forty OpenAPI models, for one, are needed only when
  ``/openapi.json`` is first asked for (20-25 ms of a cold start). Models defined
  afterwards are built eagerly again.
- ``pydantic.v1`` is made unimportable: FastAPI imports it at every route parameter only
  to ask whether the type is a pydantic 1 model, and handles its absence (as with a
  pydantic that has dropped v1); importing it costs 20 ms of start-up. Nothing here uses
  pydantic 1.
"""

from __future__ import annotations

import ctypes
import gc
import logging
import sys
import time

from pydantic import BaseModel

log = logging.getLogger("modelserve.server")

_began_at: float | None = None
_gc_paused = False


def begin() -> None:
    """First thing in a server process's entry point (again is harmless)."""
    global _began_at, _gc_paused
    if _began_at is None:
        _began_at = time.monotonic()
    _tune_malloc()
    sys.modules.setdefault("pydantic.v1", None)  # type: ignore[arg-type]
    BaseModel.model_config["defer_build"] = True
    if gc.isenabled():
        gc.disable()
        _gc_paused = True


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h


def _tune_malloc() -> None:
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc
        return
    mallopt(_M_MMAP_THRESHOLD, 32 << 20)  # glibc's own ceiling for this threshold
    mallopt(_M_TRIM_THRESHOLD, 64 << 20)  # twice it, as glibc sets it


def finished() -> None:
    """The models are loaded: collection back on, if ``begin`` turned it off (a process
    that embeds the app keeps its collector as it was). Nothing without ``begin``."""
    global _began_at, _gc_paused
    if _began_at is None:
        return
    took_s, _began_at = time.monotonic() - _began_at, None
    BaseModel.model_config["defer_build"] = False  # models defined from now on: eager
    if _gc_paused:
        _gc_paused = False
        gc.freeze()
        gc.enable()
        log.info("garbage collection resumed %.2f s after the entry point; %d objects "
                 "built during start-up frozen out of it", took_s, gc.get_freeze_count())
