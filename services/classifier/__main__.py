"""Run the classifier: python -m services.classifier"""

from __future__ import annotations

from collections.abc import Sequence

import grpc

from musicrec.v1 import classifier_pb2, classifier_pb2_grpc
from services.classifier.servicer import ClassifierServicer
from services.classifier.tfserving import TFServingClient
from services.common.config import env_float, env_str
from services.common.server import ServiceSpec, channel_options, run

MODELS = [m.strip() for m in env_str("CLASSIFIER_MODELS", ",".join(f"xception_fold{k}" for k in range(5))).split(",")]
clients: list[TFServingClient] = []


async def register(server: grpc.aio.Server) -> Sequence[str]:
    # aio channels belong to the running event loop: create the client inside it.
    client = TFServingClient(env_str("TF_SERVING_ADDR", "127.0.0.1:8500"), channel_options())
    clients.append(client)
    servicer = ClassifierServicer(client, [m for m in MODELS if m], env_float("PREDICT_TIMEOUT_SECONDS", 10.0))
    classifier_pb2_grpc.add_ClassifierServiceServicer_to_server(servicer, server)
    return [classifier_pb2.DESCRIPTOR.services_by_name["ClassifierService"].full_name]


async def shutdown() -> None:
    for client in clients:
        await client.close()


if __name__ == "__main__":
    run(ServiceSpec("classifier", 50052, register, None, shutdown))
