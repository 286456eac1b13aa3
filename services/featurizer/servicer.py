"""gRPC FeaturizerService: unary and client-streamed uploads."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np

from musicrec.v1 import audio_pb2, featurizer_pb2, featurizer_pb2_grpc
from services.common.errors import busy, exhausted
from services.common.upload import UploadLimits, UploadSlots, collect_upload
from services.featurizer.ear_mel import HOP, N_FFT
from services.featurizer.pipeline import Analysis, analyse
from services.featurizer.schema import FEATURE_GROUPS, FEATURE_NAMES, SCHEMA_VERSION
from services.featurizer.window import CLIP_SECONDS, SAMPLE_RATE


def mel_message(log_mel: np.ndarray) -> audio_pb2.MelSpectrogram:
    return audio_pb2.MelSpectrogram(
        shape=list(log_mel.shape),
        data=np.ascontiguousarray(log_mel, dtype="<f4").tobytes(),
        sample_rate=SAMPLE_RATE,
        n_fft=N_FFT,
        hop_length=HOP,
    )


def vector_message(vector: np.ndarray) -> audio_pb2.FeatureVector:
    return audio_pb2.FeatureVector(schema_version=SCHEMA_VERSION, names=FEATURE_NAMES, values=vector.tolist())


def window_message(result: Analysis) -> audio_pb2.ClipWindow:
    clip = result.clip
    return audio_pb2.ClipWindow(
        song_seconds=clip.song_seconds,
        start_seconds=clip.start_seconds,
        end_seconds=clip.end_seconds,
        policy=clip.policy,
        source_sample_rate=result.source_sample_rate,
        source_channels=result.source_channels,
    )


def response_fields(result: Analysis, omit_mel: bool) -> dict:
    """The fields the unary and the streaming response share."""
    return {
        "mel": None if omit_mel else mel_message(result.features.log_mel),
        "features": vector_message(result.features.vector),
        "window": window_message(result),
    }


class FeaturizerServicer(featurizer_pb2_grpc.FeaturizerServiceServicer):
    def __init__(self, workers: int, max_queue: int, limits: UploadLimits, slots: UploadSlots) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="featurize")
        self._max_pending = workers + max_queue
        self._pending = 0
        self._limits = limits
        self._max_upload = limits.max_bytes
        self._slots = slots

    async def _run(self, data: bytes, filename: str) -> Analysis:
        if len(data) > self._max_upload:
            raise exhausted(
                f"upload is {len(data) / 2**20:.1f} MiB, above the {self._max_upload / 2**20:.0f} MiB "
                "limit (MAX_UPLOAD_MB); send a shorter file"
            )
        if self._pending >= self._max_pending:
            raise busy(f"featurizer busy ({self._pending} uploads in progress); retry with backoff")
        self._pending += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, analyse, data, filename)
        finally:
            self._pending -= 1

    async def Featurize(
        self, request: featurizer_pb2.FeaturizeRequest, context: grpc.aio.ServicerContext
    ) -> featurizer_pb2.FeaturizeResponse:
        result = await self._run(request.audio, request.filename)
        return featurizer_pb2.FeaturizeResponse(**response_fields(result, request.omit_mel))

    async def FeaturizeStream(
        self,
        request_iterator: AsyncIterator[featurizer_pb2.FeaturizeStreamRequest],
        context: grpc.aio.ServicerContext,
    ) -> featurizer_pb2.FeaturizeStreamResponse:
        with self._slots.hold(context):
            data, first = await collect_upload(request_iterator, self._limits)
            result = await self._run(data, first.filename)
        return featurizer_pb2.FeaturizeStreamResponse(**response_fields(result, first.omit_mel))

    async def GetFeatureSchema(
        self, request: featurizer_pb2.GetFeatureSchemaRequest, context: grpc.aio.ServicerContext
    ) -> featurizer_pb2.GetFeatureSchemaResponse:
        return featurizer_pb2.GetFeatureSchemaResponse(
            schema_version=SCHEMA_VERSION,
            names=FEATURE_NAMES,
            sample_rate=SAMPLE_RATE,
            clip_seconds=CLIP_SECONDS,
            groups=[featurizer_pb2.FeatureGroup(name=g, features=names) for g, names in FEATURE_GROUPS.items()],
        )

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
