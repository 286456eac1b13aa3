"""gRPC ClassifierService: the ear embeds each clip once, every fold votes on that embedding."""

from __future__ import annotations

import asyncio
import logging

import grpc
import numpy as np

from musicrec.v1 import classifier_pb2, classifier_pb2_grpc
from services.classifier.tfserving import Embeddings, Prediction, TFServingClient
from services.classifier.voting import Ballot, tally
from services.common.errors import ServiceError, describe, invalid, unavailable
from services.common.predict_batch import MAX_PREDICT_BATCH

log = logging.getLogger("classifier")
N_MELS = 96  # the ear's input bands (services/featurizer/ear_mel.py)
PROBE_FRAMES = 187  # one patch of quiet noise
READY_POLL_SECONDS = 1.0


def parse_mel(mel) -> np.ndarray:
    shape = list(mel.shape)
    if len(shape) != 2 or shape[0] != N_MELS or shape[1] < 1:
        raise invalid(f"mel.shape must be [{N_MELS}, frames], got {shape}: send the featurizer's log-mel")
    if len(mel.data) != 4 * shape[0] * shape[1]:
        raise invalid(f"mel.data holds {len(mel.data)} bytes, shape {shape} needs {4 * shape[0] * shape[1]}")
    array = np.frombuffer(mel.data, dtype="<f4").reshape(shape)
    if not np.all(np.isfinite(array)):
        raise invalid("mel.data holds NaN or infinite values")
    if array.min() < 0.0:
        raise invalid("mel.data holds negative values: send log10(10000 mel + 1), the featurizer's ear mel")
    return array


class ClassifierServicer(classifier_pb2_grpc.ClassifierServiceServicer):
    def __init__(self, client: TFServingClient, ear: str, models: list[str], default_timeout: float) -> None:
        self._client = client
        self._ear = ear
        self._models = models
        self._timeout = default_timeout
        self._labels: list[str] = []  # fixed by the first answer; every fold must agree with it

    async def wait_until_models_ready(self) -> None:
        """Block until TF Serving reports the ear and a majority of the folds AVAILABLE and one told the labels.

        The health check stays NOT_SERVING until then, so callers (and Kubernetes) do not send
        work to a classifier whose model server is still loading; what it waits for is logged.
        A majority, not all: a vote with a fold missing is still a vote (and says so)."""
        announced = False
        majority = len(self._models) // 2 + 1
        while True:
            ear = await self._unready(self._ear)
            folds = {model: why for model in self._models if (why := await self._unready(model)) is not None}
            pending = [f"{self._ear} (the ear{': ' + ear if ear else ''})"] if ear is not None else []
            pending += [f"{model} ({why})" if why else model for model, why in folds.items()]
            if ear is None and len(self._models) - len(folds) >= majority:
                try:
                    await self._known_labels()
                    log.info("fold models ready", extra={"models": self._models, "unavailable": pending})
                    return
                except ServiceError as exc:
                    pending.append(exc.message)
            if not announced:
                log.warning("waiting for TF Serving", extra={"address": self._client.address, "pending": pending})
                announced = True
            await asyncio.sleep(READY_POLL_SECONDS)

    async def _unready(self, model: str) -> str | None:
        """None when TF Serving has `model` AVAILABLE; else why not ("" when it is not yet)."""
        try:
            return None if await self._client.is_available(model, self._timeout) else ""
        except grpc.aio.AioRpcError as exc:
            return describe(exc)

    async def _version(self, model: str) -> int:
        """The AVAILABLE version TF Serving serves of `model`; 0 when it cannot tell."""
        try:
            return await self._client.available_version(model, self._timeout) or 0
        except grpc.aio.AioRpcError:
            return 0

    async def _known_labels(self) -> list[str]:
        """The genre labels, asked of the first fold that answers (they travel with predictions)."""
        if self._labels:
            return self._labels
        probe = np.random.default_rng(0).uniform(0.0, 1.0, (1, N_MELS, PROBE_FRAMES)).astype(np.float32)
        try:
            embedding = (await self._client.embed(self._ear, probe, self._timeout)).values
        except grpc.aio.AioRpcError as exc:
            raise unavailable(f"the ear {self._ear} did not answer at {self._client.address} ({describe(exc)}); "
                              "retry with backoff") from None
        for model in self._models:
            try:
                self._labels = (await self._client.predict(model, embedding, self._timeout)).labels
                return self._labels
            except grpc.aio.AioRpcError as exc:
                log.warning("fold did not answer the label probe", extra={"model": model, "error": describe(exc)})
        raise unavailable(f"no fold model answered at {self._client.address} (is TF Serving up?); retry with backoff")

    async def Classify(self, request: classifier_pb2.ClassifyRequest, context: grpc.aio.ServicerContext):
        (response,) = await self._classify(parse_mel(request.mel)[None], context)
        return response

    async def ClassifyBatch(self, request: classifier_pb2.ClassifyBatchRequest, context: grpc.aio.ServicerContext):
        if not 1 <= len(request.mels) <= MAX_PREDICT_BATCH:
            raise invalid(f"send 1 to {MAX_PREDICT_BATCH} mels per ClassifyBatch (TF Serving's max_batch_size), "
                          f"got {len(request.mels)}")
        mels = [parse_mel(mel) for mel in request.mels]
        shapes = sorted({m.shape for m in mels})
        if len(shapes) > 1:
            raise invalid(f"every mel of a ClassifyBatch must have one shape, got {shapes}: batch equal windows")
        return classifier_pb2.ClassifyBatchResponse(results=await self._classify(np.stack(mels), context))

    async def _classify(self, log_mels: np.ndarray, context: grpc.aio.ServicerContext) -> list:
        """One Predict of the ear for the whole batch [n, 96, frames], then one Predict per fold
        on its embeddings, then each clip's vote."""
        remaining = context.time_remaining()
        timeout = min(self._timeout, remaining) if remaining is not None else self._timeout
        ear = await self._embed(log_mels, timeout)
        results = await asyncio.gather(
            *(self._client.predict(m, ear.values, timeout) for m in self._models), return_exceptions=True
        )
        labels = await self._known_labels()
        answered: dict[str, Prediction] = {}
        missing: dict[str, str] = {}  # model -> why it did not answer
        for model, result in zip(self._models, results, strict=True):
            if isinstance(result, Prediction) and result.labels != labels:
                result = ValueError(f"labels {result.labels} differ from the other folds' {labels}")
            if isinstance(result, Prediction):
                answered[model] = result
            else:
                missing[model] = describe(result)
        unanswered = [f"{model} ({why})" for model, why in missing.items()]
        # A spectrogram the models reject is the caller's problem, whatever else is down.
        if any(isinstance(r, grpc.aio.AioRpcError) and r.code() == grpc.StatusCode.INVALID_ARGUMENT for r in results):
            raise invalid(f"the models rejected the spectrogram: {'; '.join(unanswered)}")
        if not answered:
            raise unavailable(
                f"no fold model answered at {self._client.address}: {'; '.join(unanswered)}. "
                "Is TF Serving up? Retry with backoff."
            )
        if missing:
            log.warning("degraded vote", extra={"missing": unanswered})
        return [self._vote(labels, answered, missing, unanswered, ear, row) for row in range(len(log_mels))]

    async def _embed(self, log_mels: np.ndarray, timeout: float) -> Embeddings:
        """The ear's embeddings; without them no fold can vote."""
        try:
            return await self._client.embed(self._ear, log_mels, timeout)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.INVALID_ARGUMENT:
                raise invalid(f"the ear {self._ear} rejected the spectrogram: {describe(exc)}") from None
            raise unavailable(f"the ear {self._ear} did not answer at {self._client.address} ({describe(exc)}). "
                              "Is TF Serving up? Retry with backoff.") from None
        except ValueError as exc:
            raise unavailable(f"the ear {self._ear} answered nonsense ({exc}); retry with backoff") from None

    def _vote(self, labels: list[str], answered: dict[str, Prediction], missing: dict[str, str],
              unanswered: list[str], ear: Embeddings, row: int) -> classifier_pb2.ClassifyResponse:
        """The response for one mel of the batch (row), folds in models.config order."""
        folds = [
            classifier_pb2.FoldPrediction(
                model_name=model, available=True, genre=labels[int(np.argmax(answered[model].probabilities[row]))],
                probabilities=answered[model].probabilities[row].tolist(), model_version=answered[model].version,
            )
            if model in answered
            else classifier_pb2.FoldPrediction(model_name=model, available=False, error=missing[model])
            for model in self._models
        ]
        result = tally(labels, [Ballot(model, p.probabilities[row]) for model, p in answered.items()])
        note = f"{result.votes}/{result.voters} folds voted {result.genre}"
        if missing:
            note += f"; unavailable: {', '.join(unanswered)}"
        return classifier_pb2.ClassifyResponse(
            genre=result.genre,
            votes=result.votes,
            folds_voted=result.voters,
            folds_total=len(self._models),
            folds=folds,
            ranking=[
                classifier_pb2.GenreScore(genre=g, votes=v, probability_sum=s, probability=p)
                for g, v, s, p in result.ranking
            ],
            labels=labels,
            degraded=bool(missing),
            note=note,
            embedding=classifier_pb2.Embedding(
                model_name=ear.model, model_version=ear.version, values=ear.values[row].tolist()
            ),
        )

    async def ListGenres(self, request, context):
        return classifier_pb2.ListGenresResponse(
            labels=await self._known_labels(), model_names=self._models,
            model_versions=[await self._version(model) for model in self._models],
            ear_model_name=self._ear, ear_model_version=await self._version(self._ear),
        )
