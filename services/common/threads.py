"""One math-library thread per worker thread: set before numpy, numba or TensorFlow load.

A service runs `workers` requests at once, each single-threaded; BLAS, OpenMP, numba or TF
thread pools on top would oversubscribe the cores (measured: the featurizer burnt 132 ms of
CPU per song with default threads against 65 ms with one; bench/ingest.py). An operator's
explicit setting wins.
"""

from __future__ import annotations

import os

VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS",
             "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")


def one_thread_per_worker() -> None:
    for name in VARIABLES:
        os.environ.setdefault(name, "1")
