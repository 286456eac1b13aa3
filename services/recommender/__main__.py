"""Run the recommender: python -m services.recommender"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import grpc

from musicrec.v1 import recommender_pb2, recommender_pb2_grpc
from services.common.config import env_float, env_int, env_str, read_secret
from services.common.server import ServiceSpec, run
from services.common.upload import UploadLimits, UploadSlots
from services.recommender.cache import ResponseCache
from services.recommender.compute import Compute
from services.recommender.index import DEFAULT_EF_SEARCH
from services.recommender.live import LiveIndex
from services.recommender.routing import RoutingPolicy
from services.recommender.servicer import RecommenderServicer
from services.recommender.upstream import Upstream

log = logging.getLogger("recommender")
DEFAULTS = RoutingPolicy()
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


def redis_url() -> str:
    """REDIS_URL as given ("" or "off": no cache); unset: the local default, named in a WARNING,
    because a Redis nobody configured may not be the one meant."""
    url = os.environ.get("REDIS_URL")
    if url is None:
        log.warning("REDIS_URL is not set: using %s; set REDIS_URL=off to run without a cache", DEFAULT_REDIS_URL)
        return DEFAULT_REDIS_URL
    return "" if url.strip().lower() in {"", "off"} else url


live = LiveIndex(
    Path(env_str("INDEX_DIR", "var/index")),
    env_float("INDEX_POLL_SECONDS", 2.0),
    env_str("INDEX_SWAP", "auto"),
    env_float("INDEX_SWAP_BUDGET_MB", 2048),
)
parts: dict[str, object] = {}
compute = Compute.from_env()


async def register(server: grpc.aio.Server) -> Sequence[str]:
    # aio channels and the Redis client belong to the running event loop: create them inside it.
    cache = ResponseCache(
        redis_url(),
        env_int("CACHE_TTL_SECONDS", 3600),
        env_float("REDIS_TIMEOUT_SECONDS", 0.25),
        signing_key=read_secret("CACHE_HMAC_KEY_FILE"),
        password=read_secret("REDIS_PASSWORD_FILE"),
        ca_file=env_str("REDIS_CA_FILE", ""),
    )
    upstream = Upstream(env_str("FEATURIZER_ADDR", "127.0.0.1:50051"), env_str("CLASSIFIER_ADDR", "127.0.0.1:50052"))
    parts.update(cache=cache, upstream=upstream)
    servicer = RecommenderServicer(
        live,
        cache,
        upstream,
        upload_limits=UploadLimits.from_env(),
        upload_slots=UploadSlots.from_env(),
        upstream_timeout=env_float("UPSTREAM_TIMEOUT_SECONDS", 30.0),
        policy=RoutingPolicy(
            strategy=env_str("ROUTING", DEFAULTS.strategy),
            mass=env_float("ROUTING_MASS", DEFAULTS.mass),
            runner_up_below=env_float("RUNNER_UP_BELOW_SHARE", DEFAULTS.runner_up_below),
            prior_weight=env_float("ROUTING_PRIOR_WEIGHT", DEFAULTS.prior_weight),
        ),
        ef_search=env_int("HNSW_EF_SEARCH", DEFAULT_EF_SEARCH),
        compute=compute,
    )
    recommender_pb2_grpc.add_RecommenderServiceServicer_to_server(servicer, server)
    return [recommender_pb2.DESCRIPTOR.services_by_name["RecommenderService"].full_name]


async def warmup() -> None:
    await parts["cache"].check()
    await live.wait_first()
    live.start_watching()


async def shutdown() -> None:
    await live.stop()
    await parts["cache"].close()
    await parts["upstream"].close()
    compute.close()


if __name__ == "__main__":
    run(ServiceSpec("recommender", 50053, register, warmup, shutdown,
                    large_requests=frozenset({"RecommendBySeeds"})))  # uploaded seeds
