"""Headered uploads: header first, chunks passed through, rules enforced as they arrive."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from musicrec.v1 import recommender_pb2
from services.common.errors import ServiceError
from services.common.upload import HeaderedUpload

Request = recommender_pb2.RecommendByAudioRequest
Options = recommender_pb2.RecommendOptions


async def stream(*messages):
    for m in messages:
        yield m


def read(messages, limit: int = 100) -> tuple[HeaderedUpload, list[bytes]]:
    async def run():
        upload = HeaderedUpload(stream(*messages), limit)
        await upload.read_header()
        return upload, [c async for c in upload.chunks()]

    return asyncio.run(run())


def test_header_then_data() -> None:
    header = recommender_pb2.UploadHeader(filename="a.wav", options=Options(k=7))
    upload, chunks = read([Request(header=header), Request(data=b"abc"), Request(data=b"de")])
    assert (upload.filename, upload.options.k, chunks, upload.size) == ("a.wav", 7, [b"abc", b"de"], 5)


def test_older_layout_still_works() -> None:
    upload, chunks = read([Request(chunk=b"ab", filename="b.mp3", options=Options(k=3)), Request(chunk=b"c")])
    assert (upload.filename, upload.options.k, chunks) == ("b.mp3", 3, [b"ab", b"c"])


@pytest.mark.parametrize(
    ("messages", "code", "message"),
    [
        ([], grpc.StatusCode.INVALID_ARGUMENT, "no messages"),
        ([Request(data=b"x")], grpc.StatusCode.INVALID_ARGUMENT, "first message must be the header"),
        ([Request(chunk=b"a"), Request(chunk=b"b", options=Options(k=3))], grpc.StatusCode.INVALID_ARGUMENT,
         "first message only"),
        ([Request(header=recommender_pb2.UploadHeader()), Request(header=recommender_pb2.UploadHeader())],
         grpc.StatusCode.INVALID_ARGUMENT, "first message only"),
        ([Request(chunk=b"a" * 60), Request(chunk=b"b" * 60)], grpc.StatusCode.RESOURCE_EXHAUSTED, "MAX_UPLOAD_MB"),
    ],
)
def test_misplaced_options_and_oversize_uploads_are_refused(messages, code, message) -> None:
    with pytest.raises(ServiceError, match=message) as caught:
        read(messages)
    assert caught.value.code == code
