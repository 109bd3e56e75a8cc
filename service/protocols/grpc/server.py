"""The gRPC server: grpcio's asyncio server in the same process and event loop as HTTP,
on its own port (``grpc_port``, 0: none), started and stopped with the app's lifespan.

With several worker processes each binds the port with ``SO_REUSEPORT`` and the
kernel spreads connections over them, as the shared socket
does for HTTP. Message size is bounded by ``max_body_bytes`` both ways (larger messages
get RESOURCE_EXHAUSTED from grpcio itself). On SIGTERM it drains with HTTP: after
``shutdown_delay_s`` it stops taking calls, and those in flight get up to
``shutdown_grace_s`` to finish.

Imported only when gRPC is on: the generated ``inference`` protobuf package cannot
share a process with another copy of it (tritonclient's, KServe's).
"""

from __future__ import annotations

import asyncio
import logging

import grpc

from service.dataplane import DataPlane
from service.protocols.grpc.proto import grpc_predict_v2_pb2_grpc as pb_grpc
from service.protocols.grpc.servicer import InferenceServicer

log = logging.getLogger("modelserve.grpc")


class GrpcServer:
    def __init__(self, plane: DataPlane) -> None:
        self.plane = plane
        settings = plane.settings
        host = f"[{settings.host}]" if ":" in settings.host else settings.host  # IPv6
        self.address = f"{host}:{settings.grpc_port}"
        limit = settings.max_body_bytes
        self.server = grpc.aio.server(options=[
            ("grpc.max_receive_message_length", limit),
            ("grpc.max_send_message_length", max(limit, 64 * 1024 * 1024)),
            # Workers share the port; a single process must fail loudly on a port that
            # something else holds rather than split connections with it.
            ("grpc.so_reuseport", 1 if settings.workers > 1 else 0),
        ])
        pb_grpc.add_GRPCInferenceServiceServicer_to_server(InferenceServicer(plane),
                                                          self.server)
        self._stopping: asyncio.Task | None = None

    async def start(self) -> None:
        port = self.server.add_insecure_port(self.address)
        if port == 0:
            raise RuntimeError(f"gRPC: cannot listen on {self.address}")
        await self.server.start()
        log.info("KServe V2 gRPC on %s", self.address)

    def drain(self) -> None:
        """Stop taking calls once the shutdown delay has passed (from SIGTERM)."""
        if self._stopping is None:
            self._stopping = asyncio.get_running_loop().create_task(self._stop(
                self.plane.settings.shutdown_delay_s))

    async def _stop(self, delay: float) -> None:
        if delay > 0:
            await asyncio.sleep(delay)
        await self.server.stop(self.plane.settings.shutdown_grace_s)

    async def stop(self) -> None:
        if self._stopping is None:
            self._stopping = asyncio.get_running_loop().create_task(self._stop(0))
        await asyncio.shield(self._stopping)
