"""Calls from the recommender to the featurizer and the classifier, with errors a caller can act on."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator

import grpc

from musicrec.v1 import (
    classifier_pb2,
    classifier_pb2_grpc,
    featurizer_pb2,
    featurizer_pb2_grpc,
)
from services.common import transport
from services.common.errors import ServiceError, retry_after, unavailable
from services.common.upload import HeaderedUpload, split_chunks

# Upstream answers that are the caller's fault keep their code; the rest become UNAVAILABLE.
PASS_THROUGH = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED}


def _translate(service: str, address: str, error: grpc.aio.AioRpcError) -> ServiceError:
    if error.code() in PASS_THROUGH:  # a busy upstream's RetryInfo goes on to the caller
        return ServiceError(error.code(), f"{service}: {error.details()}", retry_after(error))
    return unavailable(f"{service} at {address} failed ({error.code().name}: {error.details()}); retry with backoff")


async def _requests(
    chunks: AsyncIterator[bytes], filename: str
) -> AsyncIterator[featurizer_pb2.FeaturizeStreamRequest]:
    """FeaturizeStream messages: the filename rides on the first; no chunk at all still sends
    one empty message, so the featurizer says the upload is empty."""
    first = True
    async for chunk in chunks:
        yield featurizer_pb2.FeaturizeStreamRequest(chunk=chunk, filename=filename if first else "")
        first = False
    if first:
        yield featurizer_pb2.FeaturizeStreamRequest(chunk=b"", filename=filename)


class Upstream:
    def __init__(self, featurizer_addr: str, classifier_addr: str) -> None:
        self.featurizer_addr = featurizer_addr
        self.classifier_addr = classifier_addr
        self._fz_channel = transport.channel(featurizer_addr)
        self._cl_channel = transport.channel(classifier_addr)
        self._featurizer = featurizer_pb2_grpc.FeaturizerServiceStub(self._fz_channel)
        self._classifier = classifier_pb2_grpc.ClassifierServiceStub(self._cl_channel)

    async def featurize(self, data: bytes, filename: str, timeout: float) -> featurizer_pb2.FeaturizeStreamResponse:
        """A whole file (ingestion)."""

        async def pieces() -> AsyncIterator[bytes]:
            for chunk in split_chunks(data):
                yield chunk

        return await self._featurize_stream(_requests(pieces(), filename), timeout, None)

    async def featurize_upload(self, upload: HeaderedUpload, timeout: float) -> featurizer_pb2.FeaturizeStreamResponse:
        """Pass an upload's chunks on to the featurizer as they arrive (nothing is buffered here)."""
        return await self._featurize_stream(_requests(upload.chunks(), upload.filename), timeout, upload)

    async def _featurize_stream(
        self,
        requests: AsyncIterator[featurizer_pb2.FeaturizeStreamRequest],
        timeout: float,
        upload: HeaderedUpload | None,
    ) -> featurizer_pb2.FeaturizeStreamResponse:
        call = self._featurizer.FeaturizeStream(requests, timeout=timeout)
        try:
            return await call
        except (grpc.aio.AioRpcError, asyncio.CancelledError) as exc:
            # A request iterator that raises cancels the call: say what the caller's stream broke.
            if upload is not None and upload.error is not None:
                raise upload.error from None
            if isinstance(exc, asyncio.CancelledError):
                raise
            raise _translate("featurizer", self.featurizer_addr, exc) from None
        finally:
            call.cancel()  # a refused call must not leave gRPC's task that sends the chunks waiting

    async def feature_schema(self, timeout: float) -> featurizer_pb2.GetFeatureSchemaResponse:
        try:
            return await self._featurizer.GetFeatureSchema(featurizer_pb2.GetFeatureSchemaRequest(), timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            raise _translate("featurizer", self.featurizer_addr, exc) from None

    async def models(self, timeout: float) -> classifier_pb2.ListGenresResponse:
        """The classifier's labels and the fold models (names, versions) it votes with."""
        try:
            return await self._classifier.ListGenres(classifier_pb2.ListGenresRequest(), timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            raise _translate("classifier", self.classifier_addr, exc) from None

    async def classify(self, mel, timeout: float) -> classifier_pb2.ClassifyResponse:
        try:
            return await self._classifier.Classify(classifier_pb2.ClassifyRequest(mel=mel), timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            raise _translate("classifier", self.classifier_addr, exc) from None

    async def classify_batch(self, mels: list, timeout: float) -> list[classifier_pb2.ClassifyResponse]:
        """Several songs' mels in one call (ingestion): one Predict per fold for all of them."""
        try:
            request = classifier_pb2.ClassifyBatchRequest(mels=mels)
            reply = await self._classifier.ClassifyBatch(request, timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            raise _translate("classifier", self.classifier_addr, exc) from None
        return list(reply.results)

    async def close(self) -> None:
        await self._fz_channel.close()
        await self._cl_channel.close()


ATTEMPTS = 6


def retryable(error: ServiceError) -> bool:
    """UNAVAILABLE (restarting, unreachable) or a refusal that says when to retry (RetryInfo:
    busy); a file over a size limit is RESOURCE_EXHAUSTED without it, and is not retried."""
    return error.code == grpc.StatusCode.UNAVAILABLE or error.retry_after is not None


async def with_backoff(call):
    """call(), retried with exponential backoff and jitter while the service is busy or restarting."""
    for attempt in range(ATTEMPTS):
        try:
            return await call()
        except ServiceError as exc:
            if not retryable(exc) or attempt == ATTEMPTS - 1:
                raise
            await asyncio.sleep(max(exc.retry_after or 0.0, 0.2 * 2**attempt) * (0.5 + random.random()))
    raise AssertionError("unreachable")
