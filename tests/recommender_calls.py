"""RecommenderService calls the tests make over and over."""

from __future__ import annotations

import time
from collections.abc import Iterator

from musicrec.v1 import recommender_pb2
from services.common.upload import split_chunks

Options = recommender_pb2.RecommendOptions
Request = recommender_pb2.RecommendByAudioRequest


def by_id(stub, song_id: str, **options) -> recommender_pb2.RecommendByIdResponse:
    request = recommender_pb2.RecommendByIdRequest(song_id=song_id, options=Options(**options))
    return stub.RecommendById(request, timeout=30)


def upload_messages(
    data: bytes, filename: str = "upload.wav", chunk: int = 64 * 1024, pause: float = 0.0,
    layout: str = "header", **options: int,
) -> Iterator[Request]:
    """A header, then the chunks (`layout="legacy"`: filename and options ride on the first chunk).
    `pause` seconds before each chunk makes a slow client."""
    if layout == "header":
        yield Request(header=recommender_pb2.UploadHeader(filename=filename, options=Options(**options)))
    for number, piece in enumerate(split_chunks(data, chunk)):
        if pause:
            time.sleep(pause)
        if layout == "header":
            yield Request(data=piece)
        else:
            yield Request(chunk=piece, **({"filename": filename, "options": Options(**options)} if number == 0 else {}))


def upload(stub, data: bytes, filename: str = "upload.wav", chunk: int = 64 * 1024, pause: float = 0.0,
           layout: str = "header", **options: int) -> recommender_pb2.RecommendByAudioResponse:
    return stub.RecommendByAudio(upload_messages(data, filename, chunk, pause, layout, **options), timeout=120)
