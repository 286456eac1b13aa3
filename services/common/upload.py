"""Client-streamed uploads (featurizer and recommender): join the chunks under a size limit."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

from services.common.errors import exhausted, invalid

CHUNK_BYTES = 1024 * 1024


def split_chunks(data: bytes, size: int = CHUNK_BYTES) -> Iterator[bytes]:
    """The pieces to stream a file in; an empty file is one empty chunk (the server then says why)."""
    for start in range(0, max(len(data), 1), size):
        yield data[start : start + size]


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
            raise exhausted(
                f"streamed upload passed the {max_bytes / 2**20:.0f} MiB limit (MAX_UPLOAD_MB); send a shorter file"
            )
        chunks.append(message.chunk)
    if first is None:
        raise invalid("stream carried no messages: send the file as one or more chunks")
    return b"".join(chunks), first
