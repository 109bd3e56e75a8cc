"""Which versions serve: each model's version policy, an administrator's hold, and
draining the versions that leave.

A version that leaves (policy, hold, folder removed) stops taking new requests at once
and is unloaded once its in-flight requests have finished. With ``latest N``, an older
version is only retired once the newer ones have settled (availability first).

Threads: runs on the poll (reloader) thread, which alone makes these transitions;
``held`` is the set the event loop last swapped in (``Repository.hold``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from service.model import LoadedModel
from service.model_config import VersionPolicy
from service.repository.versions import Reason, State, Version

log = logging.getLogger("modelserve.repository")

Models = dict[str, dict[int, Version]]


def _candidate(v: Version) -> bool:
    """Its folder is complete and still, it has not failed and is not draining."""
    s = v.status
    return not s.failed and s.state is not State.UNLOADING and not s.waiting


def retire(v: Version, reason: Reason, note: str = "") -> None:
    if v.retire(reason, note):
        log.info("model %s version %d: unloading (%s)", v.status.name, v.status.version,
                 v.status.why)


def apply_policies(models: Models, policy_of: Callable[[str], VersionPolicy],
                   held: frozenset[str]) -> list[Version]:
    """Decide per model which versions serve; return the ones to load now."""
    to_load = []
    for name, versions in models.items():
        if name in held:
            for v in versions.values():
                if v.hold():
                    log.info("model %s version %d: unloading (%s)", name, v.status.version,
                             v.status.why)
            continue
        policy = policy_of(name)
        candidates = [n for n, v in versions.items() if _candidate(v)]
        wanted = policy.choose(candidates)
        settled = all(versions[n].state in (State.AVAILABLE, State.END) for n in wanted)
        for number, v in versions.items():
            s = v.status
            if number in wanted:
                if s.state is State.START or (s.state is State.END and not s.failed):
                    v.begin_loading()
                    to_load.append(v)
            elif s.state is State.AVAILABLE:
                # Keep serving until what replaces it has settled.
                if settled:
                    retire(v, Reason.POLICY, policy.describe())
            elif s.state in (State.START, State.END) and not s.failed \
                    and number in candidates:
                v.retire(Reason.POLICY, policy.describe())
    return to_load


def finish_unloads(models: Models, on_unload: Iterable[Callable[[LoadedModel], None]]) -> None:
    """Let go of the draining versions whose in-flight requests are done, and drop the
    versions whose folder is gone once they are END."""
    for versions in models.values():
        for number, v in list(versions.items()):
            s = v.status
            if s.state is State.UNLOADING and s.model is not None:
                if s.model.inflight:
                    continue  # next poll
                model = v.unloaded()
                model.retired = True
                for callback in on_unload:
                    callback(model)
                log.info("model %s version %d unloaded", s.name, s.version)
            if v.gone:
                del versions[number]
