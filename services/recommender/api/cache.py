"""Redis cache of recommendation responses, that never makes a query fail.

Keys carry the index generation, so a rebuilt index is never answered from old entries (they
expire with their TTL). When Redis is unreachable the service answers uncached, logs the
outage once (and the recovery once), and retries Redis after a short back-off instead of
paying a connection timeout on every request. REDIS_URL empty or "off" disables the cache.

Values cannot be forged: each is stored as HMAC-SHA256(key, redis key + payload) + payload
and verified on read, so whoever can write to Redis still cannot make the service answer
with their data. A forged or tampered entry is ignored (answered fresh), counted in
musicrec_cache_forged_total and logged once. The key comes from CACHE_HMAC_KEY_FILE (a
Secret shared by the replicas); without one each process draws a random key (entries are
then private to that replica). Credentials in REDIS_URL are never logged.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import time
from dataclasses import asdict
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as redis
from prometheus_client import Counter
from redis.exceptions import RedisError

from services.recommender.search.options import Options

log = logging.getLogger("recommender.cache")
CACHE = Counter("musicrec_cache_total", "Recommendation cache lookups", ["result"])
FORGED = Counter("musicrec_cache_forged_total", "Cache entries ignored because their signature did not verify")
KEY_PREFIX = "musicrec:v1:rec"
SIGNATURE_BYTES = 32


def redacted(url: str) -> str:
    """The URL without user name or password, for logs."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


class Signer:
    """HMAC-SHA256 over (redis key, payload): a value moved to another key does not verify either."""

    def __init__(self, key: bytes | None) -> None:
        self._key = key or secrets.token_bytes(32)
        self.shared = key is not None

    def _mac(self, redis_key: str, payload: bytes) -> bytes:
        return hmac.new(self._key, redis_key.encode() + b"\0" + payload, hashlib.sha256).digest()

    def sign(self, redis_key: str, payload: bytes) -> bytes:
        return self._mac(redis_key, payload) + payload

    def verify(self, redis_key: str, value: bytes) -> bytes | None:
        mac, payload = value[:SIGNATURE_BYTES], value[SIGNATURE_BYTES:]
        return payload if hmac.compare_digest(mac, self._mac(redis_key, payload)) else None


def cache_key(generation: int, kind: str, *parts: object) -> str:
    return ":".join([KEY_PREFIX, f"g{generation}", kind, *(str(p) for p in parts)])


def by_id_key(generation: int, song_id: str, options: Options) -> str:
    """RecommendById's key: every option shapes the answer, so it holds a digest of them all, in
    their parsed, canonical form (k 0 and k 5 are one answer; exclusions are sets, artists and
    albums casefolded), so equivalent requests share one entry."""
    canonical = {name: sorted(value) if isinstance(value, frozenset) else value
                 for name, value in sorted(asdict(options).items())}
    digest = hashlib.sha256(json.dumps(canonical, separators=(",", ":")).encode()).hexdigest()[:32]
    return cache_key(generation, "id", song_id, digest)


class ResponseCache:
    def __init__(
        self,
        url: str,
        ttl_seconds: int,
        timeout_seconds: float = 0.25,
        retry_seconds: float = 2.0,
        signing_key: bytes | None = None,
        password: bytes | None = None,
        ca_file: str = "",
    ) -> None:
        self.url = redacted(url) if url else url
        self.ttl = ttl_seconds
        self._signer = Signer(signing_key)
        self._forgery_logged = False
        self._retry = retry_seconds
        self._down_until = 0.0
        self._down = False
        self._client: redis.Redis | None = None
        if url and url.lower() != "off":
            tls = {"ssl_ca_certs": ca_file} if ca_file and url.startswith("rediss://") else {}
            self._client = redis.Redis.from_url(
                url,
                socket_timeout=timeout_seconds,
                socket_connect_timeout=timeout_seconds,
                password=password.decode() if password else None,
                **tls,
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
        log.info(
            "cache connected",
            extra={"redis": self.url, "ttl_seconds": self.ttl, "signing_key_shared": self._signer.shared},
        )
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
        if value is None:
            CACHE.labels("miss").inc()
            return None
        payload = self._signer.verify(key, value)
        if payload is None:
            FORGED.inc()
            CACHE.labels("forged").inc()
            if not self._forgery_logged:
                log.warning("cache entry with a bad signature ignored (tampering?)", extra={"key": key[:200]})
                self._forgery_logged = True
            return None
        CACHE.labels("hit").inc()
        return payload

    async def put(self, key: str, value: bytes) -> None:
        if self._skip():
            return
        try:
            await self._client.set(key, self._signer.sign(key, value), ex=self.ttl)
        except (RedisError, OSError) as exc:
            self._mark_down(exc)
            return
        self._mark_up()

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
