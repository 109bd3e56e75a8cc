"""One model version's state machine, with TF Serving's states.

START → LOADING → AVAILABLE → UNLOADING → END; END is also reached straight away by a
version that failed or that is not served. A typed ``Reason`` says why a version is
where it is; the texts the status endpoints show (``error``, ``detail``) are derived
from it and never parsed back. A transition that the lifecycle does not allow raises
``IllegalTransition``.

Threads: a ``Version`` is written by the poll (reloader) thread and, while it is
LOADING, by its loader thread alone. Every transition swaps ``Version.status`` (an
immutable ``VersionStatus``) whole, so a snapshot read from any thread is never
half-changed; the event loop only ever sees such snapshots (through ``ModelView``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import Enum, StrEnum, auto
from pathlib import Path
from typing import Any

from service.folders import Fingerprint
from service.model import LoadedModel


class State(StrEnum):
    START = "START"
    LOADING = "LOADING"
    AVAILABLE = "AVAILABLE"
    UNLOADING = "UNLOADING"
    END = "END"


class Reason(Enum):
    """Why a version is in its state (None on a status: nothing to say)."""

    WAITING_INCOMPLETE = auto()   # START: the folder is still being copied in
    WAITING_CHANGING = auto()     # START: complete, but it changed since the last scan
    FAILED = auto()               # END: verifying, loading or warming up failed
    STALLED = auto()              # END: incomplete, and untouched for too long
    POLICY = auto()               # not served by the model's version policy
    FOLDER_REMOVED = auto()
    ADMIN_HOLD = auto()           # unloaded through the repository API
    CHANGED_AFTER_LOAD = auto()   # AVAILABLE, but its files on disk no longer verify


WAITING = frozenset({Reason.WAITING_INCOMPLETE, Reason.WAITING_CHANGING})
FAILURES = frozenset({Reason.FAILED, Reason.STALLED})
RETIREMENTS = frozenset({Reason.POLICY, Reason.FOLDER_REMOVED, Reason.ADMIN_HOLD})

_HOLD_TEXT = "unloaded by an administrator"


class IllegalTransition(RuntimeError):
    pass


@dataclass(frozen=True)
class VersionStatus:
    """A version as the status endpoints and request routing see it at one moment."""

    name: str
    version: int
    folder: Path
    state: State = State.START
    reason: Reason | None = None
    # The reason's particulars: the error, what the folder lacks, the policy described.
    note: str = ""
    drained: bool = False   # END through UNLOADING: "unloaded: …", not "not served: …"
    model: LoadedModel | None = None
    load_seconds: float = 0.0
    loaded_at: float = 0.0  # time.time() when it became AVAILABLE

    @property
    def failed(self) -> bool:
        return self.reason in FAILURES

    @property
    def waiting(self) -> bool:
        return self.reason in WAITING

    @property
    def error(self) -> str:
        """Why it failed (END); '' otherwise."""
        if self.reason is Reason.FAILED:
            return self.note
        if self.reason is Reason.STALLED:
            return (f"{self.folder}: incomplete version folder: {self.note} "
                    "(retried when the folder changes)")
        return ""

    @property
    def why(self) -> str:
        """The reason in words, without the state: what follows "not served: "."""
        if self.reason is Reason.POLICY:
            return f"the version policy is {self.note}"
        if self.reason is Reason.FOLDER_REMOVED:
            return "its folder was removed"
        if self.reason is Reason.ADMIN_HOLD:
            return _HOLD_TEXT
        return self.detail

    @property
    def detail(self) -> str:
        """Why it waits, serves with a warning, or is not served, when that is not an
        error; '' otherwise."""
        match self.reason:
            case Reason.WAITING_INCOMPLETE:
                return f"waiting for the folder to be complete: {self.note}"
            case Reason.WAITING_CHANGING:
                return "waiting for the folder to stop changing"
            case Reason.CHANGED_AFTER_LOAD:
                return (f"files changed on disk after loading: {self.note}; still serving "
                        "the copy verified at load, a reload would refuse it")
            case Reason.ADMIN_HOLD:
                return _HOLD_TEXT
            case Reason.POLICY | Reason.FOLDER_REMOVED:
                prefix = ("unloading" if self.state is State.UNLOADING
                          else "unloaded" if self.drained else "not served")
                return f"{prefix}: {self.why}"
        return ""


class Version:
    """The current status of one version, changed only by its transitions."""

    def __init__(self, name: str, version: int, folder: Path) -> None:
        self.status = VersionStatus(name, version, folder)
        self.fingerprint: Fingerprint | None = None  # the folder at the last scan
        self.removed = False  # its folder is gone: dropped from the listing once END

    @property
    def state(self) -> State:
        return self.status.state

    @property
    def gone(self) -> bool:
        return self.removed and self.status.state is State.END

    def _expect(self, action: str, *states: State) -> VersionStatus:
        s = self.status
        if s.state not in states:
            raise IllegalTransition(f"model {s.name} version {s.version}: cannot {action} "
                                    f"from {s.state}")
        return s

    def _set(self, state: State, reason: Reason | None = None, note: str = "",
             **changes: Any) -> None:
        self.status = replace(self.status, state=state, reason=reason, note=note,
                              drained=False, **changes)

    # --- the folder ---------------------------------------------------------------------

    def wait(self, problem: str) -> None:
        """The folder is not ready to load: ``problem`` says what it lacks ('' when it
        is complete but still changing)."""
        self._expect("wait for its folder", State.START, State.LOADING, State.END)
        if problem:
            self._set(State.START, Reason.WAITING_INCOMPLETE, problem)
        else:
            self._set(State.START, Reason.WAITING_CHANGING)

    def ready(self) -> None:
        """The folder is complete and still: a candidate to load (a failed version is
        retried this way once its folder changed)."""
        s = self._expect("get ready", State.START, State.END)
        if s.state is State.END and not s.failed:
            raise IllegalTransition(f"model {s.name} version {s.version}: not served "
                                    "versions are loaded by the policy, not retried")
        self._set(State.START)

    def stalled(self, problem: str, idle_s: float) -> None:
        """Incomplete and untouched for ``idle_s``: no longer waited for."""
        self._expect("stall", State.START, State.END)
        self._set(State.END, Reason.STALLED, f"{problem}; unchanged for {idle_s:.0f} s")

    # --- loading ------------------------------------------------------------------------

    def begin_loading(self) -> None:
        s = self._expect("begin loading", State.START, State.END)
        if s.failed or s.waiting:
            raise IllegalTransition(f"model {s.name} version {s.version}: cannot load "
                                    f"while {s.error or s.detail}")
        self._set(State.LOADING)

    def loaded(self, model: LoadedModel, load_seconds: float, loaded_at: float) -> None:
        self._expect("become available", State.LOADING)
        self._set(State.AVAILABLE, model=model, load_seconds=load_seconds,
                  loaded_at=loaded_at)

    def failed(self, error: str) -> None:
        self._expect("fail to load", State.LOADING)
        self._set(State.END, Reason.FAILED, error)

    def changed_on_disk(self, problem: str) -> None:
        """A serving version's files no longer verify; the copy loaded keeps serving."""
        self._expect("report changed files", State.AVAILABLE)
        self._set(State.AVAILABLE, Reason.CHANGED_AFTER_LOAD, problem)

    def verified_again(self) -> bool:
        """Its files verify (again); True when they had not."""
        s = self._expect("verify", State.AVAILABLE)
        self._set(State.AVAILABLE)
        return s.reason is Reason.CHANGED_AFTER_LOAD

    # --- leaving ------------------------------------------------------------------------

    def retire(self, reason: Reason, note: str = "") -> bool:
        """No new requests from now on: an AVAILABLE version drains (UNLOADING; True is
        returned), one not serving goes to END. A failed or already draining version
        keeps its status; a removed folder is remembered either way."""
        if reason not in RETIREMENTS:
            raise ValueError(f"{reason} is not a reason to retire a version")
        if reason is Reason.FOLDER_REMOVED:
            self.removed = True
        s = self.status
        if s.state is State.AVAILABLE:
            self._set(State.UNLOADING, reason, note)
            return True
        if s.state is not State.UNLOADING and not s.failed:
            self._set(State.END, reason, note, model=None)
        return False

    def hold(self) -> bool:
        """An administrator unloaded the model: like ``retire``, except that a version
        loading or waiting for its folder is left as it is (the next poll holds it)."""
        if self.status.state is State.LOADING or self.status.waiting:
            return False
        return self.retire(Reason.ADMIN_HOLD)

    def unloaded(self) -> LoadedModel:
        """Its in-flight requests are done: END, and the model it served is returned
        for the caller to let go."""
        s = self._expect("finish unloading", State.UNLOADING)
        if s.model is None:
            raise IllegalTransition(f"model {s.name} version {s.version}: no model to unload")
        self.status = replace(s, state=State.END, drained=True, model=None)
        return s.model
