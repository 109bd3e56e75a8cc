"""KServe V2 over gRPC (``inference.GRPCInferenceService``) on the data plane.

Every call goes through ``_call``, gRPC's counterpart of the HTTP gateway: request id
from the ``x-request-id`` metadata (else a new one; echoed in the trailing metadata),
admission (health calls excepted), access control from the ``authorization: Bearer`` or
``x-api-key`` metadata (repository calls need an admin key), then the method, then the
accounting: inference metrics with ``protocol="grpc"`` and one access log line. An
``ApiError`` becomes the matching status code with the same message as over HTTP
(``service.errors.grpc_code``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from service import security
from service.dataplane import DataPlane, InferenceRequest
from service.errors import HTTP_STATUS_OF_GRPC, INTERNAL, ApiError, NotFound, grpc_code
from service.observability import context, logs
from service.observability.requests import clean_path, new_request_id, valid_request_id
from service.protocols.common import dumps
from service.protocols.grpc import tensors
from service.protocols.grpc.proto import grpc_predict_v2_pb2 as pb
from service.protocols.grpc.proto import grpc_predict_v2_pb2_grpc as pb_grpc

log = logging.getLogger("modelserve.grpc")

SERVICE = "/inference.GRPCInferenceService/"

# Which calls are health probes (never refused, open), and which are management.
_PROBES = frozenset({"ServerLive", "ServerReady", "ModelReady"})
_ADMIN = frozenset({"RepositoryIndex", "RepositoryModelLoad", "RepositoryModelUnload"})


class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    def __init__(self, plane: DataPlane) -> None:
        self.plane = plane
        self.access = plane.access
        self.access_log = plane.settings.access_log

    # --- health and metadata -------------------------------------------------------------

    async def ServerLive(self, request: pb.ServerLiveRequest, ctx: Any) -> Any:
        return await self._call("ServerLive", ctx, lambda: _done(pb.ServerLiveResponse(
            live=True)))

    async def ServerReady(self, request: pb.ServerReadyRequest, ctx: Any) -> Any:
        return await self._call("ServerReady", ctx, lambda: _done(pb.ServerReadyResponse(
            ready=self.plane.readiness()[0])))

    async def ModelReady(self, request: pb.ModelReadyRequest, ctx: Any) -> Any:
        return await self._call("ModelReady", ctx, lambda: _done(pb.ModelReadyResponse(
            ready=self.plane.model_ready(request.name, request.version or None))),
            request.name)

    async def ServerMetadata(self, request: pb.ServerMetadataRequest, ctx: Any) -> Any:
        return await self._call("ServerMetadata", ctx, lambda: _done(
            pb.ServerMetadataResponse(**self.plane.server_metadata())))

    async def ModelMetadata(self, request: pb.ModelMetadataRequest, ctx: Any) -> Any:
        async def run() -> pb.ModelMetadataResponse:
            _, meta = self.plane.model_metadata(request.name, request.version or None)
            return pb.ModelMetadataResponse(**meta)
        return await self._call("ModelMetadata", ctx, run, request.name)

    # --- inference -------------------------------------------------------------------------

    async def ModelInfer(self, request: pb.ModelInferRequest, ctx: Any) -> Any:
        async def run() -> pb.ModelInferResponse:
            plane = self.plane
            model = plane.resolve(request.model_name, request.model_version or None)
            batch = tensors.decode_inputs(model, request, plane.settings.max_request_rows)
            outputs = plane.output_requests(model, tensors.requested_outputs(request))
            result = await plane.infer(InferenceRequest(
                model, batch, outputs, tensors.parameters(request.parameters),
                request.id or None))
            warnings = dumps(result.warnings).decode() if result.warnings else None
            return tensors.encode_result(result, warnings)
        return await self._call("ModelInfer", ctx, run, request.model_name, inference=True)

    # --- model repository extension (admin key) ----------------------------------------

    async def RepositoryIndex(self, request: pb.RepositoryIndexRequest, ctx: Any) -> Any:
        async def run() -> pb.RepositoryIndexResponse:
            return pb.RepositoryIndexResponse(models=[
                pb.RepositoryIndexResponse.ModelIndex(**v)
                for v in self.plane.index(request.ready)])
        return await self._call("RepositoryIndex", ctx, run)

    async def RepositoryModelLoad(self, request: pb.RepositoryModelLoadRequest,
                                  ctx: Any) -> Any:
        async def run() -> pb.RepositoryModelLoadResponse:
            await self.plane.load(request.model_name)
            return pb.RepositoryModelLoadResponse()
        return await self._call("RepositoryModelLoad", ctx, run, request.model_name)

    async def RepositoryModelUnload(self, request: pb.RepositoryModelUnloadRequest,
                                    ctx: Any) -> Any:
        async def run() -> pb.RepositoryModelUnloadResponse:
            await self.plane.unload(request.model_name)
            return pb.RepositoryModelUnloadResponse()
        return await self._call("RepositoryModelUnload", ctx, run, request.model_name)

    # --- what every call goes through ----------------------------------------------------

    async def _call(self, method: str, ctx: grpc.aio.ServicerContext,
                    run: Callable[[], Awaitable[Any]], model_name: str = "",
                    *, inference: bool = False) -> Any:
        start = time.perf_counter()
        metadata = ctx.invocation_metadata() or ()
        rid = _request_id(metadata)
        info = context.begin(rid)
        ctx.set_trailing_metadata((("x-request-id", rid),))
        admission = self.plane.admission
        admitted = False
        code = "OK"
        status = 200  # in HTTP's terms, for the metrics and the access log
        try:
            if method not in _PROBES:
                if not admission.enter():
                    raise admission.refusal()
                admitted = True
                if self.access is not None:
                    self.access.authorize(method in _ADMIN, _headers(metadata))
                elif method in _ADMIN:  # no key configured at all: management is off
                    raise NotFound(security.ADMIN_OFF)
            elif self.access is not None and method == "ModelReady":
                self.access.authorize(False, _headers(metadata))
            return await run()
        except ApiError as exc:
            code, message = grpc_code(exc)
            status = exc.status_code
            await ctx.abort(getattr(grpc.StatusCode, code), message)
        except asyncio.CancelledError:
            code = "CANCELLED"  # the client went away or its deadline passed
            status = HTTP_STATUS_OF_GRPC[code]
            raise
        except grpc.aio.AbortError:
            raise
        except Exception:
            log.exception("unhandled error in %s", method)
            code, status = "INTERNAL", 500
            await ctx.abort(grpc.StatusCode.INTERNAL, INTERNAL)
        finally:
            if admitted:
                admission.leave()
            self._account(method, ctx, info, model_name, code, status, inference,
                          time.perf_counter() - start)

    def _account(self, method: str, ctx: grpc.aio.ServicerContext,
                 info: context.RequestInfo, model_name: str, code: str, status: int,
                 inference: bool, seconds: float) -> None:
        try:
            if inference:
                self.plane.observe("grpc", info.model, info.version, model_name, status,
                                   seconds)
            level = logging.DEBUG if code == "OK" and method in _PROBES else logging.INFO
            if self.access_log and logs.access_log.isEnabledFor(level):
                logs.access(level, f"gRPC {method} {code}", {
                    "method": "gRPC", "path": SERVICE + method,
                    "model": info.model or clean_path(model_name[:64]),
                    "version": info.version,
                    "label": info.route_label, "protocol": "grpc", "status": status,
                    "grpc_code": code, "duration_ms": round(seconds * 1000, 3),
                    "request_id": info.request_id, "client": _peer(ctx),
                })
        except Exception:  # observability must never break serving
            log.exception("could not record gRPC call metrics")


async def _done(value: Any) -> Any:
    return value


def _request_id(metadata: Any) -> str:
    for key, value in metadata:
        if key == "x-request-id":
            if isinstance(value, str) and valid_request_id(value):
                return value
            break
    return new_request_id()


def _headers(metadata: Any) -> list[tuple[bytes, bytes]]:
    """gRPC metadata as the (lower-case name, value) byte pairs access control reads."""
    return [(k.encode("latin-1"), v if isinstance(v, bytes) else v.encode("latin-1"))
            for k, v in metadata if k in ("authorization", "x-api-key")]


def _peer(ctx: grpc.aio.ServicerContext) -> str:
    try:
        peer = ctx.peer() or ""
    except Exception:
        return ""
    # "ipv4:127.0.0.1:53422" -> "127.0.0.1"
    kind, _, rest = peer.partition(":")
    return rest.rsplit(":", 1)[0].strip("[]") if kind in ("ipv4", "ipv6") else peer
