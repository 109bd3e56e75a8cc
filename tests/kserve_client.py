"""KServe's SDK (kserve 0.21.0) as a client of a running server, for
tests/test_kserve_sdk.py: reads a JSON list of calls on stdin, makes each with the SDK
and prints a JSON list of results, ``{"ok": value}`` or ``{"error": type, "message": ...}``.

A script of its own because kserve carries its own copy of the ``inference`` protobuf
package, which cannot share a process with tritonclient's (the test process's).

A call: ``{"client": "v1" | "v2" | "grpc", "call": <method>, "args": {...}}``; ``infer``
takes ``{"model", "version"?, "id"?, "binary"?, "inputs": [{name, datatype, shape,
data}]}`` for V2 and gRPC, ``{"model", "body"}`` for V1.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import numpy as np
from kserve import InferenceGRPCClient, InferenceRESTClient, InferInput, InferRequest, RESTConfig

NUMPY = {"FP32": np.float32, "FP64": np.float64, "INT64": np.int64, "BOOL": np.bool_,
         "BYTES": np.object_}


def _request(args: dict[str, Any]) -> InferRequest:
    inputs = []
    for t in args["inputs"]:
        inp = InferInput(name=t["name"], shape=t["shape"], datatype=t["datatype"])
        data = np.asarray(t["data"], dtype=NUMPY[t["datatype"]]).reshape(t["shape"])
        inp.set_data_from_numpy(data, binary_data=args.get("binary", True))
        inputs.append(inp)
    return InferRequest(model_name=args["model"], infer_inputs=inputs,
                        request_id=args.get("id"), model_version=args.get("version"))


def _response(response: Any) -> dict[str, Any]:
    outputs = []
    for o in response.outputs:
        arr = o.as_numpy()
        data = [v.decode() if isinstance(v, bytes) else v for v in arr.reshape(-1).tolist()]
        outputs.append({"name": o.name, "datatype": o.datatype, "shape": list(arr.shape),
                        "data": data})
    return {"id": response.id, "model_name": response.model_name, "outputs": outputs}


async def _rest(client: InferenceRESTClient, base: str, call: str, args: dict[str, Any],
                protocol: str) -> Any:
    if call == "infer":
        if protocol == "v1":
            return await client.infer(base, args["body"], model_name=args["model"])
        return _response(await client.infer(base, _request(args), model_name=args["model"]))
    if call == "is_model_ready":
        return await client.is_model_ready(base, args["model"])
    return await getattr(client, call)(base)


async def _grpc(client: InferenceGRPCClient, call: str, args: dict[str, Any]) -> Any:
    if call == "infer":
        return _response(await client.infer(_request(args)))
    if call == "is_model_ready":
        return await client.is_model_ready(args["model"])
    return await getattr(client, call)()


async def main(rest_url: str, grpc_target: str, calls: list[dict[str, Any]]) -> list[Any]:
    rest = {p: InferenceRESTClient(RESTConfig(protocol=p, timeout=60, retries=0))
            for p in ("v1", "v2")}
    grpc_client = InferenceGRPCClient(url=grpc_target, timeout=60, retries=0)
    results: list[Any] = []
    try:
        for c in calls:
            try:
                if c["client"] == "grpc":
                    value = await _grpc(grpc_client, c["call"], c.get("args", {}))
                else:
                    value = await _rest(rest[c["client"]], rest_url, c["call"],
                                        c.get("args", {}), c["client"])
                results.append({"ok": value})
            except Exception as exc:  # reported; the test decides
                results.append({"error": type(exc).__name__, "message": str(exc)})
    finally:
        for client in rest.values():
            await client.close()
        await grpc_client.close()
    return results


if __name__ == "__main__":
    out = asyncio.run(main(sys.argv[1], sys.argv[2], json.load(sys.stdin)))
    json.dump(out, sys.stdout)
