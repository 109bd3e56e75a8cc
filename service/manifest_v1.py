"""Manifest schema version 1, read-only: the versions published before schema 2 keep
their files unchanged (published versions are immutable) and are upgraded in memory.

Version 1 knew one float32 input tensor: a row of numeric features or a 28x28 image.
What it did not record is read from how those versions were fitted: every
scikit-learn version was fitted on float64 columns and every Keras version on float32
(``training/`` at the time), so that is the dtype their features reach the model in;
images were MNIST-framed (ink fitted into 20x20, centred by mass in 28x28). Version 1
had no place for other measurements of the same recipe, so the one trainer that wrote
one listed it among the baselines as "this recipe on …"; it moves to ``variants``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from service import manifest as v2


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FeatureV1(_Strict):
    name: str
    unit: str = ""
    description: str
    min: float
    max: float


class ImageSpecV1(_Strict):
    height: int = Field(gt=0)
    width: int = Field(gt=0)
    value_min: float
    value_max: float
    foreground: Literal["light-on-dark", "dark-on-light"] = "light-on-dark"
    description: str


class InputSpecV1(_Strict):
    name: str
    dtype: Literal["float32"] = "float32"
    shape: list[int]
    kind: Literal["tabular", "image"]
    features: list[FeatureV1] | None = None
    image: ImageSpecV1 | None = None


class SampleV1(_Strict):
    inputs: list[Any]
    expected: dict[str, Any]


class OutputSpecV1(_Strict):
    name: str
    dtype: Literal["float32", "int64", "string"]
    shape: list[int]
    description: str


class ProvenanceV1(_Strict):
    trainer: str
    command: str
    python_version: str
    library_versions: dict[str, str]
    git_commit: str | None = None
    training_seconds: float


class ManifestV1(_Strict):
    schema_version: Literal[1] = 1
    name: str
    version: int = Field(ge=1)
    description: str
    framework: v2.Framework
    framework_version: str
    task: v2.Task
    raw_output: v2.RawOutput
    artifacts: list[v2.ArtifactFile] = Field(min_length=1)
    inputs: InputSpecV1
    outputs: list[OutputSpecV1]
    labels: list[str] | None = None
    target: v2.Target | None = None
    evaluation: dict[str, Any]
    hyperparameters: dict[str, Any]
    samples: list[SampleV1] = Field(min_length=1)
    provenance: ProvenanceV1
    created_at: datetime


# service.ink.stroke_ratio over MNIST's training digits (all schema-1 image versions are
# MNIST models): 5th percentile, median, 95th percentile.
MNIST_STROKE = [0.102, 0.148, 0.222]


def _evaluation(data: dict[str, Any]) -> v2.Evaluation:
    baselines = dict(data.get("baselines") or {})
    variants = {k: baselines.pop(k) for k in list(baselines) if k.startswith("this recipe ")}
    return v2.Evaluation.model_validate({**data, "baselines": baselines, "variants": variants})


def upgrade(data: dict[str, Any]) -> v2.Manifest:
    """A version-1 manifest as the schema-2 model (validating both)."""
    old = ManifestV1.model_validate(data)
    spec = old.inputs
    dtype = "float64" if old.framework is v2.Framework.SKLEARN else "float32"
    if spec.kind == "tabular":
        new_input = v2.InputSpec(
            name=spec.name, kind="tabular", shape=spec.shape,
            features=[v2.Feature(name=f.name, dtype=dtype, unit=f.unit,  # type: ignore[arg-type]
                                 description=f.description, min=f.min, max=f.max)
                      for f in spec.features or []])
        names = new_input.feature_names
        samples = [v2.Sample(inputs=dict(zip(names, s.inputs, strict=True)), expected=s.expected)
                   for s in old.samples]
    else:
        assert spec.image is not None
        img = spec.image
        new_input = v2.InputSpec(
            name=spec.name, kind="image", shape=spec.shape, dtype="float32",
            image=v2.ImageSpec(
                height=img.height, width=img.width, channels=1, value_min=img.value_min,
                value_max=img.value_max, foreground=img.foreground, description=img.description,
                preprocessing=v2.ImagePreprocessing(mode="ink", box=20, centre="mass",
                                                    stroke=MNIST_STROKE)))
        samples = [v2.Sample(inputs={spec.name: s.inputs}, expected=s.expected)
                   for s in old.samples]
    return v2.Manifest(
        name=old.name, version=old.version, description=old.description,
        framework=old.framework, framework_version=old.framework_version, task=old.task,
        raw_output=old.raw_output, artifacts=old.artifacts, inputs=[new_input],
        outputs=[v2.OutputSpec(**o.model_dump()) for o in old.outputs],
        labels=old.labels, target=old.target,
        evaluation=_evaluation(old.evaluation),
        hyperparameters=old.hyperparameters, samples=samples,
        provenance=v2.Provenance(**old.provenance.model_dump()),
        created_at=old.created_at)
