"""Calls from the recommender to the featurizer and the classifier, with errors a caller can act on."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from musicrec.v1 import (
    classifier_pb2,
    classifier_pb2_grpc,
    featurizer_pb2,
    featurizer_pb2_grpc,
)
from services.common.errors import ServiceError, unavailable
from services.common.upload import split_chunks

# Upstream answers that are the caller's fault keep their code; the rest become UNAVAILABLE.
PASS_THROUGH = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED}


def vote_share(vote: classifier_pb2.ClassifyResponse) -> float:
    """Share of the voting folds that agreed with the winner (0 when none voted)."""
    return vote.votes / vote.folds_voted if vote.folds_voted else 0.0


def vote_ranking(vote: classifier_pb2.ClassifyResponse) -> list[str]:
    """Genres best first, by votes then summed probability."""
    return [score.genre for score in vote.ranking] or [vote.genre]


def _translate(service: str, address: str, error: grpc.aio.AioRpcError) -> ServiceError:
    if error.code() in PASS_THROUGH:
        return ServiceError(error.code(), f"{service}: {error.details()}")
    return unavailable(f"{service} at {address} failed ({error.code().name}: {error.details()}); retry with backoff")


class Upstream:
    def __init__(self, featurizer_addr: str, classifier_addr: str, options: list[tuple[str, int]]) -> None:
        self.featurizer_addr = featurizer_addr
        self.classifier_addr = classifier_addr
        self._fz_channel = grpc.aio.insecure_channel(featurizer_addr, options=options)
        self._cl_channel = grpc.aio.insecure_channel(classifier_addr, options=options)
        self._featurizer = featurizer_pb2_grpc.FeaturizerServiceStub(self._fz_channel)
        self._classifier = classifier_pb2_grpc.ClassifierServiceStub(self._cl_channel)

    async def featurize(self, data: bytes, filename: str, timeout: float) -> featurizer_pb2.FeaturizeStreamResponse:
        async def chunks() -> AsyncIterator[featurizer_pb2.FeaturizeStreamRequest]:
            for chunk in split_chunks(data):
                yield featurizer_pb2.FeaturizeStreamRequest(chunk=chunk, filename=filename)

        try:
            return await self._featurizer.FeaturizeStream(chunks(), timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            raise _translate("featurizer", self.featurizer_addr, exc) from None

    async def classify(self, mel, timeout: float) -> classifier_pb2.ClassifyResponse:
        try:
            return await self._classifier.Classify(classifier_pb2.ClassifyRequest(mel=mel), timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            raise _translate("classifier", self.classifier_addr, exc) from None

    async def close(self) -> None:
        await self._fz_channel.close()
        await self._cl_channel.close()
