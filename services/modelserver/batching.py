"""Server-side batching as TF Serving does it (--enable_batching --batching_parameters_file).

Predict calls for the same model, signature and input shape (all but the batch dimension) that
arrive within batch_timeout_micros of the first are concatenated along dimension 0, up to
max_batch_size rows, run as one call on one of num_batch_threads threads, and each caller gets
its own rows back. More than max_enqueued_batches waiting batches: UNAVAILABLE, as TF Serving.
Reads the same parameters file as TF Serving (text format, `name { value: N }`).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from prometheus_client import Histogram

from services.common.errors import unavailable
from services.common.predict_batch import MAX_PREDICT_BATCH

Inputs = dict[str, np.ndarray]
Outputs = dict[str, np.ndarray]
FIELD = re.compile(r"(\w+)\s*\{\s*value:\s*(\d+)\s*\}")
# as TF Serving's /tensorflow/serving/batching_session/processed_batch_size: how full the batches are
BATCH_ROWS = Histogram("musicrec_modelserver_batch_rows", "Rows in each batched Predict run", ["model"],
                       buckets=(1, 2, 3, 4, 6, 8, 12, 16, 32, 64))


@dataclass(frozen=True)
class BatchingParameters:
    max_batch_size: int = MAX_PREDICT_BATCH
    batch_timeout_micros: int = 2000
    num_batch_threads: int = 2
    max_enqueued_batches: int = 64

    @classmethod
    def read(cls, path: Path) -> BatchingParameters:
        known = set(cls.__dataclass_fields__)
        values = {k: int(v) for k, v in FIELD.findall(path.read_text()) if k in known}
        return cls(**values)


@dataclass
class _Batch:
    requests: list[tuple[Inputs, asyncio.Future]] = field(default_factory=list)
    rows: int = 0


class Batcher:
    def __init__(self, parameters: BatchingParameters, run: Callable[[str, str, Inputs], Outputs]) -> None:
        """run(model, signature, inputs) -> outputs, every output batch-major."""
        self.p = parameters
        self._run = run
        self._pool = ThreadPoolExecutor(parameters.num_batch_threads, thread_name_prefix="batch")
        self._open: dict[tuple, _Batch] = {}
        self._waiting = 0  # batches closed or open, not yet run

    async def predict(self, model: str, signature: str, inputs: Inputs) -> Outputs:
        key = (model, signature, tuple(sorted((k, v.shape[1:], v.dtype.str) for k, v in inputs.items())))
        rows = next(iter(inputs.values())).shape[0]
        loop = asyncio.get_running_loop()
        future: asyncio.Future = loop.create_future()
        batch = self._open.get(key)
        if batch is not None and batch.rows + rows > self.p.max_batch_size:
            self._close(key)
            batch = None
        if batch is None:
            if self._waiting >= self.p.max_enqueued_batches:
                raise unavailable(f"the batch queue of {model} is full ({self._waiting} batches); retry with backoff")
            batch = self._open[key] = _Batch()
            self._waiting += 1
            loop.call_later(self.p.batch_timeout_micros / 1e6, self._close_if_open, key, batch)
        batch.requests.append((inputs, future))
        batch.rows += rows
        if batch.rows >= self.p.max_batch_size:
            self._close(key)
        return await future

    def _close_if_open(self, key: tuple, batch: _Batch) -> None:
        if self._open.get(key) is batch:
            self._close(key)

    def _close(self, key: tuple) -> None:
        batch = self._open.pop(key)
        asyncio.get_running_loop().create_task(self._execute(key, batch))

    async def _execute(self, key: tuple, batch: _Batch) -> None:
        model, signature, _ = key
        names = batch.requests[0][0].keys()
        merged = {n: np.concatenate([inputs[n] for inputs, _ in batch.requests]) for n in names}
        BATCH_ROWS.labels(model).observe(batch.rows)
        try:
            outputs = await asyncio.get_running_loop().run_in_executor(self._pool, self._run, model, signature, merged)
        except Exception as exc:  # every caller of the batch gets the error
            for _, future in batch.requests:
                if not future.done():
                    future.set_exception(exc)
            return
        finally:
            self._waiting -= 1
        start = 0
        for inputs, future in batch.requests:
            rows = next(iter(inputs.values())).shape[0]
            if not future.done():
                future.set_result({name: value[start : start + rows] for name, value in outputs.items()})
            start += rows
