"""Client-streamed uploads: chunking for senders; for receivers, reading bounded in size, time
and number.

Bounds (environment, documented in docs/configuration.md):
- MAX_UPLOAD_MB per upload;
- UPLOAD_IDLE_SECONDS between two messages and UPLOAD_DEADLINE_SECONDS for the whole upload,
  so a client that stops sending (or trickles) cannot hold a slot;
- MAX_CONCURRENT_UPLOADS at once and MAX_UPLOADS_PER_PEER from one address.
A service that buffers uploads (the featurizer) thus holds at most
MAX_CONCURRENT_UPLOADS x MAX_UPLOAD_MB of upload bytes; the recommender passes chunks on as
they arrive and holds only gRPC's flow-control windows.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import grpc

from services.common.config import Setting
from services.common.errors import ServiceError, busy, exhausted, invalid
from services.common.transport import MiB

CHUNK_BYTES = 1024 * 1024
CONCURRENT_UPLOADS = 16  # MAX_CONCURRENT_UPLOADS's default
UPLOADS_PER_PEER = 4  # MAX_UPLOADS_PER_PEER's default; clients that upload many files keep within it
MAX_UPLOAD_MB = Setting("MAX_UPLOAD_MB", 64, "featurizer, recommender",
                        "largest streamed upload (unary uploads are also bound by `MAX_MESSAGE_MB`)")
UPLOAD_IDLE = Setting("UPLOAD_IDLE_SECONDS", 10.0, "featurizer, recommender",
                      "longest pause between two upload messages (then DEADLINE_EXCEEDED)")
UPLOAD_DEADLINE = Setting("UPLOAD_DEADLINE_SECONDS", 120.0, "featurizer, recommender",
                          "longest time for one whole upload")
MAX_CONCURRENT_UPLOADS = Setting("MAX_CONCURRENT_UPLOADS", CONCURRENT_UPLOADS, "featurizer, recommender",
                                 "uploads at once (then RESOURCE_EXHAUSTED); the featurizer holds at most this x "
                                 "`MAX_UPLOAD_MB`")
MAX_UPLOADS_PER_PEER = Setting(
    "MAX_UPLOADS_PER_PEER", UPLOADS_PER_PEER, "featurizer, recommender",
    "uploads at once from one client address; the featurizer's callers are services, so in Kubernetes it takes from "
    "one recommender replica every upload that replica accepts (its `MAX_CONCURRENT_UPLOADS`); ingestion sends "
    "`--uploads 4`", shown="4 (`deploy/base`'s featurizer: 16)")


def split_chunks(data: bytes, size: int = CHUNK_BYTES) -> Iterator[bytes]:
    """The pieces to stream a file in; an empty file is one empty chunk (the server then says why)."""
    for start in range(0, max(len(data), 1), size):
        yield data[start : start + size]


@dataclass(frozen=True)
class UploadLimits:
    max_bytes: int
    idle_seconds: float = 10.0
    deadline_seconds: float = 120.0

    @classmethod
    def from_env(cls) -> UploadLimits:
        return cls(
            MAX_UPLOAD_MB.as_int() * MiB,
            UPLOAD_IDLE.as_float(),
            UPLOAD_DEADLINE.as_float(),
        )


class UploadSlots:
    """At most `total` uploads at once, and `per_peer` from one client address; beyond that
    RESOURCE_EXHAUSTED, before any byte is read."""

    def __init__(self, total: int, per_peer: int) -> None:
        self.total, self.per_peer = total, per_peer
        self._active = 0
        self._by_peer: dict[str, int] = {}

    @classmethod
    def from_env(cls) -> UploadSlots:
        total = MAX_CONCURRENT_UPLOADS.as_int()
        return cls(total, MAX_UPLOADS_PER_PEER.as_int())

    @staticmethod
    def peer_host(peer: str) -> str:
        """"ipv4:10.0.0.7:51234" -> "ipv4:10.0.0.7" (the port changes with every connection)."""
        return peer.rsplit(":", 1)[0] if peer.count(":") >= 2 else peer

    @contextmanager
    def hold(self, context: grpc.aio.ServicerContext) -> Iterator[None]:
        host = self.peer_host(context.peer() or "")
        if self._active >= self.total:
            raise busy(f"{self._active} uploads in progress (MAX_CONCURRENT_UPLOADS); retry with backoff")
        if self._by_peer.get(host, 0) >= self.per_peer:
            raise busy(
                f"{self.per_peer} uploads from your address are already in progress (MAX_UPLOADS_PER_PEER); "
                "finish or cancel one first"
            )
        self._active += 1
        self._by_peer[host] = self._by_peer.get(host, 0) + 1
        try:
            yield
        finally:
            self._active -= 1
            self._by_peer[host] -= 1
            if not self._by_peer[host]:
                del self._by_peer[host]


class _Clock:
    """The next message of an upload, or DEADLINE_EXCEEDED when the client goes quiet or slow."""

    def __init__(self, limits: UploadLimits) -> None:
        self.limits = limits
        self.started = time.monotonic()

    async def next(self, messages: AsyncIterator[Any]) -> Any:
        left = self.limits.deadline_seconds - (time.monotonic() - self.started)
        wait = min(self.limits.idle_seconds, left)
        try:
            return await asyncio.wait_for(messages.__anext__(), max(wait, 0.0))
        except TimeoutError:
            if left <= self.limits.idle_seconds:
                raise ServiceError(
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                    f"upload not finished within {self.limits.deadline_seconds:.0f} s (UPLOAD_DEADLINE_SECONDS); "
                    "send the file faster or a shorter one",
                ) from None
            raise ServiceError(
                grpc.StatusCode.DEADLINE_EXCEEDED,
                f"no upload message for {self.limits.idle_seconds:.0f} s (UPLOAD_IDLE_SECONDS); "
                "send the chunks without pauses and close the stream when done",
            ) from None


def _limit_error(max_bytes: int) -> ServiceError:
    limit = f"{max_bytes / 2**20:.0f} MiB"
    return exhausted(f"streamed upload passed the {limit} limit (MAX_UPLOAD_MB); send a shorter file")


async def collect_upload(request_iterator: AsyncIterator[Any], limits: UploadLimits) -> tuple[bytes, Any]:
    """(file bytes, first message); the first message carries the filename and options.

    Stops reading with RESOURCE_EXHAUSTED as soon as the size limit is passed, and with
    DEADLINE_EXCEEDED when the client pauses or takes too long.
    """
    chunks: list[bytes] = []
    size = 0
    first = None
    clock = _Clock(limits)
    messages = request_iterator.__aiter__()
    while True:
        try:
            message = await clock.next(messages)
        except StopAsyncIteration:
            break
        if first is None:
            first = message
        size += len(message.chunk)
        if size > limits.max_bytes:
            raise _limit_error(limits.max_bytes)
        chunks.append(message.chunk)
    if first is None:
        raise invalid("stream carried no messages: send the file as one or more chunks")
    return b"".join(chunks), first


class HeaderedUpload:
    """An upload that starts with a header (`part` = header, then `data` chunks), or in the
    older layout (filename and options in the first of the `chunk` messages). The header is
    read before any audio, so bad options are refused before the file is sent on; the chunks
    are then passed through as they arrive, under the size limit. Options anywhere but the
    first message are refused rather than ignored."""

    def __init__(self, request_iterator: AsyncIterator[Any], limits: UploadLimits) -> None:
        self._messages = request_iterator.__aiter__()
        self._max = limits.max_bytes
        self._clock = _Clock(limits)
        self._pending: bytes | None = None
        self.filename = ""
        self.options: Any = None
        self.error: ServiceError | None = None  # what stopped the chunks, for the caller to raise
        self.size = 0

    async def read_header(self) -> None:
        try:
            first = await self._clock.next(self._messages)
        except StopAsyncIteration:
            raise invalid("stream carried no messages: send a header, then the file as one or more chunks") from None
        if first.WhichOneof("part") == "header":
            self.filename, self.options = first.header.filename, first.header.options
        elif first.WhichOneof("part") == "data":
            raise invalid("the first message must be the header (filename, options), then the data chunks")
        else:  # older layout
            self.filename, self.options = first.filename, first.options
            self._pending = first.chunk

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            if self._pending is not None:
                yield self._count(self._pending)
            while True:
                try:
                    message = await self._clock.next(self._messages)
                except StopAsyncIteration:
                    return
                if message.WhichOneof("part") == "header" or message.HasField("options") or message.filename:
                    raise invalid("filename and options go in the first message only; this one came later")
                yield self._count(message.data if message.WhichOneof("part") == "data" else message.chunk)
        except ServiceError as exc:
            self.error = exc
            raise

    def _count(self, chunk: bytes) -> bytes:
        self.size += len(chunk)
        if self.size > self._max:
            raise _limit_error(self._max)
        return chunk
