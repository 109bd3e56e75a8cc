"""Turn decoded request payloads into a validated batch for one model version, and say
exactly what is wrong when that is impossible.

Every protocol (TF-Serving rows and columns, classify/regress examples, KServe V2
tensors, images) ends up here, so the rules and the error messages are the same
everywhere: the right inputs, features and shapes; per feature a value of its dtype
(numbers, integers, true/false, strings), null only where the model can take a
missing value, a known category unless the model handles unknown ones; no NaN or
infinity; a non-empty batch under the configured maximum. Numbers outside the range
seen in training and categories the model ignores are served with warnings.

Names: a request may give an input whole (its name: ``features``, ``image``) or a
tabular input one feature at a time (``alcohol``, ``colour``), in any mix across inputs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from service.batch import Batch
from service.errors import InvalidInput, detail
from service.signature import FeatureSig, InputSig, Signature

MAX_WARNINGS = 20
_INT64_MAX = 2**63 - 1


# --- entry points, one per payload form ----------------------------------------------


def from_rows(sig: Signature, rows: Any, field: str, max_rows: int) -> Batch:
    """TF-Serving ``instances`` / classify ``examples``: one entry per example, either
    the input itself (a list of values in manifest order, an image array) or an object
    naming inputs and features (``{"alcohol": 9.4, ...}``, ``{"features": [...]}``)."""
    _check_rows(rows, field, max_rows)
    if all(isinstance(r, Mapping) for r in rows):
        return _from_named_rows(sig, rows, field)
    if any(isinstance(r, Mapping) for r in rows):
        raise InvalidInput(f"Entries of '{field}' mix objects and lists; use one form.")
    inp = _only_input(sig, field)
    return Batch({inp.name: _input_tensor(inp, rows, field)}, len(rows))


def from_columns(sig: Signature, inputs: Any, max_rows: int, field: str = "inputs") -> Batch:
    """TF-Serving columnar ``inputs``: the input tensor itself, or an object of inputs
    (``{"features": tensor}``) and/or feature columns (``{"alcohol": [9.4, 10.0]}``)."""
    if isinstance(inputs, Mapping):
        parts: dict[str, Any] = {}
        for key, value in inputs.items():
            if key in sig.features and not isinstance(value, list):
                raise InvalidInput(
                    f"Column '{field}.{_short(str(key))}' must be a list with one value per "
                    "example.", [detail(f"{field}.{_short(str(key))}", "not a list",
                                        got=_json_type(value))])
            parts[key] = value
        return _assemble(sig, parts, field, max_rows, columns_are_lists=True)
    inp = _only_input(sig, field)
    _check_rows(inputs, field, max_rows)
    return Batch({inp.name: _input_tensor(inp, inputs, field)}, len(inputs))


def from_arrays(sig: Signature, arrays: Mapping[str, np.ndarray], field: str,
                max_rows: int) -> Batch:
    """KServe V2: decoded tensors named after inputs (batch first) or features
    (shape ``[n]`` or ``[n, 1]``)."""
    parts: dict[str, Any] = {}
    for name, arr in arrays.items():
        if name in sig.features and name not in sig.by_name:
            if arr.ndim == 2 and arr.shape[1] == 1:
                arr = arr[:, 0]
            if arr.ndim != 1:
                raise InvalidInput(f"Feature tensor '{name}' must have shape [n] or [n, 1], "
                                   f"got {list(arr.shape)}.")
        parts[name] = arr
    return _assemble(sig, parts, field, max_rows, columns_are_lists=False)


def from_array(sig: Signature, arr: np.ndarray, field: str = "batch") -> Batch:
    """A whole batch for a single-input model, as an array (the Python API)."""
    inp = _only_input(sig, field)
    return Batch({inp.name: _input_tensor(inp, arr, field)}, len(arr))


# --- names -> inputs --------------------------------------------------------------------


def _only_input(sig: Signature, field: str) -> InputSig:
    if sig.single is None:
        raise InvalidInput(
            f"{sig.model} takes several inputs ({sig.describe()}); send each example as an "
            "object that names them ({\"instances\": [{\"<input>\": ..., ...}]}), or "
            "the columns as an object of inputs ({\"inputs\": {\"<input>\": [...]}}).")
    return sig.single


def _from_named_rows(sig: Signature, rows: Sequence[Mapping], field: str) -> Batch:
    # The keys of the first row decide which inputs come whole; every row must name the
    # same things (checked row by row, so the error points at the row).
    first = rows[0]
    whole = [i for i in sig.inputs if i.name in first]
    expected = _expected_names(sig, whole)
    for i, row in enumerate(rows):
        if len(row) != len(expected) or any(k not in expected for k in row):
            _check_names(sig, row.keys(), f"{field}[{i}]", whole)
    arrays: dict[str, np.ndarray] = {}
    for inp in sig.inputs:
        where = field
        if inp in whole:
            arrays[inp.name] = _input_tensor(inp, [r[inp.name] for r in rows], where)
        elif not inp.tabular:  # pragma: no cover (an image input is always named whole)
            raise InvalidInput(f"'{field}' does not give input '{inp.name}'.")
        elif inp.plain:
            # One numpy call for the whole table; problems are located by row and name.
            names = inp.feature_names
            arrays[inp.name] = _input_tensor(inp, [[r[n] for n in names] for r in rows], where)
        else:
            cols = [_column(f, [r[f.name] for r in rows], field) for f in inp.features]
            arrays[inp.name] = _stack(inp, cols)
    return Batch(arrays, len(rows))


def _assemble(sig: Signature, parts: Mapping[str, Any], field: str, max_rows: int, *,
              columns_are_lists: bool) -> Batch:
    whole = [i for i in sig.inputs if i.name in parts]
    expected = _expected_names(sig, whole)
    if parts.keys() != expected:
        _check_names(sig, parts.keys(), field, whole)
    lengths = {name: _length(value) for name, value in parts.items()}
    for name, length in lengths.items():
        if length < 0:
            raise InvalidInput(f"'{field}.{_short(name)}' must be a list with one entry per "
                               "example.", [detail(f"{field}.{_short(name)}", "not a list")])
    counts = set(lengths.values())
    if len(counts) != 1:
        shown = ", ".join(f"{n}={c}" for n, c in list(lengths.items())[:12])
        raise InvalidInput(f"All inputs and feature columns in '{field}' must hold the same "
                           f"number of examples; got {shown}.")
    n = counts.pop()
    _check_count(n, field, max_rows)
    arrays: dict[str, np.ndarray] = {}
    for inp in sig.inputs:
        if inp in whole:
            arrays[inp.name] = _input_tensor(inp, parts[inp.name], f"{field}[{inp.name}]"
                                             if not columns_are_lists else field)
            continue
        if inp.plain and columns_are_lists:
            arr = _numeric(inp, [parts[n] for n in inp.feature_names], field, transpose=True)
            arrays[inp.name] = _finish(inp, arr.T, field)
            continue
        cols = [_column(f, parts[f.name], field, by_tensor=not columns_are_lists)
                for f in inp.features]
        arrays[inp.name] = _stack(inp, cols)
    return Batch(arrays, n)


def _expected_names(sig: Signature, whole: list[InputSig]) -> frozenset[str] | set[str]:
    """The names a request must use when ``whole`` inputs are given whole and the rest
    by feature."""
    if not whole:
        return sig.feature_set
    return {i.name for i in whole} | {f.name for i in sig.inputs if i not in whole
                                      for f in i.features}


def _length(value: Any) -> int:
    if isinstance(value, np.ndarray):
        return value.shape[0] if value.ndim else 0
    if isinstance(value, list):
        return len(value)
    return -1


def _check_names(sig: Signature, names: Any, field: str, whole: list[InputSig]) -> None:
    names = [str(n) for n in names]
    given = set(names)
    known = set(sig.by_name) | set(sig.features)
    unknown = [n for n in names if n not in known]
    missing = [n for i in sig.inputs if i not in whole for n in i.feature_names
               if n not in given]
    missing += [i.name for i in sig.inputs if not i.tabular and i.name not in given]
    both = [i.name for i in whole if any(f in given for f in i.feature_names)]
    if not (unknown or missing or both):  # pragma: no cover (callers check first)
        return
    parts = []
    if unknown:
        parts.append("unknown feature" + ("s " if len(unknown) > 1 else " ")
                     + ", ".join(f"'{_short(u)}'" for u in unknown[:10]))
    if missing:
        parts.append("missing " + ", ".join(f"'{m}'" for m in missing[:20]))
    if both:
        parts.append(f"input '{both[0]}' is given whole and by feature")
    valid = ", ".join(f"'{n}'" for n in sig.features)
    if any(not i.tabular for i in sig.inputs) or len(sig.inputs) > 1:
        valid = (valid + "; inputs: " if valid else "inputs: ") + sig.describe()
    raise InvalidInput(
        f"{sig.model} {field}: " + "; ".join(parts) + f". Valid features: {valid}.",
        [detail(f"{field}.{_short(u)}", "unknown feature", expected=sig.feature_names()[:50])
         for u in unknown[:10]]
        + [detail(f"{field}.{m}", "missing feature") for m in missing[:20]])


# --- whole input tensors ------------------------------------------------------------------


def _input_tensor(inp: InputSig, data: Any, field: str) -> np.ndarray:
    """One input given whole: nested lists (JSON) or an array (V2)."""
    if not inp.tabular:
        arr = _numeric(inp, data, field)
        want = inp.sample_shape
        if arr.shape == want or (want[-1] == 1 and arr.shape == want[:-1]):
            raise InvalidInput(f"'{field}' is one image, not a batch: wrap it in a list "
                               f"(shape [1, {', '.join(map(str, want))}]).",
                               [detail(field, "not a batch", expected=[-1, *want],
                                       got=list(arr.shape))])
        if arr.ndim == len(inp.sample_shape) + 2 and arr.shape[-1] == 1:
            arr = arr[..., 0]  # [n, 28, 28, 1] is the same image as [n, 28, 28]
        elif arr.ndim == len(inp.sample_shape) and inp.sample_shape[-1] == 1:
            arr = arr[..., None]
        return _finish(inp, arr, field)
    if inp.plain:
        return _finish(inp, _numeric(inp, data, field), field)
    # Mixed or non-float features: split into columns and check each by its dtype.
    if isinstance(data, np.ndarray):
        table = data
    else:
        try:
            table = np.asarray(data, dtype=object)
        except ValueError:
            table = np.empty(0, dtype=object)  # ragged: reported below
    k = len(inp.features)
    if table.ndim != 2 or table.shape[1] != k:
        if not isinstance(data, np.ndarray) and isinstance(data, list) and all(
                isinstance(r, list) for r in data):
            lengths = [len(r) for r in data]
            bad = next((i for i, n in enumerate(lengths) if n != k), 0)
            if len(set(lengths)) > 1:
                raise InvalidInput(f"'{field}' is ragged: {field}[{bad}] holds {lengths[bad]} "
                                   f"values; every example must be {inp.describe()}.",
                                   [detail(f"{field}[{bad}]", "wrong length", expected=k,
                                           got=lengths[bad])])
            raise InvalidInput(_shape_message(inp, (len(data), lengths[0]), field),
                               [detail(field, "wrong shape", expected=[-1, k])])
        shape = list(table.shape) if table.ndim else []
        raise InvalidInput(_shape_message(inp, tuple(shape), field) if table.ndim else
                           f"'{field}' is ragged: every example must be {inp.describe()}.",
                           [detail(field, "wrong shape", expected=[-1, k], got=shape)])
    cols = [_column(f, table[:, f.column], field) for f in inp.features]
    return _stack(inp, cols)


def _numeric(inp: InputSig, data: Any, field: str, transpose: bool = False) -> np.ndarray:
    """Nested lists or an array -> a float64 (or integer) array, or a precise message
    about the first bad value."""
    if isinstance(data, np.ndarray):
        arr: np.ndarray | None = data
    else:
        try:
            arr = np.asarray(data)
        except (ValueError, TypeError):
            arr = None  # ragged nesting: located below
    if arr is not None and arr.dtype.kind in "iuf" and not _has_bool(data, inp):
        return arr
    if arr is not None and arr.dtype.kind == "b" and not inp.tabular:
        return arr.astype(np.uint8)  # a boolean pixel is harmless
    if isinstance(data, np.ndarray) and data.dtype != object:
        raise InvalidInput(f"'{field}' must hold only numbers, not {data.dtype.name} values.",
                           [detail(field, "not a number")])
    _locate_problem(inp, data.tolist() if isinstance(data, np.ndarray) else data, field,
                    transpose)
    raise InvalidInput(f"'{field}' must hold only numbers.")  # pragma: no cover


def _has_bool(data: Any, inp: InputSig) -> bool:
    """numpy turns JSON true/false into 1/0 silently; tabular rows are small enough to
    check (image pixels are not, and a boolean pixel is harmless)."""
    return inp.tabular and isinstance(data, list) and any(
        type(v) is bool for row in data if isinstance(row, list) for v in row)


def _locate_problem(inp: InputSig, data: Any, field: str, transpose: bool) -> None:
    def walk(node: Any, path: list[int]) -> None:
        if isinstance(node, list):
            for i, child in enumerate(node):
                walk(child, [*path, i])
            return
        if isinstance(node, bool) or not isinstance(node, (int, float)):
            where = _where(inp, field, path, transpose)
            got = "null" if node is None else f"{_json_type(node)} {_short(repr(node))}"
            raise InvalidInput(f"{where}: expected a number, got {got}.",
                               [detail(where, "not a number", got=_json_type(node))])

    walk(data, [])
    # All leaves are numbers, so the nesting is ragged.
    raise InvalidInput(
        f"'{field}' is ragged: every example must be {inp.describe()}.",
        [detail(field, "inconsistent nesting", expected=[-1, *inp.sample_shape])])


def _where(inp: InputSig, field: str, path: list[int], transpose: bool) -> str:
    if inp.tabular and len(path) == 2:
        row, col = (path[1], path[0]) if transpose else (path[0], path[1])
        if col < len(inp.features):
            return f"{field}[{row}] feature '{inp.features[col].name}'"
    return field + "".join(f"[{p}]" for p in path)


def _finish(inp: InputSig, arr: np.ndarray, field: str) -> np.ndarray:
    want = inp.sample_shape
    if arr.ndim >= 1 and arr.shape[0] == 0:
        _check_count(0, field, 1)
    if arr.shape[1:] != want:
        raise InvalidInput(_shape_message(inp, arr.shape, field),
                           [detail(field, "wrong shape", expected=[-1, *want],
                                   got=list(arr.shape))])
    if arr.dtype.kind == "f" and np.count_nonzero(np.isfinite(arr)) != arr.size:
        where, value = _first_infinite(inp, arr, arr, field)
        raise InvalidInput(f"{where}: {_shown(value)} is not a valid value; send finite "
                           "numbers.", [detail(where, "not finite", got=_shown(value))])
    out = arr.astype(inp.dtype, copy=False)
    if out.dtype == np.float32 and out is not arr and np.count_nonzero(
            np.isfinite(out)) != out.size:
        where, value = _first_infinite(inp, out, arr, field)
        raise InvalidInput(f"{where}: {value:g} is too large for the model's float32 input.",
                           [detail(where, "out of range", got=float(value))])
    return out


def _first_infinite(inp: InputSig, seen: np.ndarray, sent: np.ndarray,
                    field: str) -> tuple[str, Any]:
    """Where the first non-finite value of ``seen`` is, and the value ``sent`` there."""
    i, *rest = np.argwhere(~np.isfinite(seen))[0]
    where = f"{field}[{i}]" + (f" feature '{inp.features[int(rest[0])].name}'"
                               if inp.tabular else "".join(f"[{r}]" for r in rest))
    return where, sent[(i, *rest)]


def _shape_message(inp: InputSig, shape: tuple[int, ...], field: str) -> str:
    if inp.tabular:
        k = len(inp.features)
        if len(shape) == 2:
            return (f"'{inp.name}' expects {k} features per example, got {shape[1]} "
                    f"in '{field}'.")
        if len(shape) == 1:
            return (f"'{inp.name}' expects each example in '{field}' to be a list of {k} "
                    f"values; got a flat list of {shape[0]} values (wrap one example in "
                    "another list).")
        return f"'{inp.name}' expects '{field}' of shape [-1, {k}], got {list(shape)}."
    want = "x".join(map(str, inp.sample_shape))
    got = "x".join(map(str, shape[1:])) or "scalars"
    return f"'{inp.name}' expects images of shape {want} in '{field}', got {got}."


# --- one feature's column -----------------------------------------------------------------


Where = Callable[[int], str]


def _column(f: FeatureSig, values: Any, field: str, by_tensor: bool = False) -> np.ndarray:
    """A feature's values (a JSON list or a decoded array) -> a 1-D array in the
    feature's column dtype, or a message naming the first bad value: by example and
    feature (``instances[3] feature 'colour'``) or, for a V2 tensor of its own, by tensor
    and element (``inputs['colour'][3]``)."""
    if by_tensor:
        def where(i: int) -> str:
            return f"{field}['{f.name}'][{i}]"
    else:
        def where(i: int) -> str:
            return f"{field}[{i}] feature '{f.name}'"
    arr = values if isinstance(values, np.ndarray) else _as_array(values, f.numeric)
    if f.numeric:
        col = _numeric_column(f, arr, values, where)
    elif f.dtype == "bool":
        col = _bool_column(f, arr, where)
    else:
        col = _string_column(f, arr, where)
    if f.categories is not None and f.unknown == "error":
        _check_categories(f, col, where)
    return col


def _as_array(values: list, numeric: bool) -> np.ndarray:
    # Only numbers go through numpy's inference: it would turn [true, "x"] into strings.
    try:
        arr = np.asarray(values) if numeric else None
    except (ValueError, TypeError):
        arr = None
    if arr is None or arr.ndim != 1:
        out = np.empty(len(values), dtype=object)
        out[:] = values
        return out
    return arr


def _numeric_column(f: FeatureSig, arr: np.ndarray, values: Any, where: Where) -> np.ndarray:
    if arr.dtype.kind not in "iuf" or (isinstance(values, list)
                                       and any(type(v) is bool for v in values)):
        arr = _number_objects(f, values if isinstance(values, list) else arr.tolist(), where)
    col = arr
    if col.dtype == np.uint64 and len(col) and col.max() > _INT64_MAX:
        i = int(np.argmax(col > _INT64_MAX))
        _bad(f, where(i), col[i], "an integer within int64")
    if col.dtype.kind == "f":
        finite = np.isfinite(col)
        if np.count_nonzero(finite) != len(col):
            missing = np.isnan(col)
            inf = ~finite & ~missing
            if inf.any():
                i = int(np.argmax(inf))
                raise InvalidInput(f"{where(i)}: {_shown(col[i])} is not a valid value; send "
                                   "finite numbers.", [detail(where(i), "not finite",
                                                              got=_shown(col[i]))])
            if not f.nullable:
                i = int(np.argmax(missing))
                raise InvalidInput(f"{where(i)}: NaN is not a valid value; send finite numbers "
                                   f"('{f.name}' cannot be missing).",
                                   [detail(where(i), "not finite", got="NaN")])
    if f.dtype == "int64" and col.dtype.kind == "f":
        present = ~np.isnan(col)
        frac = present & (np.floor(col) != col)
        if frac.any():
            i = int(np.argmax(frac))
            _bad(f, where(i), float(col[i]), "an integer")
        big = present & ((col >= 2.0**63) | (col < -(2.0**63)))
        if big.any():
            i = int(np.argmax(big))
            _bad(f, where(i), float(col[i]), "an integer within int64")
    if f.limit is not None and len(col):
        over = np.abs(col) > f.limit  # NaN compares False
        if np.count_nonzero(over):
            i = int(np.argmax(over))
            kind = "float32" if f.limit > 2**31 else "int32"
            raise InvalidInput(f"{where(i)}: {_plain(col[i])} is too large for the model's "
                               f"{kind} input.", [detail(where(i), "out of range",
                                                         got=_plain(col[i]))])
    return col.astype(f.column_dtype, copy=False)


def _number_objects(f: FeatureSig, items: list[Any], where: Where) -> np.ndarray:
    """Values that are not one numeric array (nulls, mixed types) checked one by one:
    integers stay exact unless a null or a float needs a float column."""
    floats = False
    out: list[Any] = []
    for i, v in enumerate(items):
        if v is None:
            if not f.nullable:
                _bad(f, where(i), v)
            floats = True
            out.append(np.nan)
        elif isinstance(v, bool) or not isinstance(v, (int, float)):
            _bad(f, where(i), v)
        else:
            if isinstance(v, int) and not -(2**63) <= v <= _INT64_MAX:
                _bad(f, where(i), v, "an integer within int64")
            floats = floats or isinstance(v, float)
            out.append(v)
    return np.array(out, dtype=np.float64 if floats else np.int64)


def _bool_column(f: FeatureSig, arr: np.ndarray, where: Where) -> np.ndarray:
    if arr.dtype.kind == "b":
        return arr.astype(f.column_dtype, copy=False)
    out = np.empty(len(arr), dtype=object)
    for i, v in enumerate(arr):
        if isinstance(v, (bool, np.bool_)):
            out[i] = bool(v)
        elif v is None and f.nullable:
            out[i] = np.nan
        else:
            _bad(f, where(i), v)
    return out if f.nullable else out.astype(np.bool_)


def _string_column(f: FeatureSig, arr: np.ndarray, where: Where) -> np.ndarray:
    if arr.dtype.kind == "U":
        return arr.astype(object)
    out = np.empty(len(arr), dtype=object)
    for i, v in enumerate(arr):
        if isinstance(v, str):
            out[i] = v
        elif (v is None or (isinstance(v, float) and math.isnan(v))) and f.nullable:
            out[i] = np.nan
        else:
            _bad(f, where(i), v)
    return out


def _bad(f: FeatureSig, where: str, value: Any, expected: str | None = None) -> None:
    if value is None:
        got = "null"
        problem = "missing value" if not f.nullable else "not valid"
        hint = f" ('{f.name}' cannot be missing)" if not f.nullable else ""
    else:
        got = f"{_json_type(value)} {_short(repr(_plain(value)))}"
        problem, hint = "wrong type", ""
    want = expected or f.describe()
    if expected == "an integer" and f.nullable:
        want += " or null"
    raise InvalidInput(f"{where}: expected {want}, got {got}{hint}.",
                       [detail(where, problem, expected=f.dtype, got=_json_type(value))])


def _check_categories(f: FeatureSig, col: np.ndarray, where_at: Where) -> None:
    known = f.categories
    assert known is not None
    for i, v in enumerate(col):
        if v in known or (isinstance(v, float) and math.isnan(v)):
            continue
        where = where_at(i)
        shown = ", ".join(repr(c) for c in f.known[:30]) + (" …" if len(f.known) > 30 else "")
        raise InvalidInput(f"{where}: {_short(repr(_plain(v)))} is not a known category; "
                           f"the model was trained on {shown}.",
                           [detail(where, "unknown category", expected=f.known[:100],
                                   got=_plain(v))])


def _stack(inp: InputSig, cols: list[np.ndarray]) -> np.ndarray:
    if inp.dtype != object:
        return np.column_stack(cols).astype(inp.dtype, copy=False)
    out = np.empty((len(cols[0]), len(cols)), dtype=object)
    for j, col in enumerate(cols):
        out[:, j] = col
    return out


# --- warnings ----------------------------------------------------------------------------


def warnings(sig: Signature, batch: Batch) -> list[dict[str, Any]]:
    """Values the model was not trained on but serves anyway: numbers outside the
    training range (an extrapolation) and categories it ignores."""
    out: list[dict[str, Any]] = []
    total = 0
    for inp in sig.inputs:
        arr = batch[inp.name]
        total += (_tabular_warnings(inp, arr, out) if inp.tabular
                  else _image_warnings(inp, arr, out))
    if total > len(out):
        out.append({"message": f"{total - len(out)} more values are outside what the model "
                               "was trained on"})
    return out


def _tabular_warnings(inp: InputSig, arr: np.ndarray, out: list[dict[str, Any]]) -> int:
    """Appends up to MAX_WARNINGS entries in all; returns how many cells it found."""
    if inp.plain:
        mask = (arr < inp.lo) | (arr > inp.hi)
        total = int(np.count_nonzero(mask))  # a C call; ndarray.any() goes through Python
        if not total:
            return 0
        cells: Any = zip(*np.nonzero(mask), strict=True)
    else:
        found: list[tuple[int, int]] = []
        total = 0
        for f in inp.features:
            col = arr[:, f.column]
            if f.categories is not None:  # a category, even an integer one, is not a range
                if f.unknown != "warn":
                    continue  # unknown ones were refused
                hits = np.array([i for i, v in enumerate(col) if v not in f.categories
                                 and not (isinstance(v, float) and math.isnan(v))], dtype=int)
            elif f.numeric and f.lo is not None:
                values = col.astype(np.float64)
                hits = np.nonzero((values < f.lo) | (values > f.hi))[0]
            else:
                continue
            total += len(hits)
            found.extend((int(i), f.column) for i in hits[:MAX_WARNINGS])
        cells = sorted(found)
    for i, j in cells:
        if len(out) >= MAX_WARNINGS:
            break
        f = inp.features[j]
        value = _plain(arr[i, j])
        if f.categories is None:
            lo, hi = float(f.lo), float(f.hi)  # type: ignore[arg-type]
            out.append({
                "instance": int(i), "feature": f.name, "value": value,
                "training_range": [lo, hi],
                "message": f"instance {int(i)}: {f.name}={float(value):g} is outside the "
                           f"training range [{lo:g}, {hi:g}]; the prediction is an "
                           "extrapolation",
            })
        else:
            treated = ("receives it as missing" if f.frame_category
                       else "treats it as an unknown category")
            out.append({
                "instance": int(i), "feature": f.name, "value": value,
                "known_categories": f.known[:50],
                "message": f"instance {int(i)}: {f.name}={_short(repr(value))} was not seen "
                           f"in training; the model {treated}",
            })
    return total


def _image_warnings(inp: InputSig, arr: np.ndarray, out: list[dict[str, Any]]) -> int:
    spec = inp.spec.image if inp.spec else None
    if spec is None:  # pragma: no cover
        return 0
    lo, hi = sorted((spec.value_min, spec.value_max))
    flat = arr.reshape(len(arr), -1)
    bad = np.nonzero(((flat < lo) | (flat > hi)).any(axis=1))[0]
    room = max(0, MAX_WARNINGS - len(out))
    out.extend({"instance": int(i), "input": inp.name,
                "message": f"instance {int(i)}: pixel values outside [{lo:g}, {hi:g}]"}
               for i in bad[:room])
    return len(bad)


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
    if not isinstance(rows, (list, np.ndarray)):
        raise InvalidInput(f"'{field}' must be a list with one entry per example, "
                           f"not {_json_type(rows)}.",
                           [detail(field, "not a list", got=_json_type(rows))])
    _check_count(len(rows), field, max_rows)


def _shown(value: Any) -> str:
    return "NaN" if np.isnan(value) else ("Infinity" if value > 0 else "-Infinity")


def _plain(value: Any) -> Any:
    """A numpy scalar as the JSON value it came from."""
    return value.item() if isinstance(value, np.generic) else value


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, (bool, np.bool_)):
        return "boolean"
    if isinstance(value, (int, float, np.integer, np.floating)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (Sequence, np.ndarray)):
        return "array"
    if isinstance(value, Mapping):
        return "object"
    return type(value).__name__


def _short(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[:limit] + "…"
