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

from service.batch import Batch
from service.manifest import Manifest
from service.runtimes.base import Runtime
from service.runtimes.lean.dense import DenseStack, Unsupported
from service.runtimes.lean.forest import Forest
from service.signature import Signature
from service.tensors import from_rows

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
    def __init__(self, impl: DenseStack | Forest, reference: Runtime, input_name: str) -> None:
        self._impl = impl
        self._input = input_name
        self.reference = reference

    def raw(self, batch: Batch) -> np.ndarray:
        return self._impl.raw(batch[self._input])


def compile_lean(reference: Runtime, manifest: Manifest) -> tuple[Runtime, Engine]:
    framework = manifest.framework.value
    try:
        _check_input(manifest)
        impl = _build(reference, manifest)
    except Unsupported as exc:
        return reference, Engine(framework, f"framework call (no lean pass: {exc})")
    probe = probe_batch(manifest)
    want = reference.raw(probe)
    got = impl.raw(probe[manifest.inputs[0].name])
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
    return (LeanRuntime(impl, reference, manifest.inputs[0].name),
            Engine(kind, impl.description, diff))


def _check_input(manifest: Manifest) -> None:
    """One input of floats (an array the rebuilt pass can take as is)."""
    if len(manifest.inputs) != 1:
        raise Unsupported("several inputs")
    spec = manifest.inputs[0]
    if spec.kind == "tabular" and any(f.dtype not in ("float64", "float32")
                                      for f in spec.features or []):
        raise Unsupported("features that are not plain numbers")


def _build(reference: Runtime, manifest: Manifest) -> DenseStack | Forest:
    model = getattr(reference, "model", None)
    if model is not None:
        return DenseStack.from_keras(model)
    estimator = getattr(reference, "estimator", None)
    if estimator is not None:
        nullable = any(f.nullable for f in manifest.features)
        return Forest.from_sklearn(estimator, manifest.raw_output.value, nullable)
    raise Unsupported("unknown runtime")


def probe_batch(manifest: Manifest, rows: int = PROBE_ROWS) -> Batch:
    """The samples plus ``rows`` points drawn (fixed seed) over the input's training
    range, with the range edges included: inputs that reach every branch. For a
    single input of floats (see ``_check_input``)."""
    rng = np.random.default_rng(0)
    spec = manifest.inputs[0]
    sig = Signature.of(manifest)
    samples = from_rows(sig, [s.inputs for s in manifest.samples], "samples",
                        len(manifest.samples))[spec.name].astype(np.float64)
    shape = spec.shape[1:]
    if spec.features:
        lo = np.array([f.min for f in spec.features], dtype=np.float64)
        hi = np.array([f.max for f in spec.features], dtype=np.float64)
        drawn = rng.uniform(lo, hi, size=(rows, len(lo)))
        drawn[0], drawn[1] = lo, hi
        for j, f in enumerate(spec.features):
            if f.nullable:  # missing values take their own path (imputation)
                drawn[2 + j::7, j] = np.nan
        # Training values themselves sit on split thresholds' neighbourhoods: jitter
        # the samples a little too.
        near = samples * rng.uniform(0.98, 1.02, size=samples.shape)
        probe = np.concatenate([samples, near, drawn])
    else:
        assert spec.image is not None
        lo_v, hi_v = sorted((spec.image.value_min, spec.image.value_max))
        drawn = rng.uniform(lo_v, hi_v, size=(rows // 8, *shape))
        probe = np.concatenate([samples.reshape(-1, *shape), drawn])
    return Batch.of({spec.name: probe.reshape(-1, *shape).astype(sig.inputs[0].dtype)})
