"""Redis cache of recommendation responses, that never makes a query fail.

Keys carry the index generation, so a rebuilt index is never answered from old entries (they
expire with their TTL). When Redis is unreachable the service answers uncached, logs the
outage once (and the recovery once), and retries Redis after a short back-off instead of
paying a connection timeout on every request. REDIS_URL empty or "off" disables the cache.
"""

from __future__ import annotations

import logging
import time

import redis.asyncio as redis
from prometheus_client import Counter
from redis.exceptions import RedisError

log = logging.getLogger("recommender.cache")
CACHE = Counter("musicrec_cache_total", "Recommendation cache lookups", ["result"])
KEY_PREFIX = "musicrec:v1:rec"


def cache_key(generation: int, kind: str, *parts: object) -> str:
    return ":".join([KEY_PREFIX, f"g{generation}", kind, *(str(p) for p in parts)])


class ResponseCache:
    def __init__(self, url: str, ttl_seconds: int, timeout_seconds: float = 0.25, retry_seconds: float = 2.0) -> None:
        self.url = url
        self.ttl = ttl_seconds
        self._retry = retry_seconds
        self._down_until = 0.0
        self._down = False
        self._client: redis.Redis | None = None
        if url and url.lower() != "off":
            self._client = redis.Redis.from_url(
                url, socket_timeout=timeout_seconds, socket_connect_timeout=timeout_seconds
            )

    @property
    def available(self) -> bool:
        return self._client is not None and not self._down

    async def check(self) -> bool:
        """Ping once at start-up and log what the service will do."""
        if self._client is None:
            log.warning("cache disabled (REDIS_URL is empty or off): serving uncached")
            return False
        try:
            await self._client.ping()
        except (RedisError, OSError) as exc:
            self._mark_down(exc)
            return False
        log.info("cache connected", extra={"redis": self.url, "ttl_seconds": self.ttl})
        return True

    def _mark_down(self, exc: BaseException) -> None:
        if not self._down:
            error = f"{type(exc).__name__}: {exc}"
            log.warning("redis unavailable: serving uncached", extra={"redis": self.url, "error": error})
        self._down = True
        self._down_until = time.monotonic() + self._retry

    def _mark_up(self) -> None:
        if self._down:
            log.info("redis reachable again: cache back on", extra={"redis": self.url})
        self._down = False

    def _skip(self) -> bool:
        return self._client is None or (self._down and time.monotonic() < self._down_until)

    async def get(self, key: str) -> bytes | None:
        if self._skip():
            CACHE.labels("bypass").inc()
            return None
        try:
            value = await self._client.get(key)
        except (RedisError, OSError) as exc:
            self._mark_down(exc)
            CACHE.labels("error").inc()
            return None
        self._mark_up()
        CACHE.labels("hit" if value is not None else "miss").inc()
        return value

    async def put(self, key: str, value: bytes) -> None:
        if self._skip():
            return
        try:
            await self._client.set(key, value, ex=self.ttl)
        except (RedisError, OSError) as exc:
            self._mark_down(exc)
            return
        self._mark_up()

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
