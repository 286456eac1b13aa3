"""One server interceptor for every service: status mapping, metrics and error logging.

Service code raises ServiceError (or lets an unexpected exception escape); the caller
always gets a gRPC status with a message it can act on, and the server keeps serving.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from services.common.errors import ServiceError
from services.common.metrics import INFLIGHT, LATENCY, RPCS

log = logging.getLogger("musicrec.rpc")
_INFRA = ("/grpc.health.", "/grpc.reflection.")


def _code_name(context: grpc.aio.ServicerContext) -> str:
    code = context.code()
    if code is None:
        return "OK"
    return code.name if isinstance(code, grpc.StatusCode) else str(code)


class ServiceInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, service: str) -> None:
        self._service = service

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        full_method = handler_call_details.method
        if handler is None or full_method.startswith(_INFRA):
            return handler
        method = full_method.rsplit("/", 1)[-1]
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._wrap(method, handler.unary_unary),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.stream_unary is not None:
            return grpc.stream_unary_rpc_method_handler(
                self._wrap(method, handler.stream_unary),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler

    def _wrap(self, method: str, behaviour: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        service = self._service

        async def handle(request: Any, context: grpc.aio.ServicerContext) -> Any:
            start = time.perf_counter()
            gauge = INFLIGHT.labels(service)
            gauge.inc()
            code = "UNKNOWN"
            try:
                response = await behaviour(request, context)
                code = _code_name(context)
                return response
            except ServiceError as err:
                code = err.code.name
                log.info("rejected", extra={"method": method, "code": code, "reason": err.message})
                await context.abort(err.code, err.message)
            except grpc.aio.AbortError:
                code = _code_name(context)
                raise
            except Exception:
                code = "INTERNAL"
                log.exception("unhandled error", extra={"method": method})
                await context.abort(grpc.StatusCode.INTERNAL, f"internal error in {service}.{method}; see server log")
            finally:
                gauge.dec()
                RPCS.labels(service, method, code).inc()
                LATENCY.labels(service, method).observe(time.perf_counter() - start)

        return handle
