"""ModelInfer messages to and from the data plane's types: inputs from typed ``contents``
or ``raw_input_contents``, outputs as ``raw_output_contents`` (as Triton answers; its
clients and KServe's read either). Checks and messages are V2 HTTP's
(``service/protocols/v2_tensors.py``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from service.batch import Batch
from service.dataplane import InferenceResult, OutputRequest
from service.errors import InvalidInput
from service.model import LoadedModel
from service.protocols import v2_tensors as wire
from service.protocols.grpc.proto import grpc_predict_v2_pb2 as pb

# Which InferTensorContents field carries each datatype (FP16 and BF16 have none: they
# travel as raw bytes only), and the numpy dtype to read it as.
CONTENTS = {
    "BOOL": ("bool_contents", np.bool_),
    "INT8": ("int_contents", np.int64), "INT16": ("int_contents", np.int64),
    "INT32": ("int_contents", np.int64), "INT64": ("int64_contents", np.int64),
    "UINT8": ("uint_contents", np.uint64), "UINT16": ("uint_contents", np.uint64),
    "UINT32": ("uint_contents", np.uint64), "UINT64": ("uint64_contents", np.uint64),
    "FP32": ("fp32_contents", np.float32), "FP64": ("fp64_contents", np.float64),
    "BYTES": ("bytes_contents", None),
}
_FIELDS = sorted({f for f, _ in CONTENTS.values()})


def parameters(params: Any) -> dict[str, Any]:
    """A protobuf ``map<string, InferParameter>`` as plain values."""
    out: dict[str, Any] = {}
    for key, p in params.items():
        kind = p.WhichOneof("parameter_choice")
        out[key] = getattr(p, kind) if kind else None
    return out


def decode_inputs(model: LoadedModel, request: pb.ModelInferRequest, max_rows: int) -> Batch:
    sig = model.signature
    if not request.inputs:
        raise wire.no_inputs(sig)
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise InvalidInput(f"raw_input_contents holds {len(raw)} tensors for "
                           f"{len(request.inputs)} inputs; send one per input, in order, or "
                           "none (typed contents).")
    arrays: dict[str, np.ndarray] = {}
    for i, tensor in enumerate(request.inputs):
        name, datatype, shape = tensor.name, tensor.datatype, list(tensor.shape)
        where = wire.check_header(name, shape, datatype, i)
        wire.check_target(sig, name, datatype, where)
        if raw:
            arr = wire.decode_raw(raw[i], datatype, shape, where, f"raw_input_contents[{i}]")
        else:
            arr = _typed(tensor.contents, datatype, shape, where)
        if name in arrays:
            raise wire.duplicate(name)
        arrays[name] = arr
    return wire.to_batch(sig, arrays, max_rows)


def _typed(contents: pb.InferTensorContents, datatype: str, shape: list[int],
           where: str) -> np.ndarray:
    if datatype not in CONTENTS:
        raise InvalidInput(f"{where}: {datatype} has no typed contents field; send it in "
                           "raw_input_contents.")
    field, dtype = CONTENTS[datatype]
    for other in _FIELDS:
        if other != field and len(getattr(contents, other)):
            raise InvalidInput(f"{where}: datatype {datatype} is carried in contents.{field}, "
                               f"but the values are in contents.{other}.")
    values = getattr(contents, field)
    if datatype == "BYTES":
        data: Any = [_text(v, where, k) for k, v in enumerate(values)]
        return wire.decode_list(data, datatype, shape, where)
    arr = np.array(values, dtype=dtype)
    if datatype[0] in "IU" and arr.size:
        info = np.iinfo(wire.NUMERIC[datatype])
        if arr.min() < info.min or arr.max() > info.max:
            raise InvalidInput(f"{where}: a value does not fit {datatype} "
                               f"([{info.min}, {info.max}]).")
    wire.check_count(arr.size, shape, where)
    return arr.reshape(shape)


def _text(raw: bytes, where: str, k: int) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput(f"{where}: BYTES element {k} is not UTF-8 text.") from None


def requested_outputs(request: pb.ModelInferRequest) -> list[OutputRequest] | None:
    if not request.outputs:
        return None
    out = []
    for i, o in enumerate(request.outputs):
        if not o.name:
            raise InvalidInput(f"outputs[{i}] needs a 'name'.")
        k = parameters(o.parameters).get("classification", 0) or 0
        if not isinstance(k, int) or isinstance(k, bool) or k < 0:
            raise InvalidInput("'classification' must be a positive integer.")
        out.append(OutputRequest(o.name, int(k)))
    return out


def encode_result(result: InferenceResult, warnings_json: str | None) -> pb.ModelInferResponse:
    model = result.model
    response = pb.ModelInferResponse(model_name=model.name, model_version=str(model.version),
                                     id=result.id or "")
    for t in result.tensors:
        response.outputs.add(name=t.name, datatype=t.datatype, shape=t.data.shape)
        response.raw_output_contents.append(wire.to_bytes(t.data, t.datatype))
    if warnings_json:
        response.parameters["warnings"].string_param = warnings_json
    return response
