"""The gRPC floor: the least work a Python grpc.aio server can do for one ModelInfer call.

grpcio's asyncio server (as our service uses) with one generic handler: it parses the
request with our generated ModelInferRequest (the protobuf decode every real server must
do) and returns a constant, pre-serialised ModelInferResponse. No servicer class, no
metadata, no validation. Beside our gRPC numbers it shows what grpc.aio itself costs, and
it shows the load generator's ceiling: if the client (bench/grpc_load.py) runs out of CPU
against this server, its numbers against ours are the client's, not ours.

Run: ``python bench/baselines/grpc_floor.py --port 8001`` (the product's venv).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository, for service/

import grpc

from service.protocols.grpc.proto import grpc_predict_v2_pb2 as pb


def _response() -> bytes:
    response = pb.ModelInferResponse(model_name="floor", model_version="1")
    response.outputs.add(name="probabilities", datatype="FP32", shape=[1, 2])
    response.raw_output_contents.append(b"\x00\x00\x00\x3f" * 2)  # [[0.5, 0.5]]
    return response.SerializeToString()


RESPONSE = _response()


async def _infer(request: pb.ModelInferRequest, context: Any) -> bytes:
    return RESPONSE


async def serve(port: int) -> None:
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", 64 * 1024 * 1024)])
    handler = grpc.method_handlers_generic_handler("inference.GRPCInferenceService", {
        # Response serialiser None: the constant bytes go out as they are.
        "ModelInfer": grpc.unary_unary_rpc_method_handler(
            _infer, request_deserializer=pb.ModelInferRequest.FromString),
    })
    server.add_generic_rpc_handlers((handler,))
    if server.add_insecure_port(f"127.0.0.1:{port}") == 0:
        raise SystemExit(f"grpc_floor: cannot listen on port {port}")
    await server.start()
    await server.wait_for_termination()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    asyncio.run(serve(parser.parse_args().port))


if __name__ == "__main__":
    main()
