"""RecommenderService calls the tests make over and over."""

from __future__ import annotations

import time
from collections.abc import Iterator

from musicrec.v1 import recommender_pb2
from services.common.upload import split_chunks

Options = recommender_pb2.RecommendOptions


def by_id(stub, song_id: str, **options: int) -> recommender_pb2.RecommendByIdResponse:
    request = recommender_pb2.RecommendByIdRequest(song_id=song_id, options=Options(**options))
    return stub.RecommendById(request, timeout=30)


def upload(
    stub, data: bytes, filename: str = "upload.wav", chunk: int = 64 * 1024, pause: float = 0.0, **options: int
) -> recommender_pb2.RecommendByAudioResponse:
    """Stream a file; `pause` seconds before each chunk makes a slow client."""

    def messages() -> Iterator[recommender_pb2.RecommendByAudioRequest]:
        first = {"filename": filename, "options": Options(**options)}
        for number, piece in enumerate(split_chunks(data, chunk)):
            if pause:
                time.sleep(pause)
            yield recommender_pb2.RecommendByAudioRequest(chunk=piece, **(first if number == 0 else {}))

    return stub.RecommendByAudio(messages(), timeout=120)
