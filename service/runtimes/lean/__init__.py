"""Lean runtimes: a version's forward pass as a short program of numpy operations
(``ops.py``), so that a call costs microseconds instead of a framework's dispatch, and a
server runs without importing the framework at all.

A program comes from one of two places:
- ``lean.npz`` beside the artifact (``program.py``), written when the version was
  published (or, for versions published before, by ``training/publishing/lean.py``)
  with the framework's own outputs for a check batch: ``load_lean`` serves it only when
  it reproduces them within ``TOLERANCE``, without the framework;
- the loaded framework model itself (``from_keras.py``, ``from_sklearn.py``):
  ``compile_lean`` checks the program against the framework's live call.
A model the operations do not cover, or a program that disagrees, keeps its framework
call; the reason is logged and shown in the model's metadata.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from service.batch import Batch
from service.manifest import Manifest
from service.runtimes.base import Runtime
from service.runtimes.lean import treewalk
from service.runtimes.lean.ops import compile_ops
from service.runtimes.lean.program import (
    LEAN_FILE,
    LeanFormError,
    Program,
    Unsupported,
    read_program,
)
from service.signature import Signature
from service.tensors import from_rows

log = logging.getLogger("modelserve.runtimes.lean")

# float32 matrix products differ from TensorFlow's kernels in the last bits: allowed
# difference per output, relative to the output's size (absolute below 1).
TOLERANCE = 1e-5
PROBE_ROWS = 512
ENGINE_NAMES = {"layers": "numpy-dense", "conv": "numpy-conv",
                "trees": "compiled-trees" if treewalk.COMPILED else "numpy-trees",
                "neighbours": "numpy-knn"}


@dataclass
class Engine:
    """What a version runs on, for metadata and logs."""

    name: str
    detail: str
    max_abs_diff: float | None = None  # relative to max(|output|, 1)
    # Rows of the check batch a lean runtime ran before serving: the sizes up to it have
    # allocated their buffers already.
    checked_rows: int = 0


class LeanRuntime(Runtime):
    def __init__(self, program: Program, input_name: str,
                 reference: Runtime | None = None) -> None:
        self.program = program
        self._steps = compile_ops(program.ops, program.arrays)
        self._input = input_name
        # The framework's runtime when this process loaded it (a lean form read from
        # disk has none: the framework is not imported).
        self.reference = reference

    def raw(self, batch: Batch) -> np.ndarray:
        x = batch[self._input]
        for step in self._steps:
            x = step(x)
        return x


def build_program(reference: Runtime, manifest: Manifest) -> Program:
    """The lean program of a loaded framework model; Unsupported when there is none."""
    _check_input(manifest)
    model = getattr(reference, "model", None)
    if model is not None:
        from service.runtimes.lean import from_keras

        return from_keras.program(model)
    estimator = getattr(reference, "estimator", None)
    if estimator is not None:
        from service.runtimes.lean import from_sklearn

        nullable = any(f.nullable for f in manifest.features)
        return from_sklearn.program(estimator, manifest.raw_output.value, nullable)
    raise Unsupported("unknown runtime")


def difference(got: np.ndarray, want: np.ndarray) -> float:
    """The largest difference, relative to max(|want|, 1); inf for another shape."""
    if got.shape != want.shape:
        return float("inf")
    want64 = want.astype(np.float64)
    scale = np.maximum(np.abs(want64), 1.0)
    return float(np.max(np.abs(want64 - got) / scale)) if want.size else 0.0


def compile_lean(reference: Runtime, manifest: Manifest) -> tuple[Runtime, Engine]:
    """The lean runtime of a loaded framework model when it agrees with the framework's
    own call on the probe batch; else the framework runtime, with the reason."""
    framework = manifest.framework.value
    try:
        program = build_program(reference, manifest)
        lean = LeanRuntime(program, manifest.inputs[0].name, reference)
    except (Unsupported, LeanFormError) as exc:
        return reference, Engine(framework, f"framework call (no lean pass: {exc})")
    probe = probe_batch(manifest)
    want = reference.raw(probe)
    got = lean.raw(probe)
    if got.shape != want.shape:
        return reference, Engine(framework, f"framework call (lean pass gave shape "
                                            f"{got.shape}, not {want.shape})")
    diff = difference(got, want)
    if not diff <= TOLERANCE:
        log.warning("%s v%d: lean pass disagrees with %s (max diff %g); keeping %s",
                    manifest.name, manifest.version, framework, diff, framework)
        return reference, Engine(framework, f"framework call (lean pass disagreed by {diff:g})")
    return lean, Engine(ENGINE_NAMES[program.kind], program.description, diff, len(got))


def export_lean(reference: Runtime, manifest: Manifest) -> Program:
    """The program to write as ``lean.npz`` for ``manifest``'s artifact (``reference``:
    the framework runtime around it), with the framework's outputs for the probe batch.
    Raises Unsupported when there is none or it disagrees with the framework."""
    program = build_program(reference, manifest)
    probe = probe_batch(manifest)
    want = reference.raw(probe)
    got = LeanRuntime(program, manifest.inputs[0].name).raw(probe)
    diff = difference(got, want)
    if not diff <= TOLERANCE:
        raise Unsupported(f"the lean program disagrees with {manifest.framework.value} by "
                          f"{diff:g}")
    artifact = manifest.primary_artifact
    program.source = {"artifact": artifact.path, "sha256": artifact.sha256,
                      "framework": manifest.framework.value,
                      "framework_version": manifest.framework_version}
    program.check_x = probe[manifest.inputs[0].name]
    program.check_y = np.asarray(want)
    return program


def load_lean(path: Path, manifest: Manifest) -> tuple[LeanRuntime, Engine]:
    """The lean form in ``path`` as a runtime, without the framework: it must belong to
    the manifest's artifact and reproduce the framework's outputs it carries.
    LeanFormError says why not."""
    program = read_program(path)
    artifact = manifest.primary_artifact
    if program.source.get("sha256") != artifact.sha256:
        raise LeanFormError(f"{path.name} was made from another artifact than "
                            f"{artifact.path} (sha256 differs)")
    if program.kind not in ENGINE_NAMES:
        raise LeanFormError(f"{path.name}: unknown kind {program.kind!r}")
    if program.check_x is None or program.check_y is None or not len(program.check_x):
        raise LeanFormError(f"{path.name} carries no check batch")
    _check_input(manifest)
    spec = manifest.inputs[0]
    sig = Signature.of(manifest)
    x = program.check_x
    if x.shape[1:] != tuple(spec.shape[1:]) or x.dtype != np.dtype(sig.inputs[0].dtype):
        raise LeanFormError(f"{path.name}: its check batch is not the model's input")
    try:
        runtime = LeanRuntime(program, spec.name)
        got = runtime.raw(Batch.of({spec.name: x}))
    except Unsupported as exc:
        raise LeanFormError(str(exc)) from exc
    except (ValueError, TypeError, IndexError) as exc:
        raise LeanFormError(f"{path.name} does not run on its check batch: {exc}") from exc
    diff = difference(got, program.check_y)
    if not diff <= TOLERANCE:
        raise LeanFormError(f"{path.name} disagrees with {program.source.get('framework')}'s "
                            f"outputs by {diff:g}")
    detail = (f"{program.description} ({LEAN_FILE}: verified against "
              f"{program.source.get('framework')} {program.source.get('framework_version')}'s "
              f"outputs for {len(x)} inputs)")
    return runtime, Engine(ENGINE_NAMES[program.kind], detail, diff, len(x))


def _check_input(manifest: Manifest) -> None:
    """One input of floats (an array the rebuilt pass can take as is)."""
    if len(manifest.inputs) != 1:
        raise Unsupported("several inputs")
    spec = manifest.inputs[0]
    if spec.kind == "tabular" and any(f.dtype not in ("float64", "float32")
                                      for f in spec.features or []):
        raise Unsupported("features that are not plain numbers")


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
