"""Client for tensorflow.serving.PredictionService/Predict and ModelService/GetModelStatus.

The same code talks to the real tensorflow/serving image and to the local stand-in. Its
messages are musicrec.tfserving.v1 (protos/musicrec/tfserving/v1): TF Serving's field numbers,
so the same bytes on the wire, without the tensorflow and tensorflow-serving-api packages.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from musicrec.tfserving.v1 import tfserving_pb2 as tfs
from services.common import transport

PREDICT = "/tensorflow.serving.PredictionService/Predict"
GET_MODEL_STATUS = "/tensorflow.serving.ModelService/GetModelStatus"

EAR_INPUT = "log_mel"  # the ear's signature: log_mel in, embedding out
EMBEDDING = "embedding"
FOLD_INPUT = EMBEDDING  # the folds' signature: the ear's embedding in, probabilities and labels out
PROBABILITIES = "probabilities"
LABELS = "labels"


@dataclass(frozen=True)
class Prediction:
    model: str
    version: int
    probabilities: np.ndarray  # [n, n_genres]: one row per embedding sent
    labels: list[str]


@dataclass(frozen=True)
class Embeddings:
    model: str
    version: int
    values: np.ndarray  # [n, dim]: one row per spectrogram sent


def float_tensor(array: np.ndarray) -> tfs.TensorProto:
    array = np.ascontiguousarray(array, dtype="<f4")
    shape = tfs.TensorShapeProto(dim=[tfs.TensorShapeProto.Dim(size=d) for d in array.shape])
    return tfs.TensorProto(dtype=tfs.DATA_TYPE_FLOAT, tensor_shape=shape, tensor_content=array.tobytes())


def read_floats(tensor: tfs.TensorProto) -> np.ndarray:
    shape = [d.size for d in tensor.tensor_shape.dim]
    if tensor.tensor_content:
        return np.frombuffer(tensor.tensor_content, dtype="<f4").reshape(shape)
    return np.asarray(tensor.float_val, dtype=np.float32).reshape(shape)


class TFServingClient:
    def __init__(self, address: str) -> None:
        self.address = address
        self._channel = transport.channel(address)
        self._predict_call = self._channel.unary_unary(
            PREDICT, request_serializer=tfs.PredictRequest.SerializeToString,
            response_deserializer=tfs.PredictResponse.FromString)
        self._status_call = self._channel.unary_unary(
            GET_MODEL_STATUS, request_serializer=tfs.GetModelStatusRequest.SerializeToString,
            response_deserializer=tfs.GetModelStatusResponse.FromString)

    async def available_version(self, model: str, timeout: float) -> int | None:
        """ModelService/GetModelStatus: the newest AVAILABLE version of `model`, None if none is."""
        request = tfs.GetModelStatusRequest()
        request.model_spec.name = model
        response = await self._status_call(request, timeout=timeout)
        available = tfs.ModelVersionStatus.STATE_AVAILABLE
        versions = [v.version for v in response.model_version_status if v.state == available]
        return max(versions) if versions else None

    async def is_available(self, model: str, timeout: float) -> bool:
        return await self.available_version(model, timeout) is not None

    async def _predict(self, model: str, key: str, batch: np.ndarray, outputs: list[str], timeout: float | None):
        request = tfs.PredictRequest()
        request.model_spec.name = model
        request.model_spec.signature_name = "serving_default"
        request.inputs[key].CopyFrom(float_tensor(batch))
        request.output_filter.extend(outputs)
        return await self._predict_call(request, timeout=timeout)

    async def embed(self, model: str, log_mels: np.ndarray, timeout: float | None) -> Embeddings:
        """One Predict of the ear for a batch of log-mels [n, 96, frames]."""
        response = await self._predict(model, EAR_INPUT, log_mels, [EMBEDDING], timeout)
        values = read_floats(response.outputs[EMBEDDING])
        if values.ndim != 2 or values.shape[0] != log_mels.shape[0]:
            raise ValueError(f"{model} answered embeddings of shape {values.shape} for {log_mels.shape[0]} mels")
        return Embeddings(model, response.model_spec.version.value, values)

    async def predict(self, model: str, embeddings: np.ndarray, timeout: float | None) -> Prediction:
        """One Predict of a fold for a batch of the ear's embeddings [n, dim]."""
        response = await self._predict(model, FOLD_INPUT, embeddings, [PROBABILITIES, LABELS], timeout)
        probs = read_floats(response.outputs[PROBABILITIES])
        # the labels are batch-major too ([n, n_genres]), the same in every row
        labels = [s.decode() for s in response.outputs[LABELS].string_val[: probs.shape[-1]]]
        if probs.shape[0] != embeddings.shape[0]:
            raise ValueError(f"{model} answered {probs.shape[0]} rows for {embeddings.shape[0]} embeddings")
        return Prediction(model, response.model_spec.version.value, probs, labels)

    async def close(self) -> None:
        await self._channel.close()
