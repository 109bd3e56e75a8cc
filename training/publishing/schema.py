"""Derive a model's inputs (names, dtypes, training ranges, categories, nullability,
image geometry) from the data it was fitted on and from the model itself."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from service.manifest import Feature, ImagePreprocessing, ImageSpec, InputSpec

# A string column with more distinct values than this is free text, not a category.
MAX_CATEGORIES = 1000
UNSEEN = "__modelserve_unseen_category__"


class PublishError(ValueError):
    """The model or its data cannot be published as given; the message says why."""


@dataclass
class FeatureNote:
    """What the data cannot say about a feature: its unit and meaning, and optionally
    whether it may be missing and which categories it has."""

    unit: str = ""
    description: str = ""
    nullable: bool | None = None
    categories: list[Any] | None = None


@dataclass
class ImageNote:
    """How uploaded pictures become this image input (``:predict_image``)."""

    description: str = ""
    preprocessing: dict[str, Any] = field(default_factory=lambda: {"mode": "resize"})
    foreground: str | None = None  # light-on-dark / dark-on-light; default: from the data
    value_range: tuple[float, float] | None = None  # (background, ink); default: the data's


def note_for(notes: Mapping[str, Any] | None, name: str) -> FeatureNote:
    raw = (notes or {}).get(name)
    if raw is None:
        return FeatureNote()
    if isinstance(raw, FeatureNote):
        return raw
    if isinstance(raw, str):
        return FeatureNote(description=raw)
    if isinstance(raw, Mapping):
        unknown = set(raw) - {"unit", "description", "nullable", "categories"}
        if unknown:
            raise PublishError(f"features[{name!r}] has unknown keys {sorted(unknown)}; a "
                               "feature takes unit, description, nullable and categories")
        return FeatureNote(**raw)
    # Anything with unit / description attributes (a trainer's own record type).
    return FeatureNote(unit=getattr(raw, "unit", ""), description=getattr(raw, "description", ""))


# --- data -> one table or array per input ------------------------------------------------


def split_inputs(data: Any, names: list[str], what: str) -> dict[str, Any]:
    """``data`` for a model whose inputs are ``names``: one array/DataFrame for a
    single-input model, or a mapping (or list, in order) with one per input."""
    if isinstance(data, Mapping):
        given = set(data)
        if given != set(names):
            raise PublishError(f"{what} names inputs {sorted(given)}, the model takes "
                               f"{names}")
        return {n: data[n] for n in names}
    if isinstance(data, (list, tuple)) and len(names) > 1:
        if len(data) != len(names):
            raise PublishError(f"{what} holds {len(data)} arrays, the model takes "
                               f"{len(names)} inputs {names}")
        return dict(zip(names, data, strict=True))
    if len(names) != 1:
        raise PublishError(f"the model takes {len(names)} inputs {names}: give {what} as a "
                           "dict of one array or DataFrame per input")
    return {names[0]: data}


def as_frame(data: Any, names: list[str] | None, what: str) -> pd.DataFrame:
    if isinstance(data, pd.DataFrame):
        return data
    arr = np.asarray(data)
    if arr.ndim != 2:
        raise PublishError(f"{what} must be a table (2-D), got shape {list(arr.shape)}")
    if names is not None and len(names) != arr.shape[1]:
        raise PublishError(f"{what} has {arr.shape[1]} columns but {len(names)} feature names "
                           "were given")
    return pd.DataFrame(arr, columns=names or [f"x{j}" for j in range(arr.shape[1])])


def rows(data: Any) -> int:
    if isinstance(data, Mapping):
        return len(next(iter(data.values())))
    return len(data)


# --- tabular ------------------------------------------------------------------------------


def tabular_input(name: str, frame: pd.DataFrame, notes: Mapping[str, Any] | None, *,
                  layout: str, dtype: str | None = None) -> InputSpec:
    """One tabular input from its training frame. ``dtype``: every feature's dtype when
    the model fixes it (a Keras input); else each column's own."""
    feats = [_feature(str(col), frame[col], note_for(notes, str(col)), layout, dtype)
             for col in frame.columns]
    return InputSpec(name=name, kind="tabular", shape=[-1, len(feats)], layout=layout,
                     features=feats)


def _feature(name: str, col: pd.Series, note: FeatureNote, layout: str,
             forced: str | None) -> Feature:
    dtype = forced or feature_dtype(col)
    missing = bool(col.isna().any())
    nullable = note.nullable if note.nullable is not None else missing
    lo = hi = None
    categories = note.categories
    if dtype in ("float64", "float32", "int64"):
        values = pd.to_numeric(col, errors="coerce").dropna()
        if len(values):
            lo, hi = float(values.min()), float(values.max())
    if categories is None and isinstance(col.dtype, pd.CategoricalDtype):
        categories = list(col.dtype.categories)
    if categories is None and dtype == "string":
        seen = col.dropna().unique()
        if len(seen) <= MAX_CATEGORIES:
            categories = sorted(str(v) for v in seen)
    if categories is not None:
        categories = [int(c) for c in categories] if dtype == "int64" else [str(c)
                                                                          for c in categories]
    return Feature(name=name, dtype=dtype, nullable=nullable, unit=note.unit,  # type: ignore[arg-type]
                   description=note.description, min=lo, max=hi, categories=categories,
                   frame_dtype=str(col.dtype) if layout == "frame" else None)


def feature_dtype(col: pd.Series) -> str:
    kind = col.dtype
    if isinstance(kind, pd.CategoricalDtype):
        cats = kind.categories
        return "int64" if pd.api.types.is_integer_dtype(cats) else "string"
    if pd.api.types.is_bool_dtype(kind):
        return "bool"
    if pd.api.types.is_integer_dtype(kind):
        return "int64"
    if pd.api.types.is_float_dtype(kind):
        return "float32" if kind == np.float32 else "float64"
    if pd.api.types.is_string_dtype(kind) or kind == np.dtype(object):
        values = col.dropna()
        if len(values) and all(isinstance(v, (bool, np.bool_)) for v in values):
            return "bool"
        if len(values) and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool)
                               for v in values):
            return "int64"
        if len(values) and all(isinstance(v, (int, float, np.number)) for v in values):
            return "float64"
        return "string"
    raise PublishError(f"column {col.name!r} has dtype {kind}, which modelserve cannot "
                       "serve (numbers, integers, booleans, strings and categories can)")


# --- images ---------------------------------------------------------------------------------


def stroke_range(images: np.ndarray, background: float, ink: float,
                 limit: int = 2000) -> list[float] | None:
    """5th percentile, median and 95th percentile of the training images' stroke width
    relative to their digit's size (``service.ink.stroke_ratio``)."""
    from service.ink import stroke_ratio

    span = ink - background
    if span == 0:
        return None
    ratios = [r for img in images[:limit]
              if (r := stroke_ratio((np.asarray(img, np.float32) - background) / span))
              is not None]
    if not ratios:
        return None
    return [round(float(v), 4) for v in np.percentile(ratios, [5, 50, 95])]


def image_input(name: str, images: Any, shape: tuple[int, ...], note: ImageNote,
                dtype: str) -> InputSpec:
    """An image input ``[-1, h, w]`` or ``[-1, h, w, c]`` from its training images."""
    arr = np.asarray(images)
    h, w = shape[0], shape[1]
    c = shape[2] if len(shape) == 3 else 1
    if arr.shape[1:] != tuple(shape):
        raise PublishError(f"input {name!r} takes images of shape {list(shape)}, the data "
                           f"holds {list(arr.shape[1:])}")
    lo, hi = float(arr.min()), float(arr.max())
    if note.value_range is not None:
        background, ink = note.value_range
        foreground = note.foreground or ("light-on-dark" if ink > background
                                         else "dark-on-light")
    else:
        # Mostly background: the mean sits nearer the background's end of the range.
        light = float(arr.mean()) < (lo + hi) / 2
        foreground = note.foreground or ("light-on-dark" if light else "dark-on-light")
        background, ink = (lo, hi) if foreground == "light-on-dark" else (hi, lo)
    preprocessing = dict(note.preprocessing)
    if preprocessing.get("mode") == "ink" and "stroke" not in preprocessing:
        preprocessing["stroke"] = stroke_range(arr, background, ink)
    spec = ImageSpec(
        height=h, width=w, channels=c, value_min=background, value_max=ink,
        foreground=foreground,  # type: ignore[arg-type]
        description=note.description or f"{h}x{w} image, {c} channel(s), values from "
                                          f"{background:g} (background) to {ink:g} (ink).",
        preprocessing=ImagePreprocessing(**preprocessing))
    return InputSpec(name=name, kind="image", shape=[-1, *shape], dtype=dtype,  # type: ignore[arg-type]
                     image=spec)
