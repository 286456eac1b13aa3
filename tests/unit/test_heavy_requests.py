"""The heaviest legal requests stay bounded in memory and stop when their budget is spent."""

from __future__ import annotations

import asyncio
import threading
import time
import tracemalloc
from pathlib import Path

import grpc
import numpy as np
import pytest

from bench.recommend import synthetic_catalog
from services.common.errors import ServiceError
from services.recommender.index.store import IndexSet, load_current
from services.recommender.search.compute import Budget, Compute
from services.recommender.search.options import Options
from services.recommender.search.path import find_path
from services.recommender.search.recommend import Query, Seed, recommend
from services.recommender.search.routing import Route

SONGS = 20_000


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> IndexSet:
    folder = tmp_path_factory.mktemp("catalog")
    synthetic_catalog(folder, SONGS)
    loaded = load_current(Path(folder))
    assert loaded is not None
    return loaded


def seeds_query(index: IndexSet, seeds: int = 20, k: int = 100, diversity: float = 1.0) -> Query:
    rows = [int(r) for r in np.random.default_rng(1).choice(len(index.songs), seeds, replace=False)]
    chosen = [Seed(index.raw_rows([r])[0], 1.0, index.songs[r].id, index.songs[r].id) for r in rows]
    every = [Route(g, 1.0, "all") for g in index.genres]
    return Query(chosen, every, Options(k=k, diversity=diversity), fill=index.genres)


def peak_mb(work) -> float:
    tracemalloc.start()
    try:
        work()
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def test_a_long_path_costs_memory_independent_of_the_catalog(index: IndexSet) -> None:
    start, end = 0, 5  # songs of two genres (synthetic_catalog: genre = row % 10)
    path = find_path(index, start, end, 50, Options(exclude_ids=frozenset(f"song-{i}" for i in range(100, 1100))))
    assert path.steps
    # the pool grew until the whole catalog was in it: 20k x 20k float32 = 1.6 GB at this size
    assert peak_mb(lambda: find_path(index, start, end, 50, Options())) < 64


def test_many_seeds_with_diversity_look_at_a_bounded_number_of_songs(
    index: IndexSet, monkeypatch: pytest.MonkeyPatch
) -> None:
    from services.recommender.search.rules import Rules

    looks = {"blocks": 0}
    blocks = Rules.blocks

    def counted(self, row, chosen):
        looks["blocks"] += 1
        return blocks(self, row, chosen)

    monkeypatch.setattr(Rules, "blocks", counted)
    query = seeds_query(index)
    query.options = Options(k=100, diversity=1.0, max_per_artist=1)
    result = recommend(index, query)
    assert len(result.hits) == 100
    # every pick re-checked every candidate against the rules: 100 x 13,000 checks at this size
    assert looks["blocks"] < 20_000, f"{looks['blocks']} rule checks for one answer"
    assert peak_mb(lambda: recommend(index, seeds_query(index))) < 64


def test_a_spent_budget_stops_the_work_with_the_callers_status(index: IndexSet) -> None:
    spent = Budget(0.0)
    time.sleep(0.001)
    for work in (lambda: recommend(index, seeds_query(index), budget=spent),
                 lambda: find_path(index, 0, 5, 50, Options(), budget=spent)):
        with pytest.raises(ServiceError) as err:
            work()
        assert err.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
    cancelled = Budget(60.0)
    cancelled.cancel()
    with pytest.raises(ServiceError) as err:
        recommend(index, seeds_query(index), budget=cancelled)
    assert err.value.code == grpc.StatusCode.CANCELLED


def test_a_cancelled_caller_stops_its_work_on_the_worker_thread() -> None:
    compute = Compute(workers=1, queue=0, timeout=30.0)
    started, stopped = threading.Event(), threading.Event()

    def endless(budget: Budget) -> None:
        started.set()
        try:
            while True:
                budget.check()
                time.sleep(0.001)
        finally:
            stopped.set()

    async def caller() -> None:
        task = asyncio.create_task(compute.run(endless))
        await asyncio.to_thread(started.wait, 5)
        with pytest.raises(ServiceError) as err:  # the one worker is busy and nothing may wait
            await compute.run(lambda budget: None)
        assert err.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(caller())
    assert stopped.wait(5), "the worker went on after its caller was cancelled"
    compute.close()
