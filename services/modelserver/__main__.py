"""Local TF Serving stand-in: python -m services.modelserver

Speaks tensorflow.serving.PredictionService and ModelService on PORT (default 8500, TF
Serving's gRPC port), serving the SavedModels listed in MODEL_CONFIG_FILE (the same
models.config the tensorflow/serving image reads). ENABLE_BATCHING=1 batches concurrent
Predict calls with BATCHING_PARAMETERS_FILE (the file TF Serving's --batching_parameters_file
reads; batching.py). TENSORFLOW_SESSION_CONFIG_FILE is TF Serving's --tensorflow_session_config_file
(a text ConfigProto; its graph rewrites, e.g. bfloat16 on AMX: session_config.py). Production runs
the real image instead; the classifier's client code is the same for both.
"""

import os

from services.common.threads import one_thread_per_worker
from services.modelserver import settings

# each Predict single-threaded (intra-op 1), MODEL_SERVER_WORKERS of them at once: the inter-op
# pool runs the graphs, so it must be as wide as the workers or the Predicts queue behind one
os.environ.setdefault("TF_NUM_INTEROP_THREADS", str(settings.WORKERS.as_int()))
one_thread_per_worker()

from services.common.quiet_tensorflow import import_tensorflow

tf = import_tensorflow()  # first: TF's C++ start-up lines never reach the log

import asyncio
import logging
from collections.abc import Sequence
from pathlib import Path

import grpc

# The *_pb2 modules hold the service descriptors reflection serves (the *_pb2_grpc modules do
# not import them), so `grpcurl describe tensorflow.serving.PredictionService` works.
from tensorflow_serving.apis import (
    model_service_pb2,
    model_service_pb2_grpc,
    prediction_service_pb2,
    prediction_service_pb2_grpc,
)

from services.common.modelconfig import MODEL_CONFIG_FILE, read_config
from services.common.server import ServiceSpec, run
from services.modelserver.batching import BatchingParameters
from services.modelserver.servicer import LoadedModel, ModelServer, load_model
from services.modelserver.session_config import apply_session_config, cpu_has_fast_bf16

CONFIG = Path(MODEL_CONFIG_FILE.as_str())
MODELS_ROOT = settings.MODELS_ROOT.as_str()
SESSION_CONFIG = settings.SESSION_CONFIG.as_str()
session = apply_session_config(tf, Path(SESSION_CONFIG)) if SESSION_CONFIG else None
models: dict[str, LoadedModel] = {}
log = logging.getLogger("modelserver")


def batching() -> BatchingParameters | None:
    if not settings.ENABLE_BATCHING.as_bool():
        return None
    path = Path(settings.BATCHING_PARAMETERS.as_str())
    if not path.is_file():
        raise SystemExit(f"ENABLE_BATCHING is on but BATCHING_PARAMETERS_FILE {path} does not exist")
    return BatchingParameters.read(path)


server = ModelServer(models, settings.WORKERS.as_int(), batching())


async def register(grpc_server: grpc.aio.Server) -> Sequence[str]:
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(server, grpc_server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(server, grpc_server)
    return [
        prediction_service_pb2.DESCRIPTOR.services_by_name["PredictionService"].full_name,
        model_service_pb2.DESCRIPTOR.services_by_name["ModelService"].full_name,
    ]


async def warmup() -> None:
    if session is not None:
        log.info("session config", extra={"path": str(session.path), "graph_rewrites": session.rewrites})
        if session.ignored:
            log.warning("session config: the stand-in honours only its graph rewrites",
                        extra={"ignored": session.ignored})
        if session.bfloat16 and not cpu_has_fast_bf16():
            log.warning("session config asks for bfloat16 but this CPU has neither AMX-BF16 nor AMD's AVX-512 BF16: "
                        "the folds run slower than in float32 (see deploy/components/tfserving-bf16)")
    entries = read_config(CONFIG, Path(MODELS_ROOT) if MODELS_ROOT else None)
    loop = asyncio.get_running_loop()
    for entry in entries:
        models[entry.name] = await loop.run_in_executor(None, load_model, entry)


if __name__ == "__main__":
    run(ServiceSpec("modelserver", 8500, register, warmup, large_requests=frozenset({"Predict"})))
