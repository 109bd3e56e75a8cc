"""Lean runtimes: the committed artifact's forward pass, rebuilt at load time from plain
numpy arrays so that a call costs microseconds instead of a framework's dispatch.

The framework's own call stays the reference: ``compile_lean`` runs both on the
manifest's samples and on a probe batch spread over each feature's training range,
and the lean pass is used only when every output agrees within ``TOLERANCE``. Any
model it cannot rebuild or verify keeps its framework call; the reason is logged and
shown in the model's metadata.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from service.manifest import Manifest
from service.runtimes.base import Runtime
from service.runtimes.lean.dense import DenseStack, Unsupported
from service.runtimes.lean.forest import Forest

log = logging.getLogger("modelserve.runtimes.lean")

# float32 matrix products differ from TensorFlow's kernels in the last bits: allowed
# difference per output, relative to the output's size (absolute below 1).
TOLERANCE = 1e-5
PROBE_ROWS = 512


@dataclass
class Engine:
    """What a version runs on, for metadata and logs."""

    name: str
    detail: str
    max_abs_diff: float | None = None  # relative to max(|output|, 1)


class LeanRuntime(Runtime):
    def __init__(self, impl: DenseStack | Forest, reference: Runtime) -> None:
        self._impl = impl
        self.reference = reference

    def raw(self, batch: np.ndarray) -> np.ndarray:
        return self._impl.raw(batch)


def compile_lean(reference: Runtime, manifest: Manifest) -> tuple[Runtime, Engine]:
    framework = manifest.framework.value
    try:
        impl = _build(reference, manifest)
    except Unsupported as exc:
        return reference, Engine(framework, f"framework call (no lean pass: {exc})")
    probe = probe_batch(manifest)
    want = reference.raw(probe)
    got = impl.raw(probe)
    if got.shape != want.shape:
        return reference, Engine(framework, f"framework call (lean pass gave shape "
                                            f"{got.shape}, not {want.shape})")
    want64 = want.astype(np.float64)
    scale = np.maximum(np.abs(want64), 1.0)
    diff = float(np.max(np.abs(want64 - got) / scale)) if want.size else 0.0
    if not diff <= TOLERANCE:
        log.warning("%s v%d: lean pass disagrees with %s (max diff %g); keeping %s",
                    manifest.name, manifest.version, framework, diff, framework)
        return reference, Engine(framework, f"framework call (lean pass disagreed by {diff:g})")
    kind = "numpy-dense" if isinstance(impl, DenseStack) else "numba-trees"
    return LeanRuntime(impl, reference), Engine(kind, impl.description, diff)


def _build(reference: Runtime, manifest: Manifest) -> DenseStack | Forest:
    model = getattr(reference, "model", None)
    if model is not None:
        return DenseStack.from_keras(model)
    estimator = getattr(reference, "estimator", None)
    if estimator is not None:
        return Forest.from_sklearn(estimator, manifest.raw_output.value)
    raise Unsupported("unknown runtime")


def probe_batch(manifest: Manifest, rows: int = PROBE_ROWS) -> np.ndarray:
    """The samples plus ``rows`` points drawn (fixed seed) over each input's training
    range, with the range edges included: inputs that reach every branch."""
    rng = np.random.default_rng(0)
    samples = np.asarray([s.inputs for s in manifest.samples], dtype=np.float32)
    spec = manifest.inputs
    shape = spec.shape[1:]
    if spec.features:
        lo = np.array([f.min for f in spec.features], dtype=np.float64)
        hi = np.array([f.max for f in spec.features], dtype=np.float64)
        drawn = rng.uniform(lo, hi, size=(rows, len(lo)))
        drawn[0], drawn[1] = lo, hi
        # Training values themselves sit on split thresholds' neighbourhoods: jitter
        # the samples a little too.
        near = samples * rng.uniform(0.98, 1.02, size=samples.shape)
        probe = np.concatenate([samples, near, drawn])
    else:
        assert spec.image is not None
        lo_v, hi_v = spec.image.value_min, spec.image.value_max
        drawn = rng.uniform(lo_v, hi_v, size=(rows // 8, *shape))
        probe = np.concatenate([samples.reshape(-1, *shape), drawn])
    return probe.astype(np.float32).reshape(-1, *shape)
