"""Turn decoded request payloads into a validated float32 batch for one model, and say
exactly what is wrong when that is impossible.

Every protocol (TF-Serving rows and columns, classify/regress examples, KServe V2
tensors, images) ends up here, so the rules and the error messages are the same
everywhere: the right number of features or the right image shape, numbers only,
no NaN or infinity, a non-empty batch under the configured maximum. Values outside
the range seen in training are served but reported as warnings.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from service.errors import InvalidInput, detail
from service.manifest import Manifest

MAX_WARNINGS = 20


class Signature:
    """What a model accepts, precomputed once per loaded version."""

    def __init__(self, manifest: Manifest) -> None:
        spec = manifest.inputs
        self.model = f"{manifest.name} v{manifest.version}"
        self.input_name = spec.name
        self.kind = spec.kind
        self.sample_shape = tuple(spec.shape[1:])
        self.feature_names = spec.feature_names
        self.index = {n: i for i, n in enumerate(self.feature_names)}
        self.output_datatypes = {o.name: o.dtype for o in manifest.outputs}
        if spec.features:
            self.lo = np.array([f.min for f in spec.features])
            self.hi = np.array([f.max for f in spec.features])
        else:
            assert spec.image is not None
            self.lo = np.array(spec.image.value_min)
            self.hi = np.array(spec.image.value_max)

    @property
    def tabular(self) -> bool:
        return self.kind == "tabular"

    def describe_sample(self) -> str:
        if self.tabular:
            return f"{len(self.feature_names)} features"
        return "an image of shape " + "x".join(str(d) for d in self.sample_shape)

    def element_name(self, column: int) -> str:
        return f"feature '{self.feature_names[column]}'" if self.tabular else f"pixel {column}"


# --- entry points, one per payload form ----------------------------------------------


def batch_from_rows(sig: Signature, rows: Any, field: str, max_rows: int) -> np.ndarray:
    """TF-Serving ``instances`` / classify ``examples``: one entry per example, either a
    list of values in manifest order (tabular), an image array, or an object that names
    the features (``{"alcohol": 9.4, ...}``) or the input (``{"features": [...]}``)."""
    _check_rows(rows, field, max_rows)
    if all(isinstance(r, Mapping) for r in rows):
        if all(set(r) == {sig.input_name} for r in rows):
            rows = [r[sig.input_name] for r in rows]
        elif sig.tabular:
            return _batch_from_feature_objects(sig, rows, field)
        else:
            raise InvalidInput(
                f"Each entry of '{field}' must be {sig.describe_sample()} or an object "
                f"{{\"{sig.input_name}\": ...}}.",
                [detail(f"{field}[0]", "unexpected keys", expected=[sig.input_name],
                        got=sorted(map(str, rows[0]))[:20])])
    elif any(isinstance(r, Mapping) for r in rows):
        raise InvalidInput(f"Entries of '{field}' mix objects and lists; use one form.")
    return to_batch(sig, rows, field)


def batch_from_columns(sig: Signature, inputs: Any, max_rows: int) -> np.ndarray:
    """TF-Serving columnar ``inputs``: the input tensor itself, ``{"<input>": tensor}``,
    or (tabular) one column per feature ``{"alcohol": [9.4, 10.0], ...}``."""
    if isinstance(inputs, Mapping):
        if set(inputs) == {sig.input_name}:
            inputs = inputs[sig.input_name]
        elif sig.tabular:
            _check_feature_names(sig, inputs.keys(), "inputs")
            columns = [inputs[n] for n in sig.feature_names]
            lengths = {len(c) if isinstance(c, list) else -1 for c in columns}
            if -1 in lengths:
                bad = next(n for n in sig.feature_names if not isinstance(inputs[n], list))
                raise InvalidInput(
                    f"Column 'inputs.{bad}' must be a list with one value per example.",
                    [detail(f"inputs.{bad}", "not a list", got=type(inputs[bad]).__name__)])
            if len(lengths) != 1:
                raise InvalidInput(
                    "All feature columns in 'inputs' must have the same length; got lengths "
                    + ", ".join(f"{n}={len(inputs[n])}" for n in sig.feature_names[:11]) + ".")
            n_rows = lengths.pop()
            _check_count(n_rows, "inputs", max_rows)
            arr = _numeric(columns, "inputs", sig, transpose=True)
            return _finish(sig, arr.T, "inputs")
        else:
            raise InvalidInput(
                f"'inputs' must be the '{sig.input_name}' tensor or an object with that one key.",
                [detail("inputs", "unexpected keys", expected=[sig.input_name],
                        got=sorted(map(str, inputs))[:20])])
    _check_rows(inputs, "inputs", max_rows)
    return to_batch(sig, inputs, "inputs")


def batch_from_named_columns(sig: Signature, columns: Mapping[str, np.ndarray],
                             field: str) -> np.ndarray:
    """KServe V2 with one tensor per feature (already decoded to 1-D arrays)."""
    _check_feature_names(sig, columns.keys(), field)
    lengths = {len(c) for c in columns.values()}
    if len(lengths) != 1:
        raise InvalidInput(
            "All feature tensors must have the same batch size; got "
            + ", ".join(f"{n}={len(columns[n])}" for n in sig.feature_names) + ".")
    return _finish(sig, np.column_stack([columns[n] for n in sig.feature_names]), field)


def to_batch(sig: Signature, data: Any, field: str) -> np.ndarray:
    """A whole batch given as one tensor (nested lists or an array)."""
    return _finish(sig, _numeric(data, field, sig), field)


def out_of_range_warnings(sig: Signature, batch: np.ndarray) -> list[dict[str, Any]]:
    """Values outside what training saw: served anyway, but reported."""
    if sig.tabular:
        mask = (batch < sig.lo) | (batch > sig.hi)
        if not np.count_nonzero(mask):  # a C call; ndarray.any() goes through Python
            return []
        out = []
        for i, j in zip(*np.nonzero(mask), strict=True):
            if len(out) == MAX_WARNINGS:
                out.append({"message": f"{int(mask.sum()) - MAX_WARNINGS} more values are "
                                       "outside the training range"})
                break
            name = sig.feature_names[j]
            lo, hi = float(sig.lo[j]), float(sig.hi[j])
            out.append({
                "instance": int(i), "feature": name, "value": float(batch[i, j]),
                "training_range": [lo, hi],
                "message": f"instance {int(i)}: {name}={float(batch[i, j]):g} is outside the "
                           f"training range [{lo:g}, {hi:g}]; the prediction is an extrapolation",
            })
        return out
    lo, hi = float(sig.lo), float(sig.hi)
    flat = batch.reshape(len(batch), -1)
    bad = np.nonzero(((flat < lo) | (flat > hi)).any(axis=1))[0]
    return [{"instance": int(i), "message": f"instance {int(i)}: pixel values outside "
                                             f"[{lo:g}, {hi:g}]"} for i in bad[:MAX_WARNINGS]]


# --- checks ----------------------------------------------------------------------------


def _check_count(n: int, field: str, max_rows: int) -> None:
    if n == 0:
        raise InvalidInput(f"'{field}' is empty: send at least one example.",
                           [detail(field, "empty batch")])
    if n > max_rows:
        raise InvalidInput(
            f"'{field}' holds {n} examples; the maximum per request is {max_rows}.",
            [detail(field, "batch too large", expected=f"<= {max_rows}", got=n,
                    hint="split the batch into several requests")])


def _check_rows(rows: Any, field: str, max_rows: int) -> None:
    if not isinstance(rows, list):
        raise InvalidInput(f"'{field}' must be a list with one entry per example, "
                           f"not {_json_type(rows)}.",
                           [detail(field, "not a list", got=_json_type(rows))])
    _check_count(len(rows), field, max_rows)


def _check_feature_names(sig: Signature, names: Any, field: str) -> None:
    names = list(names)
    unknown = [str(n) for n in names if n not in sig.index]
    missing = [n for n in sig.feature_names if n not in set(names)]
    if unknown or missing:
        parts = []
        if unknown:
            parts.append("unknown feature" + ("s " if len(unknown) > 1 else " ")
                         + ", ".join(f"'{_short(u)}'" for u in unknown[:10]))
        if missing:
            parts.append("missing " + ", ".join(f"'{m}'" for m in missing))
        raise InvalidInput(
            f"{sig.model} {field}: " + "; ".join(parts) + ". Valid features: "
            + ", ".join(f"'{n}'" for n in sig.feature_names) + ".",
            [detail(f"{field}.{_short(u)}", "unknown feature", expected=sig.feature_names)
             for u in unknown[:10]]
            + [detail(f"{field}.{m}", "missing feature") for m in missing])


def _batch_from_feature_objects(sig: Signature, rows: list[Mapping], field: str) -> np.ndarray:
    names = sig.feature_names
    for i, row in enumerate(rows):
        if len(row) != len(names) or any(k not in sig.index for k in row):
            _check_feature_names(sig, row.keys(), f"{field}[{i}]")
    return to_batch(sig, [[row[n] for n in names] for row in rows], field)


def _numeric(data: Any, field: str, sig: Signature, transpose: bool = False) -> np.ndarray:
    """Nested lists -> float64 array, or a precise message about the first bad value."""
    try:
        arr = np.asarray(data)
    except (ValueError, TypeError):
        arr = None  # ragged nesting: located below
    if arr is not None and arr.dtype.kind in "iuf" and not _has_bool(data, sig):
        return arr.astype(np.float64, copy=False)
    _locate_problem(data, field, sig, transpose)
    raise InvalidInput(f"'{field}' must hold only numbers.")  # pragma: no cover


def _has_bool(data: Any, sig: Signature) -> bool:
    """numpy turns JSON true/false into 1/0 silently; tabular rows are small enough to
    check (image pixels are not, and a boolean pixel is harmless)."""
    return sig.tabular and isinstance(data, list) and any(
        type(v) is bool for row in data if isinstance(row, list) for v in row)


def _locate_problem(data: Any, field: str, sig: Signature, transpose: bool) -> None:
    def walk(node: Any, path: list[int]) -> None:
        if isinstance(node, list):
            for i, child in enumerate(node):
                walk(child, [*path, i])
            return
        if isinstance(node, bool) or not isinstance(node, (int, float)):
            where = _where(sig, field, path, transpose)
            got = "null" if node is None else f"{_json_type(node)} {_short(repr(node))}"
            raise InvalidInput(f"{where}: expected a number, got {got}.",
                               [detail(where, "not a number", got=_json_type(node))])

    walk(data, [])
    # All leaves are numbers, so the nesting is ragged.
    raise InvalidInput(
        f"'{field}' is ragged: every example must be {sig.describe_sample()}.",
        [detail(field, "inconsistent nesting", expected=[-1, *sig.sample_shape])])


def _where(sig: Signature, field: str, path: list[int], transpose: bool) -> str:
    if sig.tabular and len(path) == 2:
        row, col = (path[1], path[0]) if transpose else (path[0], path[1])
        if col < len(sig.feature_names):
            return f"{field}[{row}] feature '{sig.feature_names[col]}'"
    return field + "".join(f"[{p}]" for p in path)


def _finish(sig: Signature, arr: np.ndarray, field: str) -> np.ndarray:
    want = sig.sample_shape
    if arr.ndim >= 1 and arr.shape[0] == 0:
        _check_count(0, field, 1)
    if arr.shape[1:] != want:
        raise InvalidInput(_shape_message(sig, arr.shape, field),
                           [detail(field, "wrong shape", expected=[-1, *want],
                                   got=list(arr.shape))])
    if np.count_nonzero(np.isfinite(arr)) != arr.size:
        i, *rest = np.argwhere(~np.isfinite(arr))[0]
        where = f"{field}[{i}]" + (f" {sig.element_name(int(rest[0]))}" if sig.tabular
                                   else "".join(f"[{r}]" for r in rest))
        value = arr[(i, *rest)]
        shown = "NaN" if np.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
        raise InvalidInput(f"{where}: {shown} is not a valid value; send finite numbers.",
                           [detail(where, "not finite", got=shown)])
    return arr.astype(np.float32)


def _shape_message(sig: Signature, shape: tuple[int, ...], field: str) -> str:
    if sig.tabular:
        k = len(sig.feature_names)
        if len(shape) == 2:
            return f"{sig.model} expects {k} features per example, got {shape[1]} in '{field}'."
        if len(shape) == 1:
            return (f"{sig.model} expects each example in '{field}' to be a list of {k} "
                    f"numbers; got a flat list of {shape[0]} values (wrap one example in "
                    "another list).")
        return f"{sig.model} expects '{field}' of shape [-1, {k}], got {list(shape)}."
    want = "x".join(map(str, sig.sample_shape))
    got = "x".join(map(str, shape[1:])) or "scalars"
    return f"{sig.model} expects images of shape {want} in '{field}', got {got}."


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Sequence):
        return "array"
    if isinstance(value, Mapping):
        return "object"
    return type(value).__name__


def _short(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[:limit] + "…"
