"""Write a trained model as a new, immutable version folder.

The version is staged in a hidden ``.staging-*`` folder (the service ignores dot
folders), saved, described, re-loaded through the service's own loader as a check,
and only then renamed into place: a reader sees either no version or a complete one.
An existing version is never overwritten.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import numpy as np

from service.integrity import describe_file
from service.loader import load_version
from service.manifest import (
    MANIFEST_FILE,
    Framework,
    Manifest,
    Provenance,
    Sample,
    Task,
    classifier_outputs,
    regressor_outputs,
)
from service.model import name_outputs
from training.common import TrainedModel
from training.report import write_model_card

ARTIFACT_NAMES = {Framework.KERAS: "model.keras", Framework.SKLEARN: "model.joblib"}
_LIBRARIES = ["numpy", "scikit-learn", "keras", "tensorflow-cpu", "joblib", "pandas"]


class VersionExistsError(Exception):
    pass


def existing_versions(model_dir: Path) -> list[int]:
    if not model_dir.is_dir():
        return []
    return sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())


def next_version(model_dir: Path) -> int:
    versions = existing_versions(model_dir)
    return versions[-1] + 1 if versions else 1


def publish(trained: TrainedModel, models_dir: Path, *, version: int | None = None,
            training_seconds: float = 0.0, command: str = "") -> Path:
    model_dir = Path(models_dir) / trained.name
    model_dir.mkdir(parents=True, exist_ok=True)
    version = version or next_version(model_dir)
    final = model_dir / str(version)
    if final.exists():
        raise VersionExistsError(f"{final} already exists; versions are immutable")

    staging = Path(tempfile.mkdtemp(prefix=f".staging-{version}-", dir=model_dir))
    try:
        artifact = ARTIFACT_NAMES[trained.framework]
        _save_artifact(trained, staging / artifact)
        manifest = _build_manifest(trained, version, staging, artifact, training_seconds,
                                   command)
        (staging / MANIFEST_FILE).write_text(manifest.model_dump_json(indent=2) + "\n")
        # The same loader the service uses must accept it, samples included.
        load_version(staging, expected_name=trained.name, expected_version=version)
        write_model_card(trained, manifest, staging)
        os.chmod(staging, 0o755)  # mkdtemp makes it private
        # rename() refuses a non-empty target, so a version that appeared meanwhile survives.
        os.rename(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    print(f"published {trained.name} version {version} -> {final}", flush=True)
    return final


def _save_artifact(trained: TrainedModel, path: Path) -> None:
    if trained.framework is Framework.KERAS:
        import keras

        # An uncompiled copy: the optimizer's slots would double the file and are
        # useless to a server.
        served = keras.models.clone_model(trained.estimator)
        served.set_weights(trained.estimator.get_weights())
        served.save(path)
    else:
        import joblib

        joblib.dump(trained.estimator, path, compress=3)


def _expected_outputs(trained: TrainedModel) -> list[dict]:
    """What the fitted model answers for the samples, computed by the serving code."""
    if trained.framework is Framework.KERAS:
        from service.runtimes.keras_runtime import KerasRuntime

        runtime = KerasRuntime(trained.estimator, trained.inputs.shape)
    else:
        from service.runtimes.sklearn_runtime import SklearnRuntime

        runtime = SklearnRuntime(trained.estimator, trained.raw_output)
    batch = np.asarray(trained.sample_inputs, dtype=np.float32)
    outputs = name_outputs(trained.task, trained.raw_output, runtime.raw(batch),
                           np.asarray(trained.labels or [], dtype=object))
    rows = []
    for i in range(len(batch)):
        row = {}
        for key, arr in outputs.items():
            v = arr[i]
            row[key] = v.tolist() if isinstance(v, np.ndarray) else (
                str(v) if key == "label" else v.item())
        rows.append(row)
    return rows


def _build_manifest(trained: TrainedModel, version: int, folder: Path, artifact: str,
                    training_seconds: float, command: str) -> Manifest:
    outputs = (classifier_outputs(len(trained.labels or [])) if trained.task is Task.CLASSIFICATION
               else regressor_outputs(trained.target))  # type: ignore[arg-type]
    samples = [
        Sample(inputs=np.asarray(x, dtype=np.float32).tolist(), expected=e)
        for x, e in zip(trained.sample_inputs, _expected_outputs(trained), strict=True)
    ]
    framework_pkg = "keras" if trained.framework is Framework.KERAS else "scikit-learn"
    return Manifest(
        name=trained.name,
        version=version,
        description=trained.description,
        framework=trained.framework,
        framework_version=metadata.version(framework_pkg),
        task=trained.task,
        raw_output=trained.raw_output,
        artifacts=[describe_file(folder, artifact)],
        inputs=trained.inputs,
        outputs=outputs,
        labels=trained.labels,
        target=trained.target,
        evaluation=trained.evaluation,
        hyperparameters=json.loads(json.dumps(trained.hyperparameters, default=str)),
        samples=samples,
        provenance=Provenance(
            trainer=f"training.{trained.name.replace('-', '_')} recipe={trained.recipe}",
            command=command or " ".join(shlex.quote(a) for a in sys.argv),
            python_version=platform.python_version(),
            library_versions=_library_versions(),
            git_commit=_git_commit(),
            training_seconds=round(training_seconds, 1),
        ),
        created_at=datetime.now(UTC).replace(microsecond=0),
    )


def _library_versions() -> dict[str, str]:
    out = {}
    for lib in _LIBRARIES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[lib] = metadata.version(lib)
    return out


def _git_commit() -> str | None:
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                                text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "training", "service"],
                               cwd=root, capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("-dirty" if dirty else "")
