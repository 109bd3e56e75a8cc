"""The numpy rebuilds that serve small models agree with the framework's own call
(the committed artifact), on inputs they were not checked with at load time, and a
rebuild that disagrees is refused."""

from __future__ import annotations

import numpy as np
import pytest

from service.batch import Batch
from service.loader import load_version
from service.runtimes.lean import TOLERANCE, compile_lean, probe_batch
from service.runtimes.lean.dense import DenseStack
from tests.conftest import MODELS

LEAN = {("wine-quality", 1): "numpy-dense", ("housing", 1): "numpy-dense",
        ("digits", 1): "numpy-dense", ("wine-quality", 2): "numba-trees",
        ("housing", 2): "numba-trees", ("auscultation", 2): "numba-trees"}


def fresh_batch(model, rows: int = 300) -> Batch:
    """Not the load-time probe: another seed, and values past the training range."""
    rng = np.random.default_rng(12345)
    (spec,) = model.manifest.inputs
    if spec.features:
        lo = np.array([f.min for f in spec.features])
        hi = np.array([f.max for f in spec.features])
        span = hi - lo
        x = rng.uniform(lo - 0.2 * span, hi + 0.2 * span, size=(rows, len(lo)))
    else:
        x = rng.uniform(0, 255, size=(rows, *spec.shape[1:]))
        x[: rows // 2] = np.round(x[: rows // 2] / 255) * 255  # ink-like, saturated
    return Batch.of({spec.name: x.astype(model.signature.inputs[0].dtype)})


@pytest.mark.parametrize("key", sorted(LEAN), ids=lambda k: f"{k[0]}-{k[1]}")
def test_lean_engine_serves_and_matches_the_framework(key):
    model = load_version(MODELS / key[0] / str(key[1]))
    assert model.engine is not None and model.engine.name == LEAN[key], model.engine
    x = fresh_batch(model)
    want = model.runtime.reference.raw(x).astype(np.float64)
    got = model.runtime.raw(x)
    assert got.shape == want.shape
    assert np.all(np.abs(got - want) <= TOLERANCE * np.maximum(np.abs(want), 1.0))
    # One row at a time takes another code path in the tree walker.
    for i in (0, 1, 150):
        np.testing.assert_allclose(model.runtime.raw(x.slice(i, i + 1)), want[i : i + 1],
                                   rtol=TOLERANCE, atol=TOLERANCE)


def test_models_it_cannot_rebuild_keep_their_framework_call():
    assert load_version(MODELS / "digits" / "2").engine.name == "keras"  # a CNN
    assert load_version(MODELS / "auscultation" / "1").engine.name == "sklearn"  # kNN
    off = load_version(MODELS / "wine-quality" / "1", lean=False)
    assert off.engine.name == "keras" and "off" in off.engine.detail


def test_a_rebuild_that_disagrees_is_refused(monkeypatch):
    model = load_version(MODELS / "wine-quality" / "1", lean=False)
    honest = DenseStack.raw
    monkeypatch.setattr(DenseStack, "raw", lambda self, b: honest(self, b) + 1e-3)
    runtime, engine = compile_lean(model.runtime, model.manifest)
    assert runtime is model.runtime
    assert engine.name == "keras" and "disagreed" in engine.detail


def test_probe_batch_covers_each_feature_range():
    model = load_version(MODELS / "housing" / "2", lean=False)
    probe = probe_batch(model.manifest)["features"]
    lo = np.array([f.min for f in model.manifest.features])
    hi = np.array([f.max for f in model.manifest.features])
    assert (probe.min(axis=0) <= lo).all() and (probe.max(axis=0) >= hi).all()
