"""The heaviest legal requests, timed at catalog sizes, with the memory each adds.

    python -m bench.heavy [--sizes 100000,1000000]

For each size: a synthetic catalog (bench.recommend's clustered vectors, 997 artists) is built
once, then, in this process, on a search worker as the service runs them (compute.py):
- FindPath count=50 between songs of two genres;
- RecommendBySeeds of 20 catalog songs, k=100, diversity 1;
- RecommendById k=100 with 1000 exclusions (the query's 1000 nearest songs).
Each prints its best-of-3 time, its ratio to the 1 s target, and the peak resident memory it
added over the loaded index (sampled every 2 ms; target 100 MB).
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from bench.recommend import synthetic_catalog
from services.recommender.index.store import IndexSet, load_current
from services.recommender.search.options import Options
from services.recommender.search.path import find_path
from services.recommender.search.recommend import Query, Seed, recommend
from services.recommender.search.routing import Route

TARGET_SECONDS = 1.0
TARGET_MB = 100.0


def resident_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def measured(work: Callable[[], object], rounds: int = 3) -> tuple[float, float]:
    """(best seconds, peak MB added) of `work`."""
    best, added = float("inf"), 0.0
    for _ in range(rounds):
        before, peak, done = resident_mb(), [0.0], threading.Event()

        def sample(before: float = before, peak: list[float] = peak, done: threading.Event = done) -> None:
            while not done.is_set():
                peak[0] = max(peak[0], resident_mb() - before)
                time.sleep(0.002)

        sampler = threading.Thread(target=sample)
        sampler.start()
        started = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - started)
        done.set()
        sampler.join()
        added = max(added, peak[0])
    return best, added


def heavy_calls(index: IndexSet, rng: np.random.Generator) -> dict[str, Callable[[], object]]:
    genres = index.genres
    rows_of = index.genre_rows()
    start, end = int(rng.choice(rows_of[genres[0]])), int(rng.choice(rows_of[genres[5]]))
    seed_rows = [int(rng.choice(rows_of[genres[i % len(genres)]])) for i in range(20)]
    seeds = [Seed(index.raw_rows([r])[0], 1.0, index.songs[r].id, index.songs[r].id) for r in seed_rows]
    every = [Route(g, 1.0, "all") for g in genres]
    query_row = int(rng.choice(rows_of[genres[3]]))
    nearest = index.indexes[genres[3]].search(index.z_rows([query_row])[0], 1001)
    excluded = frozenset(index.songs[r].id for r, _ in nearest if r != query_row)
    by_id = Query.one(index.raw_rows([query_row])[0], [Route(genres[3], 1.0, "vote")],
                      Options(k=100, exclude_ids=excluded), exclude_id=index.songs[query_row].id, fill=genres)
    return {
        "FindPath count=50": lambda: find_path(index, start, end, 50, Options()),
        "RecommendBySeeds 20 ids, k=100, diversity 1": lambda: recommend(
            index, Query(seeds, every, Options(k=100, diversity=1.0), fill=genres)),
        "RecommendById k=100, 1000 exclusions": lambda: recommend(index, by_id),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100000,1000000")
    args = parser.parse_args()
    print(f"{'songs':>9}  {'request':<44} {'seconds':>8} {'x target':>9} {'MB added':>9}")
    for size in (int(s) for s in args.sizes.split(",")):
        with tempfile.TemporaryDirectory() as folder:
            started = time.perf_counter()
            synthetic_catalog(Path(folder), size)
            built = time.perf_counter() - started
            index = load_current(Path(folder))
            assert index is not None
            for name, work in heavy_calls(index, np.random.default_rng(size)).items():
                seconds, added = measured(work)
                print(f"{size:>9}  {name:<44} {seconds:8.3f} {seconds / TARGET_SECONDS:9.2f} {added:9.1f}",
                      flush=True)
            print(f"{'':>9}  (catalog built in {built:.0f} s)", flush=True)
            del index


if __name__ == "__main__":
    main()
