"""PredictionService (Predict, GetModelMetadata) and ModelService (GetModelStatus), as TF Serving."""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from services.common.errors import ServiceError, invalid, not_found
from services.common.modelconfig import ModelEntry
from services.modelserver.batching import Batcher, BatchingParameters

log = logging.getLogger("modelserver")


@dataclass
class LoadedModel:
    entry: ModelEntry
    loaded: Any
    signature_defs: Any  # SignatureDefMap-compatible mapping


def load_model(entry: ModelEntry) -> LoadedModel:
    loaded = tf.saved_model.load(str(entry.path))
    meta = saved_model_pb2.SavedModel()
    meta.ParseFromString((entry.path / "saved_model.pb").read_bytes())
    graph = next(g for g in meta.meta_graphs if "serve" in g.meta_info_def.tags)
    return LoadedModel(entry, loaded, graph.signature_def)


class ModelServer(prediction_service_pb2_grpc.PredictionServiceServicer, model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, models: dict[str, LoadedModel], workers: int, batching: BatchingParameters | None) -> None:
        self._models = models
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="predict")
        self._batcher = Batcher(batching, self._run) if batching else None

    def _model(self, spec: Any) -> LoadedModel:
        model = self._models.get(spec.name)
        wanted = spec.version.value if spec.HasField("version") else None
        if model is None or (wanted is not None and wanted != model.entry.version):
            label = f"Specific({spec.name}, {wanted})" if wanted is not None else f"Latest({spec.name})"
            raise not_found(f"Servable not found for request: {label}")
        return model

    def _signature(self, model: LoadedModel, request: predict_pb2.PredictRequest) -> str:
        """The requested signature's name, once it exists and the request's inputs match it."""
        name = request.model_spec.signature_name or "serving_default"
        if name not in model.loaded.signatures:
            raise invalid(f'Serving signature name: "{name}" not found in signature def')
        fn = model.loaded.signatures[name]
        expected = set(fn.structured_input_signature[1].keys())
        given = set(request.inputs.keys())
        if given != expected:
            raise invalid(f"input keys {sorted(given)} do not match the signature's {sorted(expected)}")
        return name

    def _run(self, model_name: str, signature: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One call of a signature on numpy inputs (a request's, or a merged batch's)."""
        model = self._models[model_name]
        fn = model.loaded.signatures[signature]
        try:
            outputs = fn(**{k: tf.constant(v) for k, v in inputs.items()})
        except (tf.errors.InvalidArgumentError, ValueError, TypeError) as exc:
            raise invalid(f"could not run {model.entry.name}: {exc}") from exc
        return {k: v.numpy() for k, v in outputs.items()}

    def _response(self, model: LoadedModel, signature: str, request, outputs) -> predict_pb2.PredictResponse:
        wanted = set(request.output_filter) or set(outputs)
        response = predict_pb2.PredictResponse()
        response.model_spec.name = model.entry.name
        response.model_spec.version.value = model.entry.version
        response.model_spec.signature_name = signature
        for key in wanted:
            response.outputs[key].CopyFrom(tf.make_tensor_proto(outputs[key]))
        return response

    async def Predict(self, request: predict_pb2.PredictRequest, context: grpc.aio.ServicerContext):
        model = self._model(request.model_spec)
        signature = self._signature(model, request)
        try:
            inputs = {k: tf.make_ndarray(v) for k, v in request.inputs.items()}
        except (TypeError, ValueError) as exc:
            raise invalid(f"inputs are not valid tensors: {exc}") from exc
        if self._batcher is not None and all(v.ndim >= 1 and v.shape[0] >= 1 for v in inputs.values()):
            outputs = await self._batcher.predict(model.entry.name, signature, inputs)
        else:
            loop = asyncio.get_running_loop()
            outputs = await loop.run_in_executor(self._pool, self._run, model.entry.name, signature, inputs)
        return self._response(model, signature, request, outputs)

    async def GetModelMetadata(self, request, context):
        model = self._model(request.model_spec)
        if list(request.metadata_field) not in ([], ["signature_def"]):
            raise invalid("Metadata field signature_def is the only one supported")
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = model.entry.name
        response.model_spec.version.value = model.entry.version
        sig_map = get_model_metadata_pb2.SignatureDefMap()
        for key, value in model.signature_defs.items():
            sig_map.signature_def[key].CopyFrom(value)
        response.metadata["signature_def"].Pack(sig_map)
        return response

    async def GetModelStatus(self, request, context):
        try:
            model = self._model(request.model_spec)
        except ServiceError:
            raise not_found(f"Could not find any versions of model {request.model_spec.name}") from None
        response = get_model_status_pb2.GetModelStatusResponse()
        status = response.model_version_status.add()
        status.version = model.entry.version
        status.state = get_model_status_pb2.ModelVersionStatus.AVAILABLE
        return response
