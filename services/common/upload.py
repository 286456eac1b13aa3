"""Client-streamed uploads: chunking for senders, size-limited reading for receivers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

from services.common.errors import ServiceError, exhausted, invalid

CHUNK_BYTES = 1024 * 1024


def split_chunks(data: bytes, size: int = CHUNK_BYTES) -> Iterator[bytes]:
    """The pieces to stream a file in; an empty file is one empty chunk (the server then says why)."""
    for start in range(0, max(len(data), 1), size):
        yield data[start : start + size]


def _limit_error(max_bytes: int) -> ServiceError:
    limit = f"{max_bytes / 2**20:.0f} MiB"
    return exhausted(f"streamed upload passed the {limit} limit (MAX_UPLOAD_MB); send a shorter file")


async def collect_upload(request_iterator: AsyncIterator[Any], max_bytes: int) -> tuple[bytes, Any]:
    """(file bytes, first message); the first message carries the filename and options.

    Stops reading with RESOURCE_EXHAUSTED as soon as the limit is passed.
    """
    chunks: list[bytes] = []
    size = 0
    first = None
    async for message in request_iterator:
        if first is None:
            first = message
        size += len(message.chunk)
        if size > max_bytes:
            raise _limit_error(max_bytes)
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

    def __init__(self, request_iterator: AsyncIterator[Any], max_bytes: int) -> None:
        self._messages = request_iterator.__aiter__()
        self._max = max_bytes
        self._pending: bytes | None = None
        self.filename = ""
        self.options: Any = None
        self.error: ServiceError | None = None  # what stopped the chunks, for the caller to raise
        self.size = 0

    async def read_header(self) -> None:
        try:
            first = await self._messages.__anext__()
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
            async for message in self._messages:
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
