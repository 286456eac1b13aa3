"""Search and path work off the event loop, bounded, and stopped when its caller stops waiting.

The event loop answers health checks, cache hits and uploads; a search of k=100 with diversity
or a path of 50 songs takes CPU for a while. So each runs on one of SEARCH_WORKERS threads
(SEARCH_QUEUE more may wait for one; beyond that RESOURCE_EXHAUSTED), and carries a Budget: the
work checks it between steps and stops with DEADLINE_EXCEEDED when the caller's deadline (or
SEARCH_TIMEOUT_SECONDS without one) passes, or CANCELLED when the caller goes away.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import grpc

from services.common.config import Setting
from services.common.errors import ServiceError, busy

T = TypeVar("T")
SEARCH_WORKERS = 1  # 2 on 2 cores: p99 of health 179 ms against 92, and fewer answers (GIL)
SEARCH_QUEUE = 16
SEARCH_TIMEOUT_SECONDS = 10.0
WORKERS = Setting("SEARCH_WORKERS", SEARCH_WORKERS, "recommender",
                  "threads that run searches and paths off the event loop")
QUEUE = Setting("SEARCH_QUEUE", SEARCH_QUEUE, "recommender",
                "searches that may wait for a worker; beyond, RESOURCE_EXHAUSTED")
TIMEOUT = Setting("SEARCH_TIMEOUT_SECONDS", SEARCH_TIMEOUT_SECONDS, "recommender",
                  "a search's budget when the caller set no shorter deadline; past it, or when the caller cancels, "
                  "the work stops")
# A search thread pauses YIELD_SECONDS every YIELD_EVERY_SECONDS of work: numpy releases and
# retakes the interpreter lock in every small operation, and a thread that retakes it that often
# never receives the switch request, so the event loop waited up to 150 ms for its turn (a
# shorter sys.setswitchinterval did not help; the pause does).
YIELD_EVERY_SECONDS = 0.005
YIELD_SECONDS = 0.0002


class Budget:
    """How long one piece of work may go on; `check()` raises once it is spent or cancelled."""

    def __init__(self, seconds: float | None = None) -> None:
        self.deadline = None if seconds is None else time.monotonic() + seconds
        self._cancelled = threading.Event()
        self._yielded = time.monotonic()

    def cancel(self) -> None:
        self._cancelled.set()

    def check(self) -> None:
        now = time.monotonic()
        if now - self._yielded > YIELD_EVERY_SECONDS:
            time.sleep(YIELD_SECONDS)  # the event loop's turn
            self._yielded = time.monotonic()
        if self._cancelled.is_set():
            raise ServiceError(grpc.StatusCode.CANCELLED, "the call was cancelled; the work stopped")
        if self.deadline is not None and now > self.deadline:
            raise ServiceError(
                grpc.StatusCode.DEADLINE_EXCEEDED,
                "the answer was not ready within the call's deadline (or SEARCH_TIMEOUT_SECONDS); "
                "ask for fewer songs or steps, or allow more time",
            )


UNLIMITED = Budget()  # for tools and tests: no deadline (and the same pauses)


class Compute:
    def __init__(self, workers: int = SEARCH_WORKERS, queue: int = SEARCH_QUEUE,
                 timeout: float = SEARCH_TIMEOUT_SECONDS) -> None:
        self._pool = ThreadPoolExecutor(max(1, workers), thread_name_prefix="search")
        self._capacity = max(1, workers) + max(0, queue)
        self._running = 0
        self.timeout = timeout

    @classmethod
    def from_env(cls) -> Compute:
        return cls(WORKERS.as_int(), QUEUE.as_int(), TIMEOUT.as_float())

    async def run(self, work: Callable[[Budget], T], time_remaining: float | None = None) -> T:
        """work(budget) on a worker thread; the budget ends at the deadline or on cancellation."""
        if self._running >= self._capacity:
            raise busy(f"{self._running} searches are running or waiting (SEARCH_WORKERS + SEARCH_QUEUE); "
                            "retry with backoff")
        seconds = self.timeout if time_remaining is None else min(self.timeout, max(time_remaining, 0.0))
        budget = Budget(seconds)
        self._running += 1
        future = asyncio.get_running_loop().run_in_executor(self._pool, work, budget)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            budget.cancel()  # the thread stops at its next check
            raise
        finally:
            self._running -= 1

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
