"""``publish``: a fitted scikit-learn estimator or Keras model -> a new, immutable,
documented version folder that the service loads.

The version is staged in a hidden ``.staging-*`` folder (the service ignores dot
folders): the artifact is saved, the manifest derived (inputs from the training data,
samples with the framework's own answers), the staged folder loaded through the
service's own loader (checksums, lean form verified, samples re-checked), the
held-out set scored through that loaded version exactly as the service answers
requests, the model card written, and only then is the folder renamed into place. An
existing version is never overwritten.
"""

from __future__ import annotations

import contextlib
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from service.errors import ApiError
from service.integrity import describe_file
from service.loader import load_version, read_manifest
from service.manifest import (
    MANIFEST_FILE,
    DatasetFile,
    Evaluation,
    Framework,
    InputSpec,
    Manifest,
    Provenance,
    RawOutput,
    Sample,
    Target,
    Task,
    classifier_outputs,
    regressor_outputs,
)
from service.model import name_outputs
from service.runtimes import Runtime, framework_runtime
from service.runtimes.lean.program import LEAN_FILE
from service.signature import Signature
from service.tensors import from_columns, from_rows
from training.publishing import evaluate, lean
from training.publishing import reference as drift
from training.publishing.card import CardFacts, write_model_card
from training.publishing.frameworks import (
    ARTIFACT_NAMES,
    ModelFacts,
    default_hyperparameters,
    describe,
    framework_version,
    json_safe,
    save_artifact,
)
from training.publishing.schema import (
    MAX_CATEGORIES,
    UNSEEN,
    ImageNote,
    PublishError,
    as_frame,
    image_input,
    rows,
    split_inputs,
    tabular_input,
)

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_LIBRARIES = ["numpy", "scikit-learn", "keras", "tensorflow-cpu", "joblib", "pandas",
              "modelserve"]
_KERAS_FEATURE_DTYPES = {"float32": "float32", "float64": "float64", "int32": "int64",
                         "int64": "int64", "bool": "bool", "string": "string"}


class VersionExistsError(Exception):
    pass


def publish(
    model: Any,
    *,
    name: str,
    inputs: Any,
    repository: str | Path = "models",
    description: str = "",
    features: Mapping[str, Any] | Sequence[str] | None = None,
    image: ImageNote | Mapping[str, Any] | None = None,
    X_test: Any = None,
    y_test: Any = None,
    y_train: Any = None,
    labels: Sequence[str] | None = None,
    target: Target | Mapping[str, str] | str | None = None,
    task: str | None = None,
    version: int | None = None,
    method: str = "",
    cv_metrics: Mapping[str, float] | None = None,
    baselines: Mapping[str, Mapping[str, float]] | None = None,
    variants: Mapping[str, Mapping[str, float]] | None = None,
    extra: Mapping[str, Any] | None = None,
    datasets: Sequence[DatasetFile] = (),
    hyperparameters: Mapping[str, Any] | None = None,
    curves: Mapping[str, Sequence[float]] | None = None,
    curves_xlabel: str = "epoch",
    notes: Sequence[str] = (),
    samples: int = 4,
    seed: int = 42,
    train_rows: int | None = None,
    trainer: str | None = None,
    command: str | None = None,
    training_seconds: float | None = None,
    allow_below_baseline: bool = False,
) -> Path:
    """Publish ``model`` as version ``version`` (default: the next free number) of
    ``name`` in ``repository`` and return the new version folder.

    ``inputs`` is the data the model was fitted on (a DataFrame, an array, or for a
    Keras model with several inputs a dict of them): names, dtypes, training ranges,
    categories and missing values are read from it. ``features`` adds units and
    descriptions (``{"alcohol": {"unit": "% vol", "description": ...}}``) or names the
    columns of a plain array. ``X_test``/``y_test`` is the held-out set: it is scored
    through the loaded version and the metrics, baselines and plots go into the
    manifest and model card; the version is refused when it does not beat the trivial
    baseline (or any of ``baselines``) unless ``allow_below_baseline``. See
    docs/publishing.md for every argument.
    """
    if not _NAME_RE.match(name):
        raise PublishError(f"model name {name!r} must be lowercase letters, digits and dashes")
    if samples < 1:
        raise PublishError("samples must be at least 1: the loader checks every version "
                           "against its samples")
    if (X_test is None) != (y_test is None):
        raise PublishError("give X_test and y_test together (the held-out inputs and their "
                           "targets)")
    facts = describe(model, task=task, labels=list(labels) if labels is not None else None,
                     has_target=target is not None)
    tgt = _target(target, facts.task, name)
    specs, train_data = _input_specs(model, facts, inputs, features, image)
    specs = _probe_unknown_categories(model, facts, specs, train_data)
    reference = framework_runtime(model, facts.framework, specs, facts.raw_output)
    sig = Signature(name, specs, {o.name: o.dtype for o in _outputs(facts, tgt)})

    y_idx = _targets(y_test, facts, model) if y_test is not None else None
    y_tr = _targets(y_train, facts, model) if y_train is not None else None
    pool, pool_y = (X_test, y_idx) if X_test is not None else (inputs, y_tr)
    pool_data = _data(specs, pool, "X_test" if X_test is not None else "inputs")
    by_class = pool_y if facts.task is Task.CLASSIFICATION else None
    picks = _pick(by_class, rows(next(iter(pool_data.values()))), samples, seed)
    sample_rows = [_row(specs, pool_data, i) for i in picks]
    expected = _expected(reference, facts, sig, sample_rows)

    repo = Path(repository)
    model_dir = repo / name
    model_dir.mkdir(parents=True, exist_ok=True)
    version = version or next_version(model_dir)
    final = model_dir / str(version)
    if final.exists():
        raise VersionExistsError(f"{final} already exists; versions are immutable")
    staging = Path(tempfile.mkdtemp(prefix=f".staging-{version}-", dir=model_dir))
    try:
        artifact = ARTIFACT_NAMES[facts.framework]
        save_artifact(model, facts.framework, staging / artifact)
        evaluation = Evaluation(method="pending", seed=seed, train_rows=0, test_rows=0,
                                test_metrics={})
        manifest = Manifest(
            name=name, version=version,
            description=description or f"{type(model).__name__} published with modelserve.",
            framework=facts.framework, framework_version=framework_version(facts.framework),
            task=facts.task, raw_output=facts.raw_output,
            artifacts=[describe_file(staging, artifact)], inputs=specs,
            outputs=_outputs(facts, tgt), labels=facts.labels, target=tgt,
            evaluation=evaluation,
            hyperparameters=json_safe(dict(hyperparameters) if hyperparameters is not None
                                      else default_hyperparameters(model, facts.framework)),
            samples=[Sample(inputs=r, expected=e) for r, e in zip(sample_rows, expected,
                                                                 strict=True)],
            provenance=_provenance(trainer, command, training_seconds),
            created_at=datetime.now(UTC).replace(microsecond=0))
        # The forward pass as numpy operations, with the framework's outputs to check it by:
        # the service then serves the version without importing the framework.
        if lean.write(staging, reference, manifest) is not None:
            manifest = manifest.model_copy(update={
                "artifacts": [*manifest.artifacts, describe_file(staging, LEAN_FILE)],
                "lean": LEAN_FILE})
        _write(staging, manifest)
        # The service's own loader: checksums, lean form verified, samples re-checked.
        loaded = load_version(staging, expected_name=name, expected_version=version)

        card = CardFacts(curves={k: [float(v) for v in vs] for k, vs in (curves or {}).items()},
                         curves_xlabel=curves_xlabel, notes=list(notes))
        evaluation = Evaluation(
            method=method or "No held-out set was given.", seed=seed,
            train_rows=train_rows if train_rows is not None else rows(inputs), test_rows=0,
            test_metrics={}, cv_metrics=dict(cv_metrics or {}),
            baselines={k: dict(v) for k, v in (baselines or {}).items()},
            variants={k: dict(v) for k, v in (variants or {}).items()},
            extra=json_safe(dict(extra or {})), datasets=list(datasets))
        if X_test is not None:
            if y_idx is None:
                raise PublishError("X_test needs y_test")
            evaluation, card = _evaluate(loaded, facts, sig, specs, X_test, y_idx, y_tr,
                                         evaluation, card)
            failing = evaluate.beats(facts.task, evaluation.test_metrics, evaluation.baselines)
            if failing and not allow_below_baseline:
                raise PublishError(f"{name} is not published: " + "; ".join(failing)
                                   + ". Pass allow_below_baseline=True to publish it anyway.")
            card.notes.extend(f"Below a baseline: {f}." for f in failing)
        # The training distributions drift is measured against, as the version sees them.
        train = _data(specs, inputs, "inputs")
        drift_reference = _validated(lambda: drift.build(
            loaded, train, rows(next(iter(train.values())))), "inputs")
        manifest = manifest.model_copy(update={"evaluation": evaluation,
                                               "reference": drift_reference})
        _write(staging, manifest)
        read_manifest(staging)  # the final file parses as what the service reads
        write_model_card(manifest, card, staging)
        os.chmod(staging, 0o755)  # mkdtemp makes it private
        # rename() refuses a non-empty target, so a version that appeared meanwhile survives.
        os.rename(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    shown = ", ".join(f"{k} {v:.4f}" for k, v in list(manifest.evaluation.test_metrics.items())[:3])
    print(f"published {name} version {version} -> {final}" + (f" ({shown})" if shown else ""),
          flush=True)
    return final


# --- versions ----------------------------------------------------------------------------


def existing_versions(model_dir: Path) -> list[int]:
    if not model_dir.is_dir():
        return []
    return sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())


def next_version(model_dir: Path) -> int:
    versions = existing_versions(model_dir)
    return versions[-1] + 1 if versions else 1


def _write(folder: Path, manifest: Manifest) -> None:
    (folder / MANIFEST_FILE).write_text(manifest.model_dump_json(indent=2, exclude_none=True)
                                        + "\n")


# --- inputs -----------------------------------------------------------------------------


def _input_specs(model: Any, facts: ModelFacts, inputs: Any, features: Any,
                 image: Any) -> tuple[list[InputSpec], dict[str, Any]]:
    """The manifest's inputs, and the training data split by input."""
    notes = features if isinstance(features, Mapping) else None
    names = list(features) if features is not None else None
    if facts.framework is Framework.SKLEARN:
        input_name = next(iter(inputs)) if isinstance(inputs, Mapping) else "features"
        data = split_inputs(inputs, [input_name], "inputs")[input_name]
        fitted = facts.fitted_columns
        frame = as_frame(data, names if not isinstance(data, pd.DataFrame) else None, "inputs")
        if fitted is not None:
            missing = [c for c in fitted if c not in frame.columns]
            if missing:
                raise PublishError(f"the model was fitted on columns {fitted}; inputs lacks "
                                   f"{missing}")
            frame = frame[fitted]
        spec = tabular_input(input_name, frame, notes,
                             layout="frame" if fitted is not None else "array")
        return [spec], {input_name: frame}
    assert facts.keras_inputs is not None
    keras_names = [n for n, _, _ in facts.keras_inputs]
    split = split_inputs(inputs, keras_names, "inputs")
    specs, data = [], {}
    for input_name, shape, dtype in facts.keras_inputs:
        value = split[input_name]
        if len(shape) == 1:
            given = names if len(keras_names) == 1 else None
            default = None if given or isinstance(value, pd.DataFrame) else (
                [f"x{j}" for j in range(shape[0])] if len(keras_names) == 1
                else [f"{input_name}_{j}" for j in range(shape[0])])
            frame = as_frame(value, given or default, f"inputs[{input_name!r}]")
            if frame.shape[1] != shape[0]:
                raise PublishError(f"Keras input {input_name!r} takes {shape[0]} features, "
                                   f"the data has {frame.shape[1]} columns")
            if dtype not in _KERAS_FEATURE_DTYPES:
                raise PublishError(f"Keras input {input_name!r} has dtype {dtype}")
            spec = tabular_input(input_name, frame, notes, layout="array",
                                 dtype=_KERAS_FEATURE_DTYPES[dtype])
            if _KERAS_FEATURE_DTYPES[dtype] != dtype:  # int32: values must fit it too
                spec = spec.model_copy(update={"dtype": dtype})
            specs.append(spec)
            data[input_name] = frame
        elif len(shape) in (2, 3) and (len(shape) == 2 or shape[2] in (1, 3, 4)):
            if dtype not in ("float32", "float64", "uint8"):
                raise PublishError(f"image input {input_name!r} has dtype {dtype}; "
                                   "float32, float64 or uint8 images can be served")
            note = _image_note(image, input_name)
            specs.append(image_input(input_name, value, shape, note, dtype))
            data[input_name] = np.asarray(value)
        else:
            raise PublishError(f"Keras input {input_name!r} has shape {[None, *shape]}: "
                               "modelserve serves rows of features [n, k] and images "
                               "[n, h, w] or [n, h, w, channels]")
    return specs, data


def _image_note(image: Any, input_name: str) -> ImageNote:
    if image is None:
        return ImageNote()
    if isinstance(image, ImageNote):
        return image
    if isinstance(image, Mapping) and input_name in image:
        return _image_note(image[input_name], input_name)
    return ImageNote(**image)


def _data(specs: list[InputSpec], data: Any, what: str) -> dict[str, Any]:
    """Held-out (or training) data as feature columns and image arrays, keyed the way
    a columnar request names them."""
    split = split_inputs(data, [s.name for s in specs], what)
    out: dict[str, Any] = {}
    for spec in specs:
        value = split[spec.name]
        if spec.kind == "image":
            out[spec.name] = np.asarray(value)
            continue
        names = spec.feature_names
        frame = as_frame(value, None if isinstance(value, pd.DataFrame) else names, what)
        missing = [n for n in names if n not in frame.columns]
        if missing:
            raise PublishError(f"{what} lacks the features {missing[:10]}")
        for n in names:
            col = frame[n]
            # pandas' nullable columns (Int64, boolean) hold pd.NA: a client sends null.
            out[n] = (col.astype(object).where(col.notna(), None).to_numpy()
                      if col.hasnans else col.to_numpy())
    return out


def _row(specs: list[InputSpec], data: dict[str, Any], i: int) -> dict[str, Any]:
    """Row ``i`` as a TF-Serving instance (JSON values)."""
    out: dict[str, Any] = {}
    for spec in specs:
        if spec.kind == "image":
            out[spec.name] = np.asarray(data[spec.name][i]).tolist()
            continue
        for f in spec.features or []:
            value = _json_value(data[f.name][i])
            if f.dtype == "int64" and isinstance(value, float) and value.is_integer():
                value = int(value)  # an integer column given as floats (a float array)
            out[f.name] = value
    return out


def _json_value(v: Any) -> Any:
    if isinstance(v, np.generic):
        v = v.item()
    if v is None or (isinstance(v, float) and v != v) or v is pd.NA:
        return None
    return v


def _pick(y: np.ndarray | None, n_rows: int, n: int, seed: int) -> list[int]:
    """A few rows; for classifiers one per class where possible."""
    rng = np.random.default_rng(seed)
    n = min(n, n_rows)
    if y is None:
        return sorted(int(i) for i in rng.choice(n_rows, size=n, replace=False))
    picks: list[int] = []
    for c in np.unique(y)[:n]:
        picks.append(int(rng.choice(np.flatnonzero(y == c))))
    rest = np.setdiff1d(np.arange(n_rows), picks)
    picks += [int(i) for i in rng.choice(rest, size=n - len(picks), replace=False)]
    return picks


# --- what the model answers ---------------------------------------------------------------


def _outputs(facts: ModelFacts, target: Target | None) -> list:
    if facts.task is Task.CLASSIFICATION:
        return classifier_outputs(len(facts.labels or []),
                                  probabilities=facts.raw_output is not RawOutput.CLASS_INDEX)
    assert target is not None
    # scikit-learn regressors compute in float64: served as computed.
    return regressor_outputs(target, "float64" if facts.framework is Framework.SKLEARN
                             else "float32")


def _expected(reference: Runtime, facts: ModelFacts, sig: Signature,
              sample_rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The framework's own answers for the samples, named as the service names them."""
    batch = _validated(lambda: from_rows(sig, sample_rows, "samples", len(sample_rows)),
                       "the samples drawn from the held-out set")
    dtypes = sig.output_datatypes
    outputs = name_outputs(facts.task, facts.raw_output, reference.raw(batch),
                           np.asarray(facts.labels or [], dtype=object), dtypes)
    result = []
    for i in range(len(sample_rows)):
        row: dict[str, Any] = {}
        for key, arr in outputs.items():
            v = arr[i]
            row[key] = v.tolist() if isinstance(v, np.ndarray) else (
                str(v) if key == "label" else v.item())
        result.append(row)
    return result


def _probe_unknown_categories(model: Any, facts: ModelFacts, specs: list[InputSpec],
                              data: dict[str, Any]) -> list[InputSpec]:
    """For each categorical feature (a string or pandas category column, or an integer
    column with few distinct values), whether the model answers for a value it never saw
    (``handle_unknown='ignore'`` and the like: served with a warning) or raises (an
    encoder or an embedding that knows only the training values: refused with a 400
    naming them). An integer column the model takes any value of is a number."""
    candidates: dict[tuple[int, str], list[Any]] = {}
    for k, spec in enumerate(specs):
        for f in spec.features or []:
            if f.categories is not None:
                candidates[(k, f.name)] = list(f.categories)
            elif f.dtype == "int64":
                seen = pd.Series(data[spec.name][f.name]).dropna().unique()
                if len(seen) <= MAX_CATEGORIES:
                    candidates[(k, f.name)] = sorted(int(v) for v in seen)
    if not candidates:
        return specs
    lenient = [s.model_copy(update={"features": [
        f.model_copy(update={"categories": candidates.get((k, f.name), f.categories),
                             "unknown_categories": "warn" if (k, f.name) in candidates
                             else f.unknown_categories})
        for f in s.features]}) if s.features else s for k, s in enumerate(specs)]
    runtime = framework_runtime(model, facts.framework, lenient, facts.raw_output)
    sig = Signature("probe", lenient)
    base: dict[str, Any] = {}
    for spec in specs:
        if spec.kind == "image":
            base[spec.name] = np.asarray(data[spec.name])[:1]
        else:
            frame = data[spec.name]
            base.update({n: [_json_value(frame[n].to_numpy()[0])] for n in spec.feature_names})

    def answers(name: str, value: Any) -> bool:
        try:
            out = runtime.raw(from_columns(sig, {**base, name: [value]}, 1))
            return bool(np.isfinite(np.asarray(out, dtype=np.float64)).all())
        except Exception:
            return False

    updated = []
    for k, spec in enumerate(specs):
        feats = []
        for f in spec.features or []:
            known = candidates.get((k, f.name))
            if known is None:
                feats.append(f)
            elif f.dtype == "string":
                handled = answers(f.name, UNSEEN)
                feats.append(f.model_copy(update={"unknown_categories": "warn" if handled
                                                  else "error"}))
            else:  # an integer: near the seen values and far from them
                handled = all(answers(f.name, v) for v in (max(known) + 1, 2**31 - 1))
                given = f.categories is not None
                feats.append(f.model_copy(update={
                    "categories": known if given or not handled else None,
                    "unknown_categories": ("warn" if handled else "error")
                    if given or not handled else None}))
        updated.append(spec.model_copy(update={"features": feats}) if spec.features else spec)
    return updated


# --- held-out evaluation --------------------------------------------------------------------


def _targets(y: Any, facts: ModelFacts, model: Any) -> np.ndarray:
    """Targets as the metrics take them: class indices, or float values."""
    y = np.asarray(y.to_numpy() if isinstance(y, pd.Series | pd.DataFrame) else y).reshape(-1)
    if facts.task is Task.REGRESSION:
        return y.astype(np.float64)
    classes = getattr(model, "classes_", None) if facts.framework is Framework.SKLEARN else None
    if classes is not None:
        index = {c.item() if isinstance(c, np.generic) else c: i for i, c in enumerate(classes)}
        try:
            return np.array([index[v.item() if isinstance(v, np.generic) else v] for v in y],
                            dtype=np.int64)
        except KeyError as exc:
            raise PublishError(f"y holds {exc.args[0]!r}, which is not one of the model's "
                               f"classes {list(classes)[:20]}") from None
    labels = facts.labels or []
    if y.dtype.kind in "iu":
        if len(y) and (y.min() < 0 or y.max() >= len(labels)):
            raise PublishError(f"y holds class ids outside 0..{len(labels) - 1}")
        return y.astype(np.int64)
    index = {label: i for i, label in enumerate(labels)}
    try:
        return np.array([index[str(v)] for v in y], dtype=np.int64)
    except KeyError as exc:
        raise PublishError(f"y holds {exc.args[0]!r}, which is not one of the labels "
                           f"{labels[:20]}") from None


def _evaluate(loaded: Any, facts: ModelFacts, sig: Signature, specs: list[InputSpec],
              X_test: Any, y_idx: np.ndarray, y_train: np.ndarray | None,
              evaluation: Evaluation, card: CardFacts) -> tuple[Evaluation, CardFacts]:
    data = _data(specs, X_test, "X_test")
    n = rows(next(iter(data.values())))
    if n != len(y_idx):
        raise PublishError(f"X_test holds {n} rows but y_test {len(y_idx)}")
    parts = _validated(lambda: evaluate.batches(loaded.signature, data, n), "X_test")
    outputs = evaluate.predict_all(loaded, parts)
    k = len(facts.labels or [])
    metrics = evaluate.task_metrics(facts.task, y_idx, outputs, k)
    trivial = evaluate.baselines(facts.task, y_idx, y_train, k)
    primary, _ = evaluate.PRIMARY[facts.task]
    how = ("Scored by modelserve.publish through the loaded version (the service's own "
           "validation and runtime), as the service answers.")
    method = evaluation.method if evaluation.method != "No held-out set was given." else (
        f"Held-out set of {n} rows given to modelserve.publish.")
    evaluation = evaluation.model_copy(update={
        "method": f"{method} {how}", "test_rows": n, "test_metrics": metrics,
        "baselines": {**trivial, **evaluation.baselines}, "primary_metric": primary,
        "test_set_sha256": evaluate.test_set_digest(parts, y_idx)})
    pred = outputs["value"] if facts.task is Task.REGRESSION else outputs["class_id"]
    card.y_test, card.y_pred = y_idx, pred
    return evaluation, card


def _validated(make: Any, what: str) -> Any:
    """Rows the service would refuse cannot be scored or kept as samples: say which."""
    try:
        return make()
    except ApiError as exc:
        raise PublishError(f"{what} holds a row the service would refuse: {exc.message}") from None


def _target(target: Any, task: Task, name: str) -> Target | None:
    if task is Task.CLASSIFICATION:
        return None
    if target is None:
        return Target(name="value", description=f"What {name} estimates")
    if isinstance(target, Target):
        return target
    if isinstance(target, str):
        return Target(name=target, description=target)
    return Target(**target)


# --- provenance ---------------------------------------------------------------------------


def _provenance(trainer: str | None, command: str | None,
                seconds: float | None) -> Provenance:
    return Provenance(
        trainer=trainer or "modelserve.publish",
        command=command or " ".join(shlex.quote(a) for a in sys.argv),
        python_version=platform.python_version(),
        library_versions=_library_versions(),
        git_commit=_git_commit(),
        training_seconds=round(seconds, 1) if seconds is not None else None,
    )


def _library_versions() -> dict[str, str]:
    out = {}
    for lib in _LIBRARIES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[lib] = metadata.version(lib)
    return out


def _git_commit() -> str | None:
    """The commit of the working directory's repository (where the publishing code
    runs), with -dirty when it has uncommitted changes."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("-dirty" if dirty else "")
