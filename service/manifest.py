"""The contract between training (writer) and serving (reader).

Every version folder ``models/<name>/<version>/`` holds a ``manifest.json`` that
validates against :class:`Manifest`. Training builds one and writes it; the loader
reads it back, and everything the service says about a model (metadata, input
validation, warnings, warm-up) comes from here rather than from the artifact.
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from pathlib import PurePosixPath
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

MANIFEST_FILE = "manifest.json"
SCHEMA_VERSION = 1
# Manifests are small; a huge one is a mistake or an attack, refused before parsing.
MAX_MANIFEST_BYTES = 1_000_000

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


class _Strict(BaseModel):
    # A typo in a manifest key must fail loudly, not silently drop a fact.
    model_config = ConfigDict(extra="forbid", frozen=True)


class Framework(StrEnum):
    KERAS = "keras"
    SKLEARN = "sklearn"


class Task(StrEnum):
    CLASSIFICATION = "classification"
    REGRESSION = "regression"


class RawOutput(StrEnum):
    """What the artifact's own call returns, so the runtime can name it uniformly.

    ``probabilities``: one column per class (softmax, or scikit-learn ``predict_proba``).
    ``positive_probability``: one sigmoid column, P(labels[1]) of a binary classifier.
    ``value``: a regression estimate.
    """

    PROBABILITIES = "probabilities"
    POSITIVE_PROBABILITY = "positive_probability"
    VALUE = "value"


class ArtifactFile(_Strict):
    path: str = Field(description="File name relative to the version folder.")
    sha256: str
    size_bytes: int = Field(ge=0)

    @field_validator("path")
    @classmethod
    def _plain_relative(cls, v: str) -> str:
        # The loader opens this path: it must stay inside the version folder.
        p = PurePosixPath(v)
        if p.is_absolute() or ".." in p.parts or not p.parts or v != p.as_posix():
            raise ValueError(f"artifact path {v!r} must be a plain path inside the version folder")
        return v

    @field_validator("sha256")
    @classmethod
    def _hex(cls, v: str) -> str:
        if not _SHA256_RE.match(v):
            raise ValueError("sha256 must be 64 lowercase hex digits")
        return v


class Feature(_Strict):
    name: str
    unit: str = ""
    description: str
    min: float = Field(description="Smallest value seen in the training data.")
    max: float = Field(description="Largest value seen in the training data.")


class ImageSpec(_Strict):
    height: int = Field(gt=0)
    width: int = Field(gt=0)
    value_min: float = Field(description="Pixel value of the background (no ink).")
    value_max: float = Field(description="Pixel value of full ink.")
    foreground: Literal["light-on-dark", "dark-on-light"] = "light-on-dark"
    description: str


class InputSpec(_Strict):
    """The one input tensor of the artifact, batch dimension first (-1)."""

    name: str
    dtype: Literal["float32"] = "float32"
    shape: list[int]
    kind: Literal["tabular", "image"]
    features: list[Feature] | None = Field(
        default=None, description="Tabular models: the columns, in the order the model expects."
    )
    image: ImageSpec | None = None

    @model_validator(mode="after")
    def _consistent(self) -> InputSpec:
        if not self.shape or self.shape[0] != -1 or any(d <= 0 for d in self.shape[1:]):
            raise ValueError("shape must start with -1 (the batch) followed by positive sizes")
        if self.kind == "tabular":
            if not self.features:
                raise ValueError("a tabular input lists its features")
            if self.shape != [-1, len(self.features)]:
                raise ValueError(f"tabular shape must be [-1, {len(self.features)}]")
            names = [f.name for f in self.features]
            if len(set(names)) != len(names):
                raise ValueError("feature names must be unique")
        else:
            if self.image is None:
                raise ValueError("an image input has an image spec")
            if self.shape != [-1, self.image.height, self.image.width]:
                raise ValueError("image shape must be [-1, height, width]")
        return self

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features or []]


class OutputSpec(_Strict):
    name: str
    dtype: Literal["float32", "int64", "string"]
    shape: list[int]
    description: str


class Target(_Strict):
    """What a regressor estimates."""

    name: str
    unit: str
    description: str


class DatasetFile(_Strict):
    path: str = Field(description="Relative to the data directory.")
    sha256: str
    source: str = Field(description="Where the file comes from (canonical source).")


class Evaluation(_Strict):
    """How the reported numbers were obtained; nothing here is typed in by hand."""

    method: str = Field(description="One sentence: the split and the protocol.")
    seed: int
    train_rows: int
    test_rows: int
    test_metrics: dict[str, float]
    cv_metrics: dict[str, float] = Field(default_factory=dict)
    baselines: dict[str, dict[str, float]] = Field(
        default_factory=dict, description="Reference or trivial models scored the same way."
    )
    extra: dict[str, Any] = Field(default_factory=dict)
    datasets: list[DatasetFile]


class Sample(_Strict):
    """An input row and what the model answered at training time (warm-up, self-check)."""

    inputs: list[Any]
    expected: dict[str, Any]


class Provenance(_Strict):
    trainer: str = Field(description="The training module and recipe that wrote this version.")
    command: str
    python_version: str
    library_versions: dict[str, str]
    git_commit: str | None = None
    training_seconds: float


class Manifest(_Strict):
    schema_version: Literal[1] = SCHEMA_VERSION
    name: str
    version: int = Field(ge=1)
    description: str
    framework: Framework
    framework_version: str
    task: Task
    raw_output: RawOutput
    artifacts: list[ArtifactFile] = Field(min_length=1)
    inputs: InputSpec
    outputs: list[OutputSpec]
    labels: list[str] | None = None
    target: Target | None = None
    evaluation: Evaluation
    hyperparameters: dict[str, Any]
    samples: list[Sample] = Field(min_length=1)
    provenance: Provenance
    created_at: datetime

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME_RE.match(v):
            raise ValueError("name must be lowercase letters, digits and dashes")
        return v

    @model_validator(mode="after")
    def _task_fits(self) -> Manifest:
        if self.task is Task.CLASSIFICATION:
            if not self.labels or len(self.labels) < 2:
                raise ValueError("a classifier lists at least two labels")
            if self.raw_output is RawOutput.VALUE:
                raise ValueError("a classifier's raw output is probabilities")
            if self.raw_output is RawOutput.POSITIVE_PROBABILITY and len(self.labels) != 2:
                raise ValueError("a single sigmoid output needs exactly two labels")
        else:
            if self.target is None:
                raise ValueError("a regressor names its target")
            if self.raw_output is not RawOutput.VALUE:
                raise ValueError("a regressor's raw output is a value")
        return self

    @property
    def primary_artifact(self) -> ArtifactFile:
        return self.artifacts[0]


def classifier_outputs(n_labels: int) -> list[OutputSpec]:
    return [
        OutputSpec(
            name="probabilities",
            dtype="float32",
            shape=[-1, n_labels],
            description="Probability of each label, in the order of `labels`.",
        ),
        OutputSpec(
            name="class_id", dtype="int64", shape=[-1], description="Index of the likeliest label."
        ),
        OutputSpec(name="label", dtype="string", shape=[-1], description="The likeliest label."),
    ]


def regressor_outputs(target: Target) -> list[OutputSpec]:
    return [
        OutputSpec(
            name="value",
            dtype="float32",
            shape=[-1],
            description=f"{target.description} ({target.unit}).",
        )
    ]
