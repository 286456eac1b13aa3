"""Run the classifier: python -m services.classifier"""

from collections.abc import Sequence
from pathlib import Path

import grpc

from musicrec.v1 import classifier_pb2, classifier_pb2_grpc
from services.classifier.servicer import ClassifierServicer
from services.classifier.settings import PREDICT_TIMEOUT, TF_SERVING_ADDR
from services.classifier.tfserving import TFServingClient
from services.common.modelconfig import MODEL_CONFIG_FILE, ear_and_folds
from services.common.server import ServiceSpec, run

EAR, FOLDS = ear_and_folds(Path(MODEL_CONFIG_FILE.as_str()))
parts: dict[str, object] = {}


async def register(server: grpc.aio.Server) -> Sequence[str]:
    # aio channels belong to the running event loop: create the client inside it.
    client = TFServingClient(TF_SERVING_ADDR.as_str())
    servicer = ClassifierServicer(client, EAR, FOLDS, PREDICT_TIMEOUT.as_float())
    parts.update(client=client, servicer=servicer)
    classifier_pb2_grpc.add_ClassifierServiceServicer_to_server(servicer, server)
    return [classifier_pb2.DESCRIPTOR.services_by_name["ClassifierService"].full_name]


async def warmup() -> None:
    """SERVING only once TF Serving has every fold AVAILABLE (and the labels are known)."""
    await parts["servicer"].wait_until_models_ready()


async def shutdown() -> None:
    await parts["client"].close()


if __name__ == "__main__":
    run(ServiceSpec("classifier", 50052, register, warmup, shutdown,
                    large_requests=frozenset({"Classify", "ClassifyBatch"})))  # spectrograms
