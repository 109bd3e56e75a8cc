"""KServe V2 tensors, as both V2 transports carry them: datatypes, the checks that a
tensor can feed the input or feature it names, decoding from JSON lists, typed lists or
raw little-endian bytes, and raw output bytes.

``service/protocols/v2.py`` (HTTP, JSON and Triton's binary extension) and
``service/protocols/grpc/`` (typed ``contents`` and ``raw_input_contents``) decode
with these, so a tensor is accepted or refused, with the same message, over either.
"""

from __future__ import annotations

import math
import struct
from typing import Any

import numpy as np

from service import tensors
from service.batch import Batch
from service.errors import InvalidInput, detail
from service.signature import Signature

# V2 datatype -> little-endian numpy dtype. BF16 is decoded by hand (numpy has no
# bfloat16); BOOL is one byte per value and BYTES length-prefixed strings.
NUMERIC = {
    "FP16": "<f2", "FP32": "<f4", "FP64": "<f8", "BF16": "<u2",
    "INT8": "i1", "INT16": "<i2", "INT32": "<i4", "INT64": "<i8",
    "UINT8": "u1", "UINT16": "<u2", "UINT32": "<u4", "UINT64": "<u8",
}
ALL_DATATYPES = [*NUMERIC, "BOOL", "BYTES"]


def check_header(tensor_name: Any, shape: Any, datatype: Any, i: int) -> str:
    """Check a tensor's name, shape and datatype; return where it is, for messages."""
    where = f"inputs[{i}]" + (f" ('{tensor_name[:40]}')" if isinstance(tensor_name, str)
                              else "")
    if not isinstance(tensor_name, str) or not tensor_name:
        raise InvalidInput(f"{where}: 'name' must be a non-empty string.")
    if (not isinstance(shape, list) or not shape or len(shape) > 8
            or not all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d < 2**31
                       for d in shape)):
        raise InvalidInput(f"{where}: 'shape' must be a list of non-negative integers, "
                           f"got {str(shape)[:60]}.")
    if not isinstance(datatype, str) or datatype not in ALL_DATATYPES:
        raise InvalidInput(f"{where}: datatype {str(datatype)[:20]!r} is not a V2 datatype. "
                           f"Valid datatypes: {', '.join(ALL_DATATYPES)}.",
                           [detail(where, "wrong datatype", got=str(datatype)[:20])])
    return where


def check_target(sig: Signature, name: str, datatype: str, where: str) -> None:
    """Refuse a datatype that cannot carry what the tensor named ``name`` feeds."""
    what, wire, carriers = target(sig, name, where)
    if datatype not in carriers:
        want = "numbers" if carriers is _NUMBERS else (
            "true/false" if "BOOL" in carriers else "strings")
        send = ("any numeric datatype" if carriers is _NUMBERS else next(iter(carriers)))
        raise InvalidInput(f"{where}: datatype {datatype!r} is not accepted; {what} takes "
                           f"{want}. Send {send}.",
                           [detail(where, "wrong datatype", expected=wire, got=datatype)])


def decode_raw(blob: bytes | memoryview, datatype: str, shape: list[int],
               where: str, source: str = "the raw data") -> np.ndarray:
    """A tensor from its raw little-endian bytes (BYTES: length-prefixed elements)."""
    count = math.prod(shape)  # exact Python ints: np.prod costs µs and can overflow
    size = len(blob)
    if datatype == "BYTES":
        arr = _bytes_elements(bytes(blob), count, where, source)
    else:
        itemsize = 1 if datatype == "BOOL" else np.dtype(NUMERIC[datatype]).itemsize
        if size != count * itemsize:
            raise InvalidInput(f"{where}: shape {shape} of {datatype} needs "
                               f"{count * itemsize} bytes, {source} holds {size}.")
        arr = np.frombuffer(blob, dtype="u1" if datatype == "BOOL" else NUMERIC[datatype],
                            count=count)
        if datatype == "BOOL":
            if np.count_nonzero(arr > 1):
                raise InvalidInput(f"{where}: BOOL bytes must be 0 or 1.")
            arr = arr.astype(bool)
        elif datatype == "BF16":
            arr = (arr.astype(np.uint32) << 16).view(np.float32)
    return arr.reshape(shape)


def decode_list(data: Any, datatype: str, shape: list[int], where: str) -> np.ndarray:
    """A tensor from a (possibly nested) list of values, JSON's or gRPC's typed
    contents."""
    if datatype == "BF16":
        raise InvalidInput(f"{where}: BF16 can only be sent as binary data.")
    arr = _json_data(data, where, datatype)
    check_count(arr.size, shape, where)
    return arr.reshape(shape)


def check_count(size: int, shape: list[int], where: str) -> None:
    count = math.prod(shape)
    if size != count:
        raise InvalidInput(f"{where}: shape {shape} holds {count} elements but 'data' has "
                           f"{size}.",
                           [detail(where, "element count does not match shape",
                                   expected=count, got=int(size))])


def to_batch(sig: Signature, arrays: dict[str, np.ndarray], max_rows: int) -> Batch:
    """The decoded tensors as a validated batch (one per input or per feature)."""
    for name, arr in arrays.items():
        if arr.ndim == 0 or arr.shape[0] == 0:
            raise InvalidInput(f"Input '{name[:40]}' holds no examples: the batch is empty; "
                               "send at least one example.")
        if arr.shape[0] > max_rows:
            raise InvalidInput(f"The batch holds {arr.shape[0]} examples; the maximum per "
                               f"request is {max_rows}.")
    return tensors.from_arrays(sig, arrays, "inputs", max_rows)


def no_inputs(sig: Signature) -> InvalidInput:
    return InvalidInput("'inputs' must be a non-empty list of tensors "
                        "({\"name\", \"shape\", \"datatype\", \"data\"}); "
                        f"{sig.model} takes {takes(sig)}.")


def duplicate(name: str) -> InvalidInput:
    return InvalidInput(f"Input '{name[:40]}' appears twice.")


def takes(sig: Signature) -> str:
    parts = []
    for inp in sig.inputs:
        text = f"'{inp.name}' with shape {[-1, *inp.sample_shape]}"
        if inp.tabular:
            if inp.v2_datatype() is None:
                text = "one tensor per feature: "
            else:
                text += " or one tensor per feature: "
            text += ", ".join(f"'{f.name}'" for f in inp.features[:30])
        parts.append(text)
    return "; ".join(parts)


def target(sig: Signature, name: str, where: str) -> tuple[str, str, set[str]]:
    """What a tensor named ``name`` feeds, its datatype in the model's metadata, and the
    datatypes that can carry it."""
    inp = sig.by_name.get(name)
    if inp is not None:
        datatype = inp.v2_datatype()
        if datatype is None:
            raise InvalidInput(f"{where}: input '{name}' has features of different types; "
                               "send one tensor per feature: "
                               + ", ".join(f"'{f.name}' ({f.wire})"
                                           for f in inp.features[:30]) + ".")
        what = "images" if not inp.tabular else f"input '{name}'"
        return what, datatype, _CARRIERS[datatype]
    feature = sig.features.get(name)
    if feature is not None:
        return f"feature '{name}'", feature.wire, _CARRIERS[feature.wire]
    raise InvalidInput(f"Unknown input {name[:40]!r} for {sig.model}; it takes {takes(sig)}.",
                       [detail(f"inputs[{name[:40]}]", "unknown input")])


# Which V2 datatypes can carry a value of each kind (numbers convert exactly or, for
# integers, are checked to be whole).
_NUMBERS = set(NUMERIC)
_CARRIERS = {"FP64": _NUMBERS, "FP32": _NUMBERS, "INT64": _NUMBERS, "UINT8": _NUMBERS,
             "BOOL": {"BOOL"}, "BYTES": {"BYTES"}}


def _bytes_elements(blob: bytes, count: int, where: str, source: str) -> np.ndarray:
    """Triton's BYTES encoding: each element a 4-byte little-endian length and its bytes."""
    if count * 4 > len(blob):  # before allocating anything the shape claims
        raise InvalidInput(f"{where}: {count} BYTES elements need at least {count * 4} bytes, "
                           f"{source} holds {len(blob)}.")
    out = np.empty(count, dtype=object)
    pos = 0
    for k in range(count):
        if pos + 4 > len(blob):
            raise InvalidInput(f"{where}: BYTES data is truncated at element {k} of {count}.")
        (n,) = struct.unpack_from("<I", blob, pos)
        pos += 4
        if pos + n > len(blob):
            raise InvalidInput(f"{where}: BYTES element {k} says {n} bytes but only "
                               f"{len(blob) - pos} are left.")
        out[k] = _text(blob[pos:pos + n], where, k)
        pos += n
    if pos != len(blob):
        raise InvalidInput(f"{where}: BYTES data holds {len(blob) - pos} bytes past its "
                           f"{count} elements (check the shape).")
    return out


def _text(raw: bytes, where: str, k: int) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput(f"{where}: BYTES element {k} is not UTF-8 text.") from None


def _json_data(data: Any, where: str, datatype: str) -> np.ndarray:
    if not isinstance(data, list):
        data = [data]
    if datatype in ("BYTES", "BOOL"):
        flat: list[Any] = []
        _flatten(data, flat, where)
        out = np.empty(len(flat), dtype=object)
        out[:] = flat
        if datatype == "BOOL" and all(type(v) is bool for v in flat):
            return out.astype(bool)
        return out  # checked value by value against the feature (strings, nulls)
    try:
        arr = np.asarray(data)
    except (ValueError, TypeError):
        raise InvalidInput(f"{where}: 'data' is ragged; send a flat list or a regular "
                           "nested list.") from None
    if arr.dtype.kind not in "iuf":
        if arr.dtype == object and all(v is None or (isinstance(v, (int, float))
                                                     and not isinstance(v, bool))
                                       for v in arr.reshape(-1)):
            return arr.reshape(-1)  # nulls: allowed where the feature is nullable
        raise InvalidInput(f"{where}: 'data' must hold only numbers.",
                           [detail(where, "not a number")])
    if datatype[0] in "IU":  # integers must be whole and fit the declared datatype
        info = np.iinfo(NUMERIC[datatype])
        if arr.dtype.kind == "f" and np.count_nonzero(np.floor(arr) != arr):
            raise InvalidInput(f"{where}: {datatype} data must be whole numbers.")
        if arr.size and (arr.min() < info.min or arr.max() > info.max):
            raise InvalidInput(f"{where}: a value does not fit {datatype} "
                               f"([{info.min}, {info.max}]).")
    return arr.reshape(-1)


def _flatten(node: Any, out: list[Any], where: str, depth: int = 0) -> None:
    if depth > 8:
        raise InvalidInput(f"{where}: 'data' is nested too deeply.")
    for item in node:
        if isinstance(item, list):
            _flatten(item, out, where, depth + 1)
        else:
            out.append(item)


def to_bytes(arr: np.ndarray, datatype: str) -> bytes:
    if datatype == "BYTES":
        parts = []
        for item in arr.reshape(-1):
            raw = str(item).encode()
            parts.append(struct.pack("<I", len(raw)) + raw)
        return b"".join(parts)
    return np.ascontiguousarray(arr, dtype=NUMERIC[datatype]).tobytes()

