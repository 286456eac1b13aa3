"""Run the recommender: python -m services.recommender"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import grpc

from musicrec.v1 import recommender_pb2, recommender_pb2_grpc
from services.common.server import ServiceSpec, run
from services.common.upload import UploadLimits, UploadSlots
from services.recommender import settings
from services.recommender.api.cache import ResponseCache
from services.recommender.api.servicer import RecommenderServicer
from services.recommender.index.live import LiveIndex
from services.recommender.search.compute import Compute
from services.recommender.upstream import Upstream

log = logging.getLogger("recommender")


def redis_url() -> str:
    """REDIS_URL as given ("" or "off": no cache); unset: the local default, named in a WARNING,
    because a Redis nobody configured may not be the one meant."""
    url = settings.REDIS_URL.raw()
    if url is None:
        url = settings.REDIS_URL.as_str()
        log.warning("REDIS_URL is not set: using %s; set REDIS_URL=off to run without a cache", url)
        return url
    return "" if url.strip().lower() in {"", "off"} else url


live = LiveIndex(
    Path(settings.INDEX_DIR.as_str()),
    settings.INDEX_POLL.as_float(),
    settings.INDEX_SWAP.as_str(),
    settings.INDEX_SWAP_BUDGET.as_float(),
)
parts: dict[str, object] = {}
compute = Compute.from_env()


async def register(server: grpc.aio.Server) -> Sequence[str]:
    # aio channels and the Redis client belong to the running event loop: create them inside it.
    cache = ResponseCache(
        redis_url(),
        settings.CACHE_TTL.as_int(),
        settings.REDIS_TIMEOUT.as_float(),
        signing_key=settings.CACHE_HMAC_KEY_FILE.secret(),
        password=settings.REDIS_PASSWORD_FILE.secret(),
        ca_file=settings.REDIS_CA_FILE.as_str(),
    )
    upstream = Upstream(settings.FEATURIZER_ADDR.as_str(), settings.CLASSIFIER_ADDR.as_str())
    parts.update(cache=cache, upstream=upstream)
    servicer = RecommenderServicer(
        live,
        cache,
        upstream,
        upload_limits=UploadLimits.from_env(),
        upload_slots=UploadSlots.from_env(),
        upstream_timeout=settings.UPSTREAM_TIMEOUT.as_float(),
        policy=settings.routing_policy(),
        ef_search=settings.EF_SEARCH.as_int(),
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
