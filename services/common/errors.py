"""Errors that carry the gRPC status a caller should see.

A refusal that passes with time (a service busy: RESOURCE_EXHAUSTED from a full queue) carries
google.rpc.RetryInfo in the status details (`grpc-status-details-bin`), as Google's APIs do;
one that does not (a file over a size limit) carries none, so clients retry only the first.
"""

from __future__ import annotations

import grpc
from google.protobuf.duration_pb2 import Duration
from google.rpc import code_pb2, error_details_pb2, status_pb2

DETAILS_KEY = "grpc-status-details-bin"
RETRY_AFTER_SECONDS = 0.2  # what a busy service suggests before the first retry


class ServiceError(Exception):
    """Raised by service logic; the server turns it into the given status and message (and
    RetryInfo when `retry_after` is set: worth retrying after that long)."""

    def __init__(self, code: grpc.StatusCode, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retry_after = retry_after

    def trailing_metadata(self) -> tuple[tuple[str, bytes], ...]:
        """The status details a server sends with this error (RetryInfo), or none."""
        if self.retry_after is None:
            return ()
        delay = Duration()
        delay.FromNanoseconds(int(self.retry_after * 1e9))
        status = status_pb2.Status(code=getattr(code_pb2, self.code.name), message=self.message)
        status.details.add().Pack(error_details_pb2.RetryInfo(retry_delay=delay))
        return ((DETAILS_KEY, status.SerializeToString()),)


def retry_after(error: grpc.RpcError) -> float | None:
    """The RetryInfo delay a server attached to a failed call, in seconds; None without one."""
    trailing = error.trailing_metadata() if hasattr(error, "trailing_metadata") else None
    for key, value in trailing or ():
        if key != DETAILS_KEY:
            continue
        status = status_pb2.Status.FromString(value)
        for detail in status.details:
            info = error_details_pb2.RetryInfo()
            if detail.Unpack(info):
                return info.retry_delay.ToNanoseconds() / 1e9
    return None


def describe(error: BaseException) -> str:
    """One line for logs and notes: "CODE: details" for gRPC errors, else the exception."""
    if isinstance(error, grpc.RpcError) and hasattr(error, "code"):
        return f"{error.code().name}: {error.details()}"
    if isinstance(error, ServiceError):
        return f"{error.code.name}: {error.message}"
    return f"{type(error).__name__}: {error}"


def invalid(message: str) -> ServiceError:
    return ServiceError(grpc.StatusCode.INVALID_ARGUMENT, message)


def not_found(message: str) -> ServiceError:
    return ServiceError(grpc.StatusCode.NOT_FOUND, message)


def exhausted(message: str) -> ServiceError:
    """Over a limit that waiting does not lift (a size); no RetryInfo."""
    return ServiceError(grpc.StatusCode.RESOURCE_EXHAUSTED, message)


def busy(message: str, retry_after: float = RETRY_AFTER_SECONDS) -> ServiceError:
    """Full for now (a queue, a number of calls at once): RESOURCE_EXHAUSTED with RetryInfo."""
    return ServiceError(grpc.StatusCode.RESOURCE_EXHAUSTED, message, retry_after)


def unavailable(message: str) -> ServiceError:
    return ServiceError(grpc.StatusCode.UNAVAILABLE, message)


ECHO_LIMIT = 200


def quoted(text: str, limit: int = ECHO_LIMIT) -> str:
    """Caller input for an error message: quoted, and cut to `limit` characters (the length said)."""
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}… ({len(text)} characters)"
