"""The lean forms that serve the committed versions without their frameworks: each one
agrees with the framework's own call (the committed artifact) on inputs it was not
checked with, a form that does not reproduce its check outputs or belongs to another
artifact is refused for the framework, and the serving process of the committed
repository never loads TensorFlow or scikit-learn."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile

import numpy as np
import psutil
import pytest

from service.batch import Batch
from service.loader import load_version, read_manifest
from service.runtimes.lean import (
    TOLERANCE,
    LeanRuntime,
    compile_lean,
    load_lean,
    probe_batch,
    treewalk,
)
from service.runtimes.lean.program import LEAN_FILE, LeanFormError, read_program, write_program
from tests.conftest import MODELS, ROOT

LEAN = {("wine-quality", 1): "numpy-dense", ("housing", 1): "numpy-dense",
        ("digits", 1): "numpy-dense", ("digits", 2): "numpy-conv",
        ("wine-quality", 2): "compiled-trees", ("housing", 2): "compiled-trees",
        ("auscultation", 2): "compiled-trees", ("auscultation", 1): "numpy-knn"}
TREES = [k for k, v in LEAN.items() if v == "compiled-trees"]
FRAMEWORKS = ("tensorflow", "keras", "sklearn", "pandas", "numba", "llvmlite")


def fresh_batch(model, rows: int = 300) -> Batch:
    """Not the load-time check batch: another seed, and values past the training range."""
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


def _copy(key: tuple[str, int], repo) -> object:
    folder = repo / key[0] / str(key[1])
    shutil.copytree(MODELS / key[0] / str(key[1]), folder)
    return folder


@pytest.mark.parametrize("key", sorted(LEAN), ids=lambda k: f"{k[0]}-{k[1]}")
def test_every_committed_version_serves_its_lean_form_like_the_framework(key):
    folder = MODELS / key[0] / str(key[1])
    model = load_version(folder)
    assert model.engine is not None and model.engine.name == LEAN[key], model.engine
    assert LEAN_FILE in model.engine.detail and "verified" in model.engine.detail
    assert model.runtime.reference is None  # the framework was not loaded for it
    framework = load_version(folder, lean=False)
    x = fresh_batch(model, 64 if key[0] == "digits" else 300)
    want = framework.runtime.raw(x).astype(np.float64)
    got = model.runtime.raw(x)
    assert got.shape == want.shape
    assert np.all(np.abs(got - want) <= TOLERANCE * np.maximum(np.abs(want), 1.0))
    if want.ndim == 2:
        assert (got.argmax(axis=1) == want.argmax(axis=1)).all()
    # One row at a time takes other code paths (the tree walk, BLAS's vector kernels).
    for i in (0, 1, 50):
        np.testing.assert_allclose(model.runtime.raw(x.slice(i, i + 1)), want[i : i + 1],
                                   rtol=TOLERANCE, atol=TOLERANCE)


@pytest.mark.parametrize("key", TREES, ids=lambda k: f"{k[0]}-{k[1]}")
def test_the_numpy_tree_walk_matches_the_compiled_one(key, monkeypatch):
    model = load_version(MODELS / key[0] / str(key[1]))
    x = fresh_batch(model, 100)
    compiled = model.runtime.raw(x)
    monkeypatch.setattr(treewalk, "COMPILED", False)
    slow = load_version(MODELS / key[0] / str(key[1]))
    # The same leaves, summed in another order.
    np.testing.assert_allclose(slow.runtime.raw(x), compiled, rtol=1e-12, atol=1e-12)


def test_without_a_lean_form_the_loaded_framework_model_is_rebuilt(tmp_path):
    folder = _copy(("wine-quality", 1), tmp_path)
    (folder / LEAN_FILE).unlink()
    model = load_version(folder)
    assert model.engine.name == "numpy-dense" and LEAN_FILE not in model.engine.detail
    assert model.runtime.reference is not None  # Keras was loaded to rebuild it


def test_a_lean_form_that_misses_its_check_outputs_is_refused(tmp_path):
    folder = _copy(("wine-quality", 2), tmp_path)
    program = read_program(folder / LEAN_FILE)
    program.check_y = program.check_y + 1e-3
    write_program(folder / LEAN_FILE, program)
    model = load_version(folder)
    assert model.engine.name == "compiled-trees"  # rebuilt from scikit-learn instead
    assert f"{LEAN_FILE} not used" in model.engine.detail
    assert "disagrees with sklearn's outputs" in model.engine.detail


def test_a_lean_form_of_another_artifact_is_refused(tmp_path):
    folder = _copy(("housing", 1), tmp_path)
    shutil.copy(MODELS / "wine-quality" / "1" / LEAN_FILE, folder / LEAN_FILE)
    with pytest.raises(LeanFormError, match="another artifact"):
        load_lean(folder / LEAN_FILE, read_manifest(folder))


def test_store_rewrites_a_deflated_lean_form_with_the_same_arrays(tmp_path):
    from training.publishing import lean as publish_lean

    folder = _copy(("housing", 2), tmp_path)
    path = folder / LEAN_FILE
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    np.savez_compressed(path, **arrays)  # as lean forms were first written
    assert publish_lean.store(folder)
    with zipfile.ZipFile(path) as z:
        assert {i.compress_type for i in z.infolist()} == {zipfile.ZIP_STORED}
    with np.load(path) as npz:
        assert npz.files == list(arrays)
        for k, a in arrays.items():
            assert npz[k].dtype == a.dtype and np.array_equal(npz[k], a, equal_nan=True)
    assert not publish_lean.store(folder)  # nothing left to do
    load_lean(path, read_manifest(folder))  # still the artifact's, still verified


def _rewrite(path, change) -> None:
    program = read_program(path)
    change(program)
    write_program(path, program)


def _backwards_link(program) -> None:
    program.arrays["trees.link"][0, 1] = 0  # the root's left child is itself: no end


def _link_past_the_end(program) -> None:
    link = program.arrays["trees.link"]
    inner = np.flatnonzero(link[:, 0] >= 0)[-1]  # the last inner node: its right child
    link[inner, 2] = len(link)


def _right_child_backwards(program) -> None:
    link = program.arrays["trees.link"]
    inner = np.flatnonzero(link[:, 0] >= 0)[5]
    link[inner, 2] = inner - 1


def _pickled(program) -> None:
    program.arrays["trees.roots"] = np.array([object()], dtype=object)


@pytest.mark.parametrize("damage, message", [
    (lambda p: p.write_bytes(b"not a zip at all"), "not a readable numpy archive"),
    (lambda p: _rewrite(p, lambda g: g.ops.append({"op": "exec", "code": "1"})),
     "unknown operation 'exec'"),
    (lambda p: _rewrite(p, lambda g: g.ops[-1].update(link="nothing")), "names no array"),
    (lambda p: _rewrite(p, _backwards_link), "points backwards"),
    (lambda p: _rewrite(p, _link_past_the_end), "outside the nodes"),
    (lambda p: _rewrite(p, _right_child_backwards), "points backwards"),
    (lambda p: _rewrite(p, _pickled), "not a readable numpy archive"),
], ids=["garbage", "unknown-op", "missing-array", "endless-walk", "link-past-the-end",
        "right-child-backwards", "pickled-object"])
def test_files_that_are_not_lean_forms_are_refused(tmp_path, damage, message):
    folder = _copy(("wine-quality", 2), tmp_path)
    damage(folder / LEAN_FILE)
    with pytest.raises(LeanFormError, match=message):
        load_lean(folder / LEAN_FILE, read_manifest(folder))


def test_a_live_rebuild_that_disagrees_is_refused(monkeypatch):
    model = load_version(MODELS / "wine-quality" / "1", lean=False)
    honest = LeanRuntime.raw
    monkeypatch.setattr(LeanRuntime, "raw", lambda self, b: honest(self, b) + 1e-3)
    runtime, engine = compile_lean(model.runtime, model.manifest)
    assert runtime is model.runtime
    assert engine.name == "keras" and "disagreed" in engine.detail


def test_probe_batch_covers_each_feature_range():
    model = load_version(MODELS / "housing" / "2", lean=False)
    probe = probe_batch(model.manifest)["features"]
    lo = np.array([f.min for f in model.manifest.features])
    hi = np.array([f.max for f in model.manifest.features])
    assert (probe.min(axis=0) <= lo).all() and (probe.max(axis=0) >= hi).all()


def test_loading_the_committed_repository_imports_no_framework():
    code = ("import sys; from pathlib import Path; from service.loader import load_version\n"
            "for f in sorted(Path('models').glob('*/*')):\n"
            "    load_version(f)\n"
            f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({FRAMEWORKS!r})))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", out.stdout


def mapped_frameworks(pid: int) -> set[str]:
    """The frameworks whose native libraries a process has mapped: what importing them
    leaves behind (keras and scikit-learn load compiled modules at import)."""
    found = set()
    root = psutil.Process(pid)
    for proc in [root, *root.children(recursive=True)]:
        for m in proc.memory_maps():
            for name in FRAMEWORKS:
                if f"/{name}/" in m.path or f"/{name}." in m.path:
                    found.add(name)
    return found


def test_the_server_of_the_committed_repository_loads_no_framework(server, client):
    # Every version answers first, so the worker has loaded them all.
    for name in ("wine-quality", "housing", "auscultation", "digits"):
        for version in (1, 2):
            r = client.get(f"/v1/models/{name}/versions/{version}/metadata")
            assert r.status_code == 200
            assert r.json()["modelserve"]["serving"]["engine"] == LEAN[(name, version)]
    assert mapped_frameworks(server.proc.pid) == set()


def test_a_keras_layer_without_a_lean_operation_is_served_by_keras(tmp_path):
    import keras
    from sklearn.datasets import load_diabetes

    import modelserve

    x, y = load_diabetes(return_X_y=True)
    x = x.astype(np.float32)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((x.shape[1],)), keras.layers.Dense(8),
                              keras.layers.LayerNormalization(), keras.layers.Dense(1)])
    model.compile(loss="mse")
    model.fit(x, y, epochs=1, verbose=0)
    folder = modelserve.publish(model, name="normed", repository=tmp_path, inputs=x,
                                y_train=y, task="regression", target="progression",
                                allow_below_baseline=True)
    manifest = read_manifest(folder)
    assert manifest.lean is None and not (folder / LEAN_FILE).exists()
    loaded = load_version(folder)
    assert loaded.engine.name == "keras"
    assert "layer type LayerNormalization" in loaded.engine.detail


def test_a_version_whose_framework_is_not_installed_names_the_extra(monkeypatch):
    # As in an image without TensorFlow: importing the Keras runtime fails.
    from service.errors import ModelLoadError

    monkeypatch.setitem(sys.modules, "service.runtimes.keras_runtime", None)
    with pytest.raises(ModelLoadError, match=r"needs keras 3\.15\.1.*modelserve\[keras\]"):
        load_version(MODELS / "wine-quality" / "1", lean=False)
    assert load_version(MODELS / "wine-quality" / "1").engine.name == "numpy-dense"


@pytest.mark.parametrize("key", sorted(LEAN), ids=lambda k: f"{k[0]}-{k[1]}")
def test_a_call_leaves_the_callers_batch_as_it_was(key):
    # The batch goes on to the payload log, drift and the shadow after the call.
    model = load_version(MODELS / key[0] / str(key[1]))
    x = fresh_batch(model, 8)
    before = x[model.manifest.inputs[0].name].copy()
    model.runtime.raw(x)
    np.testing.assert_array_equal(x[model.manifest.inputs[0].name], before)


def test_in_place_activations_never_reach_the_callers_array():
    from service.runtimes.lean.program import Program

    program = Program("layers", [{"op": "float32"}, {"op": "relu"}, {"op": "sigmoid"}], {},
                      "relu > sigmoid")
    x = np.array([[-1.0, 2.0]], dtype=np.float32)
    out = LeanRuntime(program, "x").raw(Batch.of({"x": x}))
    np.testing.assert_array_equal(x, [[-1.0, 2.0]])
    np.testing.assert_allclose(out, [[0.5, 1 / (1 + np.exp(-2.0))]], rtol=1e-6)
