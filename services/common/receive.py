"""What a server accepts before it reads a request's body: per-method size limits and a call budget.

Every method's messages are limited to SMALL_MESSAGE_KB (options, ids, feature vectors, and one
1 MiB upload chunk with its header), except the methods a service declares large (a whole file
or spectrogram in one message), which take up to MAX_MESSAGE_MB and are admitted
LARGE_REQUESTS_AT_ONCE at a time; a call over the budget waits for a turn within its deadline
(at most ADMISSION_WAIT_SECONDS), then gets RESOURCE_EXHAUSTED. Beyond MAX_CONCURRENT_CALLS calls
in flight a call is refused at once. Health checks are outside the budget.

So what request bodies can hold in memory is bounded, whoever sends them:
  LARGE_REQUESTS_AT_ONCE x MAX_MESSAGE_MB + MAX_CONCURRENT_CALLS x SMALL_MESSAGE_KB
(each message counted twice: its bytes and the parsed message), and a caller without
credentials is refused before any of its body is read (interceptor.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from services.common.config import Setting
from services.common.errors import busy
from services.common.transport import MAX_MESSAGE_MB, MiB, message_limit_bytes

KiB = 1024
SMALL_MESSAGE_KB = 1536
LARGE_REQUESTS_AT_ONCE = 2
MAX_CONCURRENT_CALLS = 128
ADMISSION_WAIT_SECONDS = 30.0
SMALL_MESSAGE = Setting("SMALL_MESSAGE_KB", SMALL_MESSAGE_KB, "all",
                        "largest request message of a method not declared large (options, ids, vectors, a 1 MiB upload "
                        "chunk)")
LARGE_AT_ONCE = Setting("LARGE_REQUESTS_AT_ONCE", LARGE_REQUESTS_AT_ONCE, "all",
                        "large request messages (up to `MAX_MESSAGE_MB`: `Featurize`, `Classify`, `ClassifyBatch`, "
                        "`Predict`, `RecommendBySeeds`) read at once; the rest wait")
ADMISSION_WAIT = Setting("ADMISSION_WAIT_SECONDS", ADMISSION_WAIT_SECONDS, "all",
                         "longest wait for a large request's turn (within the call's deadline), then "
                         "RESOURCE_EXHAUSTED")
CONCURRENT_CALLS = Setting("MAX_CONCURRENT_CALLS", MAX_CONCURRENT_CALLS, "all",
                           "calls in flight (health checks apart); beyond, RESOURCE_EXHAUSTED before the body is read")


@dataclass
class ReceiveLimits:
    large_methods: frozenset[str] = frozenset()
    small_bytes: int = SMALL_MESSAGE_KB * KiB
    large_bytes: int = MAX_MESSAGE_MB.default * MiB
    large_at_once: int = LARGE_REQUESTS_AT_ONCE
    max_calls: int = MAX_CONCURRENT_CALLS
    wait_seconds: float = ADMISSION_WAIT_SECONDS
    _turns: asyncio.Semaphore | None = field(default=None, repr=False)

    @classmethod
    def from_env(cls, large_methods: frozenset[str]) -> ReceiveLimits:
        return cls(
            large_methods,
            small_bytes=SMALL_MESSAGE.as_int() * KiB,
            large_bytes=message_limit_bytes(),
            large_at_once=LARGE_AT_ONCE.as_int(),
            max_calls=CONCURRENT_CALLS.as_int(),
            wait_seconds=ADMISSION_WAIT.as_float(),
        )

    def is_large(self, method: str) -> bool:
        return method in self.large_methods

    def for_method(self, method: str) -> int:
        """The largest request message `method` accepts, in bytes."""
        return self.large_bytes if self.is_large(method) else self.small_bytes

    @property
    def bound_bytes(self) -> int:
        """What admitted request bodies can hold at most (bytes and parsed message)."""
        return 2 * (self.large_at_once * self.large_bytes + self.max_calls * self.small_bytes)

    @asynccontextmanager
    async def admit(self, method: str, inflight: int, time_remaining: float | None) -> AsyncIterator[Turn]:
        """A turn for the call, before its body is read; RESOURCE_EXHAUSTED when none comes."""
        if inflight > self.max_calls:
            raise busy(f"{inflight - 1} calls are in progress (MAX_CONCURRENT_CALLS); retry with backoff")
        if not self.is_large(method):
            yield Turn(None, self.small_bytes)
            return
        if self._turns is None:
            self._turns = asyncio.Semaphore(self.large_at_once)
        wait = self.wait_seconds if time_remaining is None else min(self.wait_seconds, max(time_remaining, 0.0))
        try:
            await asyncio.wait_for(self._turns.acquire(), wait)
        except TimeoutError:
            raise busy(
                f"{self.large_at_once} large requests are being received (LARGE_REQUESTS_AT_ONCE) and none "
                f"finished within {wait:.1f} s; retry with backoff"
            ) from None
        turn = Turn(self._turns, self.small_bytes)
        try:
            yield turn
        finally:
            turn.release()


class Turn:
    """A large method's turn; given back early when the message read turns out small (a seed
    list of song ids), so only calls that hold a large message wait for one another."""

    def __init__(self, turns: asyncio.Semaphore | None, small_bytes: int) -> None:
        self._turns, self._small = turns, small_bytes

    def read(self, message: object) -> None:
        size = message.ByteSize() if hasattr(message, "ByteSize") else len(message)  # type: ignore[arg-type]
        if size <= self._small:
            self.release()

    def release(self) -> None:
        if self._turns is not None:
            self._turns.release()
            self._turns = None
