"""What a model version accepts, precomputed once from its manifest so that validating
a request does no manifest walking: per input its shape and array dtype, per feature
its dtype, nullability, training range and known categories."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from service.manifest import Feature, InputSpec, Manifest

# Where each feature dtype's values are kept in a batch; a nullable integer is a float
# column (NaN for missing) and a nullable boolean an object column, as pandas does.
_COLUMN_DTYPES = {"float64": np.float64, "float32": np.float32, "int64": np.int64,
                  "bool": np.bool_, "string": object}
# V2 datatypes that can carry each feature dtype.
V2_DATATYPES = {"string": "BYTES", "bool": "BOOL", "int64": "INT64", "float32": "FP32",
                "float64": "FP64"}
V2_IMAGE = {"float32": "FP32", "float64": "FP64", "uint8": "UINT8"}
_LIMITS = {"float32": float(np.finfo(np.float32).max), "int32": float(2**31 - 1)}


@dataclass
class FeatureSig:
    name: str
    dtype: str
    nullable: bool
    column: int
    input: str
    lo: float | None
    hi: float | None
    categories: frozenset | None
    known: list  # categories in manifest order, for messages
    unknown: str  # "error" | "warn"
    column_dtype: np.dtype
    # The largest magnitude the model's tensor holds (float32, int32), else None.
    limit: float | None = None
    # A pandas 'category' column: a value outside its categories reaches the model as
    # missing.
    frame_category: bool = False

    @classmethod
    def of(cls, f: Feature, column: int, input_name: str,
           tensor: str | None = None) -> FeatureSig:
        dtype = np.dtype(_COLUMN_DTYPES[f.dtype])
        if f.nullable and f.dtype == "int64":
            dtype = np.dtype(np.float64)
        elif f.nullable and f.dtype == "bool":
            dtype = np.dtype(object)
        return cls(f.name, f.dtype, f.nullable, column, input_name, f.min, f.max,
                   frozenset(f.categories) if f.categories is not None else None,
                   list(f.categories or []), f.unknown_categories or "error", dtype,
                   _LIMITS.get(tensor or f.dtype), f.frame_dtype == "category")

    @property
    def numeric(self) -> bool:
        return self.dtype in ("float64", "float32", "int64")

    @property
    def wire(self) -> str:
        """The V2 datatype that carries this feature (missing values need a float: NaN;
        a missing string or boolean only travels as JSON null)."""
        if self.dtype == "int64" and self.nullable:
            return "FP64"
        return V2_DATATYPES[self.dtype]

    def describe(self) -> str:
        """What a valid value looks like, for error messages."""
        kind = {"float64": "a number", "float32": "a number", "int64": "an integer",
                "bool": "true or false", "string": "a string"}[self.dtype]
        return kind + (" or null" if self.nullable else "")


@dataclass
class InputSig:
    name: str
    kind: str
    sample_shape: tuple[int, ...]
    dtype: np.dtype
    features: list[FeatureSig] = field(default_factory=list)
    # Every feature a non-nullable float of one dtype: a request's rows can be turned
    # into the batch array by one numpy call (the common case, kept fast).
    plain: bool = False
    lo: np.ndarray | None = None
    hi: np.ndarray | None = None
    spec: InputSpec | None = None

    @classmethod
    def of(cls, spec: InputSpec) -> InputSig:
        if spec.kind == "image":
            assert spec.dtype is not None
            return cls(spec.name, "image", tuple(spec.shape[1:]), np.dtype(spec.dtype), spec=spec)
        feats = [FeatureSig.of(f, j, spec.name, spec.dtype)
                 for j, f in enumerate(spec.features or [])]
        dtypes = {f.column_dtype for f in feats}
        dtype = dtypes.pop() if len(dtypes) == 1 else np.dtype(object)
        plain = dtype.kind == "f" and all(not f.nullable for f in feats)
        lo = np.array([np.nan if f.lo is None else f.lo for f in feats])
        hi = np.array([np.nan if f.hi is None else f.hi for f in feats])
        return cls(spec.name, "tabular", (len(feats),), dtype, feats, plain, lo, hi, spec)

    @property
    def tabular(self) -> bool:
        return self.kind == "tabular"

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    def describe(self) -> str:
        if self.tabular:
            return f"{len(self.features)} features"
        return "an image of shape " + "x".join(str(d) for d in self.sample_shape)

    def v2_datatype(self) -> str | None:
        """The datatype of this input as one V2 tensor (None: one tensor per feature)."""
        try:
            return self._v2_datatype
        except AttributeError:  # first call: asked for every V2 request, computed once
            pass
        if self.kind == "image":
            datatype: str | None = V2_IMAGE[self.dtype.name]
        else:
            wires = {f.wire for f in self.features}
            datatype = None if self.dtype == object or len(wires) != 1 else wires.pop()
        self._v2_datatype = datatype
        return datatype


class Signature:
    def __init__(self, model: str, inputs: list[InputSpec],
                 output_datatypes: dict[str, str] | None = None) -> None:
        self.model = model  # "wine-quality v2", for messages
        self.inputs = [InputSig.of(spec) for spec in inputs]
        self.by_name = {i.name: i for i in self.inputs}
        self.features = {f.name: f for i in self.inputs for f in i.features}
        self.feature_set = frozenset(self.features)
        self.single = self.inputs[0] if len(self.inputs) == 1 else None
        self.tabular = all(i.tabular for i in self.inputs)
        self.output_datatypes = output_datatypes or {}

    @classmethod
    def of(cls, manifest: Manifest) -> Signature:
        return cls(f"{manifest.name} v{manifest.version}", manifest.inputs,
                   {o.name: o.dtype for o in manifest.outputs})

    def feature_names(self) -> list[str]:
        return list(self.features)

    def tensors(self) -> list[tuple[str, str, list[int]]]:
        """(name, V2 datatype, shape) of each tensor a client sends: an input whole, or,
        when its features differ in type, one tensor per feature."""
        out: list[tuple[str, str, list[int]]] = []
        for inp in self.inputs:
            datatype = inp.v2_datatype()
            if datatype is None:
                out.extend((f.name, f.wire, [-1]) for f in inp.features)
            else:
                out.append((inp.name, datatype, [-1, *inp.sample_shape]))
        return out

    def describe(self) -> str:
        """The inputs, for error messages: 'features' [-1, 11], 'image' [-1, 28, 28]."""
        return ", ".join(f"'{i.name}' with shape {[-1, *i.sample_shape]}" for i in self.inputs)
