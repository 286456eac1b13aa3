"""Run the featurizer: python -m services.featurizer"""

from __future__ import annotations

from services.common.threads import one_thread_per_worker

one_thread_per_worker()  # before numpy, scipy and numba start their thread pools

import asyncio
from collections.abc import Sequence

import grpc

from musicrec.v1 import featurizer_pb2, featurizer_pb2_grpc
from services.common.server import ServiceSpec, run
from services.common.upload import UploadLimits, UploadSlots
from services.featurizer.features import warm_up
from services.featurizer.servicer import FeaturizerServicer
from services.featurizer.settings import MAX_QUEUE, WORKERS

servicer = FeaturizerServicer(
    workers=WORKERS.as_int(),
    max_queue=MAX_QUEUE.as_int(),
    limits=UploadLimits.from_env(),
    slots=UploadSlots.from_env(),
)


async def register(server: grpc.aio.Server) -> Sequence[str]:
    featurizer_pb2_grpc.add_FeaturizerServiceServicer_to_server(servicer, server)
    return [featurizer_pb2.DESCRIPTOR.services_by_name["FeaturizerService"].full_name]


async def warmup() -> None:
    await asyncio.get_running_loop().run_in_executor(None, warm_up)


async def shutdown() -> None:
    servicer.close()


if __name__ == "__main__":
    run(ServiceSpec("featurizer", 50051, register, warmup, shutdown,
                    large_requests=frozenset({"Featurize"})))  # a whole file
