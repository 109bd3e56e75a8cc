"""Runtimes: one per framework, each turning an artifact into a batch -> array call.

``load_runtime`` is the only place that chooses a deserializer, and it is chosen by
the manifest's ``framework`` field from this fixed table: nothing a client sends can
pick a different one.
"""

from __future__ import annotations

import threading
from pathlib import Path

from service import startup
from service.errors import ModelLoadError
from service.manifest import Framework, InputSpec, Manifest, RawOutput
from service.runtimes.base import Runtime

# Unpickling imports the estimator's modules; two threads doing that at once can trip
# Python's import-lock deadlock detection ("deadlock detected by _ModuleLock") and fail
# a good version. Deserialization is serialised; checksums still run in parallel.
_DESERIALIZE = threading.Lock()


def load_runtime(folder: Path, manifest: Manifest) -> Runtime:
    with _DESERIALIZE:
        return _load(folder, manifest)


def framework_runtime(artifact: object, framework: Framework, inputs: list[InputSpec],
                      raw_output: RawOutput) -> Runtime:
    """A runtime around an in-memory model (publishing computes reference outputs
    with the very call the service makes)."""
    if framework is Framework.KERAS:
        from service.runtimes.keras_runtime import KerasRuntime

        return KerasRuntime(artifact, inputs)
    from service.runtimes.sklearn_runtime import SklearnRuntime

    return SklearnRuntime(artifact, inputs[0], raw_output)


# What to install for a framework the base install does not carry.
EXTRAS = {Framework.KERAS: "keras", Framework.SKLEARN: "sklearn"}


def _load(folder: Path, manifest: Manifest) -> Runtime:
    # Imported lazily: a process whose versions all run lean never imports a framework.
    path = folder / manifest.primary_artifact.path
    startup.allow_pydantic_v1()  # the model's own code may import it
    try:
        if manifest.framework is Framework.KERAS:
            from service.runtimes.keras_runtime import KerasRuntime

            return KerasRuntime.load(path, manifest)
        if manifest.framework is Framework.SKLEARN:
            from service.runtimes.sklearn_runtime import SklearnRuntime

            return SklearnRuntime.load(path, manifest)
    except ImportError as exc:
        raise ModelLoadError(path, f"serving it needs {manifest.framework.value} "
                                   f"{manifest.framework_version}, which is not installed "
                                   f"({exc}); install modelserve[{EXTRAS[manifest.framework]}]"
                             ) from exc
    raise ValueError(f"no runtime for framework {manifest.framework!r}")  # pragma: no cover


__all__ = ["Runtime", "framework_runtime", "load_runtime"]
