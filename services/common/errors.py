"""Errors that carry the gRPC status a caller should see."""

from __future__ import annotations

import grpc


class ServiceError(Exception):
    """Raised by service logic; the server turns it into the given status and message."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


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
    return ServiceError(grpc.StatusCode.RESOURCE_EXHAUSTED, message)


def unavailable(message: str) -> ServiceError:
    return ServiceError(grpc.StatusCode.UNAVAILABLE, message)


ECHO_LIMIT = 200


def quoted(text: str, limit: int = ECHO_LIMIT) -> str:
    """Caller input for an error message: quoted, and cut to `limit` characters (the length said)."""
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}… ({len(text)} characters)"
