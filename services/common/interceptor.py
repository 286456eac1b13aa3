"""One server interceptor for every service: admission, status mapping, metrics and error logging.

Service code raises ServiceError (or lets an unexpected exception escape); the caller
always gets a gRPC status with a message it can act on, and the server keeps serving.

Admission happens before a request's body is read: every method is served as client-streamed
(the same bytes on the wire as a unary call), so the handler runs as soon as the headers arrive
and checks the caller's credentials and the call budget (receive.py) first. A refused call
costs its headers and at most one HTTP/2 flow-control window, not its message.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from services.common.auth import Gate
from services.common.errors import ServiceError, exhausted, invalid
from services.common.metrics import INFLIGHT, LATENCY, RPCS
from services.common.receive import ReceiveLimits

log = logging.getLogger("musicrec.rpc")
_INFRA = ("/grpc.health.", "/grpc.reflection.")


@dataclass(frozen=True)
class _Refused:
    """What a request message that cannot be accepted becomes (not valid protobuf, not valid
    UTF-8 in a string, over the method's size limit), so the handler answers with a status a
    caller can act on instead of gRPC's generic INTERNAL/UNKNOWN."""

    error: ServiceError


def _lenient(deserializer: Callable[[bytes], Any] | None, limit: int, method: str) -> Callable[[bytes], Any]:
    def deserialize(data: bytes) -> Any:
        if len(data) > limit:
            return _Refused(exhausted(
                f"a {method} request message may hold at most {limit} bytes; this one holds {len(data)}"
                + ("" if method.endswith(("Audio", "Stream")) else "; send audio in a client-streamed upload")
            ))
        if deserializer is None:
            return data
        try:
            return deserializer(data)
        except (DecodeError, UnicodeDecodeError, ValueError) as exc:
            return _Refused(invalid(
                f"the request is not a valid protobuf message of this method ({type(exc).__name__}); "
                "check the message type and that strings are UTF-8"
            ))

    return deserialize


async def _checked(messages: AsyncIterator[Any]) -> AsyncIterator[Any]:
    async for message in messages:
        if isinstance(message, _Refused):
            raise message.error
        yield message


async def _only(messages: AsyncIterator[Any], method: str) -> Any:
    """The one message of a unary call read through the streaming handler."""
    async for message in _checked(messages):
        return message
    raise invalid(f"{method} takes one request message and none arrived")


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
    def __init__(
        self, service: str, drain: Drain | None = None, gate: Gate | None = None, limits: ReceiveLimits | None = None
    ) -> None:
        self._service = service
        self._drain = drain or Drain()
        self._gate = gate or Gate(service)
        self._limits = limits or ReceiveLimits()

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
        behaviour = handler.unary_unary or handler.stream_unary
        if behaviour is None:
            return handler
        # served as client-streamed in both cases: nothing is read before admission
        return grpc.stream_unary_rpc_method_handler(
            self._wrap(method, behaviour, streamed=handler.stream_unary is not None),
            request_deserializer=_lenient(handler.request_deserializer, self._limits.for_method(method), method),
            response_serializer=handler.response_serializer,
        )

    def _wrap(
        self, method: str, behaviour: Callable[..., Awaitable[Any]], streamed: bool
    ) -> Callable[..., Awaitable[Any]]:
        service = self._service
        drain = self._drain
        gate = self._gate
        limits = self._limits

        async def handle(requests: AsyncIterator[Any], context: grpc.aio.ServicerContext) -> Any:
            if not drain.enter():
                RPCS.labels(service, method, "UNAVAILABLE").inc()
                await context.abort(grpc.StatusCode.UNAVAILABLE, f"{service} is shutting down; retry the call")
            start = time.perf_counter()
            gauge = INFLIGHT.labels(service)
            gauge.inc()
            code = "UNKNOWN"
            failure: tuple[grpc.StatusCode, str, tuple] | None = None
            try:
                gate.check(context)  # credentials first: nothing of the body is read yet
                async with limits.admit(method, drain.inflight, context.time_remaining()) as turn:
                    if streamed:
                        request = _checked(requests)
                    else:
                        request = await _only(requests, method)
                        turn.read(request)
                    response = await behaviour(request, context)
                code = _code_name(context)
                return response
            except ServiceError as err:
                code = err.code.name
                log.info("rejected", extra={"method": method, "code": code, "reason": err.message})
                failure = (err.code, err.message, err.trailing_metadata())
            except grpc.aio.AbortError:
                code = _code_name(context)
                raise
            except NotImplementedError:  # a generated servicer's method this server does not implement
                code = "UNIMPLEMENTED"
                failure = (grpc.StatusCode.UNIMPLEMENTED, f"{service}.{method} is not implemented here", ())
            except Exception:
                code = "INTERNAL"
                log.exception("unhandled error", extra={"method": method})
                failure = (grpc.StatusCode.INTERNAL, f"internal error in {service}.{method}; see server log", ())
            finally:
                drain.leave()
                gauge.dec()
                RPCS.labels(service, method, code).inc()
                LATENCY.labels(service, method).observe(time.perf_counter() - start)
            if limits.is_large(method):
                # An error's traceback holds the frames that hold the request, and exceptions sit in
                # reference cycles (asyncio, TaskGroup, contextlib): each refused 31 MiB request
                # stayed until a full collection, +2 GB per 64 of them. Collect now.
                del requests
                request = None
                gc.collect()
            await context.abort(*failure[:2], trailing_metadata=failure[2])

        return handle
