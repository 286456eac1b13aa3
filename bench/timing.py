"""Timing helpers the benchmarks share."""

from __future__ import annotations

import time


def best_of(fn, repeat: int) -> float:
    """The fastest of `repeat` calls, in seconds (the least disturbed by the machine)."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best
