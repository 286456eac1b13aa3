"""One server interceptor for every service: status mapping, metrics and error logging.

Service code raises ServiceError (or lets an unexpected exception escape); the caller
always gets a gRPC status with a message it can act on, and the server keeps serving.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from services.common.auth import Gate
from services.common.errors import ServiceError, invalid
from services.common.metrics import INFLIGHT, LATENCY, RPCS

log = logging.getLogger("musicrec.rpc")
_INFRA = ("/grpc.health.", "/grpc.reflection.")


@dataclass(frozen=True)
class _Undecodable:
    """What a request that is not valid protobuf (or not valid UTF-8 in a string) becomes, so the
    handler can answer INVALID_ARGUMENT instead of gRPC's generic INTERNAL/UNKNOWN."""

    reason: str


def _lenient(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserializer is None:
        return None

    def deserialize(data: bytes) -> Any:
        try:
            return deserializer(data)
        except (DecodeError, UnicodeDecodeError, ValueError) as exc:
            return _Undecodable(type(exc).__name__)

    return deserialize


def _refuse(reason: str) -> ServiceError:
    return invalid(f"the request is not a valid protobuf message of this method ({reason}); "
                   "check the message type and that strings are UTF-8")


async def _checked(messages: AsyncIterator[Any]) -> AsyncIterator[Any]:
    async for message in messages:
        if isinstance(message, _Undecodable):
            raise _refuse(message.reason)
        yield message


def _code_name(context: grpc.aio.ServicerContext) -> str:
    code = context.code()
    if code is None:
        return "OK"
    return code.name if isinstance(code, grpc.StatusCode) else str(code)


class Drain:
    """Counts calls in flight; once shutdown starts, refuses new ones with UNAVAILABLE (which
    clients retry) while those already running finish, before the server itself stops.

    Stopping the gRPC server at once would also cancel calls that clients had sent but the
    server had not yet started: they would see CANCELLED although nothing was wrong with them."""

    def __init__(self) -> None:
        self.active = False
        self.inflight = 0
        self._idle: asyncio.Event | None = None

    def enter(self) -> bool:
        if self.active:
            return False
        self.inflight += 1
        return True

    def leave(self) -> None:
        self.inflight -= 1
        if self.inflight == 0 and self._idle is not None:
            self._idle.set()

    async def wait_idle(self, timeout: float) -> bool:
        """Refuse new calls from now on; True when every call in flight finished within `timeout`."""
        self.active = True
        self._idle = asyncio.Event()
        if self.inflight == 0:
            return True
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
            return True
        except TimeoutError:
            return False


class ServiceInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, service: str, drain: Drain | None = None, gate: Gate | None = None) -> None:
        self._service = service
        self._drain = drain or Drain()
        self._gate = gate or Gate(service)

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
                request_deserializer=_lenient(handler.request_deserializer),
                response_serializer=handler.response_serializer,
            )
        if handler.stream_unary is not None:
            return grpc.stream_unary_rpc_method_handler(
                self._wrap(method, handler.stream_unary, streamed=True),
                request_deserializer=_lenient(handler.request_deserializer),
                response_serializer=handler.response_serializer,
            )
        return handler

    def _wrap(
        self, method: str, behaviour: Callable[..., Awaitable[Any]], streamed: bool = False
    ) -> Callable[..., Awaitable[Any]]:
        service = self._service
        drain = self._drain
        gate = self._gate

        async def handle(request: Any, context: grpc.aio.ServicerContext) -> Any:
            if not drain.enter():
                RPCS.labels(service, method, "UNAVAILABLE").inc()
                await context.abort(grpc.StatusCode.UNAVAILABLE, f"{service} is shutting down; retry the call")
            start = time.perf_counter()
            gauge = INFLIGHT.labels(service)
            gauge.inc()
            code = "UNKNOWN"
            try:
                gate.check(context)
                if isinstance(request, _Undecodable):
                    raise _refuse(request.reason)
                response = await behaviour(_checked(request) if streamed else request, context)
                code = _code_name(context)
                return response
            except ServiceError as err:
                code = err.code.name
                log.info("rejected", extra={"method": method, "code": code, "reason": err.message})
                await context.abort(err.code, err.message)
            except grpc.aio.AbortError:
                code = _code_name(context)
                raise
            except NotImplementedError:  # a generated servicer's method this server does not implement
                code = "UNIMPLEMENTED"
                await context.abort(grpc.StatusCode.UNIMPLEMENTED, f"{service}.{method} is not implemented here")
            except Exception:
                code = "INTERNAL"
                log.exception("unhandled error", extra={"method": method})
                await context.abort(grpc.StatusCode.INTERNAL, f"internal error in {service}.{method}; see server log")
            finally:
                drain.leave()
                gauge.dec()
                RPCS.labels(service, method, code).inc()
                LATENCY.labels(service, method).observe(time.perf_counter() - start)

        return handle
