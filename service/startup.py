"""What a server process does first, to be ready sooner.

- The cyclic garbage collector is paused: start-up builds some 10^5 objects that live as
  long as the process (classes, pydantic schemas, routes), which it would traverse again
  and again as they pile up (6-7% of a cold start). Once the app is built they are frozen
  out of it (``gc.freeze``; what little garbage is among them stays); collection resumes
  when the models are loaded, or after ``RESUME_AFTER_S`` if loading takes longer (the
  server takes requests meanwhile).
- glibc's malloc is set where its own heuristic heads as large blocks are freed (blocks
  under 32 MB from the heap, up to 64 MB of free heap kept): by default it maps, faults
  in and unmaps each large block until it has learned, which the models' first calls
  paid at start-up. RSS unchanged here (within 1 MB after traffic).
- pydantic models are built at their first use (``defer_build``, safe across threads
  since pydantic 2.14): FastAPI's forty OpenAPI models, for one, are needed only when
  ``/openapi.json`` is first asked for (20-25 ms of a cold start). BaseModel's default is
  restored once the models are loaded; a class defined before passes its deferral on.
- ``pydantic.v1`` is made unimportable: FastAPI imports it at every route parameter only
  to ask whether the type is a pydantic 1 model, and handles its absence (as with a
  pydantic that has dropped v1); importing it costs 20 ms of start-up. Loading a version
  on its framework lifts this (``allow_pydantic_v1``): the model's own code may need it.
"""

from __future__ import annotations

import ctypes
import gc
import logging
import sys
import threading
import time

log = logging.getLogger("modelserve.server")

RESUME_AFTER_S = 10.0
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h

_lock = threading.Lock()
_began_at: float | None = None
_gc_paused = False
_malloc_tuned = False
_timer: threading.Timer | None = None


def begin() -> None:
    """First thing in a server process's entry point (again is harmless)."""
    global _began_at, _gc_paused
    with _lock:
        if gc.isenabled():
            gc.disable()
            _gc_paused = True
        if _began_at is None:
            _began_at = time.monotonic()
    _tune_malloc()
    sys.modules.setdefault("pydantic.v1", None)  # type: ignore[arg-type]
    from pydantic import BaseModel  # after gc.disable(): pydantic's import is 50 ms

    BaseModel.model_config["defer_build"] = True


def app_built() -> None:
    """The app is built: freeze what start-up has made so far, and make sure collection
    resumes even if loading the models takes long."""
    global _timer
    with _lock:
        if not _gc_paused or _timer is not None:
            return
        gc.freeze()
        _timer = threading.Timer(RESUME_AFTER_S, finished)
        _timer.daemon = True
        _timer.start()


def finished() -> None:
    """The models are loaded: collection back on, if ``begin`` turned it off (a process
    that embeds the app keeps its collector as it was). Nothing without ``begin``."""
    global _began_at, _gc_paused, _timer
    with _lock:
        if _began_at is None:
            return
        took_s, _began_at = time.monotonic() - _began_at, None
        if _timer is not None:
            _timer.cancel()
            _timer = None
        from pydantic import BaseModel

        BaseModel.model_config["defer_build"] = False
        if not _gc_paused:
            return
        _gc_paused = False
        gc.enable()
    frozen = gc.get_freeze_count()
    log.info("garbage collection resumed %.2f s after the entry point%s", took_s,
             f"; {frozen} objects built during start-up frozen out of it" if frozen else "")


def malloc_tuned() -> bool:
    """Whether ``begin`` set malloc's thresholds (the warm-up relies on it)."""
    return _malloc_tuned


def allow_pydantic_v1() -> None:
    """Before a framework loads a model: its code may import pydantic.v1."""
    if "pydantic.v1" in sys.modules and sys.modules["pydantic.v1"] is None:
        del sys.modules["pydantic.v1"]


def _tune_malloc() -> None:
    global _malloc_tuned
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc
        return
    mallopt(_M_MMAP_THRESHOLD, 32 << 20)  # glibc's own ceiling for this threshold
    mallopt(_M_TRIM_THRESHOLD, 64 << 20)  # twice it, as glibc sets it
    _malloc_tuned = True
