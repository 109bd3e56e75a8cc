"""The contract between publishing (writer) and serving (reader), schema version 2.

Every version folder ``models/<name>/<version>/`` holds a ``manifest.json``. Publishing
builds a :class:`Manifest` and writes it; the loader reads it back (a version-1 file is
upgraded in memory by ``service/manifest_v1.py``), and everything the service says
about a model (metadata, input validation, warnings, warm-up, examples) comes from here
rather than from the artifact. docs/manifest.md describes every field.
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from pathlib import PurePosixPath
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

MANIFEST_FILE = "manifest.json"
SCHEMA_VERSION = 2
# Manifests are small; a huge one is a mistake or an attack, refused before parsing.
MAX_MANIFEST_BYTES = 1_000_000

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
# Input and feature names travel in URLs, JSON keys and V2 tensor names.
_FIELD_RE = re.compile(r"^[^\x00-\x1f]{1,128}$")

FeatureDtype = Literal["float64", "float32", "int64", "bool", "string"]
NUMERIC_DTYPES = ("float64", "float32", "int64")
ImageDtype = Literal["float32", "float64", "uint8"]
# The tensor a Keras network takes for a tabular input, when it is narrower than the
# features' own dtype (an int32 id column): values must also fit it.
TensorDtype = Literal["float32", "float64", "uint8", "int32", "int64", "bool"]


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
    ``class_index``: the index of the predicted label (a classifier without
    probabilities, e.g. an SVM without ``probability=True``).
    ``value``: a regression estimate.
    """

    PROBABILITIES = "probabilities"
    POSITIVE_PROBABILITY = "positive_probability"
    CLASS_INDEX = "class_index"
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
    """One named column of a tabular input."""

    name: str
    dtype: FeatureDtype = Field(
        "float64", description="What a value is; numbers reach the model in this dtype.")
    nullable: bool = Field(False, description="The model can take a missing value (null).")
    unit: str = ""
    description: str = ""
    min: float | None = Field(None, description="Smallest value seen in the training data.")
    max: float | None = Field(None, description="Largest value seen in the training data.")
    categories: list[str] | list[int] | None = Field(
        None, description="Categorical features: every value seen in the training data.")
    unknown_categories: Literal["error", "warn"] | None = Field(
        None, description="Categorical features: a value not in `categories` is refused "
                          "(error, the default) or served with a warning because the model "
                          "handles it (warn).")
    frame_dtype: str | None = Field(
        None, description="Inputs with layout 'frame': the pandas dtype of this column when "
                          "the model was fitted (e.g. 'str', 'category', 'Int64').")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _FIELD_RE.match(v):
            raise ValueError("a feature name is 1-128 printable characters")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> Feature:
        numeric = self.dtype in NUMERIC_DTYPES
        if not numeric and (self.min is not None or self.max is not None):
            raise ValueError(f"feature {self.name!r}: only numbers have a training range")
        if (self.min is None) != (self.max is None):
            raise ValueError(f"feature {self.name!r}: give both min and max, or neither")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"feature {self.name!r}: min is above max")
        if self.categories is not None:
            if self.dtype not in ("string", "int64"):
                raise ValueError(f"feature {self.name!r}: only string and int64 features "
                                 "have categories")
            want = str if self.dtype == "string" else int
            if not all(type(c) is want for c in self.categories):
                raise ValueError(f"feature {self.name!r}: categories must be {self.dtype}")
        return self

    @property
    def numeric(self) -> bool:
        return self.dtype in NUMERIC_DTYPES


class ImagePreprocessing(_Strict):
    """How ``:predict_image`` turns an uploaded picture into this input.

    ``ink``: find the ink (whatever the polarity and background), crop to it, scale it
    so its longer side is ``box`` pixels, and centre it in the frame by its centre of
    mass (MNIST) or its bounding box. ``resize``: the whole picture, resized to the frame.
    """

    mode: Literal["ink", "resize"] = "resize"
    box: int | None = Field(None, gt=0)
    centre: Literal["mass", "box"] = "mass"
    stroke: list[float] | None = Field(
        None, min_length=3, max_length=3,
        description="ink mode: the stroke width relative to the digit's size in the training "
                    "images (5th percentile, median, 95th percentile); an upload's strokes "
                    "outside that range (a fine-liner, a marker) are brought to the median.")


class ImageSpec(_Strict):
    height: int = Field(gt=0)
    width: int = Field(gt=0)
    channels: int = Field(1, ge=1, le=4)
    value_min: float = Field(description="Pixel value of the background (no ink).")
    value_max: float = Field(description="Pixel value of full ink.")
    foreground: Literal["light-on-dark", "dark-on-light"] = "light-on-dark"
    description: str
    preprocessing: ImagePreprocessing = Field(default_factory=ImagePreprocessing)

    @model_validator(mode="after")
    def _box_fits(self) -> ImageSpec:
        box = self.preprocessing.box
        if box is not None and box > min(self.height, self.width):
            raise ValueError("preprocessing.box is larger than the image")
        return self


class InputSpec(_Strict):
    """One input of the artifact, batch dimension first (-1)."""

    name: str
    kind: Literal["tabular", "image"]
    shape: list[int]
    layout: Literal["array", "frame"] = Field(
        "array", description="What the model is called with: an array (batch first), or a "
                             "pandas DataFrame with one column per feature (a scikit-learn "
                             "model fitted on a DataFrame).")
    dtype: TensorDtype | None = Field(
        None, description="Image inputs: the pixel dtype. Tabular inputs of a Keras network: "
                          "the network's input dtype when it is not the features' own.")
    features: list[Feature] | None = Field(
        default=None, description="Tabular inputs: the columns, in the order the model expects.")
    image: ImageSpec | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _FIELD_RE.match(v):
            raise ValueError("an input name is 1-128 printable characters")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> InputSpec:
        if not self.shape or self.shape[0] != -1 or any(d <= 0 for d in self.shape[1:]):
            raise ValueError("shape must start with -1 (the batch) followed by positive sizes")
        if self.kind == "tabular":
            if not self.features:
                raise ValueError("a tabular input lists its features")
            if self.image is not None:
                raise ValueError("a tabular input has features, not an image spec")
            if self.shape != [-1, len(self.features)]:
                raise ValueError(f"tabular shape must be [-1, {len(self.features)}]")
            names = [f.name for f in self.features]
            if len(set(names)) != len(names):
                raise ValueError("feature names must be unique")
            if self.layout == "frame" and any(f.frame_dtype is None for f in self.features):
                raise ValueError("an input with layout 'frame' gives each feature's frame_dtype")
        else:
            if self.image is None or self.dtype not in ("float32", "float64", "uint8"):
                raise ValueError("an image input has an image spec and a float32, float64 or "
                                 "uint8 dtype")
            if self.features is not None or self.layout != "array":
                raise ValueError("an image input has no features and layout 'array'")
            hw = [-1, self.image.height, self.image.width]
            c = self.image.channels
            allowed = [hw, [*hw, c]] if c == 1 else [[*hw, c]]
            if self.shape not in allowed:
                raise ValueError(f"image shape must be {' or '.join(map(str, allowed))}")
        return self

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features or []]


class OutputSpec(_Strict):
    name: str
    dtype: Literal["float32", "float64", "int64", "string"]
    shape: list[int]
    description: str


class Target(_Strict):
    """What a regressor estimates."""

    name: str
    unit: str = ""
    description: str = ""


class DatasetFile(_Strict):
    path: str = Field(description="Relative to the data directory.")
    sha256: str
    source: str = Field(description="Where the file comes from (canonical source).")


class Evaluation(_Strict):
    """How the reported numbers were obtained; nothing here is typed in by hand."""

    method: str = Field(description="The split and the protocol.")
    seed: int
    train_rows: int
    test_rows: int
    test_metrics: dict[str, float]
    cv_metrics: dict[str, float] = Field(default_factory=dict)
    baselines: dict[str, dict[str, float]] = Field(
        default_factory=dict, description="Trivial or reference models scored the same way; "
                                          "the model is published only if it beats them.")
    variants: dict[str, dict[str, float]] = Field(
        default_factory=dict, description="Other honest measurements of this recipe (another "
                                          "split, de-duplicated data), reported, not gated.")
    primary_metric: str | None = Field(
        None, description="The metric compared with the baselines.")
    test_set_sha256: str | None = Field(
        None, description="Digest of the held-out inputs and targets, so a replay can prove "
                          "it used the same set.")
    extra: dict[str, Any] = Field(default_factory=dict)
    datasets: list[DatasetFile] = Field(default_factory=list)


class Sample(_Strict):
    """One input row and what the model answered at publish time (warm-up, self-check).

    ``inputs`` is a valid TF-Serving instance: feature name -> value for tabular
    inputs, input name -> nested list for image inputs."""

    inputs: dict[str, Any]
    expected: dict[str, Any]


class Provenance(_Strict):
    trainer: str = Field(description="What wrote this version (a trainer recipe, a script).")
    command: str
    python_version: str
    library_versions: dict[str, str]
    git_commit: str | None = None
    training_seconds: float | None = None


class Distribution(_Strict):
    """A distribution over bins: numbers cut at ``edges`` (``len(edges) + 1`` bins: below
    the first edge, ..., at or above the last), or ``categories`` (one bin each, then one
    for any other value)."""

    name: str
    edges: list[float] | None = None
    categories: list[str] | list[int] | list[bool] | None = None
    proportions: list[float]

    @model_validator(mode="after")
    def _bins(self) -> Distribution:
        if (self.edges is None) == (self.categories is None):
            raise ValueError(f"{self.name}: give exactly one of edges and categories")
        bins = len(self.edges if self.edges is not None else self.categories or []) + 1
        if len(self.proportions) != bins:
            raise ValueError(f"{self.name}: {bins} bins need {bins} proportions, got "
                             f"{len(self.proportions)}")
        if self.edges is not None and self.edges != sorted(set(self.edges)):
            raise ValueError(f"{self.name}: edges must increase")
        if any(p < 0 for p in self.proportions) or abs(sum(self.proportions) - 1) > 1e-3:
            raise ValueError(f"{self.name}: proportions must be shares summing to 1")
        return self


class Reference(_Strict):
    """What the training data looked like, for drift (service/evidence/reference.py)."""

    rows: int = Field(gt=0, description="Training rows the distributions were taken from.")
    features: list[Distribution]
    predictions: Distribution


class Manifest(_Strict):
    schema_version: Literal[2] = SCHEMA_VERSION
    name: str
    version: int = Field(ge=1)
    description: str
    framework: Framework
    framework_version: str
    task: Task
    raw_output: RawOutput
    artifacts: list[ArtifactFile] = Field(min_length=1)
    inputs: list[InputSpec] = Field(min_length=1)
    outputs: list[OutputSpec]
    labels: list[str] | None = None
    target: Target | None = None
    evaluation: Evaluation
    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    samples: list[Sample] = Field(min_length=1)
    provenance: Provenance
    created_at: datetime
    reference: Reference | None = None
    lean: str | None = Field(
        None, description="The lean form (service/runtimes/lean/program.py): one of "
                          "`artifacts`, the forward pass as numpy operations that the "
                          "service runs without the framework.")

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
            if len(set(self.labels)) != len(self.labels):
                raise ValueError("labels must be unique")
            if self.raw_output is RawOutput.VALUE:
                raise ValueError("a classifier's raw output is probabilities or a class index")
            if self.raw_output is RawOutput.POSITIVE_PROBABILITY and len(self.labels) != 2:
                raise ValueError("a single sigmoid output needs exactly two labels")
        else:
            if self.target is None:
                raise ValueError("a regressor names its target")
            if self.raw_output is not RawOutput.VALUE:
                raise ValueError("a regressor's raw output is a value")
        return self

    @model_validator(mode="after")
    def _names_unique(self) -> Manifest:
        # A TF-Serving instance or a set of V2 tensors names inputs and features in one
        # namespace, so no name may mean two things.
        inputs = [i.name for i in self.inputs]
        if len(set(inputs)) != len(inputs):
            raise ValueError("input names must be unique")
        features = [f for i in self.inputs for f in i.feature_names]
        if len(set(features)) != len(features):
            raise ValueError("feature names must be unique across inputs")
        clash = set(features) & set(inputs)
        if clash:
            raise ValueError(f"{sorted(clash)[0]!r} names both an input and a feature")
        if self.framework is Framework.SKLEARN and len(self.inputs) != 1:
            raise ValueError("a scikit-learn model has exactly one input")
        return self

    @model_validator(mode="after")
    def _lean_listed(self) -> Manifest:
        if self.lean is not None and self.lean not in [a.path for a in self.artifacts[1:]]:
            raise ValueError("lean must name one of the artifacts after the first")
        return self

    @property
    def primary_artifact(self) -> ArtifactFile:
        return self.artifacts[0]

    @property
    def feature_names(self) -> list[str]:
        """Every tabular feature, input by input."""
        return [n for i in self.inputs for n in i.feature_names]

    @property
    def features(self) -> list[Feature]:
        return [f for i in self.inputs for f in i.features or []]


def classifier_outputs(n_labels: int, probabilities: bool = True) -> list[OutputSpec]:
    proba = OutputSpec(name="probabilities", dtype="float32", shape=[-1, n_labels],
                       description="Probability of each label, in the order of `labels`.")
    return [
        *([proba] if probabilities else []),
        OutputSpec(name="class_id", dtype="int64", shape=[-1],
                   description="Index of the likeliest label."),
        OutputSpec(name="label", dtype="string", shape=[-1], description="The likeliest label."),
    ]


def regressor_outputs(target: Target, dtype: str = "float32") -> list[OutputSpec]:
    unit = f" ({target.unit})" if target.unit else ""
    return [
        OutputSpec(
            name="value",
            dtype=dtype,  # type: ignore[arg-type]
            shape=[-1],
            description=f"{target.description or target.name}{unit}.",
        )
    ]
