"""The model server stand-in batches concurrent Predict calls the way TF Serving does."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import numpy as np
import pytest

from services.common.errors import ServiceError
from services.modelserver.batching import Batcher, BatchingParameters
from tests.conftest import ROOT


def test_reads_the_parameters_file_tf_serving_reads() -> None:
    params = BatchingParameters.read(ROOT / "deploy" / "components" / "tfserving-batching" / "batching.config")
    assert params == BatchingParameters(max_batch_size=8, batch_timeout_micros=2000, num_batch_threads=2,
                                        max_enqueued_batches=64)


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []
        self.lock = threading.Lock()

    def __call__(self, model: str, signature: str, inputs: dict) -> dict:
        x = inputs["x"]
        with self.lock:
            self.calls.append((model, x.shape[0]))
        return {"double": x * 2, "labels": np.repeat([["a", "b"]], x.shape[0], axis=0)}


def test_concurrent_calls_share_one_run_and_get_their_own_rows() -> None:
    run = Recorder()

    async def main() -> list[dict]:
        batcher = Batcher(BatchingParameters(max_batch_size=8, batch_timeout_micros=50_000), run)
        calls = [batcher.predict("m", "serving_default", {"x": np.full((1, 3), float(i))}) for i in range(6)]
        calls.append(batcher.predict("m", "serving_default", {"x": np.zeros((1, 4))}))  # another shape
        calls.append(batcher.predict("other", "serving_default", {"x": np.zeros((1, 3))}))  # another model
        return await asyncio.gather(*calls)

    results = asyncio.run(main())
    for i, out in enumerate(results[:6]):
        np.testing.assert_array_equal(out["double"], np.full((1, 3), 2.0 * i))
        assert out["labels"].shape == (1, 2)
    assert sorted(run.calls) == [("m", 1), ("m", 6), ("other", 1)]


def test_a_full_batch_runs_without_waiting_and_an_overflow_opens_the_next() -> None:
    run = Recorder()

    async def main() -> None:
        batcher = Batcher(BatchingParameters(max_batch_size=4, batch_timeout_micros=10_000_000), run)
        await asyncio.wait_for(asyncio.gather(*[
            batcher.predict("m", "s", {"x": np.ones((2, 3))}) for _ in range(4)]), timeout=5)

    asyncio.run(main())  # 10 s timeout never reached: batches close when full
    assert [rows for _, rows in run.calls] == [4, 4]


def test_errors_reach_every_caller_and_a_full_queue_is_unavailable() -> None:
    def broken(model: str, signature: str, inputs: dict) -> dict:
        raise ValueError("bad tensor")

    async def main() -> None:
        batcher = Batcher(BatchingParameters(max_batch_size=8, batch_timeout_micros=1000, max_enqueued_batches=1),
                          broken)
        first = asyncio.ensure_future(batcher.predict("m", "s", {"x": np.ones((1, 3))}))
        await asyncio.sleep(0)
        with pytest.raises(ServiceError, match="batch queue of n is full"):
            await batcher.predict("n", "s", {"x": np.ones((1, 3))})
        with pytest.raises(ValueError, match="bad tensor"):
            await first

    asyncio.run(main())


def test_missing_parameters_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        BatchingParameters.read(tmp_path / "nope")
