"""Headered uploads: header first, chunks passed through, rules enforced as they arrive."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from musicrec.v1 import recommender_pb2
from services.common.errors import ServiceError
from services.common.upload import HeaderedUpload, UploadLimits, UploadSlots

Request = recommender_pb2.RecommendByAudioRequest
Options = recommender_pb2.RecommendOptions


async def stream(*messages):
    for m in messages:
        yield m


def read(messages, limit: int = 100) -> tuple[HeaderedUpload, list[bytes]]:
    async def run():
        upload = HeaderedUpload(stream(*messages), UploadLimits(limit))
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


async def slow_stream(pause: float, count: int):
    for _ in range(count):
        await asyncio.sleep(pause)
        yield Request(chunk=b"x")


@pytest.mark.parametrize(
    ("limits", "pause", "message"),
    [(UploadLimits(100, idle_seconds=0.05, deadline_seconds=5), 0.2, "UPLOAD_IDLE_SECONDS"),
     (UploadLimits(100, idle_seconds=0.5, deadline_seconds=0.3), 0.1, "UPLOAD_DEADLINE_SECONDS")],
)
def test_quiet_or_slow_clients_are_cut_off(limits, pause, message) -> None:
    async def run():
        upload = HeaderedUpload(slow_stream(pause, 50), limits)
        await upload.read_header()
        return [c async for c in upload.chunks()]

    with pytest.raises(ServiceError, match=message) as caught:
        asyncio.run(run())
    assert caught.value.code == grpc.StatusCode.DEADLINE_EXCEEDED


class Peer:
    def __init__(self, address: str) -> None:
        self.address = address

    def peer(self) -> str:
        return self.address


def test_upload_slots_bound_the_total_and_each_peer() -> None:
    slots = UploadSlots(total=3, per_peer=2)
    a1, a2, b = Peer("ipv4:10.0.0.1:5000"), Peer("ipv4:10.0.0.1:5001"), Peer("ipv6:[::1]:7000")
    with slots.hold(a1), slots.hold(a2):
        with pytest.raises(ServiceError, match="MAX_UPLOADS_PER_PEER"), slots.hold(Peer("ipv4:10.0.0.1:5002")):
            pass
        with slots.hold(b), pytest.raises(ServiceError, match="MAX_CONCURRENT_UPLOADS"), slots.hold(Peer("x:1:2")):
            pass
    with slots.hold(a1):  # all released
        pass
